"""The recent-activity heuristic: what a user touched lately, weighted by recency and type.

In shop logs most purchases are of items the buyer viewed or carted in the days before. For
a user, an item they touched scores Σ over their events on it of
``weight(type) · 0.5^(age / HALF_LIFE_DAYS)`` (age measured from the newest event the
model saw); items they never touched score below every touched one, by popularity
(``popularity / (max + 1) − 1``, in [−1, 0)), so a list is the user's recent items, most
engaged and newest first, then the popular ones. Purchases are excluded downstream
(``exclude_purchased``), which makes it "recently touched and not bought".

It is a model of its own (``model=recent``), the second baseline of the evaluation gate, and
the source of the repeat slots publish can blend into any model's list. As the last two
(``registry.recent``) it ranks the touched items by purchase propensity instead
(:meth:`Recent.by_propensity`): what made users buy on the last day of the events, learned
there (a logistic fit over each pair's events per type, age and place), applied to them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recpipe.models.base import FitConfig, Recommender, TrainingData, has_rows, pad_items, row_entries, sparse_rows

HALF_LIFE_DAYS = 3.0
DAY_US = 86_400_000_000
#: fewer purchases than this on the day a propensity is learned from: rank by engagement instead
MIN_PURCHASES = 30
#: pairs a propensity is fitted on at most (a seeded sample beyond)
MAX_FIT_PAIRS = 1_000_000


def pair_features(users: np.ndarray, items: np.ndarray, types: np.ndarray, ts: np.ndarray, until: int,
                  n_types: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair users, pair items, X) of the (user, item) pairs with events before ``until`` (µs).

    X (pairs, n_types + 3): log(1 + events of each type code), log(1 + days since the last
    touch), log(1 + the item's place among the user's items by last touch, 0 = latest), 1.
    """
    keep = ts < until
    users, items, types, ts = (np.asarray(a)[keep] for a in (users, items, types, ts))
    key = users.astype(np.int64) << 32 | items.astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    counts = np.zeros((len(uniq), n_types))
    np.add.at(counts, (inverse, types.astype(np.int64)), 1.0)
    last = np.full(len(uniq), np.iinfo(np.int64).min)
    np.maximum.at(last, inverse, ts.astype(np.int64))
    pair_users = (uniq >> 32).astype(np.int64)
    order = np.lexsort((-last, pair_users))
    starts = np.r_[0, np.flatnonzero(np.diff(pair_users[order])) + 1] if len(uniq) else np.zeros(0, np.int64)
    place = np.empty(len(uniq))
    place[order] = np.arange(len(uniq)) - np.repeat(starts, np.diff(np.r_[starts, len(uniq)]))
    x = np.column_stack([np.log1p(counts), np.log1p((until - last) / DAY_US), np.log1p(place), np.ones(len(uniq))])
    return pair_users, (uniq & 0xFFFFFFFF).astype(np.int64), x


def fit_propensity(users: np.ndarray, items: np.ndarray, types: np.ndarray, ts: np.ndarray, until: int,
                   purchase: int, n_types: int, seed: int = 0) -> np.ndarray | None:
    """Logistic weights (n_types + 3,) of P(the user buys the item in the day before ``until``)
    over :func:`pair_features` of the events before that day; None with fewer than
    :data:`MIN_PURCHASES` such purchases (too little to learn from)."""
    start = until - DAY_US
    pu, pi, x = pair_features(users, items, types, ts, start, n_types)
    day = (np.asarray(ts) >= start) & (np.asarray(ts) < until) & (np.asarray(types) == purchase)
    bought = np.unique(np.asarray(users)[day].astype(np.int64) << 32 | np.asarray(items)[day].astype(np.int64))
    y = np.isin(pu << 32 | pi, bought).astype(np.float64)
    if y.sum() < MIN_PURCHASES:
        return None
    if len(y) > MAX_FIT_PAIRS:
        pick = np.random.default_rng(seed).choice(len(y), MAX_FIT_PAIRS, replace=False)
        x, y = x[pick], y[pick]
    w = np.zeros(x.shape[1])
    for _ in range(25):  # Newton steps on the L2-regularised log loss
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


class Recent(Recommender):
    name = "recent"

    def __init__(self, indptr: np.ndarray | None = None, items: np.ndarray | None = None,
                 strength: np.ndarray | None = None, popularity: np.ndarray | None = None):
        self.indptr = indptr  # (n_users + 1,) CSR row starts
        self.items = items  # (nnz,) int32 item indices, per user
        self.strength = strength  # (nnz,) float32 recency-and-type weighted engagement
        self.popularity = popularity  # (n_items,) float32

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, weights: np.ndarray, ts: np.ndarray,
                    n_users: int, popularity: np.ndarray) -> "Recent":
        """From events (or (user, item) pairs): user and item indices, type weights, µs times."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        age_days = (ts.max(initial=0) - ts) / DAY_US if len(ts) else np.zeros(0)
        value = np.asarray(weights, np.float64) * np.power(0.5, age_days / HALF_LIFE_DAYS)
        indptr, pair_items, strength = sparse_rows(users, items, value, n_users)
        return cls(indptr, pair_items, strength.astype(np.float32), np.asarray(popularity, np.float32))

    @classmethod
    def by_propensity(cls, users: np.ndarray, items: np.ndarray, types: np.ndarray, ts: np.ndarray, until: int,
                      purchase: int, n_types: int, n_users: int, popularity: np.ndarray) -> "Recent | None":
        """Touched items scored by their learned chance of being bought next (:func:`fit_propensity`
        on the last day before ``until``, applied to every event before it), in (0, 1); None
        when there is too little to learn from. Event ``types``: codes < ``n_types``."""
        w = fit_propensity(users, items, types, ts, until, purchase, n_types)
        if w is None:
            return None
        pu, pi, x = pair_features(users, items, types, ts, until, n_types)
        strength = (1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))).astype(np.float32)
        indptr = np.searchsorted(pu, np.arange(n_users + 1)).astype(np.int64)
        return cls(indptr, pi.astype(np.int32), strength, np.asarray(popularity, np.float32))

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        ts = data.last_ts if data.last_ts is not None else np.zeros(len(data.users), np.int64)
        other = Recent.from_events(data.users, data.items, data.weights, ts, data.n_users, data.popularity)
        self.indptr, self.items, self.strength, self.popularity = other.indptr, other.items, other.strength, other.popularity
        return {"epochs": 0, "users_with_history": int((np.diff(self.indptr) > 0).sum()),
                "pairs": int(len(self.items))}

    def with_history(self, data: TrainingData, since: int | None = None) -> "Recent":
        """Rebuilt from the (user, item) pairs of ``data``, its own popularity kept."""
        ts = data.last_ts if data.last_ts is not None else np.zeros(len(data.users), np.int64)
        return Recent.from_events(data.users, data.items, data.weights, ts, data.n_users, self.popularity)

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        users = np.asarray(users)
        base = self.popularity / (self.popularity.max(initial=0.0) + 1.0) - 1.0  # untouched: [-1, 0)
        out = np.repeat(base[None, :], len(users), axis=0).astype(np.float32)
        rows, at = row_entries(self.indptr, users)
        out[rows, self.items[at]] = self.strength[at]
        return pad_items(out, n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        return has_rows(self.indptr, users)

    def save(self, directory: Path) -> None:
        np.savez(directory / "recent.npz", indptr=self.indptr, items=self.items, strength=self.strength,
                 popularity=self.popularity)

    @classmethod
    def load(cls, directory: Path) -> "Recent":
        with np.load(directory / "recent.npz") as z:
            return cls(z["indptr"], z["items"], z["strength"], z["popularity"])
