"""MF fold-in: a user vector from a history the model was not trained on (frozen item embeddings)."""

import numpy as np

from recpipe.models import fold_in
from recpipe.models.base import TrainingData
from recpipe.models.sequences import last_items


def test_the_fold_in_vector_solves_its_regularised_least_squares():
    rng = np.random.default_rng(0)
    V = rng.standard_normal((40, 6)).astype(np.float32)
    b = rng.normal(0, 0.3, 40).astype(np.float32)
    hist = np.array([[-1, -1, 3, 8], [1, 2, 5, 9]])
    prior = np.stack([np.zeros(6), rng.standard_normal(6)]).astype(np.float32)
    u = fold_in.user_vectors(V, b, hist, prior)
    z = np.log(fold_in.TARGET / (1 - fold_in.TARGET))
    for row, h in enumerate(hist):
        h = h[h >= 0]
        w0 = fold_in.NEGATIVES * len(h) / len(V)

        def loss(x):
            return (((V[h] @ x + b[h] - z) ** 2).sum() + w0 * ((V @ x + b + z) ** 2).sum()
                    + fold_in.REG * ((x - prior[row]) ** 2).sum())

        grad = [(loss(u[row] + e) - loss(u[row] - e)) / 2e-3 for e in 1e-3 * np.eye(6)]
        np.testing.assert_allclose(grad, 0, atol=2e-3)  # a minimum: every direction is flat
        assert loss(u[row]) < loss(prior[row])


def test_a_folded_user_ranks_items_like_their_history_first():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((2, 8)) * 2
    V = np.concatenate([centres[0] + 0.3 * rng.standard_normal((20, 8)),
                        centres[1] + 0.3 * rng.standard_normal((20, 8))]).astype(np.float32)
    u = fold_in.user_vectors(V, np.zeros(40, np.float32), np.array([[21, 25, 33]]), np.zeros((1, 8), np.float32))
    top = np.argsort(-(V @ u[0]))[:10]
    assert (top >= 20).all()  # the cluster of the history's items


def test_active_users_and_last_items_follow_the_timestamps():
    data = TrainingData(users=np.array([0, 0, 0, 2, 2]), items=np.array([5, 1, 7, 3, 9]),
                        weights=np.ones(5, np.float32), n_users=3, n_items=10, popularity=np.ones(10),
                        last_ts=np.array([30, 10, 20, 5, 50]))
    assert fold_in.active_users(data, 40).tolist() == [2]
    assert fold_in.active_users(data, None).tolist() == [0, 2]
    assert last_items(data, np.array([0, 1, 2]), 9, 2).tolist() == [[7, 5], [-1, -1], [-1, 3]]  # item 9 ≥ n_items
