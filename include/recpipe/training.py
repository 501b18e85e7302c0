"""The training stage: features/dt=D → a candidate model in ``models/<name>/<version>/``.

Uses the GPU when TensorFlow sees one (several: ``MirroredStrategy``; mixed precision on
GPU), the CPU otherwise. Deterministic for a seed. Each epoch is logged with its metrics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

from recpipe import registry
from recpipe.config import RunParams
from recpipe.errors import DataError
from recpipe.models import TrainingData, model_class
from recpipe.models.base import item_feature_codes
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)

VALIDATION_SHARE = 0.05


def load_training_data(store: Store, dt: str) -> TrainingData:
    """The training view of ``features/dt=D``."""
    prefix = partition("features", dt)
    meta = store.manifest(prefix)["meta"]
    inter = store.read_table(prefix, "interactions")
    if inter.num_rows < 2:
        raise DataError(
            f"{prefix} has {inter.num_rows} interactions before {dt}: nothing to train on. The window "
            f"starting {meta['window']} has no validated days before {dt}; validate (or backfill) "
            f"earlier dates first, e.g. `recpipe validate --date {meta['window']}`."
        )
    items = store.read_table(prefix, "items", columns=["popularity", "category", "brand", "price"])
    bought = store.read_table(prefix, "purchased", columns=["user_idx", "item_idx"])
    key = inter["user_idx"].to_numpy().astype(np.int64) * meta["n_items"] + inter["item_idx"].to_numpy()
    bought_key = bought["user_idx"].to_numpy().astype(np.int64) * meta["n_items"] + bought["item_idx"].to_numpy()
    return TrainingData(
        users=inter["user_idx"].to_numpy(),
        items=inter["item_idx"].to_numpy(),
        weights=inter["weight"].to_numpy(),
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        popularity=items["popularity"].to_numpy(),
        last_ts=inter["last_ts"].cast("int64").to_numpy(),
        item_features=item_feature_codes(items),
        purchased=np.isin(key, bought_key),
    )


def dataset(data: TrainingData, params: RunParams, multitask: bool = False):
    """(train, validation) ``tf.data`` pipelines of ({"user", "item"}, label) batches.

    ``multitask``: the label is {"click": label, "purchase": label}, purchase being 1 for the
    positives in ``data.purchased`` (0 for all when it is None).

    Each positive pair brings ``params.negatives`` uniformly drawn items as negatives,
    drawn inside the graph per batch (seeded, so runs repeat exactly).
    """
    import tensorflow as tf

    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(data.users))
    n_val = max(1, int(len(order) * VALIDATION_SHARE))
    k, n_items = params.negatives, data.n_items

    def with_negatives(seed_offset: int):
        def fn(step, batch):
            users, items, bought = batch
            b = tf.shape(users)[0]
            neg = tf.random.stateless_uniform(
                (b * k,), seed=tf.stack([tf.constant(params.seed + seed_offset, tf.int64), step]),
                maxval=n_items, dtype=tf.int32,
            )
            all_users = tf.concat([users, tf.repeat(users, k)], 0)
            all_items = tf.concat([items, neg], 0)
            labels = tf.concat([tf.ones(b), tf.zeros(b * k)], 0)
            if multitask:
                labels = {"click": labels, "purchase": tf.concat([bought, tf.zeros(b * k)], 0)}
            return {"user": all_users, "item": all_items}, labels
        return fn

    purchased = np.zeros(len(data.users), np.float32) if data.purchased is None else data.purchased.astype(np.float32)

    def pipeline(idx: np.ndarray, shuffle: bool, seed_offset: int):
        ds = tf.data.Dataset.from_tensor_slices(
            (data.users[idx].astype(np.int32), data.items[idx].astype(np.int32), purchased[idx])
        )
        if shuffle:
            ds = ds.shuffle(len(idx), seed=params.seed, reshuffle_each_iteration=True)
        ds = ds.batch(params.batch_size).enumerate().map(with_negatives(seed_offset))
        return ds.prefetch(tf.data.AUTOTUNE)

    return pipeline(order[n_val:], True, 0), pipeline(order[:n_val], False, 1_000_003)


def _epoch_logger():
    import keras

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

    return EpochLogger


def __getattr__(name: str):  # EpochLogger subclasses a Keras class: build it on first use
    if name == "EpochLogger":
        return _epoch_logger()
    raise AttributeError(name)


def setup_device(seed: int) -> str:
    """Seed everything, pick the device; returns a description for the metadata."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return f"{len(gpus)} GPU(s): " + ", ".join(g.name for g in gpus)
    return "cpu"


def warm_start_from(store: Store, dt: str, params: RunParams) -> dict[str, str] | None:
    """The champion to continue from: the one serving before ``dt`` (point in time), if asked."""
    if not params.warm_start or params.model == "popularity":
        return None
    ref = registry.champion(store, params.model, before=dt)
    if ref is None:
        log.info("warm_start: no %s champion before %s yet, training from scratch", params.model, dt)
    else:
        log.info("warm_start: continuing from champion %s", ref["version"])
    return ref


def model_version(dt: str, params: RunParams) -> str:
    """Same date and parameters → same version: a re-run replaces its own candidate."""
    digest = hashlib.sha1(json.dumps([dt, params.as_dict()], sort_keys=True).encode()).hexdigest()[:8]
    return f"{dt}-{digest}"


def train(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Train a candidate of ``params.model`` on ``features/dt=D`` and save it; returns its ref."""
    import tensorflow as tf

    data = load_training_data(store, dt)
    device = setup_device(params.seed)
    log.info("training %s on %d interactions (%d users, %d items), device: %s",
             params.model, len(data.users), data.n_users, data.n_items, device)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    started = time.monotonic()
    initial = warm_start_from(store, dt, params)
    with strategy.scope():
        model = model_class(params.model)()
        summary = model.fit(data, params, registry.load(store, initial) if initial else None)
    seconds = time.monotonic() - started
    meta = {
        "dt": dt,
        "window_start": store.manifest(partition("features", dt))["meta"]["window"],
        "params": params.as_dict(),
        "seed": params.seed,
        "training": summary,
        "train_seconds": round(seconds, 2),
        "device": device,
        "warm_start_from": initial,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "versions": {"tensorflow": tf.__version__, "keras": __import__("keras").__version__,
                     "numpy": np.__version__},
    }
    ref = registry.save(store, model, model_version(dt, params), meta)
    log.info("trained %s in %.1fs: %s", ref["prefix"], seconds, summary)
    return ref
