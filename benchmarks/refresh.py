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

    python benchmarks/refresh.py --stack --out benchmarks/results/refresh-stack.json

``--stack`` instead measures the DAG path on a whole embedded stack (``make up``'s services
in a temporary folder on free ports): the same synthetic shop is seeded, the daily DAG
publishes its last day (the gate decides which model serves), then
``recommendations_refresh`` is unpaused, its first run's sensor starts waiting, and a drop
of today's date touching ``--drop-users`` users (``--new-share`` of them new) lands:
``seconds`` runs from its marker to the refreshed table committed by the DAG's task.
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


def on_stack(args: argparse.Namespace) -> dict:
    """Marker → refreshed table through the ``recommendations_refresh`` DAG on an embedded stack."""
    import socket
    import tempfile
    from datetime import datetime, timezone

    from devstack import process, stack
    from recpipe.config import StoreConfig
    from recpipe.io.partitions import Store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    paths = stack.Paths(Path(__file__).resolve().parents[1], local=Path(tempfile.mkdtemp(prefix="recpipe-refresh-"))
                        / ".local", s3_base=process.free_port_block(), api_port=api_port)
    try:
        started = time.perf_counter()
        env = stack.write_env(paths)
        stack.start_services(paths, env)
        store = Store(StoreConfig.from_env(env))
        store.ensure_bucket()
        sources.seed(store, ShopSpec(users=args.users, items=args.items, days=args.days, start=date(2024, 3, 1)))
        env, day = stack.start(paths)  # services up, events there: validates the days before the last
        assert stack.run_dag(env, day) == "success", "the daily run failed: see the logs in " + str(paths.logs)
        setup = time.perf_counter() - started
        base = publish.read(store, day)
        n_new = int(args.drop_users * args.new_share)
        known = pc.unique(base["user_id"]).to_pylist()[: args.drop_users - n_new]
        users = known + [f"new-{i}" for i in range(args.drop_users - len(known))]
        now = datetime.now(timezone.utc)
        dt = now.date().isoformat()
        hour = max(0, now.hour - 1)
        events = drop_events(users, pc.unique(base["item_id"]).to_pylist(), dt, hour, np.random.default_rng(1))
        events = events.filter(pc.less(events["event_ts"], pa.scalar(now, events["event_ts"].type)))
        api = stack.AirflowAPI(env)
        api.wait_for_dag("recommendations_refresh")
        api.unpause("recommendations_refresh")  # its run for the current 10 minutes starts waiting
        time.sleep(20)
        store.put_bytes(layout.drop_file("events", dt, 1), table_to_parquet(events))
        t0 = time.perf_counter()
        store.put_bytes(layout.drop_ready("events", dt, 1), b"")
        deadline = t0 + 900
        while time.perf_counter() < deadline:
            manifest = store.manifest(layout.partition(layout.RECOMMENDATIONS, dt))
            if manifest and 1 in manifest["meta"].get("refresh", {}).get("drops", []):
                break
            runs = api._call("GET", "/api/v2/dags/recommendations_refresh/dagRuns?state=failed")["dag_runs"]
            if runs:
                raise RuntimeError(f"the refresh run {runs[0]['dag_run_id']} failed; see the logs in {paths.logs}")
            time.sleep(2)
        else:
            raise TimeoutError(f"no refreshed table for {dt} 900 s after the marker; see the logs in {paths.logs}")
        meta = manifest["meta"]
        return {"airflow": {"seconds": round(time.perf_counter() - t0, 1), "drop_rows": events.num_rows,
                            "rescored_users": meta["refresh"]["rescored_users"],
                            "new_users": meta["refresh"]["new_users"], "table_users": meta["users"],
                            "model": meta["model"]["name"], "base": meta["refresh"]["from"], "dt": dt},
                "setup_seconds": round(setup, 1)}
    finally:
        stack.down(paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=40_000)
    ap.add_argument("--items", type=int, default=4_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--drop-users", type=int, default=10_000)
    ap.add_argument("--new-share", type=float, default=0.1, help="share of a drop's users never seen before")
    ap.add_argument("--model", default="mf")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stack", action="store_true", help="measure the DAG path on an embedded stack instead")
    ap.add_argument("--out")
    args = ap.parse_args()
    load_before = os.getloadavg()
    if args.stack:
        result = on_stack(args)
        report({"benchmark": "refresh", "target_seconds": 300, "results": {"airflow": result["airflow"]},
                "setup_seconds": result["setup_seconds"], "drop_users": args.drop_users,
                "load_average_before": [round(x, 1) for x in load_before],
                "load_average_after": [round(x, 1) for x in os.getloadavg()], "machine": machine()}, args.out)
        return
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
