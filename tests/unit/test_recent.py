"""The recent-activity heuristic against a hand-computed oracle."""

from __future__ import annotations

import numpy as np

from recpipe.models.recent import DAY_US, HALF_LIFE_DAYS, Recent

POP = np.array([5.0, 1.0, 9.0, 0.0, 3.0], np.float32)


def test_touched_items_rank_by_weighted_recency_then_untouched_by_popularity():
    # user 0: item 1 viewed today (weight 1), item 3 carted 3 days ago (weight 3) and viewed 6 days ago
    users, items = np.array([0, 0, 0, 1]), np.array([1, 3, 3, 4])
    weights, ts = np.array([1.0, 3.0, 1.0, 4.0]), np.array([6, 3, 0, 6]) * DAY_US
    m = Recent.from_events(users, items, weights, ts, n_users=3, popularity=POP)
    scores = m.score(np.array([0, 1, 2]), 5)
    decay = lambda days: 0.5 ** (days / HALF_LIFE_DAYS)  # noqa: E731
    expected_touched = {1: 1.0 * decay(0), 3: 3.0 * decay(3) + 1.0 * decay(6)}
    np.testing.assert_allclose(scores[0, [1, 3]], [expected_touched[1], expected_touched[3]], rtol=1e-6)
    base = POP / (POP.max() + 1) - 1
    np.testing.assert_allclose(scores[0, [0, 2, 4]], base[[0, 2, 4]], rtol=1e-6)
    assert list(np.argsort(-scores[0])) == [3, 1, 2, 0, 4]  # engaged-and-recent first, then by popularity
    np.testing.assert_allclose(scores[2], base, rtol=1e-6)  # no history: popularity order
    np.testing.assert_array_equal(m.knows(np.array([0, 1, 2, 7])), [True, True, False, False])


def test_touched_items_rank_by_the_purchase_propensity_learned_from_the_last_day():
    from recpipe.events import EVENT_TYPES, EVENT_WEIGHTS
    from recpipe.models.recent import MIN_PURCHASES

    view, cart, buy = (EVENT_TYPES.index(t) for t in ("view", "add_to_cart", "purchase"))
    n, carted_buyers, viewed_buyers = 200, 120, 10
    users, items, types, ts = [], [], [], []

    def event(u, i, t, day):
        users.append(u), items.append(i), types.append(t), ts.append(int(day * DAY_US))

    for u in range(n):  # day 0: item a viewed five times (more engagement), item b carted once
        a, b = u % 20, 20 + u % 20
        for j in range(5):
            event(u, a, view, 0.2 + 0.01 * j)
        event(u, b, cart, 0.3)
    for u in range(carted_buyers):  # day 1, the day learned from: carts turn into purchases, views seldom
        event(u, 20 + u % 20, buy, 1.5)
    for u in range(carted_buyers, carted_buyers + viewed_buyers):
        event(u, u % 20, buy, 1.5)
    users, items, types, ts = (np.array(v) for v in (users, items, types, ts))
    model = Recent.by_propensity(users, items, types, ts, until=2 * DAY_US, purchase=buy, n_types=len(EVENT_TYPES),
                                 n_users=n, popularity=np.ones(40, np.float32))
    idle = np.arange(carted_buyers + viewed_buyers, n)  # touched both on day 0, bought nothing since
    scores = model.score(idle, 40)
    a, b = idle % 20, 20 + idle % 20
    rows = np.arange(len(idle))
    # each group's features are identical, so the fit reproduces its purchase rate (up to the L2 pull)
    np.testing.assert_allclose(scores[rows, b], carted_buyers / n, atol=0.05)
    np.testing.assert_allclose(scores[rows, a], viewed_buyers / n, atol=0.05)
    weights = np.array([EVENT_WEIGHTS[EVENT_TYPES[t]] for t in types])
    engaged = Recent.from_events(users, items, weights, ts, n, np.ones(40, np.float32)).score(idle, 40)
    assert (engaged[rows, a] > engaged[rows, b]).all()  # engagement would put the viewed item first
    few = ~((types == buy) & (np.arange(len(types)) >= np.flatnonzero(types == buy)[MIN_PURCHASES - 1]))
    assert Recent.by_propensity(users[few], items[few], types[few], ts[few], 2 * DAY_US, buy, len(EVENT_TYPES), n,
                                np.ones(40, np.float32)) is None  # MIN_PURCHASES - 1 purchases: too few to learn
