"""Two-tower model with click and purchase heads, in Keras 3; scores cold-start users and items.

User tower: id embedding ⊕ mean of the embeddings of the user's last ``HISTORY`` items →
dense layers → u (d). Item tower: id embedding ⊕ embeddings of its hashed content features
(category, brand, price bucket; ``base.item_feature_codes``) → dense layers → v (d).

    click    = σ(u · v + b_item)             (ranking score: every user × item is one matmul)
    purchase = σ(P(u) · v + b'_item)          (P: a dense projection of the user vector)

Row 0 of each id embedding is "unknown": during training ids are dropped to 0 with
probability ``ID_DROPOUT``, so a user the model never saw is scored from their history (or,
with none, as an average user) and an item it never saw from its content features alone.
Pointwise training with ``config.negatives`` uniform negatives per positive, as MF; the
purchase head learns from ``TrainingData.purchased``. The target item is masked out of the
history fed with it, so the model learns to predict, not to copy the history. Training
runs on grouped rows (:class:`Trainer`): the user tower runs once per positive and its
vector scores the positive and its negatives alike (the same history, the positive masked
out); the item tower runs once per distinct item of the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from recpipe.models import keras_fit
from recpipe.models.base import (FEATURE_BUCKETS, ITEM_FEATURES, FitConfig, Recommender, TrainingData, grow_weights,
                                 pad_items, sigmoid)
from recpipe.models.sequences import histories, known_only, pad_left

log = logging.getLogger(__name__)

HISTORY = 20  # recent items pooled into the user tower
ID_DROPOUT = 0.1  # share of training ids replaced by "unknown" (row 0), for cold start
SCORE_BATCH = 4096


def build(n_users: int, n_items: int, dim: int, history: int = HISTORY, seed: int = 0):
    """Inputs user (B,), item (B,) [index + 1, 0 = unknown], history (B, H) [item + 1, 0 = pad],
    item_features (B, F) → {"click": (B,), "purchase": (B,)} probabilities.

    Sub-models for scoring: layers "user_vector" (B, d), "purchase_vector" (B, d), "item_vector" (B, d).
    """
    user = keras.Input(shape=(), dtype="int32", name="user")
    hist = keras.Input(shape=(history,), dtype="int32", name="history")
    item = keras.Input(shape=(), dtype="int32", name="item")
    feats = keras.Input(shape=(len(ITEM_FEATURES),), dtype="int32", name="item_features")

    item_ids = layers.Embedding(n_items + 1, dim, name="item_embedding")
    drop = IdDropout(ID_DROPOUT, seed=seed, name="id_dropout")
    known_item = drop(item)
    # user tower
    real = ops.expand_dims(ops.cast(ops.not_equal(hist, 0), "float32"), -1)  # (B, H, 1)
    pooled = ops.sum(item_ids(hist) * real, axis=1) / ops.maximum(ops.sum(real, axis=1), 1.0)
    u = layers.Concatenate()([layers.Embedding(n_users + 1, dim, name="user_embedding")(drop(user)), pooled])
    u = layers.Dense(2 * dim, activation="relu", name="user_dense")(u)
    u = layers.Dense(dim, name="user_vector")(u)
    # item tower
    parts = [item_ids(known_item)] + [
        layers.Embedding(FEATURE_BUCKETS, dim, name=f"item_{name}")(feats[:, j]) for j, name in enumerate(ITEM_FEATURES)]
    v = layers.Dense(2 * dim, activation="relu", name="item_dense")(layers.Concatenate()(parts))
    v = layers.Dense(dim, name="item_vector")(v)
    # heads
    p = layers.Dense(dim, name="purchase_vector")(u)
    click = layers.Add()([layers.Dot(axes=-1)([u, v]), layers.Embedding(n_items + 1, 1, embeddings_initializer="zeros",
                                                                          name="click_bias")(known_item)])
    buy = layers.Add()([layers.Dot(axes=-1)([p, v]), layers.Embedding(n_items + 1, 1, embeddings_initializer="zeros",
                                                                        name="purchase_bias")(known_item)])
    out = {"click": layers.Activation("sigmoid", dtype="float32", name="click")(layers.Flatten()(click)),
           "purchase": layers.Activation("sigmoid", dtype="float32", name="purchase")(layers.Flatten()(buy))}
    return keras.Model({"user": user, "history": hist, "item": item, "item_features": feats}, out, name="two_tower")


class Trainer(keras.Model):
    """What :meth:`TwoTower.fit` trains: the layers (the very weights) of a :func:`build`
    model on grouped batches, user (B,), history (B, H), item (B, C) → {"click": (B, C),
    "purchase": (B, C)} probabilities; column 0 of item is a positive, the rest its negatives.

    The user tower runs once per row, its vector shared by the row's C items (B user towers
    per batch, not B·C); the item tower runs once per distinct item of the batch (on a
    small catalog far fewer than B·C), id dropout too: an item dropped to "unknown" is so
    for the whole batch. Only :func:`build`'s model is saved and scored.
    """

    def __init__(self, model: keras.Model, item_features: np.ndarray, **kwargs):
        super().__init__(name="two_tower_training", **kwargs)
        self.net = model
        # row i + 1: item i's feature codes; row 0 (unknown) none
        self.features = tf.constant(np.concatenate([np.zeros((1, item_features.shape[1]), np.int32), item_features]))

    def call(self, x, training=False):
        layer = self.net.get_layer
        drop = layer("id_dropout")
        # ids as int32: Keras builds a subclassed model under a distribution strategy from float32 placeholders
        user, hist, items = (tf.cast(x[k], tf.int32) for k in ("user", "history", "item"))
        # user tower, once per row (as build's graph)
        emb = layer("item_embedding")(hist)
        real = tf.expand_dims(tf.cast(tf.not_equal(hist, 0), emb.dtype), -1)
        pooled = tf.reduce_sum(emb * real, axis=1) / tf.maximum(tf.reduce_sum(real, axis=1), 1.0)
        u = tf.concat([layer("user_embedding")(drop(user, training=training)), pooled], -1)
        u = layer("user_vector")(layer("user_dense")(u))
        p = layer("purchase_vector")(u)
        # item tower, once per distinct item
        distinct, where = tf.unique(tf.reshape(items, [-1]))
        known = drop(distinct, training=training)
        feats = tf.gather(self.features, distinct)
        parts = [layer("item_embedding")(known)] + [
            layer(f"item_{name}")(feats[:, j]) for j, name in enumerate(ITEM_FEATURES)]
        v = layer("item_vector")(layer("item_dense")(tf.concat(parts, -1)))
        shape = tf.shape(items)

        def per_row(values):  # (U, ...) → (B, C, ...)
            return tf.reshape(tf.gather(values, where), tf.concat([shape, tf.shape(values)[1:]], 0))

        v = per_row(v)
        click = tf.einsum("bd,bcd->bc", u, v) + per_row(layer("click_bias")(known)[:, 0])
        buy = tf.einsum("bd,bcd->bc", p, v) + per_row(layer("purchase_bias")(known)[:, 0])
        return {"click": tf.sigmoid(tf.cast(click, "float32")), "purchase": tf.sigmoid(tf.cast(buy, "float32"))}


@keras.saving.register_keras_serializable(package="recpipe")
class IdDropout(keras.layers.Layer):
    """In training, replace an id by 0 ("unknown") with probability ``rate``."""

    def __init__(self, rate: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=None):
        if not training or self.rate == 0:
            return ids
        keep = keras.random.uniform(keras.ops.shape(ids), seed=self.generator) >= self.rate
        return keras.ops.where(keep, ids, keras.ops.zeros_like(ids))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class TwoTower(Recommender):
    name = "two_tower"

    def __init__(self, model=None, histories_: np.ndarray | None = None, item_features: np.ndarray | None = None):
        self.model = model
        self.histories = histories_  # (n_users, HISTORY) int32, item + 1, 0 = padding
        self.item_features = item_features  # (n_items, F) int32
        self._towers: dict[str, Any] = {}  # scoring sub-models and item vectors, built once

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        self._set_tables(data)
        hist = tf.constant(self.histories)

        def add_tables(x, y):  # x["item"] (B, C): the positive, then its negatives
            h = tf.gather(hist, x["user"])
            h = tf.where(h == x["item"][:, :1] + 1, 0, h)  # don't show the positive in its history
            return {"user": x["user"] + 1, "item": x["item"] + 1, "history": h}, y

        train, val = (ds.map(add_tables) for ds in keras_fit.pointwise(data, config, multitask=True, grouped=True))
        self.model = build(data.n_users, data.n_items, config.embedding_dim, HISTORY, config.seed)
        self._towers = {}
        if initial is not None:
            log.info("two_tower: warm start, grown weights: %s", grow_weights(self.model, initial.model) or "none")
        has_purchases = data.purchased is not None and bool(data.purchased.any())
        return keras_fit.fit(
            Trainer(self.model, self.item_features), train, val, config.epochs,
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss={"click": "binary_crossentropy", "purchase": "binary_crossentropy"},
            loss_weights={"click": 1.0, "purchase": 1.0 if has_purchases else 0.0},
            metrics={"click": [keras.metrics.AUC(name="auc")], "purchase": [keras.metrics.AUC(name="auc")]},
        )

    def _set_tables(self, data: TrainingData) -> None:
        self.histories = pad_left(histories(data), HISTORY)
        self.item_features = (data.item_features if data.item_features is not None
                              else np.zeros((data.n_items, len(ITEM_FEATURES)), np.int32)).astype(np.int32)

    def with_history(self, data: TrainingData, since: int | None = None) -> "TwoTower":
        """The same network, scoring from newer histories and catalog (new users and items too);
        items it has no id embedding for are left out of the histories (scored from content)."""
        other = TwoTower(self.model)
        other._set_tables(known_only(data, self.trained_items()))  # the catalog's features stay whole
        return other

    def trained_items(self) -> int:
        return self.model.get_layer("item_embedding").input_dim - 1

    def item_vectors(self) -> np.ndarray:
        """The item tower's output v for every item of the catalog table, new ones too: (n, d)."""
        return self._items()[0]

    def _tower(self, inputs: tuple[str, str], output: str):
        """A sub-model of the network from two input layers to one layer's output (cached)."""
        if output not in self._towers:
            m = self.model
            self._towers[output] = keras.Model([m.get_layer(i).output for i in inputs], m.get_layer(output).output)
        return self._towers[output]

    def _vectors(self, users: np.ndarray, purchase: bool = False) -> np.ndarray:
        """(len(users), d) user vectors; users beyond the tables are unknown with no history."""
        tower = self._tower(("user", "history"), "purchase_vector" if purchase else "user_vector")
        n_known = self.model.get_layer("user_embedding").input_dim - 1
        users = np.asarray(users)
        hist = np.zeros((len(users), self.histories.shape[1]), np.int32)
        has = users < len(self.histories)
        hist[has] = self.histories[users[has]]
        ids = np.where(users < n_known, users + 1, 0).astype(np.int32)
        return np.concatenate([np.asarray(tower([ids[i:i + SCORE_BATCH], hist[i:i + SCORE_BATCH]], training=False))
                               for i in range(0, len(users), SCORE_BATCH)] or [np.zeros((0, 1), np.float32)])

    def _items(self, purchase: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """V (n, d) and bias (n,) for the items of the catalog table (new ones from features alone)."""
        key = f"items_{purchase}"
        if key in self._towers:
            return self._towers[key]
        tower = self._tower(("item", "item_features"), "item_vector")
        n_known = self.model.get_layer("item_embedding").input_dim - 1
        n = len(self.item_features)
        ids = np.where(np.arange(n) < n_known, np.arange(n) + 1, 0).astype(np.int32)
        v = np.asarray(tower([ids, self.item_features], training=False))
        bias = self.model.get_layer("purchase_bias" if purchase else "click_bias").embeddings.numpy()[:, 0]
        self._towers[key] = v, bias[ids]
        return self._towers[key]

    def logits(self, users: np.ndarray, n_items: int, task: str = "click") -> np.ndarray:
        """(len(users), n_items) raw scores of ``task`` (click | purchase); -inf beyond the catalog."""
        v, b = self._items(task == "purchase")
        return pad_items(self._vectors(users, task == "purchase") @ v.T + b, n_items)

    link = staticmethod(sigmoid)  # ``recpipe.scoring.top_k`` ranks by the click logits

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """P(click), the ranking score; -inf beyond the catalog."""
        v, b = self._items()
        return pad_items(sigmoid(self._vectors(users) @ v.T + b), n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        out = np.zeros(len(users), bool)
        has = users < len(self.histories)
        out[has] = self.histories[users[has], -1] != 0
        return out

    def save(self, directory: Path) -> None:
        self.model.save(directory / "model.keras")
        np.save(directory / "histories.npy", self.histories)
        np.save(directory / "item_features.npy", self.item_features)

    @classmethod
    def load(cls, directory: Path) -> "TwoTower":
        model = keras.models.load_model(directory / "model.keras", compile=False,
                                        custom_objects={"IdDropout": IdDropout})
        return cls(model, np.load(directory / "histories.npy"), np.load(directory / "item_features.npy"))
