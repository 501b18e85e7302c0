"""Ranking metrics at K over any recommendations table and any ground truth.

Every metric has one signature, ``metric(hits) -> float``, over :class:`Hits`, which
:func:`rank_hits` computes once from

- ``truth``: DataFrame (user_id, item_id), the relevant items (binary relevance);
- ``recs``:  DataFrame (user_id, item_id, rank), rank 1 = best.

Averages run over the users that have at least one relevant item; such a user with no
recommendation scores 0. Definitions (standard literature):

- precision@K = hits / K;       recall@K = hits / #relevant
- hit_rate@K  = 1 if hits > 0;  mrr@K = 1 / rank of the first hit
- ndcg@K = Σ_hits 1/log2(rank+1) / Σ_{i=1..min(#relevant, K)} 1/log2(i+1)
- map@K  = Σ_hits precision@rank / min(#relevant, K)

``evaluate(truth, recs, k)`` returns them all as ``{"ndcg@10": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from recpipe.errors import DataError


@dataclass(frozen=True)
class Hits:
    """Per evaluated user (aligned arrays): #relevant, #hits, DCG, first-hit rank, Σ precision@hit."""

    k: int
    n_relevant: np.ndarray
    n_hits: np.ndarray
    dcg: np.ndarray
    first_rank: np.ndarray  # inf where no hit
    sum_precision: np.ndarray


def _check(df: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name} lacks column(s) {missing}; it has {list(df.columns)}.")


def rank_hits(truth: pd.DataFrame, recs: pd.DataFrame, k: int) -> Hits:
    """Join the top-k of ``recs`` with ``truth`` once; every metric reads the result."""
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}.")
    _check(truth, "truth", ("user_id", "item_id"))
    _check(recs, "recommendations", ("user_id", "item_id", "rank"))
    truth = truth[["user_id", "item_id"]].drop_duplicates()
    n_rel = truth.groupby("user_id").size()
    top = recs.loc[recs["rank"] <= k, ["user_id", "item_id", "rank"]]
    if top.duplicated(["user_id", "item_id"]).any():
        raise DataError("recommendations list an item twice for the same user; dedupe before evaluating.")
    hits = top.merge(truth, on=["user_id", "item_id"]).sort_values(["user_id", "rank"], kind="stable")
    hits["nth"] = hits.groupby("user_id").cumcount() + 1
    hits["gain"] = 1.0 / np.log2(hits["rank"] + 1.0)
    hits["prec"] = hits["nth"] / hits["rank"]
    per_user = hits.groupby("user_id").agg(
        n_hits=("nth", "size"), dcg=("gain", "sum"), first_rank=("rank", "min"), sum_precision=("prec", "sum")
    ).reindex(n_rel.index)
    return Hits(
        k=k,
        n_relevant=n_rel.to_numpy(),
        n_hits=per_user["n_hits"].fillna(0).to_numpy(),
        dcg=per_user["dcg"].fillna(0.0).to_numpy(),
        first_rank=per_user["first_rank"].fillna(np.inf).to_numpy(dtype=float),
        sum_precision=per_user["sum_precision"].fillna(0.0).to_numpy(),
    )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def precision(h: Hits) -> float:
    return _mean(h.n_hits / h.k)


def recall(h: Hits) -> float:
    return _mean(h.n_hits / h.n_relevant)


def hit_rate(h: Hits) -> float:
    return _mean(h.n_hits > 0)


def mrr(h: Hits) -> float:
    return _mean(1.0 / h.first_rank)


def ndcg(h: Hits) -> float:
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, h.k + 2)))  # ideal[i-1] = IDCG with i relevant
    return _mean(h.dcg / ideal[np.minimum(h.n_relevant, h.k) - 1])


def map_at_k(h: Hits) -> float:
    return _mean(h.sum_precision / np.minimum(h.n_relevant, h.k))


METRICS: dict[str, Callable[[Hits], float]] = {
    "precision": precision,
    "recall": recall,
    "ndcg": ndcg,
    "map": map_at_k,
    "hit_rate": hit_rate,
    "mrr": mrr,
}


def coverage(recs: pd.DataFrame, n_items: int, k: int) -> float:
    """Share of the catalog's ``n_items`` that appear in anyone's top-k."""
    _check(recs, "recommendations", ("item_id", "rank"))
    return float(recs.loc[recs["rank"] <= k, "item_id"].nunique() / n_items) if n_items else 0.0


def evaluate(truth: pd.DataFrame, recs: pd.DataFrame, k: int, n_items: int | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` at ``k`` (and coverage when ``n_items`` is given)."""
    h = rank_hits(truth, recs, k)
    out = {f"{name}@{k}": fn(h) for name, fn in METRICS.items()}
    if n_items is not None:
        out[f"coverage@{k}"] = coverage(recs, n_items, k)
    out["users"] = len(h.n_relevant)
    return out
