"""Fit and scoring time and memory of the propensity model on a large random shop log.

    python benchmarks/propensity.py --out benchmarks/results/propensity.json

``--users`` × ``--items`` (default 100k × 50k), ``--events`` events (default 3M) over 14 days,
items Zipf-popular, types 70 % view / 15 % click / 10 % cart / 5 % purchase, 200 categories;
reports the fit's seconds and rows, the seconds to score ``--score-users`` users against the
whole catalog, and the peak RSS. No storage: the model alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _stack import machine, peak_rss_gib, report  # noqa: E402

from recpipe.models import FitConfig, TrainingData  # noqa: E402
from recpipe.models.base import Events  # noqa: E402
from recpipe.models.propensity import DAY_US, Propensity  # noqa: E402


def log(users: int, items: int, events: int, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    u = np.sort(rng.integers(0, users, events))
    i = (rng.zipf(1.3, events) % items).astype(np.int64)
    t = rng.choice(4, events, p=[0.7, 0.15, 0.1, 0.05]).astype(np.int8)
    ts = rng.integers(0, 14 * DAY_US, events)
    order = np.lexsort((ts, u))
    u, i, t, ts = u[order], i[order], t[order], ts[order]
    category = np.stack([rng.integers(1, 200, items), np.zeros(items), np.zeros(items)], axis=1).astype(np.int32)
    return TrainingData(u, i, np.ones(events), users, items, np.ones(items), last_ts=ts, item_features=category,
                        events=Events(u, i, t, ts))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--events", type=int, default=3_000_000)
    p.add_argument("--score-users", type=int, default=1_000)
    p.add_argument("--out")
    args = p.parse_args()
    data = log(args.users, args.items, args.events)
    t = time.monotonic()
    model = Propensity()
    summary = model.fit(data, FitConfig())
    fit_s = time.monotonic() - t
    t = time.monotonic()
    model.score(np.arange(args.score_users), args.items)
    score_s = time.monotonic() - t
    report({"benchmark": "propensity", "machine": machine(), "users": args.users, "items": args.items,
            "events": args.events, "fit_seconds": round(fit_s, 1), "fit": summary,
            "score_users": args.score_users, "score_seconds": round(score_s, 2),
            "peak_rss_gib": round(peak_rss_gib(), 2)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
