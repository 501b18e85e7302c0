"""Ranking metrics against values worked out by hand (see each comment)."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe.errors import DataError
from recpipe.evaluation import auc, coverage, evaluate, novelty

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


def test_users_without_relevant_items_are_left_out_of_the_averages():
    # D has recommendations but nothing relevant: with or without D, the same numbers
    assert evaluate(TRUTH, RECS, k=3) == evaluate(TRUTH, RECS[RECS["user_id"] != "D"], k=3)


def test_equal_ranks_keep_table_order_and_never_exceed_k():
    # A's items 9 and 1 share rank 1: positions 9 → 1, 1 → 2, 3 → 3; at K=2 only 9 and 1 count
    tied = pd.DataFrame({"user_id": ["A", "A", "A"], "item_id": [9, 1, 3], "rank": [1, 1, 2]})
    m = evaluate(TRUTH[TRUTH["user_id"] == "A"], tied, k=2)
    assert m["precision@2"] == pytest.approx(1 / 2)
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["mrr@2"] == pytest.approx(1 / 2)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))  # IDCG over min(3, 2)
    assert m["map@2"] == pytest.approx((1 / 2) / 2)  # precision@2 of the hit, over min(3, 2)


def test_catalog_metrics_in_evaluate_and_arrow_input():
    pop = pd.DataFrame({"item_id": [1, 2, 3, 4, 7, 9], "count": [8, 4, 2, 1, 1, 0]})  # Σ = 16
    m = evaluate(pa.Table.from_pandas(TRUTH), pa.Table.from_pandas(RECS), k=2, n_items=10, popularity=pop)
    assert m["coverage@2"] == pytest.approx(0.4)
    # A → 1, 9: (−log2(8/16) + −log2(1/16)) / 2 = 2.5 (item 9's 0 counts as 1); B → 7, 4: 4; D → 1: 1
    assert m["novelty@2"] == pytest.approx((2.5 + 4 + 1) / 3)
    assert m["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # A hits 1, B hits 4
    assert novelty(RECS, pop, k=1) == pytest.approx((1 + 4 + 1) / 3)  # A → 1, B → 7, D → 1


def test_auc_counts_ties_as_half():
    # positives 0.8, 0.3 vs negatives 0.8, 0.1: 0.5 (tie) + 1 + 0 + 1 over 4 pairs
    assert auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.8, 0.3, 0.1])) == pytest.approx(0.625)
    assert auc(np.array([True, False]), np.array([2.0, 1.0])) == 1.0
    assert math.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))  # no negative: undefined


def test_auc_per_user_averages_users_with_both_classes():
    users = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([1, 0, 0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.1, 0.9, 0.3])
    # a: 0.5 vs {0.5, 0.2} → (0.5 + 1) / 2; b: 0.1 vs 0.9 → 0; c: no negative → left out
    assert auc(labels, scores, users) == pytest.approx((0.75 + 0) / 2)
    # pooled: 0.5 → 1.5 of 3, 0.1 → 0, 0.3 → 1 (beats 0.2 only): 2.5 of 9 pairs
    assert auc(labels, scores) == pytest.approx(2.5 / 9)


def test_auc_refuses_bad_input():
    with pytest.raises(DataError, match="aligned"):
        auc(np.array([1, 0]), np.array([0.1]))
    with pytest.raises(DataError, match="NaN"):
        auc(np.array([1, 0]), np.array([0.1, np.nan]))
    with pytest.raises(DataError, match="labels"):
        auc(np.array([2, 0]), np.array([0.1, 0.2]))


def test_missing_columns_and_bad_k_are_refused():
    with pytest.raises(DataError, match=r"recommendations table lacks column\(s\) \['rank'\]"):
        evaluate(TRUTH, RECS.drop(columns="rank"), k=3)
    with pytest.raises(DataError, match=r"truth table lacks column\(s\) \['item_id'\]"):
        evaluate(TRUTH.drop(columns="item_id"), RECS, k=3)
    with pytest.raises(DataError, match=r"popularity table lacks column\(s\) \['count'\]"):
        evaluate(TRUTH, RECS, k=3, popularity=pd.DataFrame({"item_id": [1]}))
    with pytest.raises(DataError, match="k must be"):
        evaluate(TRUTH, RECS, k=0)
    with pytest.raises(DataError, match="twice"):
        evaluate(TRUTH, pd.concat([RECS, RECS.iloc[:1]]), k=3)
