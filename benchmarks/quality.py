"""Offline quality of the models: leave-one-out, full ranking, HR@10 and NDCG@10.

    python benchmarks/quality.py --dataset ml-100k --out benchmarks/results/quality-ml-100k.json
    python benchmarks/quality.py --dataset amazon-sports --models sasrec --out benchmarks/results/quality-amazon-sports.json
    python benchmarks/quality.py --dataset path/to/folder ...

``--dataset``: a set in ../shared/data (ml-100k, amazon-sports) or any folder of RecBole
atomic files: one ``<name>.inter`` (tab-separated, ``name:type`` header) with user_id,
item_id and timestamp columns, and optionally ``<name>.item`` (its ``class`` column, first
word, is the item's category for the models that use content features).

Protocol (../shared/data/README.md): each user's ratings ordered by timestamp (ties by row
order); the last item is the test target, the one before it the validation target, the rest
is training history. Every model is fit on the training part (early stopping on the
validation part: a model that holds out each user's last item for early stopping itself,
``holds_out_last_item``, is fit on training + validation, so that item is the validation
item and never a training target); for the test target it scores from the training + validation history
(``with_history``: sequence models read it, MF folds each user in against its frozen item
vectors, popularity keeps its fitted state). ALL
items are ranked, except those the user rated before the target; ties go to the lower item
index (as ``recpipe.scoring.top_k``). Metrics are averaged over all users.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, report  # noqa: E402

from recpipe.models import FitConfig, TrainingData, model_class  # noqa: E402
from recpipe.models.base import item_feature_codes  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "../shared/data"
K = 10
#: Run parameters per model (the rest are RunParams defaults).
PARAMS = {
    "sasrec": dict(embedding_dim=64, epochs=200, batch_size=128, learning_rate=0.002, shared_negatives=2048),
    "mf": dict(embedding_dim=64, epochs=50, negatives=8, batch_size=1024, learning_rate=0.005),
    "two_tower": dict(embedding_dim=64, epochs=40, negatives=8, batch_size=1024, learning_rate=0.002),
    "popularity": dict(),
    "affinity": dict(),
    "propensity": dict(),
}
PROTOCOL = ("leave-one-out by timestamp (ties by row order): last item test, second last validation, rest train; "
            "test scored from train+validation history; full ranking over all items excluding those the user rated "
            f"before the target, ties to the lower item index; HR@{K} and NDCG@{K} averaged over all users")


def read_atomic(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions with user_id, item_id, timestamp in file order; items with item_id, category)."""
    inter = sorted(folder.glob("*.inter")) if folder.is_dir() else []
    if not inter:
        raise SystemExit(f"{folder}: no <name>.inter file (RecBole atomic format) in this folder.")

    def load(file: Path) -> pd.DataFrame:
        df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        return df.rename(columns=lambda c: c.split(":")[0])

    ev = load(inter[0])
    missing = {"user_id", "item_id", "timestamp"} - set(ev.columns)
    if missing:
        raise SystemExit(f"{inter[0]} lacks the columns {sorted(missing)}.")
    item_file = inter[0].with_suffix(".item")
    items = load(item_file) if item_file.exists() else pd.DataFrame({"item_id": pd.Series(dtype=str)})
    category = items["class"].str.split(" ").str[0] if "class" in items else pd.Series([None] * len(items))
    return ev[["user_id", "item_id", "timestamp"]], pd.DataFrame({"item_id": items["item_id"],
                                                                  "category": category.replace("", None)})


def split(path: Path) -> tuple[pd.DataFrame, int, int, np.ndarray]:
    """Interactions as (user, item, ts, part) with dense indices; part 0 = test, 1 = validation, 2 = train.

    ts orders by (timestamp, row in the file). Also the item content features, (n_items, F),
    in index order (catalog items first, in the item file's order).
    """
    ev, items = read_atomic(path)
    catalog = pd.unique(np.concatenate([items["item_id"].to_numpy(), ev["item_id"].to_numpy()]))
    users = np.unique(ev["user_id"].to_numpy())
    seconds = pd.to_numeric(ev["timestamp"]).to_numpy(np.float64)
    rank = np.empty(len(ev), np.int64)
    rank[np.lexsort((np.arange(len(ev)), seconds))] = np.arange(len(ev))
    df = pd.DataFrame({
        "user": np.searchsorted(users, ev["user_id"].to_numpy()),
        "item": pd.Index(catalog).get_indexer(ev["item_id"].to_numpy()),
        "ts": rank,  # distinct, ordered by (timestamp, row)
    }).sort_values(["user", "ts"], kind="stable")
    df["part"] = np.minimum(df.groupby("user").cumcount(ascending=False), 2)
    table = pa.table({"item_id": pa.array(catalog, pa.string())})
    cats = dict(zip(items["item_id"], items["category"]))
    table = table.append_column("category", pa.array([cats.get(i) for i in catalog], pa.string()))
    return df, len(users), len(catalog), item_feature_codes(table)


def training_data(df: pd.DataFrame, n_users: int, n_items: int, features: np.ndarray) -> TrainingData:
    return TrainingData(
        users=df["user"].to_numpy(np.int64), items=df["item"].to_numpy(np.int64),
        weights=np.ones(len(df), np.float32), n_users=n_users, n_items=n_items,
        popularity=np.bincount(df["item"], minlength=n_items).astype(np.float32),
        last_ts=df["ts"].to_numpy(np.int64), item_features=features,
    )


CHUNK = 2048  # users scored at once (a catalog of 18k items: 150 MB per chunk)


def metrics(model, n_users: int, n_items: int, seen: pd.DataFrame, target: pd.DataFrame) -> dict[str, float]:
    """HR@K, NDCG@K of each user's target among all items not in ``seen``, scoring users in chunks."""
    seen_users, seen_items = seen["user"].to_numpy(), seen["item"].to_numpy()
    by_user = np.argsort(seen_users, kind="stable")
    bounds = np.searchsorted(seen_users[by_user], np.arange(0, n_users + CHUNK, CHUNK))
    t_users, t_items = target["user"].to_numpy(), target["item"].to_numpy()
    ranks = []
    for c, lo in enumerate(range(0, n_users, CHUNK)):
        users = np.arange(lo, min(lo + CHUNK, n_users))
        s = np.nan_to_num(np.array(model.score(users, n_items), dtype=np.float32), nan=-np.inf)
        rows = by_user[bounds[c]:bounds[c + 1]]
        s[seen_users[rows] - lo, seen_items[rows]] = -np.inf
        mine = (t_users >= lo) & (t_users < lo + len(users))
        u, items = t_users[mine] - lo, t_items[mine]
        s, t = s[u], s[u, items][:, None]
        ranks.append((s > t).sum(1) + ((s == t) & (np.arange(s.shape[1]) < items[:, None])).sum(1))
    rank = np.concatenate(ranks)
    hit = rank < K
    return {f"hr@{K}": float(hit.mean()), f"ndcg@{K}": float(np.where(hit, 1 / np.log2(rank + 2), 0).mean())}


def run(name: str, df: pd.DataFrame, n_users: int, n_items: int, features: np.ndarray,
        overrides: dict | None = None) -> dict:
    from recpipe.models.keras_fit import setup_device

    chosen = {**PARAMS[name], **(overrides or {})}
    params = FitConfig(**chosen)
    train, valid, test = df[df.part == 2], df[df.part == 1], df[df.part == 0]
    setup_device(params.seed)
    model = model_class(name)()
    # a model that early-stops on each user's last item gets the validation item as that item
    fit_on = df[df.part > 0] if getattr(model, "holds_out_last_item", False) else train
    started, cpu = time.monotonic(), time.process_time()
    summary = model.fit(training_data(fit_on, n_users, n_items, features), params)
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    val = metrics(model.with_history(training_data(train, n_users, n_items, features)), n_users, n_items, train, valid)
    model = model.with_history(training_data(df[df.part > 0], n_users, n_items, features))
    out = {**metrics(model, n_users, n_items, df[df.part > 0], test),
           "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1),
           "load_average": [round(x, 2) for x in os.getloadavg()], "epochs": summary.get("epochs", 0),
           **{f"val_{k}": v for k, v in val.items()}, "params": chosen}
    logging.info("%s: %s", name, out)
    return out


def _typed(key: str, value: str):
    """``--set`` value as the type of FitConfig's field ``key``."""
    fields = {f.name: f.type for f in dataclasses.fields(FitConfig)}
    if key not in fields:
        raise SystemExit(f"--set {key}: not a training parameter; choose from {sorted(fields)}.")
    return {"int": int, "float": float}.get(str(fields[key]), str)(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k",
                    help="a set in ../shared/data (ml-100k, amazon-sports) or a folder of RecBole atomic files")
    ap.add_argument("--models", default="sasrec,two_tower,mf,popularity")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a training parameter of every model run (e.g. --set loss=full)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    overrides = {k: _typed(k, v) for k, v in (kv.split("=", 1) for kv in args.set)}
    folder = DATA / args.dataset if (DATA / args.dataset).is_dir() else Path(args.dataset)
    df, n_users, n_items, features = split(folder)
    logging.info("%s: %d ratings, %d users, %d items", args.dataset, len(df), n_users, n_items)
    result = {"dataset": args.dataset, "protocol": PROTOCOL, "machine": machine(),
              "models": {name: run(name, df, n_users, n_items, features, overrides) for name in args.models.split(",")}}
    report(result, args.out)


if __name__ == "__main__":
    main()
