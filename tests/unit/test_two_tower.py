"""Two-tower on a toy shop: users like one category; new users and items are scored from features."""

from pathlib import Path

import numpy as np
import pytest

from recpipe.models import FitConfig
from recpipe.models import TrainingData, model_class
from recpipe.models.base import ITEM_FEATURES
from recpipe.models.two_tower import Trainer, TwoTower
from recpipe.models.keras_fit import setup_device

GROUPS, N_USERS, N_ITEMS, PER_USER = 4, 200, 80, 8
PARAMS = FitConfig(embedding_dim=16, epochs=12, batch_size=128, learning_rate=0.01, seed=4)


def shop(n_users: int = N_USERS) -> TrainingData:
    """User u likes only items of category u mod GROUPS (item i has category i mod GROUPS) and buys
    the first two of them; item features: the category code (1 + group), no brand, no price."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(n_users):
        picks = rng.choice(np.arange(u % GROUPS, N_ITEMS, GROUPS), PER_USER, replace=False)
        users += [u] * PER_USER
        items += picks.tolist()
        ts += list(range(PER_USER))
    users, items = np.array(users), np.array(items)
    features = np.zeros((N_ITEMS, len(ITEM_FEATURES)), np.int32)
    features[:, 0] = 1 + np.arange(N_ITEMS) % GROUPS
    bought = np.tile(np.arange(PER_USER) < 2, n_users)
    return TrainingData(users, items, np.ones(len(users), np.float32), n_users, N_ITEMS,
                        np.bincount(items, minlength=N_ITEMS).astype(np.float32), np.array(ts) * 10**6,
                        item_features=features, purchased=bought)


@pytest.fixture(scope="module")
def model():
    setup_device(PARAMS.seed)
    m = TwoTower()
    summary = m.fit(shop(), PARAMS)
    assert {"click_auc", "purchase_auc", "val_loss"} <= set(summary)
    return m


def share_in_own_group(scores: np.ndarray, users: np.ndarray, k: int = 5) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top % GROUPS == (users % GROUPS)[:, None]).mean())


def test_registered():
    assert model_class("two_tower") is TwoTower


def test_known_users_get_their_category(model):
    users = np.arange(N_USERS)
    scores = model.score(users, N_ITEMS)
    assert scores.shape == (N_USERS, N_ITEMS) and scores.dtype == np.float32
    assert share_in_own_group(scores, users) >= 0.9  # chance: 1 / GROUPS = 0.25
    assert model.knows(users).all()


def test_purchase_head_scores_bought_items_higher(model):
    data = shop()
    logits = model.logits(np.arange(N_USERS), N_ITEMS, task="purchase")
    pairs = logits[data.users, data.items]
    assert pairs[data.purchased].mean() > pairs[~data.purchased].mean()


def test_cold_start_user_is_scored_from_history_alone(model):
    # 20 users the model never saw, with histories: they still get their own category
    newer = model.with_history(shop(N_USERS + 20))
    fresh = np.arange(N_USERS, N_USERS + 20)
    assert share_in_own_group(newer.score(fresh, N_ITEMS), fresh) >= 0.75
    # and a user with nothing at all gets finite scores (an average user), not -inf
    assert np.isfinite(model.score(np.array([10_000]), N_ITEMS)).all()
    assert not model.knows(np.array([10_000])).any()


def test_new_items_are_scored_from_their_features(model):
    data = shop()
    features = np.concatenate([data.item_features, [[1 + g, 0, 0] for g in range(GROUPS)]]).astype(np.int32)
    grown = TrainingData(data.users, data.items, data.weights, N_USERS, N_ITEMS + GROUPS, data.popularity,
                         data.last_ts, item_features=features)
    scores = model.with_history(grown).score(np.arange(N_USERS), N_ITEMS + GROUPS)
    new = scores[:, N_ITEMS:]  # item N_ITEMS + g has category g
    assert np.isfinite(new).all()
    assert (np.argmax(new, axis=1) == np.arange(N_USERS) % GROUPS).mean() >= 0.9


def test_save_load_scores_identically(model, tmp_path: Path):
    model.save(tmp_path)
    loaded = TwoTower.load(tmp_path)
    users = np.arange(0, N_USERS, 7)
    np.testing.assert_allclose(loaded.score(users, N_ITEMS), model.score(users, N_ITEMS), rtol=1e-6)


def test_the_trained_graph_computes_the_scored_one(model):
    # fit trains a Trainer (user tower once per row, item tower once per distinct item) on the
    # layers of the model that is saved and scored: both give the same click and purchase logits
    rng = np.random.default_rng(1)
    users = np.arange(0, N_USERS, 9)
    items = rng.integers(0, N_ITEMS, (len(users), 5))
    out = Trainer(model.model, model.item_features)(
        {"user": users + 1, "history": model.histories[users], "item": items + 1}, training=False)
    for task in ("click", "purchase"):
        expected = model.logits(users, N_ITEMS, task=task)[np.arange(len(users))[:, None], items]
        np.testing.assert_allclose(np.asarray(out[task]), 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)
