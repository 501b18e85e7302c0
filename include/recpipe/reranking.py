"""Re-ranking for diversity: maximal marginal relevance (MMR) over item categories.

Each user's list is rebuilt greedily from a deeper pool of the model's items (:func:`depth`):
the next item maximises ``(1 − λ) · relevance − λ · redundancy``, relevance being the model's
score min-max scaled to [0, 1] within the user's pool and redundancy 1 when an item of the
same category is already in the list (0 otherwise; an item without a category is never
redundant). λ = ``diversity``: 0 keeps the model's order (and :func:`rerank` does nothing),
1 picks a new category whenever one is left. Scores stay the model's.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: the pool MMR chooses from: this many times the list length
POOL = 3


def depth(k: int, diversity: float) -> int:
    """How many of the model's items to rank per user for a list of ``k`` at this ``diversity``."""
    return k * POOL if diversity > 0 else k


def category_codes(categories: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(n_items,) int64: equal codes for equal categories; each missing one a code of its own."""
    encoded = pc.dictionary_encode(categories.combine_chunks() if isinstance(categories, pa.ChunkedArray)
                                   else categories)
    codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
    missing = codes < 0
    codes[missing] = len(encoded.dictionary) + np.flatnonzero(missing)
    return codes


def mmr(ranked: pa.Table, codes: np.ndarray, k: int, diversity: float) -> pa.Table:
    """Each user's best ``k`` of ``ranked`` (user_idx, item_idx, rank, score; a pool per user,
    any order) by MMR; same columns, rank 1..k, sorted by user then rank."""
    ranked = ranked.sort_by([("user_idx", "ascending"), ("rank", "ascending")])
    user = ranked["user_idx"].to_numpy()
    if len(user) == 0:
        return ranked
    users, start, count = np.unique(user, return_index=True, return_counts=True)
    width = int(count.max())
    row = np.repeat(np.arange(len(users)), count)
    col = np.arange(len(user)) - np.repeat(start, count)
    valid = np.zeros((len(users), width), bool)
    valid[row, col] = True
    pos = np.full((len(users), width), -1)
    pos[row, col] = np.arange(len(user))
    score = np.zeros((len(users), width))
    score[row, col] = ranked["score"].to_numpy()
    lo = np.where(valid, score, np.inf).min(axis=1, keepdims=True)
    hi = np.where(valid, score, -np.inf).max(axis=1, keepdims=True)
    relevance = np.where(hi > lo, (score - lo) / np.where(hi > lo, hi - lo, 1), 1.0)
    cat = np.full((len(users), width), -1, np.int64)
    cat[row, col] = codes[ranked["item_idx"].to_numpy()]
    covered = np.zeros((len(users), width), bool)
    open_ = valid.copy()
    chosen = []
    every = np.arange(len(users))
    for _ in range(min(k, width)):
        value = np.where(open_, (1 - diversity) * relevance - diversity * covered, -np.inf)
        best = value.argmax(axis=1)
        ok = open_[every, best]
        chosen.append(np.where(ok, pos[every, best], -1))
        open_[every, best] = False
        covered |= ok[:, None] & (cat == cat[every, best][:, None])
    picked = np.stack(chosen, axis=1)  # (users, ≤ k) rows of ranked, -1 where a pool ran out
    keep = picked >= 0
    out = ranked.take(pa.array(picked[keep]))
    new_rank = np.broadcast_to(np.arange(1, picked.shape[1] + 1), picked.shape)[keep]
    return out.set_column(out.column_names.index("rank"), "rank", pa.array(new_rank, out["rank"].type))


def rerank(tables: Iterable[pa.Table], categories: pa.ChunkedArray | pa.Array, k: int,
           diversity: float) -> list[pa.Table]:
    """:func:`mmr` on each table (``categories``: one per item index); unchanged when ``diversity`` is 0."""
    tables = list(tables)
    if diversity <= 0:
        return tables
    codes = category_codes(categories)
    return [mmr(t, codes, k, diversity) for t in tables]
