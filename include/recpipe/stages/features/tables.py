"""The feature tables of one date, assembled from the window's results (docs/features.md).

Pure functions: vocabularies, counts (``window.counts``) and pairs (``window.Pairs``) in,
Arrow tables out. Every table has one row per index of the date's users or items.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts
from recpipe.contracts import day_bounds
from recpipe.stages.features.arrays import DAY_US, rate, ts_array
from recpipe.stages.features.daily import TYPE_COLUMNS
from recpipe.stages.features.vocab import Vocab
from recpipe.stages.features.window import FEATURE_WINDOWS, Pairs

#: The tables of ``features/dt=D``, in the order they are committed.
TABLES = ("interactions", "holdout", "users", "items", "purchased", "user_features", "item_features",
          "sequences", "examples")


def items(vocab: Vocab, n: int, dt: str, catalog: pa.Table | None, popularity: np.ndarray) -> pa.Table:
    """One row per item index of D: catalog attributes and decayed popularity before D."""
    ids = vocab.ids.slice(0, n)
    table = pa.table({"item_idx": pa.array(np.arange(n, dtype=np.int32)), "item_id": ids,
                      "popularity": pa.array(popularity)})
    known = pa.array(vocab.known_on(dt)[:n])
    if catalog is None:
        for f in contracts.ITEMS:
            if f.name not in ("item_id", "available"):
                table = table.append_column(f.name, pa.nulls(n, f.type))
        return table.append_column("available", known)
    pos = pc.index_in(ids, value_set=catalog["item_id"])
    for f in contracts.ITEMS:
        if f.name not in ("item_id", "available"):
            table = table.append_column(f.name, pc.take(catalog[f.name], pos))
    # items the current catalog no longer lists (or not yet seen by D) cannot be sold
    return table.append_column("available", pc.and_(pc.fill_null(pc.take(catalog["available"], pos), False), known))


def users(user_counts: dict[str, np.ndarray], has_history: np.ndarray, vocab: Vocab) -> pa.Table:
    """Everyone with an event in the lookback window (D included)."""
    rows = np.flatnonzero(user_counts["n_events_lb"] > 0).astype(np.int32)
    return pa.table({
        "user_idx": rows,
        "n_events": user_counts["n_events_lb"][rows],
        "last_ts": ts_array(user_counts["last_ts"][rows]),
        "user_id": pc.take(vocab.ids, pa.array(rows)),
        "has_history": has_history[rows],
    })


def user_features(users_: pa.Table, c: dict[str, np.ndarray], pairs: Pairs, profiles: pa.Table | None,
                  dt: str) -> pa.Table:
    """One row per row of ``users``: counts per window, rates, recency, 30-day breadth, profile."""
    rows = users_["user_idx"].to_numpy()
    cols: dict[str, pa.Array] = {"user_idx": users_["user_idx"], "user_id": users_["user_id"]}
    for wdays in FEATURE_WINDOWS:
        for t in TYPE_COLUMNS:
            cols[f"{t}_{wdays}d"] = pa.array(c[f"{t}_{wdays}d"][rows])
    long = max(FEATURE_WINDOWS)
    views, clicks, buys = (c[f"n_{t}_{long}d"][rows] for t in ("view", "click", "purchase"))
    cols[f"n_events_{long}d"] = pa.array(sum(c[f"{t}_{long}d"][rows] for t in TYPE_COLUMNS).astype(np.int32))
    cols[f"ctr_{long}d"] = rate(clicks, views)
    cols[f"purchase_rate_{long}d"] = rate(buys, views)
    end_us = int(day_bounds(dt)[1].timestamp() * 1_000_000)  # the end of day D
    cols["recency_days"] = pa.array((end_us - c["last_ts"][rows]) / DAY_US)
    cols[f"n_items_{long}d"] = pa.array(pairs.n_items_30d[rows])
    cols[f"n_categories_{long}d"] = pa.array(pairs.n_categories_30d[rows])
    cols[f"mean_price_{long}d"] = rate(pairs.price_sum[rows], pairs.price_n[rows])
    pos = pc.index_in(users_["user_id"], value_set=profiles["user_id"]) if profiles is not None else None
    for f in contracts.USERS:
        if f.name != "user_id":
            cols[f.name] = pc.take(profiles[f.name], pos) if pos is not None else pa.nulls(len(rows), f.type)
    return pa.table(cols)


def item_features(items_: pa.Table, c: dict[str, np.ndarray], vocab: Vocab, dt: str, pairs: Pairs) -> pa.Table:
    """One row per row of ``items``: counts per window, rates, age, catalog columns."""
    n = items_.num_rows
    cols: dict[str, pa.Array] = {"item_idx": items_["item_idx"], "item_id": items_["item_id"]}
    for wdays in FEATURE_WINDOWS:
        for t in TYPE_COLUMNS:
            cols[f"{t}_{wdays}d"] = pa.array(c[f"{t}_{wdays}d"])
    long = max(FEATURE_WINDOWS)
    views, clicks, buys = (c[f"n_{t}_{long}d"] for t in ("view", "click", "purchase"))
    cols[f"n_users_{long}d"] = pa.array(pairs.n_users_30d)
    cols[f"ctr_{long}d"] = rate(clicks, views)
    cols[f"conversion_rate_{long}d"] = rate(buys, clicks)
    cols[f"purchase_rate_{long}d"] = rate(buys, views)
    first = vocab.first_dt[:n]
    age = (np.datetime64(dt, "D") - first).astype(np.int64)
    cols["age_days"] = pa.array(np.minimum(age, 2**31 - 1).astype(np.int32), mask=age < 0)
    for name in ("category", "brand", "price"):
        cols[name] = items_[name]
    price = pc.fill_null(items_["price"], np.nan).to_numpy()
    with np.errstate(invalid="ignore"):
        bucket = np.floor(np.log2(1 + np.maximum(price, 0)))
    cols["price_bucket"] = pa.array(np.nan_to_num(bucket).astype(np.int8), mask=np.isnan(price))
    cols["available"] = items_["available"]
    cols["popularity"] = items_["popularity"]
    return pa.table(cols)
