"""Point-in-time feature tables for one run date D, committed to ``features/dt=D/``.

Only clean events of the window [D - lookback, D] are read, so nothing after D leaks in.
The model learns from days before D and is judged on day D (the temporal hold-out):

- ``interactions``  (user_idx, item_idx, weight, n_events, last_ts): days < D, the training set
- ``holdout``       (user_idx, item_idx): day D, for users with history before D
- ``users``         (user_idx, user_id, n_events, last_ts, has_history): everyone active ≤ D
- ``items``         (item_idx, item_id, category, price, available, popularity)
- ``purchased``     (user_idx, item_idx, last_ts): purchases ≤ D, excluded from recommendations

Ids become dense indices through append-only vocabularies (``vocab/``): an id keeps its
index forever, new ids get the next free ones, so yesterday's model still lines up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts, landing
from recpipe.contracts import day_bounds
from recpipe.config import RunParams
from recpipe.errors import PartitionNotFound
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)

POPULARITY_HALF_LIFE_DAYS = 7.0


@dataclass(frozen=True)
class FeatureResult:
    dt: str
    prefix: str
    rows: dict[str, int]


def window_dates(dt: str, lookback_days: int) -> list[str]:
    """The dates D - lookback .. D, ascending."""
    end = date.fromisoformat(dt)
    return [(end - timedelta(days=n)).isoformat() for n in range(lookback_days, -1, -1)]


def read_clean_window(store: Store, dt: str, lookback_days: int) -> pa.Table:
    """Clean events of the window ending at D; days never validated are skipped (logged)."""
    committed = set(store.committed_dates("clean/events"))
    if dt not in committed:
        raise PartitionNotFound(
            f"clean/events for {dt} is not committed: run `recpipe validate --date {dt}` first."
        )
    wanted = window_dates(dt, lookback_days)
    missing = [d for d in wanted if d not in committed]
    if missing:
        log.info("window %s..%s: %d days have no clean events (%s..)", wanted[0], dt, len(missing), missing[0])
    parts = [store.read_table(partition("clean/events", d), "events") for d in wanted if d in committed]
    return pa.concat_tables(parts)


def build_features(store: Store, dt: str, params: RunParams) -> FeatureResult:
    """Build and commit ``features/dt=D`` from the clean events of the window."""
    events = read_clean_window(store, dt, params.lookback_days)
    start, _ = day_bounds(dt)
    catalog = _catalog(store, dt)
    users_vocab, items_vocab = _vocabularies(store, events, catalog)
    user_idx = pc.index_in(events["user_id"], value_set=users_vocab).cast(pa.int32())
    item_idx = pc.index_in(events["item_id"], value_set=items_vocab).cast(pa.int32())
    weight = pc.index_in(events["event_type"], value_set=pa.array(list(contracts.EVENT_WEIGHTS)))
    weight = pc.take(pa.array(list(contracts.EVENT_WEIGHTS.values())), weight)
    ev = pa.table({"user_idx": user_idx, "item_idx": item_idx, "weight": weight,
                   "event_type": events["event_type"], "event_ts": events["event_ts"]})
    before = pc.less(ev["event_ts"], pa.scalar(start, ev["event_ts"].type))
    past, today = ev.filter(before), ev.filter(pc.invert(before))

    interactions = (
        past.group_by(["user_idx", "item_idx"], use_threads=False)
        .aggregate([("weight", "sum"), ("weight", "count"), ("event_ts", "max")])
        .rename_columns(["user_idx", "item_idx", "weight", "n_events", "last_ts"])
        .sort_by([("user_idx", "ascending"), ("item_idx", "ascending")])
    )
    known = pc.unique(interactions["user_idx"])
    holdout = (
        today.filter(pc.is_in(today["user_idx"], known))
        .group_by(["user_idx", "item_idx"], use_threads=False).aggregate([])
        .sort_by([("user_idx", "ascending"), ("item_idx", "ascending")])
    )
    users = (
        ev.group_by("user_idx", use_threads=False).aggregate([("weight", "count"), ("event_ts", "max")])
        .rename_columns(["user_idx", "n_events", "last_ts"])
        .sort_by("user_idx")
    )
    users = users.append_column("user_id", pc.take(users_vocab, users["user_idx"]))
    users = users.append_column("has_history", pc.is_in(users["user_idx"], known))
    purchases = ev.filter(pc.equal(ev["event_type"], "purchase"))
    purchased = (
        purchases.group_by(["user_idx", "item_idx"], use_threads=False).aggregate([("event_ts", "max")])
        .rename_columns(["user_idx", "item_idx", "last_ts"])
        .sort_by([("user_idx", "ascending"), ("item_idx", "ascending")])
    )
    items = _item_table(items_vocab, catalog, past, start)
    tables = {"interactions": interactions, "holdout": holdout, "users": users, "items": items, "purchased": purchased}
    prefix = partition("features", dt)
    meta = {"dt": dt, "window": window_dates(dt, params.lookback_days)[0], "n_users": len(users_vocab), "n_items": len(items_vocab)}
    store.write_partition(prefix, tables, meta)
    rows = {k: t.num_rows for k, t in tables.items()}
    log.info("features %s: %s (vocab: %d users, %d items)", dt, rows, len(users_vocab), len(items_vocab))
    return FeatureResult(dt, prefix, rows)


def _catalog(store: Store, dt: str) -> pa.Table | None:
    """The newest item catalog snapshot delivered on or before D, if any."""
    dates = [d for d in landing.ready_dates(store, "items") if d <= dt]
    return landing.read_raw(store, "items", dates[-1], contracts.ITEMS) if dates else None


def _vocabularies(store: Store, events: pa.Table, catalog: pa.Table | None) -> tuple[pa.Array, pa.Array]:
    item_ids = events["item_id"].combine_chunks()
    if catalog is not None:
        item_ids = pa.concat_arrays([catalog["item_id"].combine_chunks(), item_ids])
    return (
        _append_vocab(store, "users", events["user_id"].combine_chunks()),
        _append_vocab(store, "items", item_ids),
    )


def _append_vocab(store: Store, name: str, ids: pa.Array) -> pa.Array:
    """Append unseen ``ids`` (sorted, for determinism) to ``vocab/<name>``; index = position."""
    prefix = f"vocab/{name}"
    try:
        vocab = store.read_table(prefix, "ids")["id"].combine_chunks()
    except PartitionNotFound:
        vocab = pa.array([], pa.string())
    new = pc.unique(ids.filter(pc.invert(pc.is_in(ids, value_set=vocab))))
    if len(new):
        vocab = pa.concat_arrays([vocab, pc.take(new, pc.array_sort_indices(new))])
        store.write_partition(prefix, {"ids": pa.table({"id": vocab})})
        log.info("vocab/%s: %d new ids, %d in all", name, len(new), len(vocab))
    return vocab


def _item_table(vocab: pa.Array, catalog: pa.Table | None, past: pa.Table, start) -> pa.Table:
    """One row per item of the vocabulary: catalog attributes and decayed popularity before D."""
    n = len(vocab)
    age_days = pc.divide(
        pc.cast(pc.subtract(pa.scalar(start, past["event_ts"].type), past["event_ts"]), pa.int64()).cast(pa.float64()),
        86_400e6,
    )
    decayed = pc.multiply(past["weight"], pc.power(0.5, pc.divide(age_days, POPULARITY_HALF_LIFE_DAYS)))
    popularity = np.bincount(past["item_idx"].to_numpy(), weights=decayed.to_numpy(), minlength=n)
    table = pa.table({"item_idx": pa.array(np.arange(n, dtype=np.int32)), "item_id": vocab,
                      "popularity": pa.array(popularity)})
    if catalog is None:
        columns = {f.name: pa.nulls(n, f.type) for f in contracts.ITEMS if f.name != "item_id"}
        columns["available"] = pa.array(np.ones(n, dtype=bool))
        for name, col in columns.items():
            table = table.append_column(name, col)
        return table
    pos = pc.index_in(vocab, value_set=catalog["item_id"])
    for field in contracts.ITEMS:
        if field.name != "item_id":
            table = table.append_column(field.name, pc.take(catalog[field.name], pos))
    # items the current catalog no longer lists cannot be sold
    return table.set_column(table.schema.get_field_index("available"), "available",
                            pc.fill_null(table["available"], False))
