"""What every Keras model of recpipe shares: the device, the pointwise input pipeline, and one
compile → fit → early stopping → per-epoch log loop.

TensorFlow is imported with this module: only Keras models (and the training stage, when
it runs) import it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from recpipe.models.base import FitConfig, TrainingData

log = logging.getLogger(__name__)

#: Share of the positives (with their own negatives) held out for early stopping.
VALIDATION_SHARE = 0.05


def setup_device(seed: int) -> str:
    """Seed everything, pick the device; returns a description for the metadata.

    GPUs: mixed precision (float16 compute, float32 outputs). Several GPUs: the caller
    trains under :func:`strategy`. No GPU: the CPU, in float32.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return f"{len(gpus)} GPU(s): " + ", ".join(g.name for g in gpus)
    return "cpu"


def strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy to build and train a model under.

    ``devices`` None (the pipeline): ``MirroredStrategy`` over every GPU when there are
    several, the default strategy otherwise. ``devices`` given: ``MirroredStrategy`` over
    exactly those when there are several (e.g. ``["/cpu:0", "/cpu:1"]`` after splitting
    the CPU into logical devices: the multi-GPU code path, tested without a GPU).
    """
    if devices is None:
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(list(devices)) if len(devices) > 1 else tf.distribute.get_strategy()


def versions() -> dict[str, str]:
    """The library versions a model artifact records."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


class EpochLogger(keras.callbacks.Callback):
    """One log line per epoch: the metrics and how long it took."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs, self.started = epochs, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        log.info("epoch %d/%d %.1fs %s", epoch + 1, self.epochs, time.monotonic() - self.started, metrics)


def pointwise(data: TrainingData, config: FitConfig, multitask: bool = False,
              grouped: bool = False) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, validation) ``tf.data`` pipelines of ({"user", "item"}, label) batches.

    Each positive pair brings ``config.negatives`` uniformly drawn items as negatives,
    drawn inside the graph per batch (seeded, so runs repeat exactly). ``multitask``: the
    label is {"click": label, "purchase": label}, purchase being 1 for the positives in
    ``data.purchased`` (0 for all when it is None).

    Flat (default): B·(1 + k) rows, user (B(1+k),), item (B(1+k),), label (B(1+k),): the B
    positives, then their negatives. ``grouped``: one row per positive, user (B,), item
    (B, 1 + k) and label (B, 1 + k), column 0 the positive and the rest its negatives (the
    same draws as flat), so a model can compute a user's side once per positive.
    """
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(data.users))
    n_val = max(1, int(len(order) * VALIDATION_SHARE))
    k, n_items = config.negatives, data.n_items

    def with_negatives(seed_offset: int):
        def fn(step, batch):
            users, items, bought = batch
            b = tf.shape(users)[0]
            neg = tf.random.stateless_uniform(
                (b * k,), seed=tf.stack([tf.constant(config.seed + seed_offset, tf.int64), step]),
                maxval=n_items, dtype=tf.int32,
            )
            if grouped:
                all_users = users
                all_items = tf.concat([items[:, None], tf.reshape(neg, (b, k))], 1)
                labels = tf.concat([tf.ones((b, 1)), tf.zeros((b, k))], 1)
                bought = tf.concat([bought[:, None], tf.zeros((b, k))], 1)
            else:
                all_users = tf.concat([users, tf.repeat(users, k)], 0)
                all_items = tf.concat([items, neg], 0)
                labels = tf.concat([tf.ones(b), tf.zeros(b * k)], 0)
                bought = tf.concat([bought, tf.zeros(b * k)], 0)
            if multitask:
                labels = {"click": labels, "purchase": bought}
            return {"user": all_users, "item": all_items}, labels
        return fn

    purchased = np.zeros(len(data.users), np.float32) if data.purchased is None else data.purchased.astype(np.float32)

    def pipeline(idx: np.ndarray, shuffle: bool, seed_offset: int):
        ds = tf.data.Dataset.from_tensor_slices(
            (data.users[idx].astype(np.int32), data.items[idx].astype(np.int32), purchased[idx])
        )
        if shuffle:
            ds = ds.shuffle(len(idx), seed=config.seed, reshuffle_each_iteration=True)
        ds = ds.batch(config.batch_size).enumerate().map(with_negatives(seed_offset))
        return ds.prefetch(tf.data.AUTOTUNE)

    return pipeline(order[n_val:], True, 0), pipeline(order[:n_val], False, 1_000_003)


def fit(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None, epochs: int, *,
        optimizer: keras.optimizers.Optimizer, loss: Any, metrics: Any = None, loss_weights: Any = None,
        patience: int = 2) -> dict[str, Any]:
    """Compile ``model``, fit it with early stopping on the validation loss (the training loss
    without validation data), restore the best epoch's weights; returns :func:`summarize`."""
    monitor = "val_loss" if val is not None else "loss"
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights)
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        verbose=0,
        shuffle=False,  # tf.data already shuffles
        callbacks=[keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
                   EpochLogger(epochs)],
    )
    return summarize(history, monitor)


def summarize(history: Any, monitor: str = "val_loss") -> dict[str, Any]:
    """A Keras ``History`` as fit's summary: epochs run, the best epoch (by ``monitor``,
    the one EarlyStopping restored), every metric at that epoch, and the per-epoch history."""
    hist = {k: [float(x) for x in v] for k, v in history.history.items()}
    best = int(np.argmin(hist[monitor]))
    return {"epochs": len(hist["loss"]), "best_epoch": best + 1, **{k: v[best] for k, v in hist.items()},
            "history": hist}
