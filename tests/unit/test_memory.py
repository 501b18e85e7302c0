"""Training memory is estimated before training: a run that cannot fit fails with a
ResourceLimit naming the parameter to change, never with an out-of-memory traceback."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from recpipe.errors import ConfigError, ResourceLimit
from recpipe.models import FitConfig, TrainingData, keras_fit, memory
from recpipe.models.sasrec import SASRec

GIB = 2**30


def test_sasrec_terms_follow_the_documented_formula():
    # V = 1001, d = 8, L = 10, B = 4, b = 2, h = 1, K = 16, N = 500, W = 60
    terms = memory.sasrec_terms(n_items=1000, n_interactions=500, n_windows=60, max_len=10, dim=8, blocks=2,
                                heads=1, batch_size=4, sampled=True, negatives=16)
    params = 1001 * 8 + 10 * 8 + 2 * (6 * 64 + 12 * 8)
    assert terms == {
        "parameters": 24 * params,
        "data": 32 * 500 + 24 * 60 * 10,
        "activations": 4 * 4 * 10 * (24 * 2 * 8 + 8 * 8) + 16 * 2 * 1 * 4 * 10 * 10,
        "loss": 12 * 4 * 10 * 33 + 16 * 16 * 8,
        "validation": 12 * 1024 * 1001,  # chunks of min(1024, 2**26 // V) users

    }
    full = memory.sasrec_terms(n_items=1000, n_interactions=500, n_windows=60, max_len=10, dim=8, blocks=2,
                               heads=1, batch_size=4, sampled=False, negatives=16)
    assert full["loss"] == 12 * 4 * 10 * 1001
    million = memory.sasrec_terms(n_items=10**6, n_interactions=1, n_windows=1, max_len=10, dim=8, blocks=2,
                                  heads=1, batch_size=4, sampled=True, negatives=16)
    assert million["validation"] == 12 * (2**26 // (10**6 + 1)) * (10**6 + 1)


def test_the_issue_catalog_with_the_full_softmax_is_refused_naming_the_loss():
    # 55,810 items, batch 1,024 × 50 positions: the full softmax alone is ~128 GiB
    terms = memory.sasrec_terms(n_items=55_810, n_interactions=84_000, n_windows=2_000, max_len=50, dim=64,
                                blocks=2, heads=1, batch_size=1024, sampled=False, negatives=256)
    with pytest.raises(ResourceLimit, match="largest part is loss: set loss=sampled") as err:
        memory.check("sasrec", terms, (16 * GIB, "test"))
    assert isinstance(err.value, ConfigError)  # not retried by the DAG, exit 2 on the CLI
    sampled = memory.sasrec_terms(n_items=55_810, n_interactions=84_000, n_windows=2_000, max_len=50, dim=64,
                                  blocks=2, heads=1, batch_size=1024, sampled=True, negatives=256)
    assert memory.check("sasrec", sampled, (16 * GIB, "test")) < 2 * GIB


def test_mf_terms_and_sizes():
    assert memory.mf_terms(n_users=10, n_items=20, n_interactions=100, dim=4, batch_size=8, negatives=3) == {
        "parameters": 24 * (30 * 4 + 20), "data": 24 * 100, "activations": 4 * 8 * 4 * (16 + 8)}
    assert memory.parse_size("8G") == 8 * GIB and memory.parse_size("512MiB") == 512 * 2**20
    assert memory.parse_size("1000") == 1000
    with pytest.raises(ResourceLimit):
        memory.parse_size("lots")


def test_available_memory_is_read_from_the_machine_or_the_override(monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)
    have, source = memory.available_bytes()
    assert have > 0 and source
    monkeypatch.setenv(memory.ENV, "3G")
    assert memory.available_bytes() == (3 * GIB, memory.ENV)


def shop() -> TrainingData:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 8)
    items = rng.integers(0, 5000, len(users))
    return TrainingData(users, items, np.ones(len(users), np.float32), 50, 5000,
                        np.bincount(items, minlength=5000).astype(np.float32),
                        np.tile(np.arange(8, dtype=np.int64), 50))


@pytest.mark.parametrize("name", ["sasrec", "mf"])
def test_a_run_that_cannot_fit_fails_before_training_starts(name, monkeypatch):
    from recpipe.models import model_class

    monkeypatch.setenv(memory.ENV, "1M")
    model = model_class(name)()
    with pytest.raises(ResourceLimit, match="only 0.0 GiB are available") as err:
        model.fit(shop(), FitConfig(epochs=1, embedding_dim=8))
    assert "RECPIPE_MEMORY_LIMIT" in str(err.value)
    assert model.model is None  # nothing was built, let alone trained


def test_an_out_of_memory_error_during_fit_becomes_a_resource_limit():
    class Exhausted(keras.Model):
        def fit(self, *args, **kwargs):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[51200,55810]")

    model = Exhausted(name="sasrec")
    with pytest.raises(ResourceLimit, match="ran out of memory .*shape\\[51200,55810\\].*loss=sampled"):
        keras_fit.fit(model, tf.data.Dataset.range(1), None, 1, optimizer=keras.optimizers.Adam(), loss=None)


def test_sampled_loss_is_the_softmax_over_target_and_shared_negatives():
    from recpipe.models.sasrec import next_item_loss

    rng = np.random.default_rng(1)
    table = rng.normal(size=(6, 3)).astype(np.float32)  # 5 items + padding row
    hidden = rng.normal(size=(1, 3, 3)).astype(np.float32)
    targets = np.array([[0, 2, 5]], np.int32)  # position 0 is padding: no loss there
    full = next_item_loss(hidden, targets, table, 5, False, 0, tf.constant([0, 0], tf.int64))
    logits = hidden[0, 1:] @ table[1:].T
    expected = np.mean([np.log(np.exp(z).sum()) - z[t - 1] for z, t in zip(logits, [2, 5])])
    np.testing.assert_allclose(float(full), expected, rtol=1e-5)
    sampled = next_item_loss(hidden, targets, table, 5, True, 64, tf.constant([0, 0], tf.int64))
    assert sampled.dtype == tf.float32 and 0 < float(sampled) < float(full) + np.log(64)


def test_sasrec_defaults_adapt_max_len_and_loss():
    from recpipe.models.sasrec import auto_max_len, sampled_loss

    assert auto_max_len(np.array([3] * 96 + [400] * 4)) == 3  # a few long histories do not set it
    assert auto_max_len(np.arange(1, 1001)) == 50 and auto_max_len(np.array([1])) == 2
    assert auto_max_len(np.array([5] * 100)) == 5
    assert not sampled_loss("auto", 1682) and sampled_loss("auto", 18_357)
    assert sampled_loss("sampled", 10) and not sampled_loss("full", 10**6)
    with pytest.raises(ConfigError):
        sampled_loss("bce", 10)


def test_sasrec_learns_with_the_sampled_loss():
    from tests.unit.test_sasrec import N_ITEMS, N_USERS, LENGTH, walks

    keras_fit.setup_device(3)
    model = SASRec(max_len=LENGTH, dropout=0.2)  # a toy world of 12 items: the default 0.5 is for real catalogs
    summary = model.fit(walks(), FitConfig(embedding_dim=16, epochs=20, batch_size=16, learning_rate=0.01, seed=3,
                                           loss="sampled", shared_negatives=6))
    assert summary["objective"] == "sampled"
    users = np.arange(N_USERS)
    top3 = np.argsort(-model.score(users, N_ITEMS), axis=1)[:, :3]
    assert (top3 == ((users % N_ITEMS + LENGTH) % N_ITEMS)[:, None]).any(axis=1).mean() >= 0.9


def test_an_mf_step_regularises_and_updates_only_the_rows_of_its_batch():
    from recpipe.models import mf

    x = {"user": np.array([0, 1, 1], np.int32), "item": np.array([2, 3, 5], np.int32)}
    y = np.array([1.0, 0.0, 1.0], np.float32)
    losses = {}
    for l2 in (0.0, 1.0):
        keras_fit.setup_device(0)  # the same initial weights for both
        model = mf.build(n_users=50, n_items=40, dim=4, l2=l2)
        model.compile(optimizer=keras_fit.LazyAdam(0.1), loss="binary_crossentropy")
        before = [model.get_layer(n).embeddings.numpy() for n in ("user_embedding", "item_embedding")]
        losses[l2] = float(model.train_on_batch(x, y))
        after = [model.get_layer(n).embeddings.numpy() for n in ("user_embedding", "item_embedding")]
        for rows, old, new in zip(([0, 1], [2, 3, 5]), before, after):
            others = np.setdiff1d(np.arange(len(old)), rows)
            np.testing.assert_array_equal(new[others], old[others])  # O(batch) per step, not O(table)
            assert (new[rows] != old[rows]).all(axis=1).all()
    u, v = before  # both models' initial weights: the l2 = 1 loss adds the mean squared norms of the batch's rows
    penalty = (u[x["user"]] ** 2).sum(1).mean() + (v[x["item"]] ** 2).sum(1).mean()
    np.testing.assert_allclose(losses[1.0] - losses[0.0], penalty, rtol=1e-3)
