"""Top-k scoring: order, ties, exclusions, blocked items and the logits fast path."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe.models.popularity import Popularity
from recpipe import scoring
from recpipe.scoring import select, top_k


class Fixed(Popularity):
    """Per-user scores from a matrix, to drive top_k exactly."""

    def __init__(self, matrix):
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def score(self, users, n_items):
        return self.matrix[users]


class Doubled(Fixed):
    """A logits model: ranked by the matrix, published as 2 × logit; score() is never needed."""

    def score(self, users, n_items):
        raise AssertionError("top_k must use logits/link")

    def logits(self, users, n_items):
        return self.matrix[users]

    def link(self, logits):
        return 2 * logits


def rows(table):
    return list(zip(*[table[c].to_pylist() for c in ("user_idx", "item_idx", "rank")]))


def test_top_k_orders_breaks_ties_and_excludes():
    model = Fixed([[0.1, 0.9, 0.5, 0.9, 0.0], [1.0, 0.2, 0.3, 0.4, 0.5]])
    out = top_k(model, np.array([0, 1]), 5, 3,
                exclude=(np.array([1]), np.array([0])),  # user 1 bought item 0
                blocked=np.array([False, False, False, False, True]))  # item 4 unavailable
    # user 0: 0.9 (item 1) ties 0.9 (item 3) → lower index first, then 0.5 (item 2)
    # user 1: item 0 excluded, item 4 blocked → 0.4 (3), 0.3 (2), 0.2 (1)
    assert rows(out) == [(0, 1, 1), (0, 3, 2), (0, 2, 3), (1, 3, 1), (1, 2, 2), (1, 1, 3)]
    assert out["score"].to_pylist() == pytest.approx([0.9, 0.9, 0.5, 0.4, 0.3, 0.2])


def test_ties_at_the_cut_keep_the_lowest_indices():
    # 0.7 (item 1) is first; items 0, 2, 3 tie at 0.5 for the second place → item 0
    out = top_k(Fixed([[0.5, 0.7, 0.5, 0.5, 0.1]]), np.array([0]), 5, 2)
    assert out["item_idx"].to_pylist() == [1, 0]


def test_users_with_everything_excluded_get_fewer_rows():
    model = Fixed([[0.3, 0.2], [0.1, 0.4]])
    out = top_k(model, np.array([0, 1]), 2, 2,
                exclude=(np.array([1, 0, 1]), np.array([0, 1, 1])))  # unsorted pairs
    assert rows(out) == [(0, 0, 1)]  # user 0 keeps item 0; user 1 bought both


def test_k_beyond_the_catalog_and_blocked_items():
    out = top_k(Fixed([[0.2, 0.1, 0.3]]), np.array([0]), 3, 10, blocked=np.array([False, True, False]))
    assert rows(out) == [(0, 2, 1), (0, 0, 2)]  # k becomes 3; item 1 blocked leaves 2 rows


def test_users_in_any_order_get_their_own_exclusions():
    model = Fixed([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    out = top_k(model, np.array([2, 0]), 3, 1, exclude=(np.array([0, 2]), np.array([0, 0])))
    # user 2: item 0 bought → 0.2 (item 1); user 0: item 0 bought → 0.8 (item 1)
    assert rows(out) == [(2, 1, 1), (0, 1, 1)]


def test_large_catalog_path_exact_with_and_without_ties():
    # 40 items: large enough for the grouped selection (k=3 → 4 items per group, 10 groups)
    distinct = (np.arange(40) * 7 % 40) / 40  # item j scores (7j mod 40)/40: 39 at j=17, 38 at 34, 37 at 11
    tied = np.zeros(40)
    tied[[30, 7, 12, 3]] = 1.0  # four-way tie for three places → items 3, 7, 12
    out = top_k(Fixed([distinct, tied]), np.array([0, 1]), 40, 3, blocked=np.arange(40) == 34)
    # user 0 without item 34: 17 (39), 11 (37), then 36/40 at j=28 (7·28 = 196 = 4·40 + 36)
    assert rows(out) == [(0, 17, 1), (0, 11, 2), (0, 28, 3), (1, 3, 1), (1, 7, 2), (1, 12, 3)]


def test_distinct_scores_never_need_the_exact_fallback(monkeypatch):
    def refuse(vals, k):
        raise AssertionError("fallback used")

    monkeypatch.setattr(scoring, "_exact", refuse)
    distinct = (np.arange(40) * 7 % 40).astype(np.float32)[None, :]
    assert select(distinct, 3).tolist() == [[17, 34, 11]]


def test_logits_models_rank_by_logits_and_publish_link_of_the_winners():
    model = Doubled([[0.1, -np.inf, 0.3, 0.2]])  # item 1 unknown to the model
    out = top_k(model, np.array([0]), 4, 4, exclude=(np.array([0]), np.array([3])))
    assert rows(out) == [(0, 2, 1), (0, 0, 2)]  # -inf logit dropped though link(-inf) is finite
    assert out["score"].to_pylist() == pytest.approx([0.6, 0.2])
    assert model.matrix[0, 3] == pytest.approx(0.2)  # exclusions never write into the model


def test_read_only_scores_are_not_modified():
    model = Popularity(np.array([3.0, 1.0, 2.0], dtype=np.float32))  # score() is a broadcast view
    out = top_k(model, np.array([0, 1]), 3, 2, exclude=(np.array([0]), np.array([0])))
    assert rows(out) == [(0, 2, 1), (0, 1, 2), (1, 0, 1), (1, 2, 2)]
    assert model.popularity.tolist() == [3.0, 1.0, 2.0]


def test_nan_scores_are_never_recommended():
    out = top_k(Fixed([[np.nan, 0.1, 0.2]]), np.array([0]), 3, 3)
    assert rows(out) == [(0, 2, 1), (0, 1, 2)]


def test_no_users():
    assert top_k(Fixed([[0.1]]), np.array([], dtype=int), 1, 5).num_rows == 0


@pytest.mark.parametrize("seed", range(6))
def test_select_matches_a_full_sort(seed):
    """Many ties, -inf and both sizes of catalog against sorting by (value desc, index asc)."""
    rng = np.random.default_rng(seed)
    n, k = [(30, 4), (500, 10), (1003, 7)][seed % 3]
    vals = rng.integers(0, 6 if seed < 3 else 10_000, (8, n)).astype(np.float32)
    vals[rng.random(vals.shape) < 0.3] = -np.inf
    want = np.array([np.lexsort((np.arange(n), -row))[:k] for row in vals])
    assert np.array_equal(select(vals.copy(), k), want)


def test_matrix_factorization_publishes_its_own_scores():
    mf = pytest.importorskip("recpipe.models.mf")
    model = mf.MatrixFactorization(mf.build(3, 40, 4))  # random initial embeddings
    out = top_k(model, np.arange(3), 40, 5)
    score = model.score(np.arange(3), 40)
    users, items = out["user_idx"].to_numpy(), out["item_idx"].to_numpy()
    assert np.array_equal(out["score"].to_numpy(), score[users, items])  # bit for bit
    for u in range(3):
        assert items[users == u].tolist() == np.lexsort((np.arange(40), -score[u]))[:5].tolist()


def _ranked(lists: dict[int, list[int]], scores: dict[int, list[float]] | None = None) -> pa.Table:
    rows = [(u, i, r + 1, (scores or {}).get(u, [1.0] * len(items))[r]) for u, items in lists.items()
            for r, i in enumerate(items)]
    return pa.table({"user_idx": pa.array([r[0] for r in rows], pa.int32()),
                     "item_idx": pa.array([r[1] for r in rows], pa.int32()),
                     "rank": pa.array([r[2] for r in rows], pa.int16()),
                     "score": pa.array([r[3] for r in rows], pa.float32())})


def test_blend_puts_the_touched_recent_items_first_then_the_models_without_repeats():
    primary = _ranked({1: [10, 11, 12, 13, 14], 2: [20, 21, 22, 23, 24]})
    # user 1 touched 12 and 30; user 2's recent list is popularity only (negative scores: untouched)
    repeats = _ranked({1: [12, 30, 40], 2: [50, 51, 52]}, {1: [2.0, 0.5, -0.2], 2: [-0.1, -0.3, -0.5]})
    out = scoring.blend(primary, repeats, slots=3, k=4)
    lists = {u: out.filter(pc.equal(out["user_idx"], u)) for u in (1, 2)}
    assert lists[1]["item_idx"].to_pylist() == [12, 30, 10, 11]
    assert lists[1]["repeat"].to_pylist() == [True, True, False, False]
    assert lists[2]["item_idx"].to_pylist() == [20, 21, 22, 23] and not any(lists[2]["repeat"].to_pylist())
    assert out["rank"].to_pylist() == [1, 2, 3, 4, 1, 2, 3, 4]
    empty = scoring.blend(primary.slice(0, 0), repeats.slice(0, 0), slots=3, k=4)
    assert empty.num_rows == 0 and empty.column_names == out.column_names
    no_slots = scoring.blend(primary, repeats, slots=0, k=4)
    assert no_slots.drop_columns(["repeat"]).equals(primary.filter(pc.less_equal(primary["rank"], 4)))


def test_beside_repeat_slots_the_models_slots_hold_only_untouched_items():
    from recpipe.models.recent import DAY_US, Recent
    # user 0 bought 1 and touched 2, 3, 4 (4 the most, 3 the latest); the model likes touched items best
    model = Fixed([[0.1, 0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    recent = Recent.from_events(np.array([0, 0, 0, 0]), np.array([2, 3, 4, 4]), np.array([1.0, 1.0, 3.0, 1.0]),
                                np.array([0, 2, 1, 1]) * DAY_US, n_users=1, popularity=np.arange(8, dtype=np.float32))
    bought, touched = (np.array([0]), np.array([1])), (np.array([0, 0, 0]), np.array([2, 3, 4]))
    users = np.array([0])
    repeats = top_k(recent, users, 8, 2, bought)
    discovery = top_k(model, users, 8, 4, scoring.union_pairs(bought, touched))
    out = scoring.blend(discovery, repeats, slots=2, k=4)
    strength = {i: float(recent.score(users, 8)[0, i]) for i in (2, 3, 4)}
    best_touched = sorted(strength, key=strength.get, reverse=True)[:2]
    untouched = [i for i in np.argsort(-model.matrix[0], kind="stable") if i not in (1, 2, 3, 4)]
    assert out["item_idx"].to_pylist() == best_touched + untouched[:2]  # [4, 3] then the model's 5, 6
    assert out["repeat"].to_pylist() == [True, True, False, False]
    # discovery running out (one untouched item left): the user's further touched items fill the list
    all_repeats = top_k(recent, users, 8, 4, bought)
    short = scoring.blend(discovery.slice(0, 1), all_repeats, slots=2, k=4)
    assert short["item_idx"].to_pylist() == best_touched + untouched[:1] + [2]
    assert short["repeat"].to_pylist() == [True, True, False, True]
    plain = scoring.blend(top_k(model, users, 8, 4, bought), repeats, slots=0, k=4)
    assert plain["item_idx"].to_pylist() == [2, 3, 4, 5]  # without repeat slots the model's own order
    assert scoring.union_pairs(None, None)[0].size == 0


def test_reasons_cite_the_users_item_most_similar_to_each_recommendation():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    users = np.array([2, 5, 9])
    history = np.array([[-1, 4, 7, 11], [3, 3, 20, 25], [-1, -1, -1, -1]])  # user 9: no history
    scores = rng.random((10, 30)).astype(np.float32)
    out = top_k(Fixed(scores), np.array([9, 5, 2]), 30, 6, reasons=scoring.Reasons(users, history, vectors))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for user, item, reason in zip(*(out[c].to_pylist() for c in ("user_idx", "item_idx", "reason_idx"))):
        own = [h for h in history[np.searchsorted(users, user)] if h >= 0]
        if item in own:
            assert reason == item  # touched: the item itself
        elif not own:
            assert reason == -1
        else:
            others = [h for h in own if h != item]
            assert reason == others[int(np.argmax(unit[others] @ unit[item]))]
    assert set(out.filter(pc.equal(out["user_idx"], 9))["reason_idx"].to_pylist()) == {-1}


def test_reasons_without_vectors_cite_only_touched_items_and_the_fallback_none():
    users, history = np.array([0, 1]), np.array([[1, 3], [-1, 0]])
    model = Fixed([[0.1, 0.9, 0.5, 0.8], [0.9, 0.1, 0.2, 0.3]])
    personal, fallback = scoring.top_k_with_fallback(model, model, users, 4, 2, personal=np.array([True, False]),
                                                      reasons=scoring.Reasons(users, history, None))
    assert list(zip(personal["item_idx"].to_pylist(), personal["reason_idx"].to_pylist())) == [(1, 1), (3, 3)]
    assert fallback["reason_idx"].to_pylist() == [-1, -1]
