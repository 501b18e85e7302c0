"""Recommendation metrics, standard definitions, one signature per family.

Tables (pandas DataFrames or pyarrow Tables; columns are checked before any metric):

- ``truth``: (user_id, item_id), the relevant items (binary relevance);
- ``recs``:  (user_id, item_id, rank), rank 1 = best. A user's list is ordered by rank;
  equal ranks keep the table's order, and position p in that order is "rank p" below.
- ``popularity``: (item_id, count), interactions per item (e.g. in training).

**Ranking @K** — ``metric(hits) -> float`` over :class:`Hits` (:func:`rank_hits`). Averages
run over the users with at least one relevant item; users without any (only in ``recs``)
are excluded, and a relevant user with no recommendation scores 0. With ``rel`` relevant:

- precision@K = hits / K (also when the list is shorter than K);  recall@K = hits / rel
- hit_rate@K  = 1 if hits > 0;  mrr@K = 1 / rank of the first hit (0 without a hit)
- ndcg@K = Σ_hits 1/log2(rank+1) / Σ_{i=1..min(rel, K)} 1/log2(i+1)
- map@K  = Σ_hits precision@rank / min(rel, K)

**Catalog @K** — ``metric(recs, catalog, k) -> float`` over everyone's top-K:

- coverage(recs, n_items, k): share of the ``n_items`` catalog recommended to anyone;
- novelty(recs, popularity, k): mean self-information −log2(count_i / Σ count) of the
  recommended items, per user then over users; an item counted 0 (or absent) counts as 1;
- distributional_coverage(recs, k): Shannon entropy (bits) of how often each item is
  recommended (log2 of the number of items when all are recommended equally often);
- gini(recs, n_items, k): Gini index of those counts over the whole catalog (0: every item
  equally often, → 1: everyone gets the same few items);
- intra_list_diversity(recs, categories, k): per user, the share of pairs of their top-k in
  different categories (``categories``: item_id, category; a missing one differs from all),
  averaged over users with two items or more;
- personalization(recs, k): 1 − mean Jaccard similarity of two users' top-k sets, over all
  pairs, or ``max_pairs`` pairs drawn (seeded) when there are more.

:data:`BEYOND_ACCURACY` names these; :func:`beyond_accuracy` computes each whose tables are given.

**Pointwise** — ``auc(labels, scores, users=None) -> float``: ROC AUC, ties count 1/2;
with ``users``, the mean of per-user AUCs over users having a positive and a negative.

``evaluate(truth, recs, k)`` returns the ranking metrics as ``{"ndcg@10": ..., "users": n}``;
``per_user(truth, recs, k, "ndcg")`` one metric per evaluated user (a Series by user id, for
paired tests: ``recpipe.evaluation.significance``; :data:`PER_USER` lists those metrics).

Tables whose columns have other names say so, as in Microsoft Recommenders:
``evaluate(truth, recs, 10, col_user="user_idx", col_item="item_idx")``. Every function
taking tables accepts ``col_user``, ``col_item``, ``col_rank`` and ``col_count``
(:func:`with_columns` checks and renames them).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from recpipe.errors import DataError

TRUTH = ("user_id", "item_id")
RECS = ("user_id", "item_id", "rank")
POPULARITY = ("item_id", "count")


@dataclass(frozen=True)
class Hits:
    """Per evaluated user, aligned (n_users,) arrays: #relevant, #hits in the top k, DCG,
    rank of the first hit (inf without one), Σ precision@rank over the hits; ``users``: their ids."""

    k: int
    n_relevant: np.ndarray
    n_hits: np.ndarray
    dcg: np.ndarray
    first_rank: np.ndarray
    sum_precision: np.ndarray
    users: np.ndarray | None = None


def table(df: pd.DataFrame | pa.Table, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """``df`` as a DataFrame of ``columns``; DataError naming the table and what it lacks."""
    have = list(df.column_names if isinstance(df, pa.Table) else df.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"{name} table lacks column(s) {missing}; it has {have}.")
    if isinstance(df, pa.Table):
        return df.select(list(columns)).to_pandas()
    return df[list(columns)]


CATEGORIES = ("item_id", "category")

#: table argument → (what it is called in errors, its canonical columns)
TABLE_ARGS = {"truth": ("truth", TRUTH), "recs": ("recommendations", RECS), "popularity": ("popularity", POPULARITY),
              "categories": ("categories", CATEGORIES)}


def with_columns(fn: Callable) -> Callable:
    """Give ``fn`` the keyword arguments ``col_user``, ``col_item``, ``col_rank``, ``col_count``,
    ``col_category``: its table arguments (``truth``, ``recs``, ``popularity``, ``categories``)
    are checked for those columns and renamed to the canonical ``user_id``, ``item_id``,
    ``rank``, ``count``, ``category`` before the call."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, col_user: str = "user_id", col_item: str = "item_id", col_rank: str = "rank",
                col_count: str = "count", col_category: str = "category", **kwargs):
        given = {"user_id": col_user, "item_id": col_item, "rank": col_rank, "count": col_count,
                 "category": col_category}
        canonical = {v: k for k, v in given.items()}
        bound = signature.bind(*args, **kwargs)
        for arg, (label, columns) in TABLE_ARGS.items():
            if bound.arguments.get(arg) is not None:
                df = table(bound.arguments[arg], label, tuple(given[c] for c in columns))
                bound.arguments[arg] = df.rename(columns=canonical)
        return fn(*bound.args, **bound.kwargs)

    return wrapper


def _check_k(k: int) -> None:
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}.")


@with_columns
def top(recs: pd.DataFrame | pa.Table, k: int) -> pd.DataFrame:
    """(user_id, item_id, rank) of each user's first k items, rank renumbered 1..k by position."""
    _check_k(k)
    if recs.duplicated(["user_id", "item_id"]).any():
        raise DataError("recommendations list an item twice for the same user; dedupe before evaluating.")
    recs = recs.sort_values(["user_id", "rank"], kind="stable")
    position = recs.groupby("user_id", sort=False).cumcount().to_numpy() + 1
    keep = position <= k
    return pd.DataFrame({"user_id": recs["user_id"].to_numpy()[keep], "item_id": recs["item_id"].to_numpy()[keep],
                         "rank": position[keep]})


@with_columns
def rank_hits(truth: pd.DataFrame | pa.Table, recs: pd.DataFrame | pa.Table, k: int) -> Hits:
    """Join the top-k of ``recs`` with ``truth`` once; every ranking metric reads the result."""
    truth = truth.drop_duplicates()
    best = top(recs, k)
    n_rel = truth.groupby("user_id").size()
    hits = best.merge(truth, on=["user_id", "item_id"]).sort_values(["user_id", "rank"], kind="stable")
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
        users=n_rel.index.to_numpy(),
    )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def precision(h: Hits) -> float:
    return _mean(h.n_hits / h.k)


def recall(h: Hits) -> float:
    return _mean(h.n_hits / h.n_relevant)


def hit_rate(h: Hits) -> float:
    return _mean(hit_rate_per_user(h))


def mrr(h: Hits) -> float:
    return _mean(1.0 / h.first_rank)


def ndcg_per_user(h: Hits) -> np.ndarray:
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, h.k + 2)))  # ideal[i-1] = IDCG with i relevant
    return h.dcg / ideal[np.minimum(h.n_relevant, h.k) - 1]


def hit_rate_per_user(h: Hits) -> np.ndarray:
    return (h.n_hits > 0).astype(float)


def ndcg(h: Hits) -> float:
    return _mean(ndcg_per_user(h))


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

#: metrics with a value per user (their mean is the metric of :data:`METRICS`)
PER_USER: dict[str, Callable[[Hits], np.ndarray]] = {"ndcg": ndcg_per_user, "hit_rate": hit_rate_per_user}


@with_columns
def per_user(truth: pd.DataFrame | pa.Table, recs: pd.DataFrame | pa.Table, k: int, metric: str = "ndcg") -> pd.Series:
    """``metric``@k of each user with a relevant item, indexed by user id (ascending)."""
    if metric not in PER_USER:
        raise DataError(f"no per-user metric {metric!r}: choose one of {', '.join(PER_USER)}.")
    _check_k(k)
    h = rank_hits(truth, recs, k)
    return pd.Series(PER_USER[metric](h), index=h.users, name=f"{metric}@{k}")


@with_columns
def coverage(recs: pd.DataFrame | pa.Table, n_items: int, k: int) -> float:
    """Share of the catalog's ``n_items`` that appear in anyone's top-k."""
    best = top(recs, k)
    return float(best["item_id"].nunique() / n_items) if n_items else 0.0


@with_columns
def novelty(recs: pd.DataFrame | pa.Table, popularity: pd.DataFrame | pa.Table, k: int) -> float:
    """Mean over users of the mean −log2(count_i / Σ count) of their top-k items."""
    best = top(recs, k)
    if best.empty:
        return 0.0
    counts = popularity.groupby("item_id")["count"].sum()
    total = float(counts.sum())
    seen = best["item_id"].map(counts).fillna(0).to_numpy(dtype=float)
    info = pd.Series(-np.log2(np.maximum(seen, 1.0) / max(total, 1.0)), index=best.index)
    return float(info.groupby(best["user_id"]).mean().mean())


@with_columns
def distributional_coverage(recs: pd.DataFrame | pa.Table, k: int) -> float:
    """Entropy (bits) of the items' shares of all top-k recommendations."""
    counts = top(recs, k)["item_id"].value_counts().to_numpy(dtype=float)
    p = counts / counts.sum() if len(counts) else counts
    return float(-(p * np.log2(p)).sum())


@with_columns
def gini(recs: pd.DataFrame | pa.Table, n_items: int, k: int) -> float:
    """Gini index of how often each of the ``n_items`` is in someone's top-k (unrecommended: 0)."""
    counts = top(recs, k)["item_id"].value_counts().to_numpy(dtype=float)
    if n_items < 1 or counts.sum() == 0:
        return 0.0
    x = np.sort(np.concatenate([np.zeros(max(n_items - len(counts), 0)), counts]))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


@with_columns
def intra_list_diversity(recs: pd.DataFrame | pa.Table, categories: pd.DataFrame | pa.Table, k: int) -> float:
    """Mean over users (with 2+ items) of the share of their top-k pairs in different categories."""
    best = top(recs, k)
    labels = categories.drop_duplicates("item_id").set_index("item_id")["category"]
    cat = best["item_id"].map(labels)
    cat = cat.where(cat.notna(), "\0missing:" + best["item_id"].astype(str))  # a missing category matches none
    n = best.groupby("user_id").size()
    same = pd.DataFrame({"u": best["user_id"], "c": cat}).groupby(["u", "c"]).size()
    same = (same * (same - 1) / 2).groupby(level=0).sum()
    pairs = n * (n - 1) / 2
    keep = pairs > 0
    return float((1 - same[keep.index[keep]] / pairs[keep]).mean()) if keep.any() else 0.0


@with_columns
def personalization(recs: pd.DataFrame | pa.Table, k: int, max_pairs: int = 10_000, seed: int = 0) -> float:
    """1 − mean Jaccard(top-k of u, top-k of v) over user pairs (all, or ``max_pairs`` drawn)."""
    best = top(recs, k)[["user_id", "item_id"]]
    users = best["user_id"].unique()
    n = len(users)
    if n < 2:
        return 0.0
    if n * (n - 1) // 2 <= max_pairs:
        a, b = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(seed)
        a = rng.integers(0, n, max_pairs)
        b = (a + rng.integers(1, n, max_pairs)) % n  # never the same user
    size = best.groupby("user_id").size()
    pairs = pd.DataFrame({"pair": np.arange(len(a)), "user_id": users[a], "other": users[b]})
    left = pairs.merge(best, on="user_id")
    both = left.merge(best.rename(columns={"user_id": "other"}), on=["other", "item_id"])
    inter = both.groupby("pair").size().reindex(pairs["pair"], fill_value=0).to_numpy(dtype=float)
    union = size[users[a]].to_numpy() + size[users[b]].to_numpy() - inter
    return float(1 - np.mean(inter / union))


#: beyond-accuracy metrics over everyone's top-K: name → function (see the module's docstring)
BEYOND_ACCURACY: dict[str, Callable[..., float]] = {
    "coverage": coverage,
    "distributional_coverage": distributional_coverage,
    "gini": gini,
    "novelty": novelty,
    "intra_list_diversity": intra_list_diversity,
    "personalization": personalization,
}


def beyond_accuracy(recs: pd.DataFrame | pa.Table, k: int, n_items: int | None = None,
                    popularity: pd.DataFrame | pa.Table | None = None, categories: pd.DataFrame | pa.Table | None = None,
                    max_pairs: int = 10_000, **columns: str) -> dict[str, float]:
    """``{"<name>@k": value}`` for each metric of :data:`BEYOND_ACCURACY` whose inputs are given
    (``n_items`` for coverage and gini, ``popularity`` for novelty, ``categories`` for
    intra-list diversity; ``max_pairs`` for personalization); ``columns``: ``col_user=...`` and
    the like, as for every metric."""
    given = {"n_items": n_items, "popularity": popularity, "categories": categories, "max_pairs": max_pairs}
    out = {}
    for name, fn in BEYOND_ACCURACY.items():
        needs = [p for p in inspect.signature(fn).parameters if p in given]
        if all(given[p] is not None for p in needs):
            out[f"{name}@{k}"] = fn(recs, k=k, **{p: given[p] for p in needs}, **columns)
    return out


def auc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray | None = None) -> float:
    """ROC AUC by mid-ranks (Mann–Whitney U / (n_pos · n_neg)): ties count as 1/2.

    labels: (n,) bool or 0/1; scores: (n,) higher = more likely positive; users: (n,)
    optional group ids → mean of per-user AUCs over users with both classes (others are
    excluded). NaN when no positive–negative pair exists.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape or y.ndim != 1 or (users is not None and np.shape(users) != y.shape):
        raise DataError(f"auc needs aligned 1-d arrays; got labels {y.shape}, scores {s.shape}.")
    if not np.isin(y, (0, 1)).all() or np.isnan(s).any():
        raise DataError("auc needs labels in {0, 1} and scores without NaN.")
    group = np.zeros(len(y), np.int64) if users is None else pd.factorize(np.asarray(users))[0]
    order = np.lexsort((s, group))
    g, s, y = group[order], s[order], y[order].astype(float)
    idx = np.arange(len(y))
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_tie = new_group | np.r_[True, s[1:] != s[:-1]]
    tie_id = np.cumsum(new_tie) - 1
    tie_start = idx[new_tie]
    tie_end = np.r_[tie_start[1:], len(y)] - 1
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    mid_rank = (tie_start[tie_id] + tie_end[tie_id]) / 2 - group_start + 1  # 1-based within group
    n_groups = g[-1] + 1 if len(g) else 0
    n_pos = np.bincount(g, weights=y, minlength=n_groups)
    n_neg = np.bincount(g, minlength=n_groups) - n_pos
    rank_sum = np.bincount(g, weights=mid_rank * y, minlength=n_groups)
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    per_group = (rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2) / (n_pos[both] * n_neg[both])
    return float(per_group.mean())


@with_columns
def evaluate(truth: pd.DataFrame | pa.Table, recs: pd.DataFrame | pa.Table, k: int,
             n_items: int | None = None, popularity: pd.DataFrame | pa.Table | None = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` at ``k``, ``coverage@k`` when ``n_items`` is given,
    ``novelty@k`` when ``popularity`` is; ``users``: how many users the averages ran over."""
    _check_k(k)
    h = rank_hits(truth, recs, k)
    out = {f"{name}@{k}": fn(h) for name, fn in METRICS.items()}
    if n_items is not None:
        out[f"coverage@{k}"] = coverage(recs, n_items, k)
    if popularity is not None:
        out[f"novelty@{k}"] = novelty(recs, popularity, k)
    out["users"] = len(h.n_relevant)
    return out
