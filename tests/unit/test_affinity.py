"""The category-affinity model: a user's category shares times popularity, derived by hand."""

from dataclasses import replace

import numpy as np

from recpipe.models import FitConfig, TrainingData
from recpipe.models.affinity import EPSILON, Affinity

# items 0, 1, 2 in category 7; items 3, 4 in category 9; item 5 without a category (0)
CATEGORY = np.array([7, 7, 7, 9, 9, 0], np.int32)
POPULARITY = np.array([1.0, 4.0, 2.0, 8.0, 2.0, 6.0])


def data(users, items, weights, n_users=3) -> TrainingData:
    features = np.stack([CATEGORY, np.zeros(6, np.int32), np.zeros(6, np.int32)], axis=1)
    return TrainingData(np.array(users), np.array(items), np.array(weights, np.float32), n_users, 6, POPULARITY,
                        item_features=features)


def test_scores_are_the_users_category_share_times_popularity():
    # user 0: weight 3 in category 7 (items 0, 2), 1 in category 9 (item 4); user 1: only category 9; user 2 none
    model = Affinity()
    model.fit(data([0, 0, 0, 1], [0, 2, 4, 3], [2.0, 1.0, 1.0, 5.0]), FitConfig())
    p = POPULARITY / POPULARITY.max()
    share0 = np.array([0.75, 0.75, 0.75, 0.25, 0.25, 0.0])
    share1 = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    scores = model.score(np.array([0, 1, 2]), 7)
    np.testing.assert_allclose(scores[:, :6], [(share0 + EPSILON) * p, (share1 + EPSILON) * p, EPSILON * p], rtol=1e-6)
    assert scores[0, 6] == -np.inf  # an item the model never saw
    # 0.75 · 4/8 > 0.25 · 8/8 > 0.75 · 2/8: the share weighs against popularity
    assert np.argsort(-scores[0])[:3].tolist() == [1, 3, 2]
    assert np.argsort(-scores[1])[:2].tolist() == [3, 4]
    np.testing.assert_array_equal(model.knows(np.array([0, 1, 2, 3])), [True, True, False, False])


def test_newer_histories_move_the_shares():
    model = Affinity()
    model.fit(data([0], [0], [1.0]), FitConfig())
    newer = model.with_history(data([0, 0, 2], [0, 3, 5], [1.0, 3.0, 1.0]))
    assert np.argmax(model.score(np.array([0]), 6)[0]) == 1  # category 7's most popular
    assert np.argmax(newer.score(np.array([0]), 6)[0]) == 3  # now 3/4 in category 9
    assert newer.knows(np.array([2]))[0] and np.argmax(newer.score(np.array([2]), 6)[0]) == 5  # the uncategorised


def test_newer_histories_bring_their_popularity():
    model = Affinity()
    model.fit(data([0], [0], [1.0]), FitConfig())
    later = np.array([1.0, 4.0, 9.0, 8.0, 2.0, 6.0])  # item 2 became the most popular of category 7
    newer = model.with_history(replace(data([0], [0], [1.0]), popularity=later))
    np.testing.assert_allclose(newer.score(np.array([0]), 6)[0], (np.r_[[1.0] * 3, [0.0] * 3] + EPSILON) * later / 9,
                               rtol=1e-6)
    assert np.argmax(model.score(np.array([0]), 6)[0]) == 1 and np.argmax(newer.score(np.array([0]), 6)[0]) == 2
