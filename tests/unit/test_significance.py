"""The paired bootstrap over users, on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe.errors import DataError
from recpipe.evaluation import evaluate, paired_bootstrap, per_user


def test_identical_lists_give_the_interval_zero_zero():
    a = np.random.default_rng(0).random(500)
    out = paired_bootstrap(a, a.copy(), level=0.9)
    assert (out["low"], out["high"], out["mean"]) == (0.0, 0.0, 0.0)
    assert out["level"] == 0.9 and out["users"] == 500


def test_a_constant_shift_per_user_gives_that_shift():
    b = np.random.default_rng(1).random(300)
    out = paired_bootstrap(b + 0.125, b, level=0.95)
    assert out["low"] == pytest.approx(0.125) and out["high"] == pytest.approx(0.125)


def test_the_interval_matches_the_normal_approximation_of_a_mean():
    rng = np.random.default_rng(2)
    n, mu, sigma = 4000, 0.02, 0.3
    d = rng.normal(mu, sigma, n)
    out = paired_bootstrap(d, np.zeros(n), level=0.9, resamples=2000, seed=5)
    half = 1.6449 * d.std() / np.sqrt(n)  # z(0.95) · standard error
    assert out["low"] == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert out["high"] == pytest.approx(d.mean() + half, abs=0.15 * half)
    assert paired_bootstrap(d, np.zeros(n), 0.5)["high"] - paired_bootstrap(d, np.zeros(n), 0.5)["low"] < 2 * half


def test_same_seed_same_interval_and_chunking_does_not_change_it(monkeypatch):
    a, b = np.random.default_rng(3).random((2, 1000))
    first = paired_bootstrap(a, b, seed=9)
    monkeypatch.setattr("recpipe.evaluation.significance.CHUNK_CELLS", 1000)  # one resample at a time
    assert paired_bootstrap(a, b, seed=9) == first


def test_misaligned_inputs_are_refused():
    with pytest.raises(DataError, match="aligned"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match="level"):
        paired_bootstrap(np.zeros(3), np.zeros(3), level=1.0)


def test_per_user_ndcg_averages_to_ndcg_and_names_users():
    truth = pd.DataFrame({"u": [1, 1, 2, 3], "i": [10, 11, 20, 30]})
    recs = pd.DataFrame({"u": [1, 1, 2, 2, 9], "i": [11, 12, 21, 20, 10], "r": [1, 2, 1, 2, 1]})
    cols = dict(col_user="u", col_item="i", col_rank="r")
    values = per_user(truth, recs, 2, **cols)
    ideal2 = 1 + 1 / np.log2(3)
    assert list(values.index) == [1, 2, 3]  # user 3 has no list: 0; user 9 has no truth: left out
    np.testing.assert_allclose(values.to_numpy(), [1 / ideal2, (1 / np.log2(3)) / 1, 0.0])
    assert values.mean() == pytest.approx(evaluate(truth, recs, 2, **cols)["ndcg@2"])


def test_many_users_are_resampled_in_random_blocks_with_the_same_spread(monkeypatch):
    monkeypatch.setattr("recpipe.evaluation.significance.MAX_UNITS", 500)  # blocks of ~8 users
    rng = np.random.default_rng(4)
    n, sigma = 4000, 0.3
    d = rng.normal(0.01, sigma, n)
    out = paired_bootstrap(d, np.zeros(n), level=0.9, resamples=2000, seed=6)
    half = 1.6449 * d.std() / np.sqrt(n)
    assert out["users"] == n and out["mean"] == pytest.approx(d.mean())
    assert out["low"] == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert out["high"] == pytest.approx(d.mean() + half, abs=0.15 * half)
    b = rng.random(n)
    shifted = paired_bootstrap(b + 0.125, b)
    assert shifted["low"] == pytest.approx(0.125) and shifted["high"] == pytest.approx(0.125)
