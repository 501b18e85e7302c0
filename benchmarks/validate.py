"""How long the quality gate takes on one day of N raw events (real S3, real GX), after
``--history`` validated days of N events each (what the drift check reads).

    python benchmarks/validate.py --events 1000000 --out benchmarks/results/validate.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, peak_rss_gib, temporary_store  # noqa: E402

from recpipe import contracts, pipeline  # noqa: E402
from recpipe.io import landing, layout  # noqa: E402
from recpipe.stages.validate import drift as validate_drift  # noqa: E402
from recpipe.config import RunParams  # noqa: E402

DT = "2024-03-01"


def events(n: int, seed: int = 0, dt: str = DT) -> pa.Table:
    """N plausible events of day ``dt``: 100k users, 20k items, the five event types."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(date.fromisoformat(dt), datetime.min.time(), timezone.utc).timestamp() * 1e6
    kinds = np.array(contracts.EVENT_TYPES[:4])[rng.choice(4, n, p=[0.7, 0.2, 0.06, 0.04])]
    return landing.conform(pa.table({
        "user_id": pa.array(np.char.add("u", rng.integers(0, 100_000, n).astype(str))),
        "item_id": pa.array(np.char.add("i", rng.zipf(1.3, n).clip(0, 19_999).astype(str))),
        "event_type": pa.array(kinds),
        "event_ts": pa.array((start + rng.integers(0, 86_400_000_000, n)).astype("int64")).cast(pa.timestamp("us", tz="UTC")),
        "value": pa.array(np.where(kinds == "purchase", rng.gamma(2, 20, n).round(2), np.nan)),
    }), contracts.EVENTS, "benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=7, help="validated days before DT (drift compares with them)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with temporary_store() as store:
        started = time.perf_counter()
        import great_expectations  # noqa: F401  (once per worker process; reported apart)
        gx_import = time.perf_counter() - started
        for n in range(args.history, 0, -1):
            day = (date.fromisoformat(DT) - timedelta(days=n)).isoformat()
            landing.write_raw(store, "events", day, events(args.events, seed=n, dt=day))
            pipeline.validate(store, day, RunParams())
        landing.write_raw(store, "events", DT, events(args.events))
        started = time.perf_counter()
        result = pipeline.validate(store, DT, RunParams())
        seconds = time.perf_counter() - started
        drift = store.get_json(layout.quality_report(DT, "result.json"))["summary"]["drift"]
        clean = store.read_table(layout.partition(layout.CLEAN_EVENTS, DT), "events")
        started = time.perf_counter()  # the drift part of the gate alone: profile the day, compare
        validate_drift.measure(store, DT, validate_drift.profile(clean), RunParams(), {})
        drift_seconds = time.perf_counter() - started
    out = {"benchmark": "validate", "machine": machine(), "events": args.events, "history_days": args.history,
           "seconds": round(seconds, 2), "drift_seconds": round(drift_seconds, 2), "gx_import_seconds": round(gx_import, 2), "peak_rss_gib": round(peak_rss_gib(), 2),
           "clean_rows": result["clean_rows"], "quarantined": result["quarantined"],
           "drift": {"days": len(drift["days"]), **{n: m["status"] for n, m in drift["measures"].items()}}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
