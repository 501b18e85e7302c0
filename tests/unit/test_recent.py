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
