"""The propensity model learns what shoppers buy next from logs made to say it."""

from __future__ import annotations

import numpy as np

from recpipe.events import EVENT_TYPES
from recpipe.models import FitConfig, TrainingData
from recpipe.models.base import Events
from recpipe.models.propensity import DAY_US, LABEL_DAYS, Propensity

VIEW, CART, BUY = (EVENT_TYPES.index(t) for t in ("view", "add_to_cart", "purchase"))
N_USERS, N_ITEMS, DAYS = 400, 60, LABEL_DAYS + 2


def data(users, items, types, ts) -> TrainingData:
    users, items, types, ts = (np.asarray(a) for a in (users, items, types, ts))
    order = np.lexsort((ts, users))
    users, items, types, ts = users[order], items[order], types[order].astype(np.int8), ts[order].astype(np.int64)
    category = np.stack([np.arange(N_ITEMS) % 3 + 1, np.zeros(N_ITEMS), np.zeros(N_ITEMS)], axis=1).astype(np.int32)
    return TrainingData(users, items, np.ones(len(users)), N_USERS, N_ITEMS, np.ones(N_ITEMS), last_ts=ts,
                        item_features=category, events=Events(users, items, types, ts))


def test_carted_items_are_bought_far_more_often_than_viewed_ones_and_the_fit_says_so():
    rng = np.random.default_rng(0)
    rows = []
    for d in range(DAYS):  # every day each user views one item and carts another; the next day may buy either
        viewed, carted = rng.integers(0, N_ITEMS // 2, N_USERS), rng.integers(N_ITEMS // 2, N_ITEMS, N_USERS)
        for u in range(N_USERS):
            t = (d + 0.2) * DAY_US
            rows += [(u, viewed[u], VIEW, t), (u, carted[u], VIEW, t + 1), (u, carted[u], CART, t + 2)]
            if d and rng.random() < 0.5:
                rows.append((u, last_carted[u], BUY, t - 0.1 * DAY_US))
            if d and rng.random() < 0.05:
                rows.append((u, last_viewed[u], BUY, t - 0.1 * DAY_US))
        last_viewed, last_carted = viewed, carted
    model = Propensity()
    summary = model.fit(data(*zip(*rows)), FitConfig())
    assert summary["label"] == "purchase" and summary["touched_learnt"]
    scores = model.score(np.arange(N_USERS), N_ITEMS)
    u = np.arange(N_USERS)
    p_cart, p_view = (1 / (1 + np.exp(-scores[u, last])) for last in (last_carted, last_viewed))
    # yesterday's cart is bought half the time, yesterday's view one time in twenty
    assert abs(np.median(p_cart) - 0.5) < 0.1 and abs(np.median(p_view) - 0.05) < 0.04
    assert (scores[u, last_carted] > scores[u, last_viewed]).mean() > 0.95


def test_the_item_that_follows_the_last_one_is_the_discovery_it_learns():
    rng = np.random.default_rng(1)
    rows = []
    last = rng.integers(0, N_ITEMS, N_USERS)
    for d in range(DAYS):  # each day a user goes on from yesterday's item to the next one, and buys it 30 % of days
        for u in range(N_USERS):
            nxt, t = (last[u] + 1) % N_ITEMS, (d + 0.5) * DAY_US
            rows.append((u, nxt, VIEW, t))
            if rng.random() < 0.3:
                rows.append((u, nxt, BUY, t + 1))
            last[u] = nxt if rng.random() < 0.5 else rng.integers(0, N_ITEMS)
            rows.append((u, last[u], VIEW, t + 2))
    model = Propensity()
    summary = model.fit(data(*zip(*rows)), FitConfig())
    assert summary["untouched_learnt"]
    scores = model.score(np.arange(N_USERS), N_ITEMS)
    events = model.state
    touched = np.zeros((N_USERS, N_ITEMS), bool)
    touched[events.pair_users, events.pair_items] = True
    successor = (events.last_item + 1) % N_ITEMS
    fresh = ~touched[np.arange(N_USERS), successor]  # users who never touched their last item's successor
    assert fresh.sum() >= 50
    best_untouched = np.argmax(np.where(touched, -np.inf, scores), axis=1)
    assert (best_untouched[fresh] == successor[fresh]).mean() > 0.8


def test_without_purchases_or_days_it_falls_back_to_a_stated_prior():
    users, items = np.repeat(np.arange(N_USERS), 3), np.tile([0, 1, 2], N_USERS)
    ts = np.tile([0, 1, 2], N_USERS)  # one day, no purchases: nothing before any label day
    model = Propensity()
    summary = model.fit(data(users, items, np.full(len(users), VIEW), ts), FitConfig())
    assert not summary["touched_learnt"] and not summary["untouched_learnt"]
    scores = model.score(np.array([0]), N_ITEMS)[0]
    assert (scores[[0, 1, 2]] > np.delete(scores, [0, 1, 2]).max()).all()  # touched first
    assert scores[2] > scores[1] > scores[0]  # the latest touch first
