"""Beyond-accuracy metrics against brute-force definitions, and the MMR re-ranker."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe import reranking
from recpipe.evaluation import BEYOND_ACCURACY, beyond_accuracy
from recpipe.evaluation.metrics import distributional_coverage, gini, intra_list_diversity, personalization

RNG = np.random.default_rng(0)
N_ITEMS, K = 30, 5
LISTS = {u: RNG.choice(N_ITEMS, K, replace=False) for u in range(12)}
RECS = pd.DataFrame([(u, i, r + 1) for u, items in LISTS.items() for r, i in enumerate(items)],
                    columns=["user", "item", "pos"])
CATS = pd.DataFrame({"item": np.arange(N_ITEMS), "cat": [f"c{i % 4}" if i % 7 else None for i in range(N_ITEMS)]})
COLS = dict(col_user="user", col_item="item", col_rank="pos")


def test_distributional_coverage_and_gini_match_their_definitions():
    counts = np.bincount(RECS["item"], minlength=N_ITEMS).astype(float)
    p = counts[counts > 0] / counts.sum()
    assert distributional_coverage(RECS, K, **COLS) == pytest.approx(-(p * np.log2(p)).sum())
    # Gini: mean absolute difference over all pairs / (2 · mean)
    expected = np.abs(counts[:, None] - counts[None, :]).mean() / (2 * counts.mean())
    assert gini(RECS, N_ITEMS, K, **COLS) == pytest.approx(expected)
    uniform = pd.DataFrame({"user": np.arange(N_ITEMS), "item": np.arange(N_ITEMS), "pos": 1})
    assert gini(uniform, N_ITEMS, 1, **COLS) == pytest.approx(0.0)
    assert distributional_coverage(uniform, 1, **COLS) == pytest.approx(np.log2(N_ITEMS))


def test_intra_list_diversity_is_the_share_of_pairs_in_different_categories():
    label = dict(zip(CATS["item"], CATS["cat"]))
    per_user = [np.mean([label[a] is None or label[b] is None or label[a] != label[b]
                         for a, b in itertools.combinations(items, 2)]) for items in LISTS.values()]
    got = intra_list_diversity(RECS, CATS, K, col_category="cat", **COLS)
    assert got == pytest.approx(np.mean(per_user))


def test_personalization_is_one_minus_the_mean_jaccard_of_all_pairs():
    sets = [set(v) for v in LISTS.values()]
    jac = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    assert personalization(RECS, K, **COLS) == pytest.approx(1 - np.mean(jac))
    sampled = personalization(RECS, K, max_pairs=40, seed=1, **COLS)  # fewer pairs than 66: drawn
    assert abs(sampled - (1 - np.mean(jac))) < 0.1
    same = pd.DataFrame({"user": np.repeat([1, 2], 3), "item": np.tile([4, 5, 6], 2), "pos": np.tile([1, 2, 3], 2)})
    assert personalization(same, 3, **COLS) == 0.0


def test_beyond_accuracy_reports_what_its_inputs_allow():
    pop = pd.DataFrame({"item": np.arange(N_ITEMS), "count": np.arange(N_ITEMS) + 1})
    everything = beyond_accuracy(RECS, K, N_ITEMS, pop, CATS, col_category="cat", **COLS)
    assert set(everything) == {f"{n}@{K}" for n in BEYOND_ACCURACY}
    assert set(beyond_accuracy(RECS, K, **COLS)) == {f"distributional_coverage@{K}", f"personalization@{K}"}


def _ranked(scores: dict[int, list[tuple[int, float]]]) -> pa.Table:
    rows = [(u, i, r + 1, s) for u, items in scores.items() for r, (i, s) in enumerate(items)]
    u, i, r, s = zip(*rows)
    return pa.table({"user_idx": pa.array(u, pa.int32()), "item_idx": pa.array(i, pa.int32()),
                     "rank": pa.array(r, pa.int32()), "score": pa.array(s, pa.float32())})


def test_mmr_trades_relevance_for_new_categories():
    codes = reranking.category_codes(pa.array(["a", "a", "a", "b", None]))
    ranked = _ranked({0: [(0, 1.0), (1, 0.95), (2, 0.9), (3, 0.2), (4, 0.1)], 1: [(3, 0.5)]})
    keep = reranking.mmr(ranked, codes, 3, 0.0)
    assert keep.filter(pa.compute.equal(keep["user_idx"], 0))["item_idx"].to_pylist() == [0, 1, 2]
    # λ = 0.5, relevance scaled to [0, 1]: after item 0 (a), item 3 (b: 0.5·0.11) beats item 1 (a: 0.5·0.94 − 0.5)
    mixed = reranking.mmr(ranked, codes, 3, 0.5)
    assert mixed.to_pydict() == {"user_idx": [0, 0, 0, 1], "item_idx": [0, 3, 4, 3], "rank": [1, 2, 3, 1],
                                 "score": pytest.approx([1.0, 0.2, 0.1, 0.5])}
    assert reranking.rerank([ranked], pa.array(["a"] * 5), 3, 0.0)[0] is ranked  # off: untouched
    assert reranking.depth(10, 0.0) == 10 and reranking.depth(10, 0.3) == 10 * reranking.POOL
