"""The window of daily aggregates behind one date's features, and what is derived from it.

A :class:`Window` names the days D − span .. D that have an aggregate (oldest first) and
their ages (D − day, in days). The functions below read it and return plain results; none
keeps state, so they can run in any order:

- :func:`counts`     dense per-index sums of the users or items aggregates over 1/7/30 days
- :func:`pairs`      the (user, item) pairs of the window: interactions, purchases, hold-out
- :func:`sequences`  each user's last L events
- :func:`examples`   day D's labelled pairs with sampled negatives
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts
from recpipe.io.partitions import Store
from recpipe.stages.features import daily
from recpipe.stages.features.arrays import (INT64_MIN, column, dense, pair_key, run_starts, split_pair_key, ts_array,
                                            ts_us, unique)

#: Windows (days, ending with D) of the user and item counts.
FEATURE_WINDOWS = (1, 7, 30)


@dataclass(frozen=True)
class Window:
    """The days of aggregates a date's features read: ``states`` oldest first, ``ages`` in days."""

    store: Store
    states: list[daily.DayState]
    ages: np.ndarray  # descending: D − day of each state
    lookback: int
    n_users: int
    n_items: int

    def read(self, name: str, columns: list[str], max_age: int | None = None) -> tuple[list[pa.Table], np.ndarray]:
        """Table ``name`` of the days with age ≤ ``max_age`` (oldest first) and their ages."""
        keep = [i for i, a in enumerate(self.ages) if max_age is None or a <= max_age]
        tables = daily.read(self.store, [self.states[i] for i in keep], name, columns)
        return tables, self.ages[keep]


def counts(w: Window, name: str) -> dict[str, np.ndarray]:
    """Dense per-index sums of the ``users`` or ``items`` aggregate.

    ``n_<type>_<w>d`` per feature window, ``n_events_lb`` (the lookback, D included),
    ``n_events_past`` (the lookback before D); items add ``popularity`` (decayed weight
    before D), users ``last_ts`` (µs).
    """
    key, n = ("item_idx", w.n_items) if name == "items" else ("user_idx", w.n_users)
    cols = [key, *daily.TYPE_COLUMNS, "n_events"] + (["decayed"] if name == "items" else ["last_ts"])
    tables, ages = w.read(name, cols, max_age=max(w.lookback, max(FEATURE_WINDOWS) - 1))
    lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
    age = np.repeat(ages, lengths)
    idx = column(tables, key).astype(np.int64)
    typed = {c: column(tables, c) for c in daily.TYPE_COLUMNS}
    out = {}
    for wdays in FEATURE_WINDOWS:  # rows of the last w days are a suffix (oldest day first)
        s = int(np.searchsorted(-age, -wdays, side="right"))
        for c in daily.TYPE_COLUMNS:
            out[f"{c}_{wdays}d"] = dense(idx[s:], typed[c][s:], n).astype(np.int32)
    lb = age <= w.lookback
    n_events = column(tables, "n_events")
    out["n_events_lb"] = dense(idx[lb], n_events[lb], n).astype(np.int64)
    past = lb & (age >= 1)
    out["n_events_past"] = dense(idx[past], n_events[past], n).astype(np.int64)
    if name == "items":
        decay = np.power(0.5, age / daily.POPULARITY_HALF_LIFE_DAYS)
        out["popularity"] = dense(idx[past], (column(tables, "decayed") * decay)[past], n)
    else:
        last = np.full(n, INT64_MIN, np.int64)
        np.maximum.at(last, idx[lb], column(tables, "last_ts")[lb])
        out["last_ts"] = last
    return out


@dataclass(frozen=True)
class Pairs:
    """What the window's (user, item) pairs give the feature tables."""

    interactions: pa.Table  # (user_idx, item_idx, weight, n_events, last_ts): days < D
    purchased: pa.Table  # (user_idx, item_idx, last_ts): purchases ≤ D
    day: pa.Table  # day D's pairs (user_idx, item_idx)
    has_history: np.ndarray  # (n_users,) bool: the user has an interaction before D
    n_items_30d: np.ndarray  # (n_users,) distinct items of the last 30 days
    n_categories_30d: np.ndarray  # (n_users,) distinct categories of the last 30 days
    price_sum: np.ndarray  # (n_users,) sum of the known prices of those items
    price_n: np.ndarray  # (n_users,) how many of them have a price
    n_users_30d: np.ndarray  # (n_items,) distinct users of the last 30 days

    def holdout(self) -> pa.Table:
        """Day D's pairs of the users with history before D: what the model is judged on."""
        u = self.day["user_idx"].to_numpy()
        return self.day.filter(pa.array(self.has_history[u])).select(["user_idx", "item_idx"])


def pairs(w: Window, category: pa.ChunkedArray, price: pa.ChunkedArray) -> Pairs:
    """Merge the days' pairs: interactions, purchases, D's pairs, and 30-day distinct counts."""
    cols = ["user_idx", "item_idx", "weight", "n_events", "last_ts", "last_purchase_ts"]
    tables, ages = w.read("pairs", cols)
    lengths = np.array([t.num_rows for t in tables], dtype=np.int64)
    key = pair_key(column(tables, "user_idx"), column(tables, "item_idx"))
    order = np.argsort(key, kind="stable")  # runs of days already sorted: a cheap merge
    skey = key[order]
    starts = run_starts(skey)
    age = np.repeat(ages, lengths)[order]
    past = (age >= 1) & (age <= w.lookback)
    lb = age <= w.lookback
    in30 = age < max(FEATURE_WINDOWS)
    gu, gi = split_pair_key(skey[starts] if len(skey) else skey)

    def reduce(ufunc, values, mask, fill):
        if not len(starts):
            return values[:0]
        return ufunc.reduceat(np.where(mask, values[order], fill), starts)

    n_past = reduce(np.add, column(tables, "n_events").astype(np.int64), past, 0)
    hit = n_past > 0
    interactions = pa.table({
        "user_idx": gu[hit], "item_idx": gi[hit],
        "weight": reduce(np.add, column(tables, "weight"), past, 0.0)[hit],
        "n_events": n_past[hit],
        "last_ts": ts_array(reduce(np.maximum, column(tables, "last_ts"), past, INT64_MIN)[hit]),
    })
    last_purchase = reduce(np.maximum, column(tables, "last_purchase_ts"), lb, INT64_MIN)
    bought = last_purchase != INT64_MIN
    purchased = pa.table({"user_idx": gu[bought], "item_idx": gi[bought],
                          "last_ts": ts_array(last_purchase[bought])})
    recent = np.logical_or.reduceat(in30, starts) if len(starts) else np.zeros(0, bool)
    has_history = np.zeros(w.n_users, bool)
    has_history[gu[hit]] = True
    # distinct items, categories and mean price of the last 30 days, per user
    ru, ri = gu[recent].astype(np.int64), gi[recent].astype(np.int64)
    n_cats = np.zeros(w.n_users, np.int32)
    cats = pc.dictionary_encode(category.combine_chunks()) if len(category) else None
    if cats is not None and len(cats.dictionary):
        code = pc.fill_null(cats.indices, -1).to_numpy()[ri]
        ok = code >= 0
        ncat = len(cats.dictionary)
        if w.n_users * ncat <= 1 << 28:  # a bitmap of (user, category)
            seen = np.zeros(w.n_users * ncat, bool)
            seen[ru[ok] * ncat + code[ok]] = True
            n_cats = seen.reshape(w.n_users, ncat).sum(axis=1, dtype=np.int32)
        else:
            ckey = unique(ru[ok] * ncat + code[ok])
            n_cats = dense(ckey // ncat, None, w.n_users).astype(np.int32)
    p = pc.fill_null(price, np.nan).to_numpy()[ri] if len(price) else np.zeros(0)
    priced = ~np.isnan(p)
    return Pairs(
        interactions=interactions, purchased=purchased, day=tables[-1], has_history=has_history,
        n_items_30d=dense(ru, None, w.n_users).astype(np.int32), n_categories_30d=n_cats,
        price_sum=dense(ru[priced], p[priced], w.n_users), price_n=dense(ru[priced], None, w.n_users),
        n_users_30d=dense(ri, None, w.n_items).astype(np.int32),
    )


def sequences(w: Window, users: pa.Table, length: int) -> pa.Table:
    """Each user of ``users`` (user_idx): their last ``length`` events of the lookback window, oldest first."""
    tables, _ = w.read("sequences", ["user_idx", "item_idx", "event", "event_ts"], max_age=w.lookback)
    need = np.full(w.n_users, length, np.int64)
    kept = []
    for t in reversed(tables):  # newest day first: take what each user still needs
        u = t["user_idx"].to_numpy().astype(np.int64)
        bounds = np.r_[run_starts(u), len(u)]
        from_end = np.repeat(bounds[1:], np.diff(bounds)) - np.arange(len(u))  # 1 = the user's last event
        keep = from_end <= need[u]
        ku = u[keep]
        need -= dense(ku, None, w.n_users).astype(np.int64)
        kept.append((ku, t["item_idx"].to_numpy()[keep], t["event"].to_numpy()[keep], ts_us(t, "event_ts")[keep]))
    counts_ = length - need
    offsets = np.r_[0, np.cumsum(counts_)]
    total = int(offsets[-1])
    item, event, ts = np.empty(total, np.int32), np.empty(total, np.int8), np.empty(total, np.int64)
    filled = np.zeros(w.n_users, np.int64)
    for ku, ki, ke, kt in reversed(kept):  # oldest day first: fill each user's slots in order
        bounds = np.r_[run_starts(ku), len(ku)]
        rank = np.arange(len(ku)) - np.repeat(bounds[:-1], np.diff(bounds))
        at = offsets[ku] + filled[ku] + rank
        item[at], event[at], ts[at] = ki, ke, kt
        filled += dense(ku, None, w.n_users).astype(np.int64)
    rows = users["user_idx"].to_numpy()
    list_offsets = pa.array(np.r_[offsets[rows], total].astype(np.int32))
    events = pa.DictionaryArray.from_arrays(pa.array(event), pa.array(contracts.EVENT_TYPES))
    return pa.table({
        "user_idx": users["user_idx"],
        "item_idx": pa.ListArray.from_arrays(list_offsets, pa.array(item)),
        "event_type": pa.ListArray.from_arrays(list_offsets, events),
        "event_ts": pa.ListArray.from_arrays(list_offsets, ts_array(ts)),
    })


def examples(w: Window, known_items: np.ndarray, negatives: int, seed: int, dt: str) -> pa.Table:
    """Day D's positives (every pair with an event) and ``negatives`` sampled items per positive."""
    engaged = ["n_click", "n_favorite", "n_add_to_cart", "n_purchase"]  # more than a view: the click label
    day = daily.read(w.store, w.states[-1:], "pairs", ["user_idx", "item_idx", *engaged])[0]
    u = day["user_idx"].to_numpy().astype(np.int64)
    pos_key = pair_key(u, day["item_idx"].to_numpy())  # sorted: the aggregate is sorted by (user, item)
    eligible = np.flatnonzero(known_items)
    rng = np.random.default_rng([seed, date.fromisoformat(dt).toordinal()])
    if len(eligible) and len(u) and negatives > 0:
        neg_key = pair_key(np.repeat(u, negatives), eligible[rng.integers(0, len(eligible), len(u) * negatives)])
        neg_key = unique(neg_key)
        at = np.minimum(np.searchsorted(pos_key, neg_key), len(pos_key) - 1)
        neg_key = neg_key[pos_key[at] != neg_key]
    else:
        neg_key = np.zeros(0, np.int64)
    key = np.concatenate([pos_key, neg_key])
    order = np.argsort(key, kind="stable")
    n_pos = len(pos_key)
    click = sum(day[c].to_numpy() for c in engaged) > 0
    buy = day["n_purchase"].to_numpy() > 0
    pad = np.zeros(len(neg_key), np.int8)
    users, items = split_pair_key(key[order])
    return pa.table({
        "user_idx": users,
        "item_idx": items,
        "label": np.r_[np.ones(n_pos, np.int8), pad][order],
        "click": np.r_[click.astype(np.int8), pad][order],
        "purchase": np.r_[buy.astype(np.int8), pad][order],
    })
