"""One contract, every registered model (the pattern of tensorflow/recommenders'
``factorized_top_k_test.py``): whatever the model, fit → save → load scores identically,
the same seed trains the same model, and users or items it never saw are handled."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from recpipe import config, scoring
from recpipe.models import REGISTRY, FitConfig, TrainingData, model_class
from recpipe.models.base import ITEM_FEATURES
from recpipe.models.keras_fit import setup_device

N_USERS, N_ITEMS = 40, 30
CONFIG = FitConfig(epochs=2, embedding_dim=8, negatives=2, batch_size=64, learning_rate=0.01, seed=3)
PERSONALISED = [name for name in REGISTRY if name != "popularity"]  # popularity ranks alike for everyone


def shop(seed: int = 0) -> TrainingData:
    """Each user touches 6 distinct items, over time; items carry content codes."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(N_USERS), 6)
    items = np.concatenate([rng.choice(N_ITEMS, 6, replace=False) for _ in range(N_USERS)])
    return TrainingData(
        users=users, items=items, weights=np.ones(len(users)), n_users=N_USERS, n_items=N_ITEMS,
        popularity=np.bincount(items, minlength=N_ITEMS).astype(np.float64),
        last_ts=np.tile(np.arange(6, dtype=np.int64) * 1_000_000, N_USERS),
        item_features=rng.integers(1, 20, (N_ITEMS, len(ITEM_FEATURES))).astype(np.int32),
        purchased=rng.random(len(users)) < 0.2,
    )


def trained(name: str):
    setup_device(CONFIG.seed)
    model = model_class(name)()
    model.fit(shop(), CONFIG)
    return model


fitted = functools.cache(trained)  # one shared fit per model for the tests that only read it


@pytest.fixture(params=sorted(REGISTRY))
def model(request):
    return request.param, fitted(request.param)


def test_the_registry_offers_every_model_a_run_can_ask_for():
    assert sorted(REGISTRY) == sorted(config.MODELS)
    assert all(model_class(name).name == name for name in REGISTRY)


def test_scores_have_the_promised_shape_and_unseen_items_score_minus_infinity(model):
    _, m = model
    users = np.arange(N_USERS)
    scores = m.score(users, N_ITEMS + 3)
    assert scores.shape == (N_USERS, N_ITEMS + 3) and scores.dtype == np.float32
    assert np.isfinite(scores[:, :N_ITEMS]).all()
    assert (scores[:, N_ITEMS:] == -np.inf).all()


def test_save_then_load_scores_identically(model, tmp_path):
    name, m = model
    m.save(tmp_path)
    loaded = model_class(name).load(tmp_path)
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(loaded.score(users, N_ITEMS), m.score(users, N_ITEMS))
    strangers = np.arange(N_USERS + 2)  # two the model never saw
    np.testing.assert_array_equal(loaded.knows(strangers), m.knows(strangers))


def test_the_same_seed_trains_the_same_model(model):
    name, m = model
    again = trained(name)
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(again.score(users, N_ITEMS), m.score(users, N_ITEMS))


@pytest.mark.parametrize("name", PERSONALISED)
def test_a_personalised_model_knows_its_users_and_strangers_get_the_fallback(name):
    m = fitted(name)
    users = np.array([0, N_USERS - 1, N_USERS, N_USERS + 50])
    np.testing.assert_array_equal(m.knows(users), [True, True, False, False])
    fallback = fitted("popularity")
    personal, other = scoring.top_k_with_fallback(m, fallback, users, N_ITEMS, 5)
    assert sorted(set(personal["user_idx"].to_pylist())) == [0, N_USERS - 1]
    strangers = scoring.top_k(fallback, users[2:], N_ITEMS, 5)
    assert other.equals(strangers)


def test_popularity_ranks_every_user_alike_by_past_interactions():
    m = fitted("popularity")
    scores = m.score(np.array([0, 5, N_USERS + 7]), N_ITEMS)
    expected = shop().popularity.astype(np.float32)
    np.testing.assert_array_equal(scores, np.tile(expected, (3, 1)))
    assert m.knows(np.array([0, N_USERS + 7])).all()
