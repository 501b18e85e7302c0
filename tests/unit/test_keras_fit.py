"""keras_fit.fit: an epoch is one pass over the data, and a second fit can go on as compiled."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from recpipe.models import keras_fit


def line() -> tuple[keras.Model, tf.data.Dataset]:
    keras_fit.setup_device(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    return model, tf.data.Dataset.from_tensor_slices((x, 3 * x)).batch(16)  # 4 batches


def test_an_epoch_is_one_pass_and_fit_without_an_optimizer_continues_the_compiled_one():
    model, data = line()
    first = keras_fit.fit(model, data, None, 2, optimizer=keras.optimizers.SGD(0.1), loss="mse", patience=5)
    assert first["epochs"] == 2 and int(model.optimizer.iterations) == 2 * 4
    again = keras_fit.fit(model, data, None, 3, optimizer=None, patience=5)
    assert int(model.optimizer.iterations) == 5 * 4  # the same optimizer, its step count going on
    assert again["history"]["loss"][0] < first["history"]["loss"][-1]  # from the fitted weights, not anew


def test_an_endless_dataset_is_refused():
    model, data = line()
    with pytest.raises(ValueError, match="finite"):
        keras_fit.fit(model, data.repeat(), None, 1, optimizer=keras.optimizers.SGD(0.1), loss="mse")
