"""A synthetic shop that a model can learn from, deterministic for a seed.

What makes it learnable (and popularity beatable):

- each user has a latent taste: a sparse Dirichlet mixture over item categories;
- item popularity is power-law (Zipf) within each category;
- sessions are sequential: the next item is, with probability ``p_next``, one of the
  previous item's few "related" items, so recent history predicts what comes next;
- every viewed item runs a funnel view → click → add_to_cart → purchase whose
  probabilities rise with the user's taste for the item's category;
- users come back to what they touched: each keeps a shortlist of the last items it
  viewed, clicked or carted and did not buy; with probability ``p_revisit`` a step
  re-views one of them (carted ones more likely), with a steeper funnel (intent), so about
  half of the purchases are of items the buyer touched on earlier days, as in real shop logs;
- new users and new items appear over the days.

``generate(...)`` yields one :class:`Day` (events, items, users) per date.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Iterator

import numpy as np
import pyarrow as pa

from recpipe import contracts


@dataclass(frozen=True)
class ShopSpec:
    users: int = 1500
    items: int = 600
    categories: int = 15
    days: int = 14
    start: date = date(2024, 1, 1)
    seed: int = 7
    active_rate: float = 0.35  # mean share of born users active on a day
    session_mean: float = 6.0  # mean items viewed per session
    p_next: float = 0.5  # chance the next item is related to the previous one
    taste_alpha: float = 0.15  # Dirichlet concentration: smaller = pickier users
    new_share: float = 0.25  # share of users/items born after day 0
    p_revisit: float = 0.2  # chance a step re-views an item of the shortlist (≈ 55 % of purchases are repeats)
    shortlist: int = 8  # items remembered per user (touched, not bought)


@dataclass(frozen=True)
class Day:
    dt: str
    events: pa.Table
    items: pa.Table
    users: pa.Table


class _Shop:
    """The latent world: items, users, and each user's last item (session state)."""

    def __init__(self, spec: ShopSpec):
        self.spec = spec
        rng = self.rng = np.random.default_rng(spec.seed)
        n_i, n_u, n_c = spec.items, spec.users, spec.categories
        self.item_cat = rng.integers(0, n_c, n_i)
        self.item_pop = rng.permutation(n_i).astype(float)  # Zipf weight by a random rank
        self.item_pop = 1.0 / (1.0 + self.item_pop) ** 1.1
        self.item_price = np.round(np.exp(rng.normal(3.0 + 0.1 * self.item_cat, 0.5)), 2)
        self.item_brand = rng.integers(0, 40, n_i)
        self.item_born = np.where(rng.random(n_i) < spec.new_share, rng.integers(1, max(spec.days, 2), n_i), 0)
        self.item_available = rng.random(n_i) > 0.03
        self.taste = rng.dirichlet(np.full(n_c, spec.taste_alpha), n_u)
        self.user_born = np.where(rng.random(n_u) < spec.new_share, rng.integers(1, max(spec.days, 2), n_u), 0)
        self.user_activity = np.clip(rng.lognormal(0, 0.6, n_u) * spec.active_rate, 0.02, 0.95)
        self.user_age = rng.integers(16, 75, n_u).astype(np.int32)
        self.user_gender = rng.choice(np.array(["f", "m", "x"]), n_u, p=[0.48, 0.48, 0.04])
        self.user_job = rng.choice(np.array(["student", "engineer", "artist", "retired", "other"]), n_u)
        # each item's related items: 4 items of its own category, drawn by popularity
        self.related = np.empty((n_i, 4), dtype=np.int64)
        for c in range(n_c):
            members = np.flatnonzero(self.item_cat == c)
            if len(members) == 0:  # small catalogs can leave a category empty
                continue
            p = self.item_pop[members] / self.item_pop[members].sum()
            self.related[members] = rng.choice(members, (len(members), 4), p=p)
        self.last_item = np.full(n_u, -1)
        self.short_item = np.full((n_u, spec.shortlist), -1)  # ring buffer of touched, unbought items
        self.short_depth = np.zeros((n_u, spec.shortlist), np.int8)  # how far each went in the funnel
        self.short_next = np.zeros(n_u, np.int64)  # the buffer's next slot per user

    def _revisits(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``users`` re-view a shortlisted item this step, that item); carted items
        weigh 3, clicked 2, viewed 1."""
        rng = self.rng
        weight = np.where(self.short_item[users] >= 0, 1.0 + self.short_depth[users], 0.0)
        has = weight.sum(axis=1) > 0
        revisit = has & (rng.random(len(users)) < self.spec.p_revisit)
        cum = weight[revisit].cumsum(axis=1)
        slot = (cum < rng.random((int(revisit.sum()), 1)) * cum[:, -1:]).sum(axis=1)
        return revisit, self.short_item[users[revisit], slot]

    def _remember(self, users: np.ndarray, items: np.ndarray, depth: np.ndarray) -> None:
        """Shortlist what was touched but not bought; forget what was bought."""
        bought = depth >= 3
        hit = self.short_item[users[bought]] == items[bought, None]
        rows = self.short_item[users[bought]]
        rows[hit] = -1
        self.short_item[users[bought]] = rows
        keep = ~bought & ~(self.short_item[users] == items[:, None]).any(axis=1)
        u, i = users[keep], items[keep]
        slot = self.short_next[u] % self.spec.shortlist
        self.short_item[u, slot], self.short_depth[u, slot] = i, depth[keep]
        self.short_next[u] += 1

    def _pick_by_taste(self, users: np.ndarray, day: int) -> np.ndarray:
        """One item per user: a category from the user's taste, an item by popularity."""
        rng, out = self.rng, np.empty(len(users), dtype=np.int64)
        cum = self.taste[users].cumsum(axis=1)
        cats = (cum < rng.random((len(users), 1)) * cum[:, -1:]).sum(axis=1)
        cats = np.minimum(cats, self.spec.categories - 1)
        born = self.item_born <= day
        for c in np.unique(cats):
            members = np.flatnonzero((self.item_cat == c) & born)
            if len(members) == 0:
                members = np.flatnonzero(born)
            rows = np.flatnonzero(cats == c)
            p = self.item_pop[members] / self.item_pop[members].sum()
            out[rows] = rng.choice(members, len(rows), p=p)
        return out

    def day(self, d: int) -> dict[str, np.ndarray]:
        """The events of day index ``d`` as column arrays (user, item, type, second, value)."""
        rng, spec = self.rng, self.spec
        born = np.flatnonzero(self.user_born <= d)
        active = born[rng.random(len(born)) < self.user_activity[born]]
        lengths = 1 + rng.poisson(spec.session_mean - 1, len(active))
        start = rng.integers(0, 86_400 - 3_600, len(active))
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "type", "second")}
        prev = self.last_item[active]
        for step in range(int(lengths.max(initial=0))):
            live = lengths > step
            users, prev_live = active[live], prev[live]
            item = self._pick_by_taste(users, d)
            follow = (prev_live >= 0) & (rng.random(len(users)) < spec.p_next)
            related = self.related[prev_live[follow], rng.integers(0, 4, follow.sum())]
            ok = self.item_born[related] <= d
            item[np.flatnonzero(follow)[ok]] = related[ok]
            revisit, again = self._revisits(users)
            item[revisit] = again
            prev[live] = item
            # funnel: affinity in [0, 1] = taste for the item's category relative to the user's top;
            # a revisit shows intent: every step of the funnel is likelier
            affinity = self.taste[users, self.item_cat[item]] / self.taste[users].max(axis=1)
            second = start[live] + step * 90
            depth = np.zeros(len(users), dtype=np.int8)
            depth += rng.random(len(users)) < 0.10 + 0.5 * affinity + 0.3 * revisit  # click
            depth += (depth == 1) & (rng.random(len(users)) < 0.35 + 0.3 * revisit)  # add to cart
            depth += (depth == 2) & (rng.random(len(users)) < 0.5 + 0.3 * revisit)  # purchase
            self._remember(users, item, depth)
            for level in range(4):
                keep = depth >= level
                cols["user"].append(users[keep])
                cols["item"].append(item[keep])
                cols["type"].append(np.full(keep.sum(), level, dtype=np.int8))
                cols["second"].append(second[keep] + 10 * level)
        self.last_item[active] = prev
        return {k: np.concatenate(v) if v else np.array([], dtype=np.int64) for k, v in cols.items()}


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pa.array(np.char.add(prefix, np.char.zfill(idx.astype(str), 6)))


def generate(spec: ShopSpec = ShopSpec()) -> Iterator[Day]:
    """Yield the shop's days in order; the same spec always yields the same tables."""
    shop = _Shop(spec)
    funnel = np.array(contracts.EVENT_TYPES[:4])
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        ev = shop.day(d)
        order = np.lexsort((ev["type"], ev["second"], ev["user"]))
        ev = {k: v[order] for k, v in ev.items()}
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        ts = np.datetime64(midnight.replace(tzinfo=None), "us") + ev["second"].astype("timedelta64[s]")
        price = shop.item_price[ev["item"]]
        value = np.where(ev["type"] >= 2, price, np.nan)
        events = pa.table(
            {
                "user_id": _ids("u", ev["user"]),
                "item_id": _ids("i", ev["item"]),
                "event_type": pa.array(funnel[ev["type"]]),
                "event_ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "value": pa.array(value, from_pandas=True),
                "session_id": pa.array(np.char.add(np.char.add("s", ev["user"].astype(str)), f"-{d}")),
            },
            schema=contracts.EVENTS,
        )
        live_items = np.flatnonzero(shop.item_born <= d)
        items = pa.table(
            {
                "item_id": _ids("i", live_items),
                "category": pa.array(np.char.add("cat", shop.item_cat[live_items].astype(str))),
                "brand": pa.array(np.char.add("brand", shop.item_brand[live_items].astype(str))),
                "price": pa.array(shop.item_price[live_items]),
                "title": pa.array(np.char.add("Item ", live_items.astype(str))),
                "text": pa.array(np.char.add("cat", shop.item_cat[live_items].astype(str))),
                "release_year": pa.nulls(len(live_items), pa.int32()),
                "available": pa.array(shop.item_available[live_items]),
            },
            schema=contracts.ITEMS,
        )
        live_users = np.flatnonzero(shop.user_born <= d)
        users = pa.table(
            {
                "user_id": _ids("u", live_users),
                "age": pa.array(shop.user_age[live_users]),
                "gender": pa.array(shop.user_gender[live_users]),
                "occupation": pa.array(shop.user_job[live_users]),
            },
            schema=contracts.USERS,
        )
        yield Day(day.isoformat(), events, items, users)


def purchase_odds(spec: ShopSpec, day: int, samples: int = 1000) -> dict[tuple[str, str], float]:
    """The shop's own expectation of the purchases on day index ``day``: for every (user_id,
    item_id) bought in at least one of ``samples`` simulations of that day (each from the
    latent state at the end of the day before, with its own seed), the share of them in which
    the user buys the item.

    Ranking a user's items by it is the best list any recommender could learn from this shop
    (up to the sampling noise, which lowers it): a ceiling for the benchmarks, not a model.
    """
    shop = _Shop(spec)
    for d in range(day):
        shop.day(d)
    counts: dict[tuple[int, int], int] = {}
    for s in range(samples):
        sim = copy.deepcopy(shop)
        sim.rng = np.random.default_rng((spec.seed, day, s))
        ev = sim.day(day)
        bought = ev["type"] == 3
        pairs = np.unique(np.stack([ev["user"][bought], ev["item"][bought]]), axis=1)
        for u, i in pairs.T.tolist():
            counts[u, i] = counts.get((u, i), 0) + 1
    if not counts:
        return {}
    users, items = np.array(list(counts)).T
    return dict(zip(zip(_ids("u", users).to_pylist(), _ids("i", items).to_pylist()),
                    (c / samples for c in counts.values())))
