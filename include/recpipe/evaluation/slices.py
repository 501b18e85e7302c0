"""Metrics per slice of the evaluated users or of the relevant items.

A slice is a boolean mask over the rows of ``truth`` (user_id, item_id): a user slice keeps
all rows of its users, an item slice the rows of its items (a user counts in an item slice
when one of their relevant items is in it). :func:`per_user_by_slice` evaluates every
contender's lists against each slice's truth; the labels below build the usual masks:

- :func:`terciles` — low / mid / high thirds of a per-user value (e.g. past activity);
- :func:`popularity_bands` — head / torso / tail items: by descending popularity, the items
  that make the first third of all interactions, the next third, and the rest (unseen too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from recpipe.evaluation.metrics import PER_USER, per_user

TERCILES = ("low", "mid", "high")
BANDS = ("head", "torso", "tail")


def terciles(values: np.ndarray) -> np.ndarray:
    """(n,) labels from :data:`TERCILES`: values up to the 1/3 quantile, up to the 2/3, above."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return np.array([], dtype=object)
    q1, q2 = np.quantile(v, [1 / 3, 2 / 3])
    return np.array(TERCILES, dtype=object)[np.where(v <= q1, 0, np.where(v <= q2, 1, 2))]


def popularity_bands(popularity: np.ndarray) -> np.ndarray:
    """(n_items,) labels from :data:`BANDS` by the share of interactions before each item."""
    pop = np.asarray(popularity, dtype=float)
    order = np.argsort(-pop, kind="stable")
    total = pop.sum()
    before = (np.cumsum(pop[order]) - pop[order]) / total if total > 0 else np.ones(len(pop))
    band = np.empty(len(pop), dtype=np.int64)
    band[order] = np.minimum((before * 3).astype(np.int64), 2)
    band[pop <= 0] = 2
    return np.array(BANDS, dtype=object)[band]


def per_user_by_slice(truth: pd.DataFrame | pa.Table, recs: dict[str, pd.DataFrame | pa.Table], k: int,
                      masks: dict[str, np.ndarray], col_user: str = "user_id", col_item: str = "item_id",
                      col_rank: str = "rank") -> dict[str, dict[str, pd.DataFrame]]:
    """``{slice: {contender: DataFrame}}``: each :data:`PER_USER` metric @k (columns ``ndcg@k``,
    ``hit_rate@k``) of every user of that slice (index: user id, the same users for every
    contender), ``recs`` being ``{contender: its lists}`` and ``masks`` ``{slice: (len(truth),) bool}``."""
    truth = truth.to_pandas() if isinstance(truth, pa.Table) else truth
    cols = {"col_user": col_user, "col_item": col_item, "col_rank": col_rank}
    out = {}
    for name, mask in masks.items():
        part = truth[np.asarray(mask, dtype=bool)]
        out[name] = {role: pd.DataFrame({f"{m}@{k}": per_user(part, r, k, m, **cols) for m in PER_USER})
                     for role, r in recs.items()}
    return out
