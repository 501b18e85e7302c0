"""Ranking metrics against values worked out by hand (see each comment)."""

import math

import pandas as pd
import pytest

from recpipe.errors import DataError
from recpipe.evaluation import coverage, evaluate

# truth: A likes {1, 2, 3}; B likes {4}; C likes {5} but gets no recommendation.
TRUTH = pd.DataFrame({"user_id": ["A", "A", "A", "B", "C"], "item_id": [1, 2, 3, 4, 5]})
# A's top-3 is 1, 9, 3 (hits at ranks 1 and 3); B's list is 7, 4 (hit at rank 2);
# D is not in the truth and must not count.
RECS = pd.DataFrame({
    "user_id": ["A", "A", "A", "A", "B", "B", "D"],
    "item_id": [1, 9, 3, 2, 7, 4, 1],
    "rank": [1, 2, 3, 4, 1, 2, 1],
})


def test_every_metric_at_3_matches_hand_computation():
    m = evaluate(TRUTH, RECS, k=3)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_a = (1 + 1 / math.log2(4)) / idcg3  # hits at ranks 1 and 3
    ndcg_b = (1 / math.log2(3)) / 1.0  # hit at rank 2, one relevant item
    assert m["users"] == 3
    assert m["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["recall@3"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["hit_rate@3"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert m["ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 3)
    # AP@3: A = (1/1 + 2/3) / min(3, 3); B = (1/2) / min(1, 3)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 3 + 0.5) / 3)


def test_k_larger_than_the_lists():
    m = evaluate(TRUTH, RECS, k=10)
    # A now also hits item 2 at rank 4: all 3 relevant found
    assert m["recall@10"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["precision@10"] == pytest.approx((3 / 10 + 1 / 10) / 3)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_a = (1 + 1 / math.log2(4) + 1 / math.log2(5)) / idcg3
    assert m["ndcg@10"] == pytest.approx((ndcg_a + 1 / math.log2(3)) / 3)
    assert m["map@10"] == pytest.approx(((1 + 2 / 3 + 3 / 4) / 3 + 0.5) / 3)


def test_perfect_and_empty_rankings():
    perfect = TRUTH.assign(rank=TRUTH.groupby("user_id").cumcount() + 1)
    m = evaluate(TRUTH, perfect, k=5)
    for name in ("recall@5", "ndcg@5", "map@5", "hit_rate@5", "mrr@5"):
        assert m[name] == pytest.approx(1.0), name
    none = evaluate(TRUTH, RECS.iloc[0:0], k=5)
    assert none["ndcg@5"] == 0 and none["users"] == 3


def test_coverage_counts_distinct_items_in_top_k():
    # top-2 items: A → 1, 9; B → 7, 4; D → 1  → {1, 9, 7, 4} of a 10-item catalog
    assert coverage(RECS, n_items=10, k=2) == pytest.approx(0.4)


def test_missing_columns_and_bad_k_are_refused():
    with pytest.raises(DataError, match="rank"):
        evaluate(TRUTH, RECS.drop(columns="rank"), k=3)
    with pytest.raises(DataError, match="k must be"):
        evaluate(TRUTH, RECS, k=0)
    with pytest.raises(DataError, match="twice"):
        evaluate(TRUTH, pd.concat([RECS, RECS.iloc[:1]]), k=3)
