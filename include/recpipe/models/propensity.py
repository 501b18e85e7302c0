"""Next-day purchase propensity: what a shopper buys tomorrow, learned from what shoppers bought lately.

Two logistic regressions, fitted at every training on the last ``LABEL_DAYS`` days of the
events: for each such day, the features from the events before it, the label whether the user
bought the item that day (any event, when the days hold fewer than ``MIN_POSITIVES``
purchases). One scores the items a user touched (re-engagement), the other every other item
(discovery), so each is calibrated on its own kind and a list mixes the two by the chance of a
purchase, per user. Features of a (user, item) pair, from the events before the cut:

- touched only: log(1 + events of each type), log(1 + days since the last touch),
  log(1 + the item's place among the user's items by last touch, 0 = latest);
- both: log(1e-3 + the user's share of events in the item's category), log(1e-4 + the item's
  events decayed by ``HALF_LIFE_DAYS``, over the most any item has), log(1e-3 + the share of
  the moves from the user's last item that went to this one, over all users' sessions).

Each feature also enters cut into ``BINS`` quantile bins (edges from the training rows), so the
fit bends where a straight line in the log would not. Discovery is trained on each user's
``CANDIDATES`` untouched items with the best share × popularity and the
``SUCCESSOR_CANDIDATES`` most frequent successors of their last item; it scores every item.

It needs the events (``TrainingData.events`` with ``ts``), as shop logs deliver them; without
them every pair is one event at its ``last_ts``. Synthetic shop (``benchmarks/ecommerce.py``:
6,000 users, 4 dates): its tables' next-day purchase HR@10 is 1.110× the recent heuristic's
(1,500 users: 1.099×, affinity's 1.07×, mf's 0.94×) and its new-item HR@10 2.03× popularity's,
with no repeat slots. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recpipe.events import EVENT_TYPES
from recpipe.models.base import (Events, FitConfig, Recommender, TrainingData, has_rows, pad_items, row_entries,
                                 sparse_rows)
from recpipe.models.recent import DAY_US, pair_features

HALF_LIFE_DAYS = 3.0
LABEL_DAYS = 3
MIN_POSITIVES = 30
BINS = 6
CANDIDATES = 100
SUCCESSOR_CANDIDATES = 4
#: users whose rows a label day contributes at most (a seeded sample beyond)
MAX_FIT_USERS = 20_000
#: dense (users × items) cells computed at once
BLOCK_CELLS = 1 << 22
PURCHASE = EVENT_TYPES.index("purchase")
N_TYPES = len(EVENT_TYPES)
#: the weights when a kind has too few positives to learn from: touched items by engagement,
#: recency and then as discovery; the rest by category share × popularity (affinity's order)
PRIOR = {"touched": [*[1.0] * N_TYPES, -1.0, -1.0, 1.0, 1.0, 0.0, 20.0], "untouched": [1.0, 1.0, 0.0, 0.0]}


class State:
    """What scoring reads, from the events before ``until`` (µs): each user's touched pairs
    with their touched-features, category shares, last item, the items' popularity and the
    successor shares (CSR by previous item)."""

    def __init__(self, events: Events, until: int, n_users: int, n_items: int, category: np.ndarray):
        keep = events.ts < until
        u, i, ts = (np.asarray(a)[keep].astype(np.int64) for a in (events.users, events.items, events.ts))
        self.n_users, self.n_items, self.category = n_users, n_items, category
        # the touched-only features are the recent model's: events per type, age, place (and a 1)
        self.pair_users, self.pair_items, own = pair_features(events.users, events.items, events.types, events.ts,
                                                              until, N_TYPES)
        self.bought = own[:, PURCHASE] > 0
        self.indptr = np.searchsorted(self.pair_users, np.arange(n_users + 1))
        pop = np.bincount(i, weights=np.power(0.5, (until - ts) / DAY_US / HALF_LIFE_DAYS), minlength=n_items)
        self.popularity = pop[:n_items] / max(pop.max(initial=0.0), 1e-12)
        # each user's share of events per category, as CSR rows (categories can be many)
        self.share_ptr, self.share_cats, share = sparse_rows(u, category[i], np.ones(len(u)), n_users)
        self.share_keys = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(self.share_ptr)) << 32 | self.share_cats
        self.share = share / np.bincount(u, minlength=n_users)[self.share_keys >> 32]
        self.n_categories = int(category.max(initial=0)) + 1
        by_time = np.lexsort((ts, u))
        su, si = u[by_time], i[by_time]
        self.last_item = np.full(n_users, -1, np.int64)
        self.last_item[su] = si  # the latest event of each user wins
        move = (su[1:] == su[:-1]) & (si[1:] != si[:-1])
        prev, nxt = si[:-1][move], si[1:][move]
        mkey, moves = np.unique(prev << 32 | nxt, return_counts=True)
        self.succ_keys = mkey
        self.succ_ptr = np.searchsorted(mkey >> 32, np.arange(n_items + 1))
        self.succ_items = (mkey & 0xFFFFFFFF).astype(np.int64)
        out = np.bincount(mkey >> 32, weights=moves, minlength=n_items)
        self.succ_share = moves / out[mkey >> 32]
        self.touched = np.column_stack([own[:, :-1], *self.shared(self.pair_users, self.pair_items)])

    def category_shares(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_categories) each user's share of events per category (users beyond: 0)."""
        out = np.zeros((len(users), self.n_categories))
        rows, at = row_entries(self.share_ptr, users)
        out[rows, self.share_cats[at]] = self.share[at]
        return out

    def successor_entries(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, items, shares): for each of ``users`` (its position), the items that followed
        its last item in any session and their share of the moves from it."""
        users = np.asarray(users, np.int64)
        prev = np.where(users < self.n_users, self.last_item[np.minimum(users, self.n_users - 1)], -1)
        rows, at = row_entries(self.succ_ptr, np.where(prev >= 0, prev, self.n_items))
        return rows, self.succ_items[at], self.succ_share[at]

    def shared(self, users: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
        """The three features of any pair (see the module docstring), for pairs (users, items)."""
        succ = np.where(self.last_item[users] >= 0, _lookup(self.succ_keys, self.succ_share,
                                                              self.last_item[users] << 32 | np.asarray(items, np.int64)), 0.0)
        return [np.log(1e-3 + _lookup(self.share_keys, self.share, np.asarray(users, np.int64) << 32
                                      | self.category[items])),
                np.log(1e-4 + self.popularity[items]), np.log(1e-3 + succ)]

    def dense(self, users: np.ndarray) -> list[np.ndarray]:
        """The three features of every (user, item) of ``users``: (len(users), n_items) each."""
        share = self.category_shares(users)[:, self.category[: self.n_items]]
        successor = np.zeros(share.shape)
        rows, items, shares = self.successor_entries(users)
        successor[rows, items] = shares
        return [np.log(1e-3 + share), np.broadcast_to(np.log(1e-4 + self.popularity), share.shape),
                np.log(1e-3 + successor)]

    def candidates(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(users, items): each user's untouched discovery rows to learn from."""
        out_u, out_i = [], []
        for block in np.array_split(users, max(1, len(users) * self.n_items // BLOCK_CELLS)):
            share, pop, succ = self.dense(block)
            rows, at = row_entries(self.indptr, block)
            touched = np.zeros(share.shape, bool)
            touched[rows, self.pair_items[at]] = True
            for value, n in ((share + pop, CANDIDATES), (succ, SUCCESSOR_CANDIDATES)):
                value = np.where(touched, -np.inf, value)
                n = min(n, self.n_items)
                top = np.argpartition(-value, n - 1, axis=1)[:, :n]
                ok = np.isfinite(np.take_along_axis(value, top, axis=1))
                out_u.append(np.repeat(block, n)[ok.ravel()]), out_i.append(top.ravel()[ok.ravel()])
        key = np.unique(np.concatenate(out_u) << 32 | np.concatenate(out_i)) if out_u else np.zeros(0, np.int64)
        return key >> 32, key & 0xFFFFFFFF


class Logistic:
    """An L2-regularised logistic regression over features and their quantile-bin indicators."""

    def __init__(self, edges: list[np.ndarray] | None = None, weights: np.ndarray | None = None):
        self.edges, self.weights = edges, weights

    @classmethod
    def prior(cls, weights: list[float]) -> "Logistic":
        """Fixed weights over the features (no bins), the last one the intercept."""
        return cls([np.zeros(0)] * (len(weights) - 1), np.asarray(weights, np.float64))

    def design(self, x: list[np.ndarray]) -> np.ndarray:
        cols = [*x]
        for f, e in zip(x, self.edges):
            idx = np.searchsorted(e, f, side="right")
            cols += [idx == b for b in range(1, len(e) + 1)]
        return np.column_stack([*cols, np.ones(len(x[0]))]).astype(np.float64)

    def fit(self, x: list[np.ndarray], y: np.ndarray) -> "Logistic":
        self.edges = [np.unique(np.quantile(f, np.linspace(0, 1, BINS + 1)[1:-1])) for f in x]
        a = self.design(x)
        w = np.zeros(a.shape[1])
        for _ in range(50):  # Newton steps on the L2-regularised log loss
            p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -30, 30)))
            step = np.linalg.solve((a * (p * (1 - p))[:, None]).T @ a + np.eye(len(w)), a.T @ (p - y) + w)
            w -= step
            if np.abs(step).max() < 1e-7:
                break
        self.weights = w
        return self

    def part(self, j: int, f: np.ndarray) -> np.ndarray:
        """Feature ``j``'s additive share of the log-odds at values ``f`` (any shape): its
        weight times the value plus its bin's weight."""
        edges = self.edges[j]
        at = len(self.edges) + sum(len(e) for e in self.edges[:j])
        return self.weights[j] * f + np.r_[0.0, self.weights[at:at + len(edges)]][np.searchsorted(edges, f, side="right")]

    def logit(self, x: list[np.ndarray]) -> np.ndarray:
        """Log-odds of rows ``x`` (features as arrays of any one shape)."""
        return self.weights[-1] + sum(self.part(j, f) for j, f in enumerate(x))


class Propensity(Recommender):
    name = "propensity"

    def __init__(self):
        self.touched = self.untouched = self.state = self.events = self.until = self.category = None

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        self.category = (np.zeros(data.n_items, np.int64) if data.item_features is None
                         else np.asarray(data.item_features[:, 0], np.int64))
        events = _events(data)
        end = _end_of_last_day(events)
        days = [end - d * DAY_US for d in range(LABEL_DAYS, 0, -1)]
        label = PURCHASE if ((events.types == PURCHASE) & (events.ts >= days[0])).sum() >= MIN_POSITIVES else None
        rng = np.random.default_rng(config.seed)
        rows = {"touched": ([], []), "untouched": ([], [])}
        for start in days:
            state = State(events, start, data.n_users, data.n_items, self.category)
            day = (events.ts >= start) & (events.ts < start + DAY_US) & (label is None or events.types == label)
            positive = np.unique(events.users[day].astype(np.int64) << 32 | events.items[day].astype(np.int64))
            users = np.flatnonzero(np.diff(state.indptr) > 0)
            if len(users) > MAX_FIT_USERS:
                users = np.sort(rng.choice(users, MAX_FIT_USERS, replace=False))
            pick = np.isin(state.pair_users, users) & ~state.bought
            cu, ci = state.candidates(users)
            for kind, x, pu, pi in (("touched", state.touched[pick], state.pair_users[pick], state.pair_items[pick]),
                                    ("untouched", np.column_stack(state.shared(cu, ci)), cu, ci)):
                rows[kind][0].append(x), rows[kind][1].append(np.isin(pu << 32 | pi, positive))
        summary = {"epochs": 0, "label": EVENT_TYPES[label] if label is not None else "any event"}
        for kind, (xs, ys) in rows.items():
            x, y = np.concatenate(xs), np.concatenate(ys).astype(np.float64)
            summary[f"{kind}_rows"], summary[f"{kind}_positives"] = len(y), int(y.sum())
            learnt = y.sum() >= MIN_POSITIVES
            setattr(self, kind, Logistic().fit(list(x.T), y) if learnt else Logistic.prior(PRIOR[kind]))
            summary[f"{kind}_learnt"] = bool(learnt)
        self._score_from(events, end, data.n_users, data.n_items)
        return summary

    def _score_from(self, events: Events, until: int, n_users: int, n_items: int) -> None:
        self.events, self.until, self.state = events, until, State(events, until, n_users, n_items, self.category)

    def with_history(self, data: TrainingData, since: int | None = None) -> "Propensity":
        """Scoring from the events of ``data`` (through their last day), the fits kept."""
        out = Propensity()
        out.touched, out.untouched, out.category = self.touched, self.untouched, self.category
        events = _events(data)
        out._score_from(events, _end_of_last_day(events), data.n_users, data.n_items)
        return out

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """Log-odds of a purchase: (len(users), n_items); items the model never saw: -inf.

        The discovery log-odds are a sum of one part per feature, so each part is computed where
        it varies: per (user, category) for the share, per item for popularity, and per
        successor entry on top of the no-successor part; then the touched pairs are overwritten.
        """
        users = np.asarray(users, np.int64)
        st, model = self.state, self.untouched
        no_successor = model.part(2, np.log(1e-3))
        out = (model.part(0, np.log(1e-3 + st.category_shares(users)))[:, st.category[: st.n_items]]
               + model.part(1, np.log(1e-4 + st.popularity))[None, :] + (model.weights[-1] + no_successor))
        rows, items, shares = st.successor_entries(users)
        out[rows, items] += model.part(2, np.log(1e-3 + shares)) - no_successor
        rows, at = row_entries(st.indptr, users)
        out[rows, st.pair_items[at]] = self.touched.logit(list(st.touched[at].T))
        return pad_items(out.astype(np.float32), n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        return has_rows(self.state.indptr, users)

    def save(self, directory: Path) -> None:
        fits = {f"{kind}_{part}": value for kind in ("touched", "untouched") for part, value in (
            ("weights", getattr(self, kind).weights), ("edges", np.concatenate(getattr(self, kind).edges)),
            ("edge_counts", np.array([len(e) for e in getattr(self, kind).edges])))}
        e = self.events
        np.savez(directory / "propensity.npz", category=self.category, users=e.users, items=e.items, types=e.types,
                 ts=e.ts, until=self.until, shape=[self.state.n_users, self.state.n_items], **fits)

    @classmethod
    def load(cls, directory: Path) -> "Propensity":
        out = cls()
        with np.load(directory / "propensity.npz") as z:
            for kind in ("touched", "untouched"):
                edges = np.split(z[f"{kind}_edges"], np.cumsum(z[f"{kind}_edge_counts"])[:-1])
                setattr(out, kind, Logistic(edges, z[f"{kind}_weights"]))
            out.category = z["category"]
            out._score_from(Events(z["users"], z["items"], z["types"], z["ts"]), int(z["until"]), *map(int, z["shape"]))
        return out


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` at the sorted int64 ``keys`` equal to each ``query``; 0 where none is."""
    if not len(keys):
        return np.zeros(len(query))
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, values[at], 0.0)


def _end_of_last_day(events: Events) -> int:
    """The end (µs) of the UTC day of the latest event: "now" for features built from them."""
    return (int(events.ts.max(initial=0)) // DAY_US + 1) * DAY_US


def _events(data: TrainingData) -> Events:
    """``data.events`` with times, or every pair as one view at its ``last_ts``."""
    if data.events is not None and data.events.ts is not None:
        return data.events
    ts = data.last_ts if data.last_ts is not None else np.zeros(len(data.users), np.int64)
    return Events(np.asarray(data.users), np.asarray(data.items), np.zeros(len(data.users), np.int8), np.asarray(ts))
