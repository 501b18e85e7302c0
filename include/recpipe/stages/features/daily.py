"""Daily aggregates: what the features stage keeps between runs.

Each day's clean events are reduced once into ``aggregates/dt=d/`` (four tables, one
atomic commit); the window features of a date are then derived from the 30-odd small
daily aggregates, never from the raw window of events. A daily run therefore aggregates
one day of events, whatever the window length.

- ``pairs``     (user_idx, item_idx, n_<type>…, n_events, weight, last_ts, last_purchase_ts)
- ``users``     (user_idx, n_<type>…, n_events, weight, last_ts)
- ``items``     (item_idx, n_<type>…, n_events, weight, decayed, n_users)
- ``sequences`` (user_idx, item_idx, event, event_ts): each user's last L events of the day

``n_<type>`` is one int32 count per event type of :data:`recpipe.contracts.EVENT_TYPES`;
``decayed`` = Σ weight · 2^((event_ts − day start) / half-life), so that the popularity of
date D is Σ_d decayed_d · 0.5^((D − d) / half-life), exactly the per-event decay;
``event`` is the event type's position in ``EVENT_TYPES`` (int8).

An aggregate is rebuilt when missing or stale: its manifest records the ``run_id`` of the
``clean/events`` partition it was computed from, so a re-validated (backfilled) day is
recomputed the next time a date whose window holds it is built, and nothing else is.

Ids are dense indices of the vocabularies (``recpipe.stages.features.vocab``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts
from recpipe.contracts import day_bounds
from recpipe.errors import PartitionNotFound
from recpipe.io import landing, layout
from recpipe.io.partitions import Store, table_to_parquet
from recpipe.stages.features.arrays import (DAY_US, INT64_MIN, pair_key, pool, run_starts, split_pair_key, ts_array,
                                            ts_us)
from recpipe.stages.features.vocab import Vocab, save_vocab

log = logging.getLogger(__name__)

#: Bumped whenever the aggregates' content changes: older ones are recomputed.
#: 2: the ``favorite`` event type (``n_favorite``); weights from the run's ``event_weights``.
VERSION = 2
POPULARITY_HALF_LIFE_DAYS = 7.0
N_TYPES = len(contracts.EVENT_TYPES)
TYPE_COLUMNS = [f"n_{t}" for t in contracts.EVENT_TYPES]
CODE = {t: i for i, t in enumerate(contracts.EVENT_TYPES)}
PURCHASE = CODE["purchase"]


# -- one day ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What an aggregate is computed with: a fresh aggregate must match it."""

    sequence_length: int  # events per user kept in ``sequences``
    event_weights: dict[str, float]  # weight per contract event type (``RunParams.event_weights``)

    def weights(self) -> np.ndarray:
        """(N_TYPES,) weights indexed by event code."""
        return np.array([self.event_weights[t] for t in contracts.EVENT_TYPES])


def compute_daily(user_idx: np.ndarray, item_idx: np.ndarray, code: np.ndarray, ts: np.ndarray,
                  dt: str, spec: Spec) -> dict[str, pa.Table]:
    """The four aggregate tables of one day's events (indices, type codes, µs timestamps)."""
    user_idx, item_idx = user_idx.astype(np.int32), item_idx.astype(np.int32)
    code, ts = code.astype(np.int8), ts.astype(np.int64)
    sequence_length = spec.sequence_length
    if not len(user_idx):  # one dummy event, then nothing of it: the schemas stay the same
        one = compute_daily(np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int8),
                            np.zeros(1, np.int64), dt, spec)
        return {k: t.slice(0, 0) for k, t in one.items()}
    start = int(day_bounds(dt)[0].timestamp() * 1_000_000)
    weight = spec.weights()[code]
    # pairs: sort by (user, item), reduce runs
    key = pair_key(user_idx, item_idx)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    starts = run_starts(skey)
    gid = np.empty(len(key), np.int64)
    gid[order] = np.cumsum(np.r_[False, skey[1:] != skey[:-1]])
    g = len(starts)
    counts = np.bincount(gid * N_TYPES + code, minlength=g * N_TYPES).reshape(g, N_TYPES).astype(np.int32)
    sts, scode = ts[order], code[order]
    pair_users, pair_items = split_pair_key(skey[starts])
    pairs = {
        "user_idx": pair_users,
        "item_idx": pair_items,
        **{c: counts[:, j] for j, c in enumerate(TYPE_COLUMNS)},
        "n_events": counts.sum(axis=1, dtype=np.int32),
        "weight": np.bincount(gid, weights=weight, minlength=g),
        "last_ts": np.maximum.reduceat(sts, starts),
        "last_purchase_ts": np.maximum.reduceat(np.where(scode == PURCHASE, sts, INT64_MIN), starts),
    }
    # users: the pairs are sorted by user
    ustarts = run_starts(pairs["user_idx"])
    users = {"user_idx": pairs["user_idx"][ustarts]}
    for c in TYPE_COLUMNS + ["n_events"]:
        users[c] = np.add.reduceat(pairs[c], ustarts).astype(np.int32)
    users["weight"] = np.add.reduceat(pairs["weight"], ustarts)
    users["last_ts"] = np.maximum.reduceat(pairs["last_ts"], ustarts)
    # items: dense over the items of the day
    present, inv = np.unique(item_idx, return_inverse=True)
    m = len(present)
    icounts = np.bincount(inv * N_TYPES + code, minlength=m * N_TYPES).reshape(m, N_TYPES).astype(np.int32)
    decay = np.exp2((ts - start) / (POPULARITY_HALF_LIFE_DAYS * DAY_US))
    items = {
        "item_idx": present.astype(np.int32),
        **{c: icounts[:, j] for j, c in enumerate(TYPE_COLUMNS)},
        "n_events": icounts.sum(axis=1, dtype=np.int32),
        "weight": np.bincount(inv, weights=weight, minlength=m),
        "decayed": np.bincount(inv, weights=weight * decay, minlength=m),
        "n_users": np.bincount(np.searchsorted(present, pairs["item_idx"]), minlength=m).astype(np.int32),
    }
    # sequences: each user's last L events, chronological (ties: event type, then item)
    order = np.lexsort((item_idx, code, ts, user_idx))
    su = user_idx[order]
    bounds = np.r_[run_starts(su), len(su)]
    run_end = np.repeat(bounds[1:], np.diff(bounds))
    keep = order[(run_end - np.arange(len(su))) <= sequence_length]
    sequences = pa.table({"user_idx": user_idx[keep], "item_idx": item_idx[keep], "event": code[keep],
                          "event_ts": ts_array(ts[keep])})
    out = {}
    for name, cols in (("pairs", pairs), ("users", users), ("items", items)):
        arrays = {k: (ts_array(v) if k.endswith("_ts") else pa.array(v)) for k, v in cols.items()}
        out[name] = pa.table(arrays)
    out["sequences"] = sequences
    return out


# -- the store ----------------------------------------------------------------------------


class Catalogs:
    """The item catalog snapshots of the landing zone, read at most once per run."""

    def __init__(self, store: Store):
        self.store = store
        self.dates = landing.ready_dates(store, "items")
        self._cache: dict[str, pa.Table] = {}

    def snapshot_date(self, dt: str) -> str | None:
        """The newest snapshot delivered on or before ``dt``."""
        older = [d for d in self.dates if d <= dt]
        return older[-1] if older else None

    def on(self, dt: str) -> tuple[str | None, pa.Table | None]:
        snap = self.snapshot_date(dt)
        if snap is None:
            return None, None
        if snap not in self._cache:
            self._cache[snap] = landing.read_raw(self.store, "items", snap, contracts.ITEMS)
        return snap, self._cache[snap]


@dataclass
class DayState:
    """What the features stage needs to know of one day's aggregate."""

    dt: str
    clean_run_id: str
    rebuilt: bool
    tables: dict[str, pa.Table] | None = None  # kept in memory when just computed


def is_fresh(meta: dict[str, Any] | None, clean_run_id: str, spec: Spec, users: Vocab, items: Vocab) -> bool:
    return bool(
        meta
        and meta.get("version") == VERSION
        and meta.get("clean_run_id") == clean_run_id
        and meta.get("sequence_length", 0) >= spec.sequence_length
        and meta.get("event_weights") == spec.event_weights
        and meta.get("n_users", 0) <= len(users)  # a vocabulary reset invalidates every index
        and meta.get("n_items", 0) <= len(items)
    )


def ensure(store: Store, dates: Iterable[str], spec: Spec, users: Vocab, items: Vocab,
           catalogs: Catalogs, force: bool = False, keep: str | None = None) -> tuple[list[DayState], Vocab, Vocab]:
    """Make the aggregates of ``dates`` (committed clean days, ascending) fresh; rebuild if ``force``.

    Days are rebuilt oldest first, each committing the vocabularies before its aggregate.
    The tables of day ``keep`` stay in memory when it is rebuilt. Returns the states and
    the (possibly grown) vocabularies.
    """
    dates = sorted(dates)
    cleans = list(pool().map(lambda d: store.manifest(layout.partition(layout.CLEAN_EVENTS, d)), dates))
    metas = list(pool().map(lambda d: store.manifest(layout.partition(layout.AGGREGATES, d)), dates))
    states = []
    for dt, clean, agg in zip(dates, cleans, metas):
        if clean is None:
            raise PartitionNotFound(
                f"clean/events for {dt} is not committed: run `recpipe validate --date {dt}` first.")
        if not force and is_fresh(agg and agg["meta"], clean["run_id"], spec, users, items):
            states.append(DayState(dt, clean["run_id"], False))
            continue
        tables, users, items = build_day(store, dt, clean["run_id"], spec, users, items, catalogs)
        states.append(DayState(dt, clean["run_id"], True, tables if dt == keep else None))
    return states, users, items


def build_day(store: Store, dt: str, clean_run_id: str, spec: Spec, users: Vocab, items: Vocab,
              catalogs: Catalogs) -> tuple[dict[str, pa.Table], Vocab, Vocab]:
    """Aggregate one day of clean events and commit ``aggregates/dt=D``."""
    events = store.read_table(layout.partition(layout.CLEAN_EVENTS, dt), "events",
                              columns=["user_id", "item_id", "event_type", "event_ts"])
    start, end = day_bounds(dt)
    ts = events["event_ts"]
    inside = pc.and_(
        pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type))),
        pc.and_(pc.is_in(events["event_type"], pa.array(contracts.EVENT_TYPES)),
                pc.and_(pc.is_valid(events["user_id"]), pc.is_valid(events["item_id"]))),
    )
    inside = pc.fill_null(inside, False)
    if not pc.all(inside).as_py():  # the quality gate guarantees it; never leak another day in
        log.warning("clean/events %s: %d events outside the day or the contract are ignored", dt,
                    events.num_rows - pc.sum(inside).as_py())
        events = events.filter(inside)
    users.add(events["user_id"], dt)
    items.add(events["item_id"], dt)
    snap, catalog = catalogs.on(dt)
    if catalog is not None:
        items.add(catalog["item_id"], snap)
    users, items = save_vocab(store, users), save_vocab(store, items)
    code = pc.index_in(events["event_type"], value_set=pa.array(contracts.EVENT_TYPES))
    tables = compute_daily(users.index(events["user_id"]), items.index(events["item_id"]),
                           code.to_numpy(zero_copy_only=False), ts_us(events, "event_ts"), dt, spec)
    meta = {"dt": dt, "version": VERSION, "clean_run_id": clean_run_id, "sequence_length": spec.sequence_length,
            "event_weights": spec.event_weights, "n_users": len(users), "n_items": len(items),
            "events": events.num_rows}
    write(store, layout.partition(layout.AGGREGATES, dt), tables, meta)
    log.info("aggregates %s: %d events → %s", dt, events.num_rows, {k: t.num_rows for k, t in tables.items()})
    return tables, users, items


def write(store: Store, prefix: str, tables: dict[str, pa.Table], meta: dict[str, Any]) -> dict[str, Any]:
    """``store.write_partition``, with the Parquet files serialised in parallel (same bytes)."""
    data = list(pool().map(table_to_parquet, tables.values()))
    files = {f"{name}.parquet": d for name, d in zip(tables, data)}
    return store.write_files(prefix, files, {**meta, "rows": {k: t.num_rows for k, t in tables.items()}})


def read(store: Store, states: list[DayState], name: str, columns: list[str]) -> list[pa.Table]:
    """Table ``name`` of each day's aggregate (in memory when just built), in the order of ``states``."""
    def one(state: DayState) -> pa.Table:
        if state.tables is not None:
            return state.tables[name].select(columns)
        return store.read_table(layout.partition(layout.AGGREGATES, state.dt), name, columns=columns)

    return list(pool().map(one, states))
