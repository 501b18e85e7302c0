"""Continual training: a model grows into a bigger vocabulary and starts from yesterday's weights."""

import numpy as np
import pytest

from recpipe.models import FitConfig
from recpipe.errors import ConfigError
from recpipe.models import TrainingData
from recpipe.models.base import grow_weights
from recpipe.models.mf import MatrixFactorization, build
from recpipe.models.keras_fit import setup_device

GROUPS = 8
PARAMS = FitConfig(embedding_dim=16, epochs=15, batch_size=256, learning_rate=0.01, seed=5)


def clustered(n_users: int, n_items: int, per_user: int, seed: int) -> TrainingData:
    """User u likes only items of its group (u mod GROUPS); ``per_user`` distinct items each."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        own = np.arange(u % GROUPS, n_items, GROUPS)
        users += [u] * per_user
        items += rng.choice(own, per_user, replace=False).tolist()
    users, items = np.array(users), np.array(items)
    return TrainingData(users, items, np.ones(len(users), np.float32), n_users, n_items,
                        np.bincount(items, minlength=n_items).astype(np.float32))


def test_grow_weights_copies_old_rows_and_keeps_new_ones():
    old, new = build(3, 4, 2), build(5, 6, 2)
    fresh_new_rows = new.get_layer("user_embedding").embeddings.numpy()[3:].copy()
    grown = grow_weights(new, old)
    assert sorted(grown) == ["item_bias/embeddings", "item_embedding/embeddings", "user_embedding/embeddings"]
    u_old, u_new = (m.get_layer("user_embedding").embeddings.numpy() for m in (old, new))
    assert np.array_equal(u_new[:3], u_old) and np.array_equal(u_new[3:], fresh_new_rows)
    v_old, v_new = (m.get_layer("item_embedding").embeddings.numpy() for m in (old, new))
    assert np.array_equal(v_new[:4], v_old)


@pytest.mark.parametrize("new", [lambda: build(5, 6, 4), lambda: build(2, 6, 2)],
                         ids=["other embedding_dim", "fewer users"])
def test_grow_weights_refuses_shapes_that_do_not_line_up(new):
    with pytest.raises(ConfigError, match="warm_start=false"):
        grow_weights(new(), build(3, 4, 2))


def epochs_to_reach(history: list[float], target: float) -> int:
    """1-based epoch at which the validation AUC first reaches ``target`` (len + 1: never)."""
    hits = [i for i, v in enumerate(history) if v >= target]
    return hits[0] + 1 if hits else len(history) + 1


def test_warm_start_reaches_scratch_quality_in_fewer_epochs():
    yesterday = clustered(300, 160, 12, seed=1)
    today = clustered(360, 200, 12, seed=2)  # 60 new users, 40 new items
    setup_device(PARAMS.seed)
    prior = MatrixFactorization()
    prior.fit(yesterday, PARAMS)
    setup_device(PARAMS.seed)
    scratch = MatrixFactorization().fit(today, PARAMS)["history"]["val_auc"]
    setup_device(PARAMS.seed)
    warm_model = MatrixFactorization()
    warm = warm_model.fit(today, PARAMS, initial=prior)["history"]["val_auc"]

    target = 0.98 * max(scratch)
    assert epochs_to_reach(warm, target) < epochs_to_reach(scratch, target)
    assert max(warm) >= target
    # the model grew: new users and items have rows and score like everyone else
    assert warm_model.score(np.array([359]), 200).shape == (1, 200)
    assert warm_model.knows(np.array([359])).all()
