"""Accuracy against diversity: the gate's hold-out metrics of one model for a few MMR λ.

    python benchmarks/diversity.py --out benchmarks/results/diversity.json

Seeds the synthetic shop (``--users``, ``--items``, ``--days``), validates it, builds the last
day's features, trains ``--model`` once, then runs the evaluate stage on that candidate for
each ``--lambdas`` value of the ``diversity`` param (MMR re-ranking over item categories, as
publish applies it). JSON per λ: the candidate's NDCG@K and hit rate@K, intra-list diversity,
catalog and distributional coverage, Gini, novelty, personalisation, and the evaluation's
wall time (all contenders: candidate, popularity, recent). ``--repeat-slots`` 0 (default)
judges the model's own lists, where the re-ranking acts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _stack import machine, report, temporary_store  # noqa: E402
from recpipe import pipeline, sources  # noqa: E402
from recpipe.config import RunParams  # noqa: E402
from recpipe.sources.synthetic import ShopSpec  # noqa: E402
from recpipe.stages import evaluate  # noqa: E402

SHOWN = ("ndcg", "hit_rate", "intra_list_diversity", "coverage", "distributional_coverage", "gini", "novelty",
         "personalization")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mf")
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--items", type=int, default=600)
    p.add_argument("--days", type=int, default=8)
    p.add_argument("--lambdas", default="0,0.1,0.3,0.5,0.8")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--repeat-slots", type=int, default=0,
                   help="the repeat_slots param (default 0: the model's own lists; -1 lets the gate choose, and on "
                        "the synthetic shop it gives every slot to the recent items, leaving MMR nothing to do)")
    p.add_argument("--out", help="write the JSON here as well")
    args = p.parse_args()
    params = RunParams(model=args.model, top_k=args.top_k, repeat_slots=args.repeat_slots, confidence_level=0)
    rows = []
    with temporary_store() as store:
        dates = sources.seed(store, ShopSpec(users=args.users, items=args.items, days=args.days))
        for dt in dates:
            pipeline.validate(store, dt, params)
        dt = dates[-1]
        pipeline.features(store, dt, params)
        started = time.perf_counter()
        candidate = pipeline.train(store, dt, params)
        train_s = time.perf_counter() - started
        for lam in (float(x) for x in args.lambdas.split(",")):
            started = time.perf_counter()
            found = evaluate.evaluate(store, dt, RunParams(**{**params.as_dict(), "diversity": lam}), candidate)
            m = found["metrics"]["candidate"]
            rows.append({"diversity": lam, **{f"{n}@{args.top_k}": round(m[f"{n}@{args.top_k}"], 4) for n in SHOWN},
                         "repeat_slots": m["repeat_slots"], "evaluate_s": round(time.perf_counter() - started, 2)})
    report({"benchmark": "diversity", "model": args.model, "shop": {"users": args.users, "items": args.items,
                                                                      "days": args.days, "date": dt},
            "hold_out_users": found["metrics"]["candidate"]["users"], "train_s": round(train_s, 1),
            "results": rows, "machine": machine()}, args.out)


if __name__ == "__main__":
    main()
