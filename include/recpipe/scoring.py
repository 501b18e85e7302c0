"""Top-k scoring of users × all items, batched so memory stays bounded.

Used alike by evaluation (full ranking on the hold-out) and publishing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.models import Recommender

BATCH_USERS = 4096


def top_k(
    model: Recommender,
    users: np.ndarray,
    n_items: int,
    k: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    blocked: np.ndarray | None = None,
) -> pa.Table:
    """Each user's k best items: table (user_idx, item_idx, rank, score).

    users:   (n,) sorted user indices to score.
    exclude: (user_idx, item_idx) pairs never to recommend (e.g. past purchases).
    blocked: (n_items,) bool, items nobody gets (e.g. unavailable).
    Ties break towards the lower item index, so the output is deterministic. Users whose
    every item is excluded get fewer than k rows.
    """
    k = min(k, n_items)
    out_u, out_i, out_s = [], [], []
    ex_u, ex_i = exclude if exclude is not None else (np.array([], int), np.array([], int))
    for lo in range(0, len(users), BATCH_USERS):
        batch = users[lo : lo + BATCH_USERS]
        scores = np.array(model.score(batch, n_items), dtype=np.float32)  # writable copy
        if blocked is not None:
            scores[:, blocked] = -np.inf
        pos = np.searchsorted(batch, ex_u)
        hit = pos < len(batch)
        hit[hit] = batch[pos[hit]] == ex_u[hit]
        scores[pos[hit], ex_i[hit]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=-1)
        items = np.take_along_axis(part, order, axis=1)
        out_u.append(np.repeat(batch, k))
        out_i.append(items.ravel())
        out_s.append(np.take_along_axis(part_scores, order, axis=1).ravel())
    users_col = np.concatenate(out_u) if out_u else np.array([], np.int32)
    table = pa.table({
        "user_idx": pa.array(users_col.astype(np.int32)),
        "item_idx": pa.array((np.concatenate(out_i) if out_i else np.array([])).astype(np.int32)),
        "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int16), len(users))),
        "score": pa.array((np.concatenate(out_s) if out_s else np.array([])).astype(np.float32)),
    })
    return table.filter(pc.is_finite(table["score"]))
