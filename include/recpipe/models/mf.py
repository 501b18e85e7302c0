"""Matrix factorisation σ(uᵀv + b_i), the classic baseline, in Keras 3.

Trained pointwise with binary cross-entropy: every (user, item) pair seen before D is a
positive, ``config.negatives`` items drawn uniformly per positive are negatives, drawn
afresh in every batch by the ``tf.data`` pipeline. 5% of the positives (with their own
negatives) are the validation split for early stopping. Adam is lazy (a batch updates only
the embedding rows it touched) and the L2 penalty is on the batch's rows only (``L2`` · mean
‖u‖², likewise ‖v‖²), so a step costs O(batch), not O(users + items).

Memory: 24·((U + V)·d + V) bytes for the parameters and their optimiser state, 24 bytes per
interaction for the input tensors, plus one batch (``recpipe.models.memory.mf_terms``);
checked against the memory available before training starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from recpipe.models import fold_in, keras_fit, memory
from recpipe.models.base import FitConfig, Recommender, TrainingData, grow_weights, pad_items, sigmoid
from recpipe.models.sequences import last_items

log = logging.getLogger(__name__)

L2 = 1e-4  # per-row L2 of the batch's embeddings (see build)


def build(n_users: int, n_items: int, dim: int, l2: float = L2):
    """The Keras graph: inputs user (B,), item (B,) int32 → probability (B,).

    The L2 penalty is on the batch's rows (``activity_regularizer``: l2 · mean over the
    batch of ‖u‖², likewise ‖v‖²), so its gradient touches those rows only and a step
    stays O(batch); a penalty on the whole tables would make every step's gradient dense.
    """
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    reg = keras.regularizers.L2(l2)
    u = layers.Embedding(n_users, dim, activity_regularizer=reg, name="user_embedding")(user)
    v = layers.Embedding(n_items, dim, activity_regularizer=reg, name="item_embedding")(item)
    b = layers.Embedding(n_items, 1, embeddings_initializer="zeros", name="item_bias")(item)
    logit = layers.Add()([layers.Dot(axes=-1)([u, v]), b])
    prob = layers.Activation("sigmoid", dtype="float32", name="prob")(layers.Flatten()(logit))
    return keras.Model({"user": user, "item": item}, prob, name="mf")


class MatrixFactorization(Recommender):
    name = "mf"

    def __init__(self, model=None):
        self.model = model
        self._cached: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        memory.check("mf", memory.mf_terms(
            n_users=data.n_users, n_items=data.n_items, n_interactions=len(data.users), dim=config.embedding_dim,
            batch_size=config.batch_size, negatives=config.negatives))
        self.model = build(data.n_users, data.n_items, config.embedding_dim)
        self._cached = None
        if initial is not None:
            log.info("mf: warm start, grown weights: %s", grow_weights(self.model, initial.model) or "none")
        train, val = keras_fit.pointwise(data, config)
        summary = keras_fit.fit(self.model, train, val, config.epochs,
                                optimizer=keras_fit.LazyAdam(config.learning_rate),
                                loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
        self._cached = None  # weights changed: re-read on next use
        return summary

    def _weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """U (n_users, dim), V (n_items, dim), b (n_items,) float32, read from Keras once."""
        if self._cached is None:
            m = self.model
            self._cached = (
                m.get_layer("user_embedding").embeddings.numpy(),
                m.get_layer("item_embedding").embeddings.numpy(),
                m.get_layer("item_bias").embeddings.numpy()[:, 0],
            )
        return self._cached

    def _logits(self, users: np.ndarray) -> np.ndarray:
        """U[users] · Vᵀ + b: (len(users), known items) float32, a new array."""
        user_emb, item_emb, bias = self._weights()
        out = user_emb[users] @ item_emb.T
        out += bias
        return out

    def logits(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """Raw scores, score = link(logits): ``recpipe.scoring.top_k`` ranks by these."""
        return pad_items(self._logits(users), n_items)

    link = staticmethod(sigmoid)

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """σ(U[users] · Vᵀ + b): the same numbers as the Keras graph, as one matrix product."""
        return pad_items(self.link(self._logits(users)), n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        return users < len(self._weights()[0])  # the user table, folded-in users included

    def with_history(self, data: TrainingData, since: int | None = None) -> "MatrixFactorization":
        """The same item embeddings; the users with an interaction in ``data`` at or after ``since``
        (all with one if None; new users too) get fold-in vectors (``recpipe.models.fold_in``)."""
        user_emb, item_emb, bias = self._weights()
        users = fold_in.active_users(data, since)
        users = users[users < data.n_users]
        table = np.zeros((max(data.n_users, len(user_emb)), user_emb.shape[1]), np.float32)
        table[: len(user_emb)] = user_emb
        prior = np.where((users < len(user_emb))[:, None], table[users], 0.0)
        table[users] = fold_in.user_vectors(item_emb, bias, last_items(data, users, len(item_emb), fold_in.HISTORY), prior)
        other = MatrixFactorization(self.model)
        other._cached = (table, item_emb, bias)
        return other

    def item_vectors(self) -> np.ndarray:
        return self._weights()[1]

    def save(self, directory: Path) -> None:
        self.model.save(directory / "model.keras")

    @classmethod
    def load(cls, directory: Path) -> "MatrixFactorization":
        return cls(keras.models.load_model(directory / "model.keras"))
