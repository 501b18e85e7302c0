"""Top-k scoring: order, ties, exclusions and blocked items."""

import numpy as np

from recpipe.models.popularity import Popularity
from recpipe.scoring import top_k


class Fixed(Popularity):
    """Per-user scores from a matrix, to drive top_k exactly."""

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def score(self, users, n_items):
        return self.matrix[users]


def test_top_k_orders_breaks_ties_and_excludes():
    model = Fixed([[0.1, 0.9, 0.5, 0.9, 0.0], [1.0, 0.2, 0.3, 0.4, 0.5]])
    out = top_k(model, np.array([0, 1]), 5, 3,
                exclude=(np.array([1]), np.array([0])),  # user 1 bought item 0
                blocked=np.array([False, False, False, False, True]))  # item 4 unavailable
    rows = list(zip(*[out[c].to_pylist() for c in ("user_idx", "item_idx", "rank")]))
    # user 0: 0.9 (item 1) ties 0.9 (item 3) → lower index first, then 0.5 (item 2)
    # user 1: item 0 excluded, item 4 blocked → 0.4 (3), 0.3 (2), 0.2 (1)
    assert rows == [(0, 1, 1), (0, 3, 2), (0, 2, 3), (1, 3, 1), (1, 2, 2), (1, 1, 3)]


def test_users_with_everything_excluded_get_fewer_rows():
    model = Fixed([[0.3, 0.2]])
    out = top_k(model, np.array([0]), 2, 2, exclude=(np.array([0]), np.array([1])))
    assert out["item_idx"].to_pylist() == [0]
    assert out["rank"].to_pylist() == [1]
