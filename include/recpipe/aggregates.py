"""Daily aggregates and id vocabularies: what the features stage keeps between runs.

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

Vocabularies (``vocab/users``, ``vocab/items``: columns ``id``, ``first_dt``) map raw ids
to dense indices, append-only: an id keeps its position forever, the unseen ids of a day
are appended sorted, and ``first_dt`` (the earliest date the id was seen, which a backfill
may lower) lets each date see only the ids it could have known. A vocabulary is committed
before any aggregate that uses its new indices.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts, landing
from recpipe.contracts import day_bounds
from recpipe.errors import ConcurrentUpdate, PartitionNotFound, StorageError
from recpipe.storage import Store, partition, table_to_parquet

log = logging.getLogger(__name__)

DATASET = "aggregates"
#: Bumped whenever the aggregates' content changes: older ones are recomputed.
VERSION = 1
POPULARITY_HALF_LIFE_DAYS = 7.0
DAY_US = 86_400_000_000
TS = pa.timestamp("us", tz="UTC")
N_TYPES = len(contracts.EVENT_TYPES)
TYPE_COLUMNS = [f"n_{t}" for t in contracts.EVENT_TYPES]
CODE = {t: i for i, t in enumerate(contracts.EVENT_TYPES)}
WEIGHTS = np.array([contracts.EVENT_WEIGHTS[t] for t in contracts.EVENT_TYPES])
PURCHASE = CODE["purchase"]
INT64_MIN = np.iinfo(np.int64).min
#: Readers of aggregates / writers of tables run this many S3 requests at once.
IO_THREADS = 8
_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """One thread pool for the process's S3 reads and Parquet encoding (threads start once)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="recpipe-io")
    return _pool


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: faster than np.unique's hash for large int arrays)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


# -- vocabularies -------------------------------------------------------------------------


@dataclass
class Vocab:
    """One append-only vocabulary: ``ids[i]`` has index i; ``first_dt[i]`` when it was first seen."""

    name: str
    ids: pa.Array
    first_dt: np.ndarray  # datetime64[D]
    run_id: str | None = None
    pending: list[tuple[pa.Array, np.datetime64]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"vocab/{self.name}"

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: pa.Array | pa.ChunkedArray, seen: str | date) -> int:
        """Append the unseen ``ids`` (sorted) and lower ``first_dt`` of the known ones; returns #new."""
        day = np.datetime64(str(seen), "D")
        ids = pc.unique(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids).drop_null()
        if not len(ids):
            return 0
        new, changed = self._apply(ids, day)
        if changed:
            self.pending.append((ids, day))
        return new

    def _apply(self, ids: pa.Array, day: np.datetime64) -> tuple[int, bool]:
        """Apply one addition; returns (#new ids, whether anything changed)."""
        pos = pc.index_in(ids, value_set=self.ids)
        known = pc.is_valid(pos).to_numpy(zero_copy_only=False)
        lowered = False
        if known.any():
            at = pos.drop_null().to_numpy().astype(np.int64)
            later = self.first_dt[at] > day
            if later.any():
                self.first_dt[at[later]] = day
                lowered = True
        new = ids.filter(pa.array(~known))
        if len(new):
            new = pc.take(new, pc.array_sort_indices(new))
            self.ids = pa.concat_arrays([self.ids, new])
            self.first_dt = np.concatenate([self.first_dt, np.full(len(new), day)])
        return len(new), bool(len(new)) or lowered

    def index(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Dense indices of ``ids`` (all must be in the vocabulary)."""
        idx = pc.index_in(ids, value_set=self.ids)
        if idx.null_count:
            raise ValueError(f"vocab/{self.name}: {idx.null_count} ids are not in the vocabulary")
        return idx.to_numpy().astype(np.int32)

    def known_on(self, dt: str) -> np.ndarray:
        """Boolean mask of the ids seen on or before ``dt``."""
        return self.first_dt <= np.datetime64(dt, "D")

    def size_on(self, dt: str) -> int:
        """1 + the largest index seen on or before ``dt``: the index space of that date."""
        known = np.flatnonzero(self.known_on(dt))
        return int(known[-1]) + 1 if len(known) else 0

    def table(self) -> pa.Table:
        return pa.table({"id": self.ids, "first_dt": pa.array(self.first_dt.astype("datetime64[D]"), pa.date32())})


def load_vocab(store: Store, name: str) -> Vocab:
    """``vocab/<name>`` as committed (empty if never written)."""
    prefix = f"vocab/{name}"
    manifest = store.manifest(prefix)
    if manifest is None:
        return Vocab(name, pa.array([], pa.string()), np.array([], "datetime64[D]"))
    table = store.read_table(prefix, "ids")
    ids = table["id"].combine_chunks()
    if "first_dt" in table.column_names:  # vocabularies written before first_dt: seen since always
        first = table["first_dt"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    else:
        first = np.full(len(ids), np.datetime64("0001-01-01", "D"))
    return Vocab(name, ids, first, manifest["run_id"])


def save_vocab(store: Store, vocab: Vocab, attempts: int = 5) -> Vocab:
    """Commit the pending additions; if another run committed meanwhile, replay them on its version.

    Returns the committed vocabulary (indices computed before a replay may be stale: map ids
    with the returned one).
    """
    for _ in range(attempts):
        if not vocab.pending:
            return vocab
        current = store.manifest(vocab.prefix)
        if (current or {}).get("run_id") != vocab.run_id:
            log.warning("vocab/%s changed under this run; replaying %d additions", vocab.name, len(vocab.pending))
            fresh = load_vocab(store, vocab.name)
            for ids, day in vocab.pending:
                fresh._apply(ids, day)
            fresh.pending = vocab.pending
            vocab = fresh
            continue
        before = len(vocab)
        try:  # commits only if nobody committed since we loaded it
            manifest = store.write_partition(vocab.prefix, {"ids": vocab.table()}, {"n": len(vocab)},
                                             replaces=vocab.run_id)
        except ConcurrentUpdate:
            continue  # the next attempt sees the other run's commit and replays onto it
        vocab.run_id, vocab.pending = manifest["run_id"], []
        log.info("vocab/%s: %d ids committed", vocab.name, before)
        return vocab
    raise StorageError(f"vocab/{vocab.name} kept changing under this run ({attempts} attempts); retry the task.")


# -- one day ------------------------------------------------------------------------------


def _ts(table: pa.Table, name: str) -> np.ndarray:
    """A timestamp column as int64 µs (nulls → INT64_MIN)."""
    col = pc.cast(table[name], pa.int64())
    return pc.fill_null(col, INT64_MIN).to_numpy()


def _ts_array(values: np.ndarray) -> pa.Array:
    """int64 µs (INT64_MIN = null) → a UTC timestamp array."""
    return pa.array(values, pa.int64(), mask=values == INT64_MIN).cast(TS)


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start positions of the runs of equal values of a sorted array."""
    if not len(sorted_keys):
        return np.zeros(0, np.int64)
    return np.concatenate([[0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1])


def compute_daily(user_idx: np.ndarray, item_idx: np.ndarray, code: np.ndarray, ts: np.ndarray,
                  dt: str, sequence_length: int) -> dict[str, pa.Table]:
    """The four aggregate tables of one day's events (indices, type codes, µs timestamps)."""
    user_idx, item_idx = user_idx.astype(np.int32), item_idx.astype(np.int32)
    code, ts = code.astype(np.int8), ts.astype(np.int64)
    if not len(user_idx):  # one dummy event, then nothing of it: the schemas stay the same
        one = compute_daily(np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int8),
                            np.zeros(1, np.int64), dt, sequence_length)
        return {k: t.slice(0, 0) for k, t in one.items()}
    start = int(day_bounds(dt)[0].timestamp() * 1_000_000)
    weight = WEIGHTS[code]
    # pairs: sort by (user, item), reduce runs
    key = (user_idx.astype(np.int64) << 32) | item_idx.astype(np.int64)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    starts = _starts(skey)
    gid = np.empty(len(key), np.int64)
    gid[order] = np.cumsum(np.r_[False, skey[1:] != skey[:-1]])
    g = len(starts)
    counts = np.bincount(gid * N_TYPES + code, minlength=g * N_TYPES).reshape(g, N_TYPES).astype(np.int32)
    sts, scode = ts[order], code[order]
    pairs = {
        "user_idx": (skey[starts] >> 32).astype(np.int32),
        "item_idx": (skey[starts] & 0xFFFFFFFF).astype(np.int32),
        **{c: counts[:, j] for j, c in enumerate(TYPE_COLUMNS)},
        "n_events": counts.sum(axis=1, dtype=np.int32),
        "weight": np.bincount(gid, weights=weight, minlength=g),
        "last_ts": np.maximum.reduceat(sts, starts),
        "last_purchase_ts": np.maximum.reduceat(np.where(scode == PURCHASE, sts, INT64_MIN), starts),
    }
    # users: the pairs are sorted by user
    ustarts = _starts(pairs["user_idx"])
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
    bounds = np.r_[_starts(su), len(su)]
    run_end = np.repeat(bounds[1:], np.diff(bounds))
    keep = order[(run_end - np.arange(len(su))) <= sequence_length]
    sequences = pa.table({"user_idx": user_idx[keep], "item_idx": item_idx[keep], "event": code[keep],
                          "event_ts": _ts_array(ts[keep])})
    out = {}
    for name, cols in (("pairs", pairs), ("users", users), ("items", items)):
        arrays = {k: (_ts_array(v) if k.endswith("_ts") else pa.array(v)) for k, v in cols.items()}
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


def is_fresh(meta: dict[str, Any] | None, clean_run_id: str, sequence_length: int,
             users: Vocab, items: Vocab) -> bool:
    return bool(
        meta
        and meta.get("version") == VERSION
        and meta.get("clean_run_id") == clean_run_id
        and meta.get("sequence_length", 0) >= sequence_length
        and meta.get("n_users", 0) <= len(users)  # a vocabulary reset invalidates every index
        and meta.get("n_items", 0) <= len(items)
    )


def ensure(store: Store, dates: Iterable[str], sequence_length: int, users: Vocab, items: Vocab,
           catalogs: Catalogs, force: bool = False, keep: str | None = None) -> tuple[list[DayState], Vocab, Vocab]:
    """Make the aggregates of ``dates`` (committed clean days, ascending) fresh; rebuild if ``force``.

    Days are rebuilt oldest first, each committing the vocabularies before its aggregate.
    The tables of day ``keep`` stay in memory when it is rebuilt. Returns the states and
    the (possibly grown) vocabularies.
    """
    dates = sorted(dates)
    cleans = list(pool().map(lambda d: store.manifest(partition("clean/events", d)), dates))
    metas = list(pool().map(lambda d: store.manifest(partition(DATASET, d)), dates))
    states = []
    for dt, clean, agg in zip(dates, cleans, metas):
        if clean is None:
            raise PartitionNotFound(
                f"clean/events for {dt} is not committed: run `recpipe validate --date {dt}` first.")
        if not force and is_fresh(agg and agg["meta"], clean["run_id"], sequence_length, users, items):
            states.append(DayState(dt, clean["run_id"], False))
            continue
        tables, users, items = build_day(store, dt, clean["run_id"], sequence_length, users, items, catalogs)
        states.append(DayState(dt, clean["run_id"], True, tables if dt == keep else None))
    return states, users, items


def build_day(store: Store, dt: str, clean_run_id: str, sequence_length: int, users: Vocab, items: Vocab,
              catalogs: Catalogs) -> tuple[dict[str, pa.Table], Vocab, Vocab]:
    """Aggregate one day of clean events and commit ``aggregates/dt=D``."""
    events = store.read_table(partition("clean/events", dt), "events",
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
                           code.to_numpy(zero_copy_only=False), _ts(events, "event_ts"), dt, sequence_length)
    meta = {"dt": dt, "version": VERSION, "clean_run_id": clean_run_id, "sequence_length": sequence_length,
            "n_users": len(users), "n_items": len(items), "events": events.num_rows}
    write(store, partition(DATASET, dt), tables, meta)
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
        return store.read_table(partition(DATASET, state.dt), name, columns=columns)

    return list(pool().map(one, states))
