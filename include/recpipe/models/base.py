"""The contract every model implements: fit on feature tables, score users × items, save/load.

Models know nothing of the pipeline: they take :class:`TrainingData` (dense indices) and a
:class:`FitConfig` (only the knobs training uses), and never import a stage or storage.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.errors import ConfigError


#: Content features of an item, each hashed into FEATURE_BUCKETS (stable across dates and runs).
ITEM_FEATURES = ("category", "brand", "price_bucket")
FEATURE_BUCKETS = 1024


def _bucket(values: pa.Array) -> np.ndarray:
    """1 + crc32(value) mod (FEATURE_BUCKETS - 1) per string; 0 for null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    table = np.array([1 + zlib.crc32(v.encode()) % (FEATURE_BUCKETS - 1)
                      for v in encoded.dictionary.to_pylist()] + [0], dtype=np.int32)
    return table[encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()]


def item_feature_codes(items: pa.Table) -> np.ndarray:
    """(items.num_rows, 3) int32: hashed category, brand and price bucket ⌊log2(1 + price)⌋.

    Columns the table lacks count as missing (0), so any catalog works, even none.
    """
    n = items.num_rows
    cols = [_bucket(items[c]) if c in items.column_names else np.zeros(n, np.int32) for c in ("category", "brand")]
    if "price" in items.column_names:
        price = items["price"].to_numpy(zero_copy_only=False).astype(np.float64)
        ok = np.isfinite(price) & (price >= 0)
        cols.append(np.where(ok, np.minimum(1 + np.floor(np.log2(1 + np.where(ok, price, 0))), FEATURE_BUCKETS - 1),
                             0).astype(np.int32))
    else:
        cols.append(np.zeros(n, np.int32))
    return np.stack(cols, axis=1) if n else np.zeros((0, len(ITEM_FEATURES)), np.int32)


@dataclass(frozen=True)
class FitConfig:
    """The knobs of training, and nothing else (the pipeline's ``RunParams`` maps onto it).

    epochs: most epochs (early stopping may end sooner); embedding_dim: d of every
    embedding; negatives: sampled negatives per positive (pointwise models);
    batch_size, learning_rate: of the Adam optimiser; seed: same seed and data → same model.
    Sequence models (sasrec): loss "full" | "sampled" | "auto"; shared_negatives: items
    drawn per batch and shared by all its positions (sampled loss); max_len: items read per
    user (0: adapt to the data); collapse_repeats: consecutive events on one item count once
    (repeats further apart always count).
    """

    epochs: int = 8
    embedding_dim: int = 32
    negatives: int = 4
    loss: str = "auto"
    shared_negatives: int = 256
    max_len: int = 0
    collapse_repeats: bool = True
    batch_size: int = 1024
    learning_rate: float = 0.01
    seed: int = 42


@dataclass(frozen=True)
class Events:
    """Users' latest events in time order, repeats included (the ``sequences`` feature table):
    flat (n_events,) arrays grouped by user, oldest first. users, items: dense indices;
    types: int8 codes of ``recpipe.events.EVENT_TYPES``; ts: int64 epoch µs (None: unknown)."""

    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    ts: np.ndarray | None = None


@dataclass(frozen=True)
class TrainingData:
    """What a model learns from, as dense indices (see ``recpipe.stages.features``).

    users, items, weights: (n_interactions,) — one row per (user, item) pair seen before D.
    popularity: (n_items,) — time-decayed interaction weight per item.
    last_ts: (n_interactions,) int64 — when the user last touched the item (epoch µs);
        sequence models order a user's items by it.
    item_features: (n_items, len(ITEM_FEATURES)) int32 — hashed content features, 0 = missing
        (see :func:`item_feature_codes`); feature-based models score new items from them.
    purchased: (n_interactions,) bool — the user bought the item (the purchase task's label).
    events: each user's latest events, repeats and types included (:class:`Events`); sequence
        models read them when present, else the pairs ordered by ``last_ts``.
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    n_users: int
    n_items: int
    popularity: np.ndarray
    last_ts: np.ndarray | None = None
    item_features: np.ndarray | None = None
    purchased: np.ndarray | None = None
    events: Events | None = None


class Recommender(ABC):
    """A trained (or trainable) model over the vocabularies' dense user/item indices."""

    name: str

    @abstractmethod
    def fit(self, data: TrainingData, config: FitConfig, initial: "Recommender | None" = None) -> dict[str, Any]:
        """Train; returns a summary (epochs run, best validation metrics, per-epoch history).

        ``initial``: a model of the same kind trained on an earlier date (continual training):
        start from its weights, grown for the ids that are new since (see :func:`grow_weights`).
        """

    @abstractmethod
    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        """Scores, shape (len(users), n_items), float32, higher is better.

        Items the model never saw (index ≥ its own item count) score -inf.
        """

    @abstractmethod
    def knows(self, users: np.ndarray) -> np.ndarray:
        """Boolean mask: which users the model can personalise for."""

    def with_history(self, data: TrainingData, since: int | None = None) -> "Recommender":
        """The same trained model, scoring from the newer histories in ``data`` (interactions up to
        now, new users included) without retraining; ``since`` (epoch µs): when its training data
        ended (models that fold users in refresh those active since). Default: itself, unchanged
        (a model that cannot use a newer history scores as trained)."""
        return self

    def item_vectors(self) -> np.ndarray | None:
        """(n, d) float32: the model's vector of item i < n, whose cosine similarities explain a
        recommendation by the user's own items (``recpipe.scoring.Reasons``); None: it has none."""
        return None

    def trained_items(self) -> int | None:
        """How many items the model learnt ids for; items beyond it that it still ranks are scored
        from their content alone. None: it ranks no item it never saw."""
        return None

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything needed to score into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> "Recommender":
        """Inverse of :meth:`save`; scores identically."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """σ, elementwise, float32 (the ``link`` of models scoring σ(logit))."""
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32, copy=False)


def sparse_rows(users: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr (n_users + 1,), cols (nnz,) int32, sums (nnz,) float64): the sum of ``weights``
    per distinct (user, col) pair, as CSR rows by user, cols ascending within a row."""
    key = np.asarray(users, np.int64) << 32 | np.asarray(cols, np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(weights, np.float64), minlength=len(uniq))
    indptr = np.searchsorted(uniq >> 32, np.arange(n_users + 1)).astype(np.int64)
    return indptr, (uniq & 0xFFFFFFFF).astype(np.int32), sums


def row_entries(indptr: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, at): for every entry of the CSR rows of ``users``, its user's position in
    ``users`` and its position in the CSR arrays (users beyond the rows have none)."""
    users = np.asarray(users)
    known = users < len(indptr) - 1
    starts = np.where(known, indptr[np.minimum(users, len(indptr) - 2)], 0)
    counts = np.where(known, indptr[np.minimum(users, len(indptr) - 2) + 1] - starts, 0)
    rows = np.repeat(np.arange(len(users)), counts)
    return rows, np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(counts.sum())


def has_rows(indptr: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Which of ``users`` have a non-empty row in the CSR row starts ``indptr`` (users beyond
    its rows: none)."""
    users = np.asarray(users)
    known = users < len(indptr) - 1
    out = np.zeros(len(users), bool)
    out[known] = np.diff(indptr)[users[known]] > 0
    return out


def pad_items(scores: np.ndarray, n_items: int) -> np.ndarray:
    """Widen (n_users, known_items) scores to n_items columns, -inf for unseen items."""
    if scores.shape[1] >= n_items:
        return scores[:, :n_items]
    out = np.full((scores.shape[0], n_items), -np.inf, dtype=np.float32)
    out[:, : scores.shape[1]] = scores
    return out


def grow_weights(new, old) -> list[str]:
    """Copy ``old``'s weights into ``new`` (two Keras models of the same architecture).

    Vocabularies are append-only, so row i of an embedding means the same id in both: a
    weight whose first axis grew (new users/items since ``old`` was trained) gets the old
    rows copied and keeps its fresh initialisation for the new rows. Returns the names of
    the weights that grew. Raises ``ConfigError`` when the shapes do not line up otherwise
    (e.g. another ``embedding_dim``): then warm start makes no sense.
    """
    old_weights = {w.path: w for w in old.weights}
    grown = []
    for w in new.weights:
        src = old_weights.get(w.path)
        same_kind = src is not None and len(src.shape) == len(w.shape) and src.shape[1:] == w.shape[1:]
        if not same_kind or (w.shape and src.shape[0] > w.shape[0]):  # other layout, or a table shrank
            raise ConfigError(
                f"cannot warm-start weight {w.path} {tuple(w.shape)} from the champion's "
                f"{None if src is None else tuple(src.shape)}: the champion was trained with other "
                "model parameters (embedding_dim, ...). Train from scratch (warm_start=false) once."
            )
        value = src.numpy()
        if w.shape and src.shape[0] < w.shape[0]:
            fresh = w.numpy()
            fresh[: src.shape[0]] = value
            value = fresh
            grown.append(w.path)
        w.assign(value)
    return grown
