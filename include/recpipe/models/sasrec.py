"""SASRec (Kang & McAuley, 2018): next-item prediction by causal self-attention, in Keras 3.

A user's history is their items ordered by ``last_ts`` (ties by item index); the model reads
the most recent L = ``max_len`` of them and scores every item as the next one. Item ids are
shifted by +1 so that 0 pads sequences on the left; the item embedding E (V = n_items + 1
rows) is shared by input and output: logits = hidden · Eᵀ.

Training: each user's history is cut into windows of L (from the end); every position
predicts the item that follows it, with softmax cross-entropy over the whole catalogue
(cheap for catalogues of thousands of items, and it reaches a given quality in far fewer
epochs than BCE on sampled negatives). Each user's last item is held out as the validation
target for early stopping. The users' recent sequences are part of the model (saved with
it); :meth:`SASRec.with_history` swaps them for newer histories without retraining.
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
from recpipe.models.base import FitConfig, Recommender, TrainingData, grow_weights, pad_items
from recpipe.models.sequences import histories, pad_left, windows

log = logging.getLogger(__name__)

MAX_LEN = 50
NUM_BLOCKS = 2
NUM_HEADS = 1
DROPOUT = 0.2
PATIENCE = 5  # epochs without a better validation loss before stopping
SCORE_BATCH = 1024  # users per encoder call in score()


def build(n_items: int, max_len: int = MAX_LEN, dim: int = 64, blocks: int = NUM_BLOCKS,
          heads: int = NUM_HEADS, dropout: float = DROPOUT, seed: int = 0):
    """The Keras graph: seq (B, L) int32, 0 = padding → logits (B, L, V) float32.

    Layer "encoded" holds the final hidden states (B, L, d); "item_embedding" E is (V, d).
    """
    seq = keras.Input(shape=(max_len,), dtype="int32", name="seq")
    items = layers.ReversibleEmbedding(
        n_items + 1, dim, embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="item_embedding")
    pos = layers.Embedding(max_len, dim, name="position_embedding")(ops.cumsum(ops.ones_like(seq), axis=1) - 1)
    x = items(seq)
    real = ops.not_equal(seq, 0)  # (B, L)
    keep = ops.expand_dims(ops.cast(real, x.dtype), -1)  # (B, L, 1): zeroes padded positions
    x = layers.Dropout(dropout, seed=seed)(x * dim**0.5 + pos) * keep
    for b in range(blocks):
        q = layers.LayerNormalization(epsilon=1e-8, name=f"attention_norm_{b}")(x)
        a = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, seed=seed + 1 + b, name=f"attention_{b}")(
            q, x, attention_mask=ops.expand_dims(real, 1), use_causal_mask=True)  # mask (B, 1, L) & causal
        x = layers.LayerNormalization(epsilon=1e-8, name=f"ffn_norm_{b}")(q + a)
        f = layers.Dense(dim, activation="relu", name=f"ffn_in_{b}")(x)
        f = layers.Dropout(dropout, seed=seed + 101 + b)(f)
        f = layers.Dropout(dropout, seed=seed + 201 + b)(layers.Dense(dim, name=f"ffn_out_{b}")(f))
        x = (x + f) * keep
    h = layers.LayerNormalization(epsilon=1e-8, name="encoded")(x)
    logits = layers.Activation("linear", dtype="float32", name="logits")(items(h, reverse=True))
    return keras.Model(seq, logits, name="sasrec")


class SASRec(Recommender):
    name = "sasrec"

    def __init__(self, model=None, sequences: np.ndarray | None = None, max_len: int = MAX_LEN,
                 blocks: int = NUM_BLOCKS, heads: int = NUM_HEADS, dropout: float = DROPOUT):
        self.model, self.sequences = model, sequences  # sequences: (n_users, L) int32, items + 1
        self.max_len, self.blocks, self.heads, self.dropout = max_len, blocks, heads, dropout
        self._encoder = None

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        keras.utils.set_random_seed(config.seed)
        L, hists = self.max_len, histories(data)
        held = [len(h) >= 3 for h in hists]  # the last item of these users validates
        x, y = windows([h[:-1] if v else h for h, v in zip(hists, held)], L)
        val_x = pad_left([h[:-1] for h, v in zip(hists, held) if v], L)
        val_y = np.zeros_like(val_x)
        val_y[:, -1] = [h[-1] for h, v in zip(hists, held) if v]
        train = (tf.data.Dataset.from_tensor_slices((x, y))
                 .shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
                 .batch(config.batch_size).prefetch(tf.data.AUTOTUNE))
        val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(config.batch_size) if len(val_x) else None

        self.model = build(data.n_items, L, config.embedding_dim, self.blocks, self.heads, self.dropout, config.seed)
        if initial is not None:
            log.info("sasrec: warm start, grown weights: %s", grow_weights(self.model, initial.model) or "none")
        log.info("sasrec: %d training windows of %d, %d validation users", len(x), L, len(val_x))
        summary = keras_fit.fit(
            self.model, train, val, config.epochs, patience=PATIENCE,
            optimizer=keras.optimizers.Adam(config.learning_rate, beta_2=0.98),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0))
        self.sequences, self._encoder = pad_left(hists, L), None
        return summary

    def with_history(self, data: TrainingData) -> "SASRec":
        """The same network, scoring from the histories in ``data`` (e.g. newer interactions)."""
        return SASRec(self.model, pad_left(histories(data), self.model.input_shape[1]),
                      self.max_len, self.blocks, self.heads, self.dropout)

    def _rows(self, users: np.ndarray) -> np.ndarray:
        """(len(users), L) sequences; users the model never saw get an all-padding row."""
        users = np.asarray(users)
        known = users < len(self.sequences)
        out = np.zeros((len(users), self.sequences.shape[1]), dtype=np.int32)
        out[known] = self.sequences[users[known]]
        return out

    def _logits(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: hidden state after each user's latest item · Eᵀ."""
        if self._encoder is None:
            self._encoder = keras.Model(self.model.input, self.model.get_layer("encoded").output)
        seqs = self._rows(users)
        emb = self.model.get_layer("item_embedding").embeddings.numpy()[1:]
        hidden = [np.asarray(self._encoder(seqs[i:i + SCORE_BATCH], training=False))[:, -1]
                  for i in range(0, len(seqs), SCORE_BATCH)]
        return (np.concatenate(hidden) if hidden else np.zeros((0, emb.shape[1]), np.float32)) @ emb.T

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """P(next item) over the model's items (softmax of the logits); -inf for unseen items."""
        z = self._logits(users).astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True, initial=-np.inf))
        return pad_items((z / z.sum(axis=1, keepdims=True)).astype(np.float32), n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        return self._rows(users)[:, -1] != 0

    def save(self, directory: Path) -> None:
        self.model.save(directory / "model.keras")
        np.save(directory / "sequences.npy", self.sequences)

    @classmethod
    def load(cls, directory: Path) -> "SASRec":
        model = keras.models.load_model(directory / "model.keras", compile=False)
        return cls(model, np.load(directory / "sequences.npy"), max_len=model.input_shape[1])
