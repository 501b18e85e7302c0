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

from recpipe.errors import ResourceLimit
from recpipe.models.base import FitConfig, TrainingData

log = logging.getLogger(__name__)

#: Share of the positives (with their own negatives) held out for early stopping.
VALIDATION_SHARE = 0.05
#: tf.data options of the training and validation pipelines: no autotuning (their steps are
#: gathers, cheap without it; destroying an iterator waited for the autotuner's pass).
PIPELINE = tf.data.Options()
PIPELINE.autotune.enabled = False


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


@keras.saving.register_keras_serializable(package="recpipe")
class LazyAdam(keras.optimizers.Adam):
    """Adam that updates only the embedding rows a batch touched (TF Addons' "LazyAdam").

    Keras 3's Adam makes an embedding's sparse gradient dense and rewrites the whole table
    and its two moments on every step: O(rows × d) per step, which dominates training once
    a table has a million rows. Here a sparse gradient updates its rows' moments and weights
    only (rows not in the batch keep their moments); dense gradients get Keras's Adam.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, at = tf.unique(gradient.indices)
        g = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), at, tf.shape(rows)[0])
        step = tf.cast(self.iterations + 1, dtype)
        b1, b2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = tf.cast(learning_rate, dtype) * tf.sqrt(1 - tf.pow(b2, step)) / (1 - tf.pow(b1, step))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = b1 * tf.gather(_tf_variable(m), rows) + (1 - b1) * g
        v_rows = b2 * tf.gather(_tf_variable(v), rows) + (1 - b2) * tf.square(g)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


def _tf_variable(variable):
    return getattr(variable, "value", variable)


def index_batches(n: int, batch_size: int, seed: int, shuffle: bool,
                  lengths: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches of the row numbers 0 … n-1 (int32 vectors), in a new seeded order every epoch
    when ``shuffle``.

    Models gather their columns by these: memory is one int32 permutation per epoch, where
    ``Dataset.shuffle(n)`` would hold a buffer entry (some hundred bytes) per row.
    ``lengths`` (n,): each epoch, rows are shuffled, then ordered by length (stably), cut
    into batches, and the batches shuffled: a batch holds rows of about one length, so a
    sequence model can drop the padding all its rows share.
    """
    batches = -(-n // batch_size)

    def cut(perm, batch_order):
        return tf.data.Dataset.from_tensor_slices(batch_order).map(
            lambda i: perm[i * batch_size: tf.minimum((i + 1) * batch_size, n)])

    if not shuffle:
        return cut(tf.range(n, dtype=tf.int32), tf.range(batches, dtype=tf.int32))
    size = None if lengths is None else tf.constant(np.asarray(lengths, np.int32))

    def epoch(s):
        seed_of = lambda k: tf.stack([s, tf.constant(seed + k, tf.int64)])  # noqa: E731
        perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int32), seed=seed_of(0))
        if size is None:
            return cut(perm, tf.range(batches, dtype=tf.int32))
        perm = tf.gather(perm, tf.argsort(tf.gather(size, perm), stable=True))
        return cut(perm, tf.random.experimental.stateless_shuffle(tf.range(batches, dtype=tf.int32), seed=seed_of(1)))

    epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return epochs.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(batches))


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
        columns = (tf.constant(data.users[idx].astype(np.int32)), tf.constant(data.items[idx].astype(np.int32)),
                   tf.constant(purchased[idx]))
        ds = index_batches(len(idx), config.batch_size, config.seed, shuffle)
        ds = ds.map(lambda rows: tuple(tf.gather(c, rows) for c in columns)).enumerate().map(with_negatives(seed_offset))
        return ds.prefetch(tf.data.AUTOTUNE)

    return pipeline(order[n_val:], True, 0), pipeline(order[:n_val], False, 1_000_003)


def fit(model: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset | None, epochs: int, *,
        optimizer: keras.optimizers.Optimizer | None, loss: Any = None, metrics: Any = None,
        loss_weights: Any = None, patience: int = 2, monitor: str | None = None, mode: str = "min",
        callbacks: tuple = ()) -> dict[str, Any]:
    """Compile ``model`` (``optimizer`` None: train it as compiled, its optimizer state and
    traced step kept, e.g. more epochs after early stopping), fit it with early stopping on
    ``monitor`` (default: the validation loss, the training loss without validation data;
    ``mode`` "max" for a metric to raise, which one of ``callbacks`` may add to the epoch's
    logs), restore the best epoch's weights; returns :func:`summarize`.

    An epoch is one pass over ``train`` (finite: its cardinality known, as
    :func:`index_batches` makes it), read through one iterator for the whole fit, with
    tf.data's autotuning off (:data:`PIPELINE`): destroying an iterator waits for the
    autotuner's running pass, which stalled each epoch's first step 0.1–1 s on 2 cores (an
    ML-100K sasrec epoch is 19 steps of about 95 ms) and the end of a fit up to 50 s.

    Running out of memory (TensorFlow's ``ResourceExhaustedError``, ``MemoryError``) is
    raised as :class:`~recpipe.errors.ResourceLimit` naming the parameters to lower.
    """
    monitor = monitor or ("val_loss" if val is not None else "loss")
    if optimizer is not None:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, loss_weights=loss_weights)
    steps = int(train.cardinality())
    if steps < 1:
        raise ValueError(f"fit needs a finite, non-empty training dataset (cardinality {steps}).")
    try:
        history = model.fit(
            train.with_options(PIPELINE).repeat(),
            steps_per_epoch=steps,
            validation_data=None if val is None else val.with_options(PIPELINE),
            epochs=epochs,
            verbose=0,
            shuffle=False,  # tf.data already shuffles
            callbacks=[*callbacks,
                       keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                                     restore_best_weights=True),
                       EpochLogger(epochs)],
        )
    except (tf.errors.ResourceExhaustedError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResourceLimit(
            f"training {model.name} ran out of memory ({type(exc).__name__}: {first}). Lower batch_size, max_len or "
            "embedding_dim, or for sasrec set loss=sampled or fewer shared_negatives.") from exc
    return summarize(history, monitor, mode)


def summarize(history: Any, monitor: str = "val_loss", mode: str = "min") -> dict[str, Any]:
    """A Keras ``History`` as fit's summary: epochs run, the best epoch (by ``monitor``,
    the one EarlyStopping restored), every metric at that epoch, and the per-epoch history."""
    hist = {k: [float(x) for x in v] for k, v in history.history.items()}
    best = int(np.argmax(hist[monitor]) if mode == "max" else np.argmin(hist[monitor]))
    return {"epochs": len(hist["loss"]), "best_epoch": best + 1, **{k: v[best] for k, v in hist.items()},
            "history": hist}
