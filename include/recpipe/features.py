"""Point-in-time feature tables for one run date D, committed to ``features/dt=D/``.

Only clean events with ``event_ts`` < D + 1 day are read, so nothing after D leaks in, and
they are read as *daily aggregates* (``recpipe.aggregates``): each run aggregates only the
days whose aggregate is missing or stale (normally just D) and derives the window tables
from the stored daily aggregates. docs/features.md describes every table.

The model learns from days before D and is judged on day D (the temporal hold-out):

- ``interactions``  (user_idx, item_idx, weight, n_events, last_ts): days < D, the training set
- ``holdout``       (user_idx, item_idx): day D, for users with history before D
- ``users``         (user_idx, n_events, last_ts, user_id, has_history): everyone active ≤ D
- ``items``         (item_idx, item_id, popularity, <catalog columns>, available)
- ``purchased``     (user_idx, item_idx, last_ts): purchases ≤ D, excluded from recommendations

and describes the state at the end of day D (events ≤ D) for models that use features:

- ``user_features``  counts per event type over 1/7/30 days, rates, recency, distinct items
  and categories, mean price, profile columns (one row per row of ``users``)
- ``item_features``  counts per event type over 1/7/30 days, rates, age, catalog columns
  (one row per row of ``items``)
- ``sequences``      each user's last L events (item_idx, event_type, event_ts lists)
- ``examples``       day D's labelled pairs: positives and sampled negatives, labels
  ``click`` and ``purchase`` (train on examples of day t with features of day t − 1)

Ids become dense indices through append-only vocabularies (``vocab/``): an id keeps its
index forever, new ids get the next free ones, so yesterday's model still lines up. A date
only sees the ids first seen on or before it (``n_users``/``n_items`` of the manifest).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import aggregates, contracts, landing, privacy
from recpipe.aggregates import (DAY_US, INT64_MIN, POPULARITY_HALF_LIFE_DAYS, TYPE_COLUMNS, Catalogs, DayState,
                                _starts, _ts, _ts_array, load_vocab, save_vocab)
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import PartitionNotFound, UpstreamNotReady
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)

__all__ = ["FeatureResult", "build_features", "window_dates", "read_clean_window", "POPULARITY_HALF_LIFE_DAYS",
           "FEATURE_WINDOWS", "SEQUENCE_LENGTH"]

#: Windows (days, ending with D) of the user and item counts.
FEATURE_WINDOWS = (1, 7, 30)
#: Events per user in ``sequences`` (the L of the issue).
SEQUENCE_LENGTH = 50
TABLES = ("interactions", "holdout", "users", "items", "purchased", "user_features", "item_features",
          "sequences", "examples")


class _Clock:
    """Seconds spent in each phase, for the log line."""

    def __init__(self):
        self.last, self.laps = time.perf_counter(), {}

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self.last, 2)
        self.last = now


@dataclass(frozen=True)
class FeatureResult:
    dt: str
    prefix: str
    rows: dict[str, int]
    rebuilt: list[str] = field(default_factory=list)  # the days whose aggregate this run (re)computed
    seconds: dict[str, float] = field(default_factory=dict)  # time per phase


def window_dates(dt: str, lookback_days: int) -> list[str]:
    """The dates D - lookback .. D, ascending."""
    end = date.fromisoformat(dt)
    return [(end - timedelta(days=n)).isoformat() for n in range(lookback_days, -1, -1)]


def read_clean_window(store: Store, dt: str, lookback_days: int) -> pa.Table:
    """Clean events of the window ending at D (the raw input of the aggregates; for checks)."""
    committed = set(store.committed_dates("clean/events"))
    parts = [store.read_table(partition("clean/events", d), "events")
             for d in window_dates(dt, lookback_days) if d in committed]
    return pa.concat_tables(parts)


def _awaits_validation(store: Store, dt: str) -> bool:
    """Raw events landed for ``dt`` but its quality gate has neither committed nor rejected them."""
    if not landing.is_ready(store, "events", dt):
        return False
    try:
        return store.get_json(f"reports/quality/dt={dt}/result.json")["summary"]["passed"]
    except FileNotFoundError:
        return True


def build_features(store: Store, dt: str, params: RunParams, *, sequence_length: int = SEQUENCE_LENGTH,
                   rebuild: bool = False) -> FeatureResult:
    """Build and commit ``features/dt=D``; ``rebuild`` recomputes every daily aggregate of the window."""
    committed = set(store.committed_dates("clean/events"))
    if dt not in committed:
        raise PartitionNotFound(
            f"clean/events for {dt} is not committed: run `recpipe validate --date {dt}` first."
        )
    lookback = params.lookback_days
    span = max(lookback, max(FEATURE_WINDOWS) - 1)
    wanted = window_dates(dt, span)
    missing = [d for d in wanted[-lookback - 1:] if d not in committed]
    pending = [d for d in missing if _awaits_validation(store, d)]
    if pending:  # building now would miss them (and order the vocabularies wrongly)
        raise UpstreamNotReady(
            f"features for {dt} need the earlier days {', '.join(pending[:3])}{'…' if len(pending) > 3 else ''} "
            "validated first: they have raw events but no clean/events yet. The task retries; to do it by "
            f"hand run `recpipe validate --date {pending[0]}`.")
    if missing:
        log.info("window %s..%s: %d days have no clean events (%s..)", wanted[-lookback - 1], dt, len(missing),
                 missing[0])
    clock = _Clock()
    catalogs = Catalogs(store)
    states, users_vocab, items_vocab = aggregates.ensure(
        store, [d for d in wanted if d in committed], sequence_length,
        load_vocab(store, "users"), load_vocab(store, "items"), catalogs, force=rebuild, keep=dt)
    snap, catalog = catalogs.on(dt)
    if catalog is not None:  # normally already added with D's aggregate; a late catalog is added now
        items_vocab.add(catalog["item_id"], snap)
        items_vocab = save_vocab(store, items_vocab)
    n_users, n_items = users_vocab.size_on(dt), items_vocab.size_on(dt)
    clock("aggregates")
    end = date.fromisoformat(dt)
    ages = np.array([(end - date.fromisoformat(s.dt)).days for s in states])  # descending: oldest first
    w = _Window(store, states, ages, lookback, n_users, n_items)

    tables = {"items": _items(items_vocab, n_items, dt, catalog, w)}
    clock("items")
    pairs = w.pairs(tables["items"]["category"], tables["items"]["price"])
    tables.update(interactions=pairs["interactions"], purchased=pairs["purchased"],
                  holdout=w.holdout(pairs["has_history"]))
    clock("pairs")
    tables["users"] = w.users(pairs["has_history"], users_vocab)
    tables["user_features"] = w.user_features(tables["users"], pairs, _profiles(store, dt))
    clock("users")
    tables["item_features"] = w.item_features(tables["items"], items_vocab, dt, pairs)
    tables["sequences"] = w.sequences(tables["users"], sequence_length)
    clock("sequences")
    tables["examples"] = w.examples(items_vocab.known_on(dt)[:n_items], params.negatives, params.seed, dt)
    clock("examples")
    tables = {name: tables[name] for name in TABLES}
    prefix = partition("features", dt)
    meta = {"dt": dt, "window": wanted[-lookback - 1], "n_users": n_users, "n_items": n_items,
            "feature_windows": list(FEATURE_WINDOWS), "sequence_length": sequence_length,
            "inputs": {s.dt: s.clean_run_id for s in states}}
    aggregates.write(store, prefix, tables, meta)
    clock("write")
    rows = {k: t.num_rows for k, t in tables.items()}
    rebuilt = [s.dt for s in states if s.rebuilt]
    log.info("features %s: %s (vocab: %d users, %d items; aggregates recomputed: %s; seconds: %s)",
             dt, rows, n_users, n_items, rebuilt or "none", clock.laps)
    return FeatureResult(dt, prefix, rows, rebuilt, clock.laps)


# -- helpers ------------------------------------------------------------------------------


def _rate(num: np.ndarray, den: np.ndarray) -> pa.Array:
    """num / den, null where den is 0."""
    zero = den == 0
    return pa.array(np.divide(num, np.where(zero, 1, den), dtype=np.float64), mask=zero)


def _column(tables: list[pa.Table], name: str) -> np.ndarray:
    """One column of several tables as one numpy array (timestamps as int64 µs, nulls → INT64_MIN)."""
    if not tables:
        return np.zeros(0)
    if pa.types.is_timestamp(tables[0].schema.field(name).type):
        return np.concatenate([_ts(t, name) for t in tables])
    return np.concatenate([t[name].to_numpy() for t in tables])


def _profiles(store: Store, dt: str) -> pa.Table | None:
    """The newest user profiles snapshot delivered on or before D, if any."""
    dates = [d for d in landing.ready_dates(store, "users") if d <= dt]
    if not dates:
        return None
    return privacy.pseudonymise(landing.read_raw(store, "users", dates[-1], contracts.USERS), privacy.key_from_env())


def _items(vocab: aggregates.Vocab, n: int, dt: str, catalog: pa.Table | None, w: "_Window") -> pa.Table:
    """One row per item index of D: catalog attributes and decayed popularity before D."""
    ids = vocab.ids.slice(0, n)
    table = pa.table({"item_idx": pa.array(np.arange(n, dtype=np.int32)), "item_id": ids,
                      "popularity": pa.array(w.popularity())})
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


class _Window:
    """The daily aggregates of the window, and the tables derived from them."""

    def __init__(self, store: Store, states: list[DayState], ages: np.ndarray, lookback: int,
                 n_users: int, n_items: int):
        self.store, self.states, self.ages = store, states, ages
        self.lookback, self.n_users, self.n_items = lookback, n_users, n_items
        self._cache: dict[str, list[pa.Table]] = {}

    def read(self, name: str, columns: list[str], max_age: int | None = None) -> tuple[list[pa.Table], np.ndarray]:
        """Table ``name`` of the days with age ≤ ``max_age`` (oldest first) and their ages."""
        keep = [i for i, a in enumerate(self.ages) if max_age is None or a <= max_age]
        tables = aggregates.read(self.store, [self.states[i] for i in keep], name, columns)
        return tables, self.ages[keep]

    def _dense(self, idx: np.ndarray, values: np.ndarray | None, n: int) -> np.ndarray:
        out = np.bincount(idx, weights=values, minlength=n)
        if len(out) != n:
            raise ValueError(f"an aggregate holds index {len(out) - 1}, beyond the {n} ids known on this date: "
                             "rebuild the features with rebuild=True")
        return out

    # popularity, and the users/items counts ------------------------------------------------

    def _counts(self, name: str, key: str, n: int) -> dict[str, np.ndarray]:
        """Dense per-index sums of the ``name`` aggregate: n_<type>_<w>d, n_events_lb, past/lookback stats."""
        cols = [key, *TYPE_COLUMNS, "n_events"] + (["decayed"] if name == "items" else ["last_ts"])
        tables, ages = self.read(name, cols, max_age=max(self.lookback, max(FEATURE_WINDOWS) - 1))
        lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
        age = np.repeat(ages, lengths)
        idx = _column(tables, key).astype(np.int64)
        typed = {c: _column(tables, c) for c in TYPE_COLUMNS}
        out = {}
        for wdays in FEATURE_WINDOWS:  # rows of the last w days are a suffix (oldest day first)
            s = int(np.searchsorted(-age, -wdays, side="right"))
            for c in TYPE_COLUMNS:
                out[f"{c}_{wdays}d"] = self._dense(idx[s:], typed[c][s:], n).astype(np.int32)
        lb = age <= self.lookback
        n_events = _column(tables, "n_events")
        out["n_events_lb"] = self._dense(idx[lb], n_events[lb], n).astype(np.int64)
        past = lb & (age >= 1)
        out["n_events_past"] = self._dense(idx[past], n_events[past], n).astype(np.int64)
        if name == "items":
            decay = np.power(0.5, age / POPULARITY_HALF_LIFE_DAYS)
            out["popularity"] = self._dense(idx[past], (_column(tables, "decayed") * decay)[past], n)
        else:
            last = np.full(n, INT64_MIN, np.int64)
            np.maximum.at(last, idx[lb], _column(tables, "last_ts")[lb])
            out["last_ts"] = last
        return out

    def popularity(self) -> np.ndarray:
        self._item_counts = self._counts("items", "item_idx", self.n_items)
        return self._item_counts["popularity"]

    # pairs ------------------------------------------------------------------------------

    def pairs(self, category: pa.ChunkedArray, price: pa.ChunkedArray) -> dict:
        """interactions, purchased, has_history, and the distinct pairs of the last 30 days."""
        cols = ["user_idx", "item_idx", "weight", "n_events", "last_ts", "last_purchase_ts"]
        tables, ages = self.read("pairs", cols)
        self._day = tables[-1]  # day D: always committed, always the newest
        lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
        key = (_column(tables, "user_idx").astype(np.int64) << 32) | _column(tables, "item_idx").astype(np.int64)
        order = np.argsort(key, kind="stable")  # runs of days already sorted: a cheap merge
        skey = key[order]
        starts = _starts(skey)
        age = np.repeat(ages, lengths)[order]
        past = (age >= 1) & (age <= self.lookback)
        lb = age <= self.lookback
        in30 = age < max(FEATURE_WINDOWS)
        gkey = skey[starts] if len(skey) else skey
        gu, gi = (gkey >> 32).astype(np.int32), (gkey & 0xFFFFFFFF).astype(np.int32)

        def reduce(ufunc, values, mask, fill):
            if not len(starts):
                return values[:0]
            return ufunc.reduceat(np.where(mask, values[order], fill), starts)

        n_past = reduce(np.add, _column(tables, "n_events").astype(np.int64), past, 0)
        hit = n_past > 0
        interactions = pa.table({
            "user_idx": gu[hit], "item_idx": gi[hit],
            "weight": reduce(np.add, _column(tables, "weight"), past, 0.0)[hit],
            "n_events": n_past[hit],
            "last_ts": _ts_array(reduce(np.maximum, _column(tables, "last_ts"), past, INT64_MIN)[hit]),
        })
        last_purchase = reduce(np.maximum, _column(tables, "last_purchase_ts"), lb, INT64_MIN)
        bought = last_purchase != INT64_MIN
        purchased = pa.table({"user_idx": gu[bought], "item_idx": gi[bought],
                              "last_ts": _ts_array(last_purchase[bought])})
        recent = np.logical_or.reduceat(in30, starts) if len(starts) else np.zeros(0, bool)
        has_history = np.zeros(self.n_users, bool)
        has_history[gu[hit]] = True
        # distinct items, categories and mean price of the last 30 days, per user
        ru, ri = gu[recent].astype(np.int64), gi[recent].astype(np.int64)
        n_items_30 = self._dense(ru, None, self.n_users).astype(np.int32)
        n_cats = np.zeros(self.n_users, np.int32)
        cats = pc.dictionary_encode(category.combine_chunks()) if len(category) else None
        if cats is not None and len(cats.dictionary):
            code = pc.fill_null(cats.indices, -1).to_numpy()[ri]
            ok = code >= 0
            ncat = len(cats.dictionary)
            if self.n_users * ncat <= 1 << 28:  # a bitmap of (user, category)
                seen = np.zeros(self.n_users * ncat, bool)
                seen[ru[ok] * ncat + code[ok]] = True
                n_cats = seen.reshape(self.n_users, ncat).sum(axis=1, dtype=np.int32)
            else:
                ckey = aggregates.unique(ru[ok] * ncat + code[ok])
                n_cats = self._dense(ckey // ncat, None, self.n_users).astype(np.int32)
        p = pc.fill_null(price, np.nan).to_numpy()[ri] if len(price) else np.zeros(0)
        priced = ~np.isnan(p)
        price_sum = self._dense(ru[priced], p[priced], self.n_users)
        price_n = self._dense(ru[priced], None, self.n_users)
        n_users_30 = self._dense(ri, None, self.n_items).astype(np.int32)
        return {"interactions": interactions, "purchased": purchased, "has_history": has_history,
                "n_items_30d": n_items_30, "n_categories_30d": n_cats, "price_sum": price_sum, "price_n": price_n,
                "n_users_30d": n_users_30}

    def holdout(self, has_history: np.ndarray) -> pa.Table:
        day = self._day
        u = day["user_idx"].to_numpy()
        return day.filter(pa.array(has_history[u])).select(["user_idx", "item_idx"])

    # users ------------------------------------------------------------------------------

    def users(self, has_history: np.ndarray, vocab: aggregates.Vocab) -> pa.Table:
        c = self._user_counts = self._counts("users", "user_idx", self.n_users)
        rows = np.flatnonzero(c["n_events_lb"] > 0).astype(np.int32)
        self._user_rows = rows
        return pa.table({
            "user_idx": rows,
            "n_events": c["n_events_lb"][rows],
            "last_ts": _ts_array(c["last_ts"][rows]),
            "user_id": pc.take(vocab.ids, pa.array(rows)),
            "has_history": has_history[rows],
        })

    def user_features(self, users: pa.Table, pairs: dict, profiles: pa.Table | None) -> pa.Table:
        rows, c = self._user_rows, self._user_counts
        cols: dict[str, pa.Array] = {"user_idx": users["user_idx"], "user_id": users["user_id"]}
        for wdays in FEATURE_WINDOWS:
            for t in TYPE_COLUMNS:
                cols[f"{t}_{wdays}d"] = pa.array(c[f"{t}_{wdays}d"][rows])
        long = max(FEATURE_WINDOWS)
        views, clicks, buys = (c[f"n_{t}_{long}d"][rows] for t in ("view", "click", "purchase"))
        cols[f"n_events_{long}d"] = pa.array(sum(c[f"{t}_{long}d"][rows] for t in TYPE_COLUMNS).astype(np.int32))
        cols[f"ctr_{long}d"] = _rate(clicks, views)
        cols[f"purchase_rate_{long}d"] = _rate(buys, views)
        end_us = int(day_bounds(self.states[-1].dt)[1].timestamp() * 1_000_000)  # the end of day D
        cols["recency_days"] = pa.array((end_us - c["last_ts"][rows]) / DAY_US)
        cols[f"n_items_{long}d"] = pa.array(pairs["n_items_30d"][rows])
        cols[f"n_categories_{long}d"] = pa.array(pairs["n_categories_30d"][rows])
        cols[f"mean_price_{long}d"] = _rate(pairs["price_sum"][rows], pairs["price_n"][rows])
        pos = pc.index_in(users["user_id"], value_set=profiles["user_id"]) if profiles is not None else None
        for f in contracts.USERS:
            if f.name != "user_id":
                cols[f.name] = pc.take(profiles[f.name], pos) if pos is not None else pa.nulls(len(rows), f.type)
        return pa.table(cols)

    # items ------------------------------------------------------------------------------

    def item_features(self, items: pa.Table, vocab: aggregates.Vocab, dt: str, pairs: dict) -> pa.Table:
        c, n = self._item_counts, self.n_items
        cols: dict[str, pa.Array] = {"item_idx": items["item_idx"], "item_id": items["item_id"]}
        for wdays in FEATURE_WINDOWS:
            for t in TYPE_COLUMNS:
                cols[f"{t}_{wdays}d"] = pa.array(c[f"{t}_{wdays}d"])
        long = max(FEATURE_WINDOWS)
        views, clicks, buys = (c[f"n_{t}_{long}d"] for t in ("view", "click", "purchase"))
        cols[f"n_users_{long}d"] = pa.array(pairs["n_users_30d"])
        cols[f"ctr_{long}d"] = _rate(clicks, views)
        cols[f"conversion_rate_{long}d"] = _rate(buys, clicks)
        cols[f"purchase_rate_{long}d"] = _rate(buys, views)
        first = vocab.first_dt[:n]
        age = (np.datetime64(dt, "D") - first).astype(np.int64)
        cols["age_days"] = pa.array(np.minimum(age, 2**31 - 1).astype(np.int32), mask=age < 0)
        for name in ("category", "brand", "price"):
            cols[name] = items[name]
        price = pc.fill_null(items["price"], np.nan).to_numpy()
        with np.errstate(invalid="ignore"):
            bucket = np.floor(np.log2(1 + np.maximum(price, 0)))
        cols["price_bucket"] = pa.array(np.nan_to_num(bucket).astype(np.int8), mask=np.isnan(price))
        cols["available"] = items["available"]
        cols["popularity"] = items["popularity"]
        return pa.table(cols)

    # sequences --------------------------------------------------------------------------

    def sequences(self, users: pa.Table, length: int) -> pa.Table:
        """Each user's last ``length`` events of the lookback window, oldest first."""
        tables, _ = self.read("sequences", ["user_idx", "item_idx", "event", "event_ts"], max_age=self.lookback)
        need = np.full(self.n_users, length, np.int64)
        kept = []
        for t in reversed(tables):  # newest day first: take what each user still needs
            u = t["user_idx"].to_numpy().astype(np.int64)
            bounds = np.r_[_starts(u), len(u)]
            from_end = np.repeat(bounds[1:], np.diff(bounds)) - np.arange(len(u))  # 1 = the user's last event
            keep = from_end <= need[u]
            ku = u[keep]
            need -= self._dense(ku, None, self.n_users).astype(np.int64)
            kept.append((ku, t["item_idx"].to_numpy()[keep], t["event"].to_numpy()[keep], _ts(t, "event_ts")[keep]))
        counts = length - need
        offsets = np.r_[0, np.cumsum(counts)]
        total = int(offsets[-1])
        item, event, ts = np.empty(total, np.int32), np.empty(total, np.int8), np.empty(total, np.int64)
        filled = np.zeros(self.n_users, np.int64)
        for ku, ki, ke, kt in reversed(kept):  # oldest day first: fill each user's slots in order
            bounds = np.r_[_starts(ku), len(ku)]
            rank = np.arange(len(ku)) - np.repeat(bounds[:-1], np.diff(bounds))
            at = offsets[ku] + filled[ku] + rank
            item[at], event[at], ts[at] = ki, ke, kt
            filled += self._dense(ku, None, self.n_users).astype(np.int64)
        rows = users["user_idx"].to_numpy()
        list_offsets = pa.array(np.r_[offsets[rows], total].astype(np.int32))
        events = pa.DictionaryArray.from_arrays(pa.array(event), pa.array(contracts.EVENT_TYPES))
        return pa.table({
            "user_idx": users["user_idx"],
            "item_idx": pa.ListArray.from_arrays(list_offsets, pa.array(item)),
            "event_type": pa.ListArray.from_arrays(list_offsets, events),
            "event_ts": pa.ListArray.from_arrays(list_offsets, _ts_array(ts)),
        })

    # examples ---------------------------------------------------------------------------

    def examples(self, known_items: np.ndarray, negatives: int, seed: int, dt: str) -> pa.Table:
        """Day D's positives (every pair with an event) and ``negatives`` sampled items per positive."""
        day = aggregates.read(self.store, self.states[-1:], "pairs",
                              ["user_idx", "item_idx", "n_click", "n_add_to_cart", "n_purchase"])[0]
        u = day["user_idx"].to_numpy().astype(np.int64)
        i = day["item_idx"].to_numpy().astype(np.int64)
        pos_key = (u << 32) | i  # sorted: the aggregate is sorted by (user, item)
        eligible = np.flatnonzero(known_items)
        rng = np.random.default_rng([seed, date.fromisoformat(dt).toordinal()])
        if len(eligible) and len(u) and negatives > 0:
            neg_key = (np.repeat(u, negatives) << 32) | eligible[rng.integers(0, len(eligible), len(u) * negatives)]
            neg_key = aggregates.unique(neg_key)
            at = np.minimum(np.searchsorted(pos_key, neg_key), len(pos_key) - 1)
            neg_key = neg_key[pos_key[at] != neg_key]
        else:
            neg_key = np.zeros(0, np.int64)
        key = np.concatenate([pos_key, neg_key])
        order = np.argsort(key, kind="stable")
        n_pos = len(pos_key)
        click = (day["n_click"].to_numpy() + day["n_add_to_cart"].to_numpy() + day["n_purchase"].to_numpy()) > 0
        buy = day["n_purchase"].to_numpy() > 0
        pad = np.zeros(len(neg_key), np.int8)
        key = key[order]
        return pa.table({
            "user_idx": (key >> 32).astype(np.int32),
            "item_idx": (key & 0xFFFFFFFF).astype(np.int32),
            "label": np.r_[np.ones(n_pos, np.int8), pad][order],
            "click": np.r_[click.astype(np.int8), pad][order],
            "purchase": np.r_[buy.astype(np.int8), pad][order],
        })
