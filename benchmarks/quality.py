"""Offline quality of the models on MovieLens: leave-one-out, full ranking, HR@10 and NDCG@10.

    python benchmarks/quality.py --dataset ml-100k --out benchmarks/results/quality-ml-100k.json

Protocol (../shared/data/README.md): each user's ratings ordered by timestamp (ties by row
order); the last item is the test target, the one before it the validation target, the rest
is training history. Every model is fit on the training part (early stopping on the
validation part); for the test target it scores from the training + validation history
(``with_history`` where a model has it; MF and popularity keep their fitted state). ALL
items are ranked, except those the user rated before the target; ties go to the lower item
index (as ``recpipe.scoring.top_k``). Metrics are averaged over all users.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine  # noqa: E402

from recpipe.sources import movielens  # noqa: E402
from recpipe.models import FitConfig, TrainingData, model_class  # noqa: E402
from recpipe.models.base import item_feature_codes  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "../shared/data"
K = 10
#: Run parameters per model (the rest are RunParams defaults).
PARAMS = {
    "sasrec": dict(embedding_dim=64, epochs=200, batch_size=128, learning_rate=0.002),
    "mf": dict(embedding_dim=64, epochs=50, negatives=8, batch_size=1024, learning_rate=0.005),
    "two_tower": dict(embedding_dim=64, epochs=40, negatives=8, batch_size=1024, learning_rate=0.002),
    "popularity": dict(),
}
PROTOCOL = ("leave-one-out by timestamp (ties by row order): last item test, second last validation, rest train; "
            "test scored from train+validation history; full ranking over all items excluding those the user rated "
            f"before the target, ties to the lower item index; HR@{K} and NDCG@{K} averaged over all users")


def split(path: Path) -> tuple[pd.DataFrame, int, int, np.ndarray]:
    """Ratings as (user, item, ts, part) with dense indices; part 0 = test, 1 = validation, 2 = train.

    Also the item content features (first genre as category), (n_items, F), in index order.
    """
    data = movielens.read(path)
    ev = data.events
    catalog = pd.unique(np.concatenate([data.items["item_id"].to_numpy(zero_copy_only=False),
                                        ev["item_id"].to_numpy(zero_copy_only=False)]))
    users = np.unique(ev["user_id"].to_numpy(zero_copy_only=False))
    df = pd.DataFrame({
        "user": np.searchsorted(users, ev["user_id"].to_numpy(zero_copy_only=False)),
        "item": pd.Index(catalog).get_indexer(ev["item_id"].to_numpy(zero_copy_only=False)),
        # epoch µs + row number (< 1 s): distinct, and ordered by (timestamp, row)
        "ts": ev["event_ts"].cast("int64").to_numpy() + np.arange(ev.num_rows),
    }).sort_values(["user", "ts"], kind="stable")
    df["part"] = np.minimum(df.groupby("user").cumcount(ascending=False), 2)
    rows = pc.index_in(pa.array(catalog), value_set=data.items["item_id"])
    return df, len(users), len(catalog), item_feature_codes(data.items.take(rows))


def training_data(df: pd.DataFrame, n_users: int, n_items: int, features: np.ndarray) -> TrainingData:
    return TrainingData(
        users=df["user"].to_numpy(np.int64), items=df["item"].to_numpy(np.int64),
        weights=np.ones(len(df), np.float32), n_users=n_users, n_items=n_items,
        popularity=np.bincount(df["item"], minlength=n_items).astype(np.float32),
        last_ts=df["ts"].to_numpy(np.int64), item_features=features,
    )


def metrics(scores: np.ndarray, seen: pd.DataFrame, target: pd.DataFrame) -> dict[str, float]:
    """HR@K, NDCG@K of each user's target among all items not in ``seen``; scores (n_users, n_items)."""
    s = np.nan_to_num(np.array(scores, dtype=np.float32), nan=-np.inf)
    s[seen["user"].to_numpy(), seen["item"].to_numpy()] = -np.inf
    users, items = target["user"].to_numpy(), target["item"].to_numpy()
    s, t = s[users], s[users, items][:, None]
    rank = (s > t).sum(1) + ((s == t) & (np.arange(s.shape[1]) < items[:, None])).sum(1)
    hit = rank < K
    return {f"hr@{K}": float(hit.mean()), f"ndcg@{K}": float(np.where(hit, 1 / np.log2(rank + 2), 0).mean())}


def run(name: str, df: pd.DataFrame, n_users: int, n_items: int, features: np.ndarray) -> dict:
    from recpipe.models.keras_fit import setup_device

    params = FitConfig(**PARAMS[name])
    train, valid, test = df[df.part == 2], df[df.part == 1], df[df.part == 0]
    setup_device(params.seed)
    model = model_class(name)()
    started = time.monotonic()
    summary = model.fit(training_data(train, n_users, n_items, features), params)
    seconds = time.monotonic() - started
    all_users = np.arange(n_users)
    val = metrics(model.score(all_users, n_items), train, valid)
    if hasattr(model, "with_history"):
        model = model.with_history(training_data(df[df.part > 0], n_users, n_items, features))
    out = {**metrics(model.score(all_users, n_items), df[df.part > 0], test),
           "train_seconds": round(seconds, 1), "epochs": summary.get("epochs", 0),
           **{f"val_{k}": v for k, v in val.items()}, "params": PARAMS[name]}
    logging.info("%s: %s", name, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k"])
    ap.add_argument("--models", default="sasrec,two_tower,mf,popularity")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    df, n_users, n_items, features = split(DATA / args.dataset)
    logging.info("%s: %d ratings, %d users, %d items", args.dataset, len(df), n_users, n_items)
    result = {"dataset": args.dataset, "protocol": PROTOCOL, "machine": machine(),
              "models": {name: run(name, df, n_users, n_items, features) for name in args.models.split(",")}}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
