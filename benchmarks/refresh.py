"""Intraday refresh latency: from a drop's ``_READY-<n>`` marker to the refreshed table committed.

    python benchmarks/refresh.py --out benchmarks/results/refresh.json

A synthetic shop (``--users`` × ``--items``, ``--days``) on a SeaweedFS started for the
run; the day before the last is validated, trained (``--model``) and published as the daily
run does, except that its candidate is made the champion whatever the gate says (so ``--model``
serves). The last day then arrives as drops, each touching ``--drop-users`` users
(existing users and ``--new-share`` first-time ones; a few views and a purchase each):

- ``library``: drop 1's marker is written, then ``recpipe.pipeline.refresh`` runs in this
  process (validate the drop's rows, re-score its users, commit);
- ``cli``: drop 2's marker is written, then ``recpipe refresh --date D`` runs as a fresh
  process (interpreter, imports and model load included), as a scheduled task would.

``seconds``: marker written → the refreshed ``recommendations/dt=D`` committed (target ≤ 300).
The machine's load average is recorded: other jobs may share the CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, peak_rss_gib, report, temporary_store  # noqa: E402

from recpipe import pipeline, sources  # noqa: E402
from recpipe.artifacts import registry  # noqa: E402
from recpipe.config import RunParams  # noqa: E402
from recpipe.contracts import day_bounds  # noqa: E402
from recpipe.io import layout  # noqa: E402
from recpipe.io.partitions import table_to_parquet  # noqa: E402
from recpipe.sources.synthetic import ShopSpec  # noqa: E402
from recpipe.stages import publish  # noqa: E402


def drop_events(users: list[str], items: list[str], dt: str, hour: int, rng: np.random.Generator) -> pa.Table:
    """Per user: 3 views of random items, then a purchase of the last one, from ``hour`` o'clock on."""
    n = len(users)
    per = 4
    u = np.repeat(np.array(users, dtype=object), per)
    picked = np.array(items, dtype=object)[rng.integers(0, len(items), (n, per))]
    picked[:, -1] = picked[:, -2]
    kinds = np.tile(np.array(["view", "view", "view", "purchase"], dtype=object), n)
    start = day_bounds(dt)[0] + timedelta(hours=hour)
    ts = [start + timedelta(milliseconds=int(x)) for x in rng.integers(0, 3_600_000, n * per)]
    return pa.table({"user_id": pa.array(u, pa.string()), "item_id": pa.array(picked.ravel(), pa.string()),
                     "event_type": pa.array(kinds, pa.string()), "event_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "value": pa.array(np.where(kinds == "purchase", 9.99, np.nan), pa.float64()),
                     "session_id": pa.nulls(n * per, pa.string())})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=40_000)
    ap.add_argument("--items", type=int, default=4_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--drop-users", type=int, default=10_000)
    ap.add_argument("--new-share", type=float, default=0.1, help="share of a drop's users never seen before")
    ap.add_argument("--model", default="mf")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    with temporary_store() as store:
        started = time.perf_counter()
        dates = sources.seed(store, ShopSpec(users=args.users, items=args.items, days=args.days,
                                             start=date(2024, 3, 1)))
        day, dt = dates[-2], dates[-1]
        store.delete_keys(store.list_keys(layout.raw("events", dt) + "/"))  # the last day arrives in drops
        params = RunParams(model=args.model, epochs=args.epochs)
        for d in dates[:-1]:
            pipeline.validate(store, d, params)
        pipeline.features(store, day, params)
        registry.promote(store, pipeline.train(store, day, params), day, "benchmark: --model serves")
        pipeline.republish(store, day, params)
        pipeline.publish(store, day, params)
        setup = time.perf_counter() - started
        base = publish.read(store, day)
        known = pc.unique(base["user_id"]).to_pylist()
        items = pc.unique(base["item_id"]).to_pylist()
        n_new = int(args.drop_users * args.new_share)
        results = {}
        for n, path in ((1, "library"), (2, "cli")):
            users = [known[i] for i in rng.choice(len(known), args.drop_users - n_new, replace=False)]
            users += [f"new-{n}-{i}" for i in range(n_new)]
            events = drop_events(users, items, dt, 8 + n, rng)
            store.put_bytes(layout.drop_file("events", dt, n), table_to_parquet(events))
            t0 = time.perf_counter()
            store.put_bytes(layout.drop_ready("events", dt, n), b"")  # the marker: the clock starts
            if path == "library":
                summary = pipeline.refresh(store, dt, params)["drops"]
            else:
                cfg = store.config
                env = {**os.environ, "RECPIPE_S3_ENDPOINT": cfg.endpoint, "RECPIPE_BUCKET": cfg.bucket,
                       "AWS_ACCESS_KEY_ID": cfg.access_key, "AWS_SECRET_ACCESS_KEY": cfg.secret_key}
                recpipe = str(Path(sys.executable).with_name("recpipe"))
                subprocess.run([recpipe, "refresh", "--date", dt], env=env, check=True, capture_output=True)
                summary = None
            seconds = time.perf_counter() - t0
            meta = store.manifest(layout.partition(layout.RECOMMENDATIONS, dt))["meta"]
            assert meta["refresh"]["drops"][-1] == n, meta["refresh"]
            results[path] = {"seconds": round(seconds, 1), "drop_rows": events.num_rows,
                             "rescored_users": meta["refresh"]["rescored_users"],
                             "new_users": meta["refresh"]["new_users"], "table_users": meta["users"],
                             "table_rows": meta["rows"], "model": meta["model"]["name"]}
            if summary:
                results[path]["status"] = summary[0]["status"]
        report({"benchmark": "refresh", "target_seconds": 300, "results": results,
                "setup_seconds": round(setup, 1), "users": args.users, "items": args.items, "days": args.days,
                "drop_users": args.drop_users, "peak_rss_gib": round(peak_rss_gib(), 2),
                "load_average_before": [round(x, 1) for x in load_before],
                "load_average_after": [round(x, 1) for x in os.getloadavg()], "machine": machine()}, args.out)


if __name__ == "__main__":
    main()
