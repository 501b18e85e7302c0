"""SASRec (Kang & McAuley, 2018): next-item prediction by causal self-attention, in Keras 3.

A user's history is their events in time order, repeats included (``TrainingData.events``:
a re-view days later is a position of its own; ``collapse_repeats`` merges a run of
consecutive events on one item into its last), or without events their items ordered by
``last_ts`` (ties by item index). Each position is the item's embedding plus its event
type's (view, add_to_cart, purchase, …; "untyped" for plain pairs), so a cart weighs
otherwise than a view. The model reads the most recent L = ``max_len`` positions and scores
every item as the next one. Item ids are shifted by +1 so that 0 pads sequences on the left;
the item embedding E (V = n_items + 1 rows) is shared by input and output: score = hidden · Eᵀ.
L adapts to the data unless given: the 95th percentile of the users' history lengths, at
most 50 (short histories, as in most shops, give short windows instead of mostly padding).

Training: each user's history is cut into windows of L (from the end); every real
position predicts the item that follows it. Batches group windows of about one length and
are cut to their longest, so the encoder computes little padding (``keras_fit.index_batches``). The hidden states of the real positions are
gathered first (padding never reaches the output layer), then scored with

- ``loss="full"``: softmax cross-entropy over the whole catalog, N × V logits per batch
  (N real positions); best for small catalogs;
- ``loss="sampled"``: softmax over the target, ``shared_negatives`` (K) items drawn
  uniformly per batch and K of the batch's own targets (in-batch, so popularity-
  distributed), all shared by the batch's positions, with the logQ correction (every
  candidate's logit minus the log of its expected count among the negatives; a negative
  equal to the target is masked): N × (2K + 1) logits, cost and memory independent of
  the catalog. Uniform negatives alone (``IN_BATCH = False``) learn popular items poorly.
- ``loss="auto"`` (default): full up to ``FULL_SOFTMAX_MAX_ITEMS`` = 4,096 items, sampled
  above. A full-softmax position costs V·d multiply-adds, so above a few thousand items it
  dominates the step (at 4,096 items and d = 64 it is about 4× the 2-block encoder), and
  its N × V logits grow with the catalog; below, it is affordable and learns more per
  epoch (ML-100K, 1,682 items: NDCG@10 0.108 full vs 0.081 with uniform sampled negatives).

Logits and the loss are float32 whatever the compute precision (safe under mixed precision).
Adam is lazy (``keras_fit.LazyAdam``): a step touches only the embedding rows of its batch.
Each user's last item (users with ≥ 3 items) is held out for validation: NDCG@10 over the
full catalog (seen items excluded) for up to ``VAL_USERS`` users after every epoch. The
learning rate halves after ``LR_PATIENCE`` epochs without a better one (Keras's
``ReduceLROnPlateau``), training stops after ``PATIENCE`` and restores the best epoch; then
``REFIT_EPOCHS`` more epochs at that epoch's learning rate, over the whole histories, make
those last items targets too (the most recent behaviour is the most telling). Amazon Sports
test HR / NDCG@10 (2,048 negatives, LR_PATIENCE 3): 0.0545 / 0.0311 with one refit epoch at
the last, lowest rate; 0.0568 / 0.0323 at the best epoch's; 0.0580 / 0.0327 with two;
0.0575 / 0.0320 with two and LR_PATIENCE 5, the default (ML-100K NDCG@10 0.113 vs 0.108 at 3);
since one data iterator serves the whole fit (``keras_fit.fit``), 0.0575 / 0.0318 in 178 s and
ML-100K 0.117 in 114–121 s on 2 cores.
The users' recent sequences are part of the model (saved with it); :meth:`SASRec.with_history`
swaps them for newer histories without retraining.

Memory (bytes; ``recpipe.models.memory.sasrec_terms``, checked before training starts):
24·P for the parameters P ≈ V·d + L·d + b·(6d² + 12d) with their gradients and Adam state
(the item table is the only O(catalog) term), 32·N_interactions + 24·W·L for the data (W
windows), 4·B·L·(24·b·d + 8·d) + 16·b·h·B·L² for the encoder's activations, and for the
loss 12·B·L·(2K + 1) (sampled) or 12·B·L·V (full); plus 12·C·V to score one validation
chunk of C = min(1024, 2²⁶/V) users. E.g. a million items at d = 64 with the defaults: about 1.6 GiB of parameters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from recpipe.errors import ConfigError
from recpipe.models import keras_fit, memory
from recpipe.models.base import FitConfig, Recommender, TrainingData, grow_weights, pad_items
from recpipe.models.sequences import TYPE_CODES, known_only, pad_left, typed_histories, windows

log = logging.getLogger(__name__)

MAX_LEN = 50  # the cap of the adaptive max_len
MAX_LEN_PERCENTILE = 95
FULL_SOFTMAX_MAX_ITEMS = 4096  # loss="auto": full softmax up to this many items, sampled above
NUM_BLOCKS = 2
NUM_HEADS = 1
DROPOUT = 0.5  # sparse catalogs overfit the item table at 0.2 (Amazon Sports: val NDCG@10 stalled at 0.017)
IN_BATCH = True  # sampled loss: in-batch negatives with the logQ correction besides the uniform ones
REFIT_EPOCHS = 2  # after early stopping: epochs with each user's held-out last item as a target too
LR_PATIENCE = 5  # epochs without a better validation NDCG@10 before the rate halves (3: too soon on ML-100K)
PATIENCE = 10  # epochs without a better validation NDCG@10 before stopping (a few thousand validation users are noisy)
VAL_USERS = 10_000  # most users whose held-out item validates (scored over the full catalog)
SCORE_BATCH = 1024  # users per encoder call in score() and validation
K = 10


def auto_max_len(lengths: np.ndarray) -> int:
    """The 95th percentile of the history lengths, within [2, MAX_LEN]."""
    if not len(lengths):
        return MAX_LEN
    return int(np.clip(np.ceil(np.percentile(lengths, MAX_LEN_PERCENTILE)), 2, MAX_LEN))


def sampled_loss(loss: str, n_items: int) -> bool:
    """Whether ``loss`` ("auto", "full", "sampled") means the sampled softmax for this catalog."""
    if loss not in ("auto", "full", "sampled"):
        raise ConfigError(f"unknown loss {loss!r}: choose auto, full or sampled.")
    return loss == "sampled" or (loss == "auto" and n_items > FULL_SOFTMAX_MAX_ITEMS)


def build(n_items: int, max_len: int = MAX_LEN, dim: int = 64, blocks: int = NUM_BLOCKS,
          heads: int = NUM_HEADS, dropout: float = DROPOUT, seed: int = 0):
    """The Keras graph: [seq, types] (B, l) int32 each, l ≤ max_len, 0 = padding on the left
    (types: ``sequences.TYPE_CODES`` codes) → hidden states (B, l, d).

    Positions count from the end (the newest item is always position max_len - 1), so a
    batch of short sequences may be cut to its last l columns. Layer "encoded" holds the
    final hidden states; "item_embedding" E is (V, d); "position_embedding" has max_len rows;
    "type_embedding" (TYPE_CODES, d) starts at zero (untyped data learns one constant).
    """
    seq = keras.Input(shape=(None,), dtype="int32", name="seq")
    types = keras.Input(shape=(None,), dtype="int32", name="types")
    items = layers.Embedding(
        n_items + 1, dim, embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="item_embedding")
    ones = ops.ones_like(seq)
    pos = layers.Embedding(max_len, dim, name="position_embedding")(
        ops.cumsum(ones, axis=1) - 1 + max_len - ops.sum(ones, axis=1, keepdims=True))
    x = items(seq)
    kind = layers.Embedding(TYPE_CODES, dim, embeddings_initializer="zeros", name="type_embedding")(types)
    real = ops.not_equal(seq, 0)  # (B, L)
    keep = ops.expand_dims(ops.cast(real, x.dtype), -1)  # (B, L, 1): zeroes padded positions
    x = layers.Dropout(dropout, seed=seed)(x * dim**0.5 + kind + pos) * keep
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
    return keras.Model([seq, types], h, name="sasrec")


def max_len_of(model) -> int:
    """The L a built network reads (its position embedding's rows)."""
    return int(model.get_layer("position_embedding").input_dim)


def next_item_loss(hidden, targets, table, n_items: int, sampled: bool, negatives: int, seed, target_share=None):
    """Mean softmax cross-entropy of the next item at the real positions (targets > 0), float32.

    hidden (B, L, d), targets (B, L) int32 items + 1, table E (V, d); ``seed`` (2,) int
    draws the batch's shared negatives. ``target_share`` (V,) float32, with ``sampled``: also
    take up to ``negatives`` of the batch's own N targets as negatives (m = min(K, N) of them,
    popularity-distributed) and correct every candidate's logit by -log Q(i), Q(i) = K/n_items
    + m·target_share(i), item i's expected count among the negatives (the logQ correction;
    None: uniform negatives only, Q constant).
    """
    real = targets > 0
    h = tf.cast(tf.boolean_mask(hidden, real), tf.float32)  # (N, d): real positions only
    t = tf.boolean_mask(targets, real)  # (N,)
    emb = tf.cast(table, tf.float32)
    if sampled:
        neg = tf.random.stateless_uniform((negatives,), seed=seed, minval=1, maxval=n_items + 1, dtype=tf.int32)
        if target_share is not None:
            in_batch = tf.random.experimental.stateless_shuffle(t, seed=seed + 1)[:negatives]
            neg = tf.concat([neg, in_batch], 0)
            drawn = tf.cast(tf.size(in_batch), tf.float32)

            def log_q(items):
                return tf.math.log(negatives / n_items + drawn * tf.gather(target_share, items))
        pos = tf.reduce_sum(h * tf.gather(emb, t), -1, keepdims=True)  # (N, 1)
        other = tf.matmul(h, tf.gather(emb, neg), transpose_b=True)  # (N, K)
        if target_share is not None:
            pos -= log_q(t)[:, None]
            other -= log_q(neg)[None, :]
        other = tf.where(tf.equal(neg[None, :], t[:, None]), tf.constant(-1e9, tf.float32), other)
        losses = tf.reduce_logsumexp(tf.concat([pos, other], 1), axis=1) - pos[:, 0]
    else:
        logits = tf.matmul(h, emb[1:], transpose_b=True)  # (N, n_items)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t - 1, logits=logits)
    return tf.reduce_sum(losses) / tf.maximum(tf.cast(tf.size(t), tf.float32), 1.0)


def target_share(targets: np.ndarray, n_items: int) -> np.ndarray:
    """(V,) float32: each item's share of the training targets (``targets`` > 0, items + 1):
    the chance that an in-batch negative is that item."""
    freq = np.bincount(targets[targets > 0], minlength=n_items + 1).astype(np.float64)
    return (freq / max(freq.sum(), 1.0)).astype(np.float32)


def _batches(x: np.ndarray, t: np.ndarray, y: np.ndarray, config: FitConfig) -> tf.data.Dataset:
    """((seq, types), targets) batches of the windows (x, t, y: (W, L)), a new seeded order every
    epoch; a batch holds windows of about one length, cut to the longest real one among them."""
    L = x.shape[1]
    xs, ts, ys = tf.constant(x), tf.constant(t), tf.constant(y)

    def batch(rows):
        x_rows, t_rows, y_rows = tf.gather(xs, rows), tf.gather(ts, rows), tf.gather(ys, rows)
        cut = L - tf.reduce_max(tf.reduce_sum(tf.cast(x_rows > 0, tf.int32), axis=1))
        return (x_rows[:, cut:], t_rows[:, cut:]), y_rows[:, cut:]

    lengths = (x > 0).sum(axis=1)
    return (keras_fit.index_batches(len(x), config.batch_size, config.seed, True, lengths=lengths)
            .map(batch).prefetch(tf.data.AUTOTUNE))


class _Trainer(keras.Model):
    """Training only: the encoder with :func:`next_item_loss` (not saved; the encoder is)."""

    def __init__(self, encoder, n_items: int, sampled: bool, negatives: int, seed: int, target_share=None):
        super().__init__(name="sasrec")
        self.encoder, self.n_items, self.sampled, self.negatives, self.seed = encoder, n_items, sampled, negatives, seed
        self.target_share = None if target_share is None else tf.constant(target_share)

    def call(self, inputs, training=False):
        return self.encoder(list(inputs), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return next_item_loss(y_pred, y, self.encoder.get_layer("item_embedding").embeddings, self.n_items,
                              self.sampled, self.negatives, tf.stack([tf.constant(self.seed, tf.int64), step]),
                              self.target_share)


class _ValidationNDCG(keras.callbacks.Callback):
    """Adds ``val_ndcg@10`` to each epoch's logs: the held-out item's rank over all items,
    the items of the user's sequence excluded."""

    def __init__(self, encoder, seqs: np.ndarray, types: np.ndarray, targets: np.ndarray):
        super().__init__()
        self.encoder, self.seqs, self.types, self.targets = encoder, seqs, types, targets
        self.last = tf.function(lambda s, t: encoder([s, t], training=False)[:, -1])

    def on_epoch_end(self, epoch, logs=None):
        emb = self.encoder.get_layer("item_embedding").embeddings.numpy()[1:]
        gains, chunk = [], memory.validation_chunk(len(emb))
        for i in range(0, len(self.seqs), chunk):
            seqs, target = self.seqs[i:i + chunk], self.targets[i:i + chunk] - 1
            scores = np.asarray(self.last(seqs, self.types[i:i + chunk])) @ emb.T
            rows = np.arange(len(seqs))
            truth = scores[rows, target].copy()
            r, c = np.nonzero(seqs)
            scores[r, seqs[r, c] - 1] = -np.inf
            rank = (scores > truth[:, None]).sum(1)
            gains.append(np.where(rank < K, 1 / np.log2(rank + 2), 0.0))
        if logs is not None:
            logs[f"val_ndcg@{K}"] = float(np.concatenate(gains).mean())


class SASRec(Recommender):
    name = "sasrec"
    holds_out_last_item = True  # fit validates on each user's last item (≥ 3 items), never trained on

    def __init__(self, model=None, sequences: np.ndarray | None = None, types: np.ndarray | None = None,
                 max_len: int | None = None, blocks: int = NUM_BLOCKS, heads: int = NUM_HEADS,
                 dropout: float = DROPOUT, collapse_repeats: bool = True):
        self.model, self.sequences, self.types = model, sequences, types  # (n_users, L) int32: items + 1, type codes
        self.collapse_repeats = collapse_repeats  # as trained: newer histories are read the same way
        self.max_len, self.blocks, self.heads, self.dropout = max_len, blocks, heads, dropout  # max_len None: config's
        self._encoder = None

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        keras.utils.set_random_seed(config.seed)
        self.collapse_repeats = config.collapse_repeats
        hists, kinds = typed_histories(data, self.collapse_repeats)
        held = [len(h) >= 3 for h in hists]  # the last item of these users validates
        train_hists = [h[:-1] if v else h for h, v in zip(hists, held)]
        train_kinds = [k[:-1] if v else k for k, v in zip(kinds, held)]
        lengths = np.fromiter(map(len, train_hists), np.int64, len(train_hists))
        if self.max_len:
            L = self.max_len
        elif config.max_len:
            L = config.max_len
        elif initial is not None:  # continue the champion's network: same positions
            L = max_len_of(initial.model)
        else:
            L = auto_max_len(lengths[lengths > 0])
        sampled = sampled_loss(config.loss, data.n_items)
        n_windows = int(np.ceil(np.maximum(lengths - 1, 0) / L).sum())
        memory.check("sasrec", memory.sasrec_terms(
            n_items=data.n_items, n_interactions=len(data.users), n_windows=n_windows, max_len=L,
            dim=config.embedding_dim, blocks=self.blocks, heads=self.heads, batch_size=config.batch_size,
            sampled=sampled, negatives=config.shared_negatives))

        x, y = windows(train_hists, L)
        tx, _ = windows(train_kinds, L)  # the same windows: each input position's event type
        val_users = np.flatnonzero(held)
        if len(val_users) > VAL_USERS:
            val_users = np.sort(np.random.default_rng(config.seed).choice(val_users, VAL_USERS, replace=False))
        val_x = pad_left([hists[u][:-1] for u in val_users], L)
        val_k = pad_left([kinds[u][:-1] for u in val_users], L)
        val_t = np.array([hists[u][-1] for u in val_users], np.int32)
        del train_hists, train_kinds
        train, n_train = _batches(x, tx, y, config), len(x)
        correction = target_share(y, data.n_items) if sampled and IN_BATCH else None
        del x, tx, y

        self.model = build(data.n_items, L, config.embedding_dim, self.blocks, self.heads, self.dropout, config.seed)
        if initial is not None:
            log.info("sasrec: warm start, grown weights: %s", grow_weights(self.model, initial.model) or "none")
        log.info("sasrec: %d training windows of %d, %s loss%s, %d validation users", n_train, L,
                 "sampled" if sampled else "full", f" ({config.shared_negatives} shared negatives)" if sampled else "",
                 len(val_x))
        trainer = _Trainer(self.model, data.n_items, sampled, config.shared_negatives, config.seed, correction)
        callbacks = (_ValidationNDCG(self.model, val_x, val_k, val_t),) if len(val_x) else ()
        if callbacks and LR_PATIENCE:
            callbacks += (keras.callbacks.ReduceLROnPlateau(f"val_ndcg@{K}", 0.5, LR_PATIENCE, mode="max", verbose=0),)
        summary = keras_fit.fit(
            trainer, train, None, config.epochs, patience=PATIENCE,
            optimizer=keras_fit.LazyAdam(config.learning_rate, beta_2=0.98), loss=None,
            monitor=f"val_ndcg@{K}" if callbacks else "loss", mode="max" if callbacks else "min", callbacks=callbacks)
        if REFIT_EPOCHS and len(val_x):
            del train
            fx, fy = windows(hists, L)
            ftx, _ = windows(kinds, L)
            log.info("sasrec: %d more epoch(s) with the held-out items as targets", REFIT_EPOCHS)
            if "learning_rate" in summary:  # the best epoch's, before the plateaus that followed it lowered it
                trainer.optimizer.learning_rate = summary["learning_rate"]
            keras_fit.fit(trainer, _batches(fx, ftx, fy, config), None, REFIT_EPOCHS, patience=REFIT_EPOCHS,
                          optimizer=None, monitor="loss")
        self.sequences, self.types, self._encoder = pad_left(hists, L), pad_left(kinds, L), None
        return {**summary, "max_len": L, "objective": "sampled" if sampled else "full"}

    def with_history(self, data: TrainingData, since: int | None = None) -> "SASRec":
        """The same network, scoring from the histories in ``data`` (e.g. newer interactions, new
        users too); items it has no embedding for are left out of the sequences."""
        L = max_len_of(self.model)
        hists, kinds = typed_histories(known_only(data, self.model.get_layer("item_embedding").input_dim - 1),
                                       self.collapse_repeats)
        return SASRec(self.model, pad_left(hists, L), pad_left(kinds, L), L, self.blocks, self.heads, self.dropout,
                      self.collapse_repeats)

    def item_vectors(self) -> np.ndarray:
        """E without the padding row: (n_items, d), the input and output item embedding."""
        return self.model.get_layer("item_embedding").embeddings.numpy()[1:]

    def _rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(users), L) sequences and their types; users the model never saw get all padding."""
        users = np.asarray(users)
        known = users < len(self.sequences)
        seqs, types = (np.zeros((len(users), self.sequences.shape[1]), dtype=np.int32) for _ in range(2))
        seqs[known], types[known] = self.sequences[users[known]], self.types[users[known]]
        return seqs, types

    def _logits(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: hidden state after each user's latest item · Eᵀ."""
        if self._encoder is None:
            self._encoder = keras.Model(self.model.input, self.model.get_layer("encoded").output)
        seqs, types = self._rows(users)
        emb = self.model.get_layer("item_embedding").embeddings.numpy()[1:]
        hidden = [np.asarray(self._encoder([seqs[i:i + SCORE_BATCH], types[i:i + SCORE_BATCH]], training=False))[:, -1]
                  for i in range(0, len(seqs), SCORE_BATCH)]
        return (np.concatenate(hidden) if hidden else np.zeros((0, emb.shape[1]), np.float32)) @ emb.T

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """P(next item) over the model's items (softmax of the logits); -inf for unseen items."""
        z = self._logits(users)  # float32: after subtracting each row's max, exp cannot overflow
        z -= z.max(axis=1, keepdims=True, initial=-np.inf)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return pad_items(z, n_items)

    def knows(self, users: np.ndarray) -> np.ndarray:
        return self._rows(users)[0][:, -1] != 0

    def save(self, directory: Path) -> None:
        self.model.save(directory / "model.keras")
        np.save(directory / "sequences.npy", self.sequences)
        np.save(directory / "types.npy", self.types)
        (directory / "sasrec.json").write_text(json.dumps({"collapse_repeats": self.collapse_repeats}))

    @classmethod
    def load(cls, directory: Path) -> "SASRec":
        model = keras.models.load_model(directory / "model.keras", compile=False)
        settings = json.loads((directory / "sasrec.json").read_text())
        return cls(model, np.load(directory / "sequences.npy"), np.load(directory / "types.npy"),
                   max_len=max_len_of(model), collapse_repeats=settings["collapse_repeats"])
