"""Top-k scoring of users × all items, batched so memory stays bounded.

Used alike by evaluation (full ranking on the hold-out) and publishing.

Order: value descending, ties towards the lower item index, so the output is
deterministic. Selection never sorts a whole row: each row's items are split into
``nb`` strided groups (item j is in group ``j % nb``), the k groups with the largest
maximum are kept, and the top k among their items is exact whenever no item outside
them ties the k-th value (proof: the kept groups hold k maxima ≥ every item outside).
Rows where it could (ties at the boundary, ``-inf``, NaN) take the exact path instead.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CELLS_PER_BATCH = 1 << 24  # scores held at once (users × items float32: 64 MiB)
REASON_CELLS = 1 << 18  # item-vector floats gathered at once by Reasons (1 MiB)


class Recommender(Protocol):
    """What scoring needs of a model (``recpipe.models.Recommender`` provides it)."""

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray: ...

    def knows(self, users: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Logits(Protocol):
    """Optional fast path for a :class:`Recommender` whose ``score`` is ``link(logits)``.

    ``logits(users, n_items)``: (len(users), n_items) float32, a new array the caller
    may overwrite; -inf for items the model never saw. ``link``: the elementwise,
    non-decreasing map to the published score (e.g. sigmoid), so ``top_k`` ranks by the
    logits and applies ``link`` to the k winners only.
    """

    def logits(self, users: np.ndarray, n_items: int) -> np.ndarray: ...

    def link(self, logits: np.ndarray) -> np.ndarray: ...


class Reasons:
    """Which of a user's own items most supports each recommended item (computed per scoring batch).

    users: (m,) sorted distinct user indices; history: (m, L) each one's recent items, −1
    pads; vectors: (n, d) item vectors (None: the model has none). For a recommended item i
    the reason item is i itself when the user touched it, else the history item h ≠ i with the
    highest cosine similarity of their vectors (the first such h on ties), else −1 (no history
    item has a vector, or i has none). Cost per user: k × L dot products of length d.
    """

    def __init__(self, users: np.ndarray, history: np.ndarray, vectors: np.ndarray | None):
        self.users, self.history = np.asarray(users), np.asarray(history)
        self.vectors = None
        if vectors is not None:
            v = np.asarray(vectors, np.float32)
            self.vectors = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.float32(1e-12))

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B,) users, (B, k) their recommended items → (B, k) int32 reason items, −1 for none."""
        d = 1 if self.vectors is None else self.vectors.shape[1]
        step = max(1, REASON_CELLS // max(items.shape[1] * d, 1))  # (step, k, d) floats stay in cache
        if len(users) <= step:
            return self._chunk(users, items)
        return np.concatenate([self._chunk(users[lo:lo + step], items[lo:lo + step])
                               for lo in range(0, len(users), step)])

    def _chunk(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows = np.minimum(np.searchsorted(self.users, users), max(len(self.users) - 1, 0))
        hist = np.take(self.history, rows, axis=0) if len(self.users) else np.full((len(users), 0), -1)
        hist = np.where((self.users[rows] == users)[:, None], hist, -1) if len(self.users) else hist
        own = np.zeros(items.shape, bool)  # (B, k): the user touched the item (L passes over (B, k): no (B, k, L))
        for column in hist.T:
            own |= items == column[:, None]
        out = np.full(items.shape, -1, np.int64)
        if self.vectors is not None and hist.shape[1]:
            n = len(self.vectors)
            has = (hist >= 0) & (hist < n)
            # np.take: ~10× a fancy index; contiguous operands: matmul runs BLAS per user, not its own loop
            theirs = np.ascontiguousarray(np.take(self.vectors, np.where(has, hist, 0), axis=0).transpose(0, 2, 1))
            sims = np.matmul(np.take(self.vectors, np.minimum(items, n - 1), axis=0), theirs)  # (B, k, L)
            sims += np.where(has, np.float32(0), np.float32(-np.inf))[:, None, :]  # padding never wins
            best = np.argmax(sims, axis=2)
            found = has.any(axis=1)[:, None] & (items < n)
            out = np.where(found, np.take_along_axis(hist, best, 1), -1)
        return np.where(own, items, out).astype(np.int32)  # an item the user touched is its own reason


def batch_users(n_items: int) -> int:
    """Users per batch: ~CELLS_PER_BATCH scores, enough rows for an efficient GEMM."""
    return max(1, CELLS_PER_BATCH // max(n_items, 1))


def top_k(
    model: Recommender,
    users: np.ndarray,
    n_items: int,
    k: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    blocked: np.ndarray | None = None,
    reasons: Reasons | None = None,
) -> pa.Table:
    """Each user's k best items: table (user_idx int32, item_idx int32, rank int16, score float32).

    users:   (n,) distinct user indices to score (any order; the output follows it).
    exclude: (user_idx, item_idx) pairs never to recommend (e.g. past purchases).
    blocked: (n_items,) bool, items nobody gets (e.g. unavailable).
    Models implementing :class:`Logits` are ranked by logits (finer than a saturated
    sigmoid) and scored ``link(logit)``; others by ``score``. Items scoring -inf or NaN
    (excluded, blocked, unknown) are dropped, so such users get fewer than k rows.
    reasons: also a column ``reason_idx`` (int32, −1 for none), each batch's :class:`Reasons`.
    """
    users = np.asarray(users)
    k = min(k, n_items)
    n = len(users)
    if k < 1 or n == 0:
        empty = _table(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.float32))
        return empty if reasons is None else empty.append_column("reason_idx", pa.array([], pa.int32()))
    fast = isinstance(model, Logits)
    ex_u, ex_i = _sorted_pairs(exclude)
    blocked_idx = np.flatnonzero(blocked) if blocked is not None else np.zeros(0, np.intp)
    out_i = np.empty((n, k), np.int32)
    out_s = np.empty((n, k), np.float32)
    out_r = np.empty((n, k), np.int32) if reasons is not None else None
    step = batch_users(n_items)
    for lo in range(0, n, step):
        batch = users[lo : lo + step]
        if fast:
            vals = model.logits(batch, n_items)
            if vals.dtype != np.float32 or not vals.flags.writeable:
                vals = vals.astype(np.float32)
        else:  # score() may return a view of the model's state: never write into it
            vals = np.array(model.score(batch, n_items), dtype=np.float32, copy=True)
        vals[:, blocked_idx] = -np.inf
        rows, cols = _pairs_in(batch, ex_u, ex_i)
        vals[rows, cols] = -np.inf
        best = select(vals, k)
        out_i[lo : lo + len(batch)] = best
        out_s[lo : lo + len(batch)] = np.take_along_axis(vals, best, axis=1)
        if out_r is not None:
            out_r[lo : lo + len(batch)] = reasons(batch, best)
    keep = np.isfinite(out_s).ravel()
    if fast:
        out_s = np.asarray(model.link(out_s), dtype=np.float32)
    user_col = np.repeat(users.astype(np.int32, copy=False), k)
    rank_col = np.tile(np.arange(1, k + 1, dtype=np.int16), n)
    cols = (user_col, out_i.ravel(), rank_col, out_s.ravel()) + (() if out_r is None else (out_r.ravel(),))
    if not keep.all():
        cols = tuple(c[keep] for c in cols)
    table = _table(*cols[:4])
    return table if out_r is None else table.append_column("reason_idx", pa.array(cols[4], pa.int32()))


def top_k_with_fallback(
    model: Recommender,
    fallback: Recommender,
    users: np.ndarray,
    n_items: int,
    k: int,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    blocked: np.ndarray | None = None,
    personal: np.ndarray | None = None,
    reasons: Reasons | None = None,
) -> tuple[pa.Table, pa.Table]:
    """(``model``'s top k for the ``personal`` users, ``fallback``'s for the others), as :func:`top_k`.

    personal: (n,) bool mask over ``users``; default ``model.knows(users)``, so a model never
    scores a user it has no row for (an older champion, say) and the fallback serves them.
    reasons: explain ``model``'s rows (the fallback's get ``reason_idx`` −1 then).
    """
    users = np.asarray(users)
    personal = model.knows(users) if personal is None else personal
    fell = top_k(fallback, users[~personal], n_items, k, exclude, blocked)
    if reasons is not None:
        fell = fell.append_column("reason_idx", pa.array(np.full(fell.num_rows, -1, np.int32)))
    return top_k(model, users[personal], n_items, k, exclude, blocked, reasons), fell


def union_pairs(*pairs: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) exclusion pairs of every given set (None: none), as ``exclude`` takes them."""
    given = [p for p in pairs if p is not None]
    return (np.concatenate([np.asarray(u, np.int64) for u, _ in given] + [np.zeros(0, np.int64)]),
            np.concatenate([np.asarray(i, np.int64) for _, i in given] + [np.zeros(0, np.int64)]))


def blend(primary: pa.Table, repeats: pa.Table, slots: int, k: int) -> pa.Table:
    """Each user's first ``slots`` items of ``repeats`` that they touched (score ≥ 0, as the
    ``recent`` model scores them), then ``primary``'s items not already listed, then (when
    ``primary`` runs out) their further touched items of ``repeats``, k in all.
    With repeat slots, ``primary`` is meant to be ranked without the user's touched items
    (``exclude`` = purchases ∪ touched pairs, :func:`union_pairs`): re-engagement in the
    repeat slots, discovery in the others (the gate and publish rank it so).

    Tables as :func:`top_k` returns (user_idx, item_idx, rank, score), each user's rows in
    rank order; the output adds ``repeat`` (bool: the row came from ``repeats``), ranks 1..k.
    """
    rep = repeats.filter(pc.greater_equal(repeats["score"], 0.0)) if slots > 0 else repeats.slice(0, 0)
    users = np.concatenate([rep["user_idx"].to_numpy(), primary["user_idx"].to_numpy()]).astype(np.int64)
    items = np.concatenate([rep["item_idx"].to_numpy(), primary["item_idx"].to_numpy()]).astype(np.int64)
    rep_rank = rep["rank"].to_numpy().astype(np.int64)
    after = int(pc.max(primary["rank"]).as_py() or 0) + slots  # repeats beyond the slots: after every primary row
    order_key = np.concatenate([np.where(rep_rank <= slots, rep_rank, rep_rank + after),
                                primary["rank"].to_numpy() + slots]).astype(np.int64)
    scores = np.concatenate([rep["score"].to_numpy(), primary["score"].to_numpy()])
    source = np.r_[np.ones(rep.num_rows, bool), np.zeros(primary.num_rows, bool)]
    order = np.lexsort((order_key, users))
    pair = (users << 32 | items)[order]
    first = np.ones(len(pair), bool)  # keep each (user, item) once: its earliest position
    seen_order = np.argsort(pair, kind="stable")
    dup = np.zeros(len(pair), bool)
    dup[1:] = pair[seen_order][1:] == pair[seen_order][:-1]
    first[seen_order[dup]] = False
    order = order[first]
    u = users[order]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1] if len(u) else np.zeros(0, np.int64)
    rank = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)])) + 1
    keep = rank <= k
    return pa.table({
        "user_idx": pa.array(u[keep], pa.int32()),
        "item_idx": pa.array(items[order][keep], pa.int32()),
        "rank": pa.array(rank[keep], pa.int16()),
        "score": pa.array(scores[order][keep], pa.float32()),
        "repeat": pa.array(source[order][keep]),
    })


def select(vals: np.ndarray, k: int) -> np.ndarray:
    """(B, n) float32 → (B, k) intp column indices of each row's k best, in order."""
    b, n = vals.shape
    q = max(2, int(np.sqrt(n / k)))  # items per group: balances group pass vs candidates
    nb = n // q  # groups
    if k >= n or nb <= k or not vals.flags.c_contiguous:
        return _exact(vals, k)
    gmax = vals[:, : q * nb].reshape(b, q, nb).max(axis=1)  # (B, nb)
    tail = n - q * nb  # items q*nb + j (j < tail) join group j
    if tail:
        np.maximum(gmax[:, :tail], vals[:, q * nb :], out=gmax[:, :tail])
    groups = np.argpartition(gmax, nb - k, axis=1)[:, nb - k :]  # (B, k)
    np.put_along_axis(gmax, groups, -np.inf, axis=1)
    outside = gmax.max(axis=1)  # best value of any item not in a kept group
    cand = (groups[:, :, None] + nb * np.arange(q + 1)).reshape(b, -1)  # (B, k(q+1)) columns
    missing = cand >= n  # slot q exists only for groups j < tail
    cand[missing] = 0
    cvals = np.take(vals, cand + n * np.arange(b)[:, None])
    cvals[missing] = -np.inf
    pos = np.argpartition(cvals, cvals.shape[1] - k, axis=1)[:, -k:]
    best = _ordered(np.take_along_axis(cvals, pos, axis=1), np.take_along_axis(cand, pos, axis=1))
    kth = vals[np.arange(b), best[:, -1]]
    # exact unless an item outside the selection ties (or beats: -inf, NaN) the k-th value
    ok = (outside < kth) & (np.count_nonzero(cvals >= kth[:, None], axis=1) == k)
    bad = np.flatnonzero(~ok)
    if len(bad):
        best[bad] = _exact(vals[bad], k)
    return best


def _exact(vals: np.ndarray, k: int) -> np.ndarray:
    """Exact (B, n) → (B, k): every item above the k-th value, then the lowest-index ties."""
    vals = np.where(np.isnan(vals), np.float32(-np.inf), vals)  # NaN ranks last
    b, n = vals.shape
    t = np.partition(vals, n - k, axis=1)[:, n - k]  # k-th largest value per row
    rows, cols = np.nonzero(vals >= t[:, None])  # ≥ k per row, row-major, columns ascending
    tie = vals[rows, cols] == t[rows]
    seen = np.cumsum(tie)
    tie_rank = seen - np.r_[0, seen][np.searchsorted(rows, np.arange(b))][rows]  # 1, 2, ... per row
    room = k - np.bincount(rows[~tie], minlength=b)
    keep = ~tie | (tie_rank <= room[rows])
    cols = cols[keep].reshape(b, k)
    return _ordered(np.take_along_axis(vals, cols, axis=1), cols)


def _ordered(vals: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sort each row's (value, column) pairs by value descending, then column ascending."""
    order = np.lexsort((cols, -vals), axis=1)
    return np.take_along_axis(cols, order, axis=1).astype(np.intp, copy=False)


def _sorted_pairs(exclude: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ex_u, ex_i = (np.asarray(a) for a in exclude)
    if len(ex_u) > 1 and np.any(ex_u[1:] < ex_u[:-1]):
        order = np.argsort(ex_u, kind="stable")
        ex_u, ex_i = ex_u[order], ex_i[order]
    return ex_u, ex_i


def _pairs_in(batch: np.ndarray, ex_u: np.ndarray, ex_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in batch, item) of the exclusions that concern ``batch``'s users."""
    if not len(ex_u):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    order = np.argsort(batch, kind="stable")
    sb = batch[order]
    lo, hi = np.searchsorted(ex_u, sb[0], side="left"), np.searchsorted(ex_u, sb[-1], side="right")
    u, i = ex_u[lo:hi], ex_i[lo:hi]
    pos = np.searchsorted(sb, u)
    hit = sb[np.minimum(pos, len(sb) - 1)] == u
    return order[pos[hit]], i[hit]


def _table(users: np.ndarray, items: np.ndarray, ranks: np.ndarray, scores: np.ndarray) -> pa.Table:
    return pa.table({
        "user_idx": pa.array(users, pa.int32()),
        "item_idx": pa.array(items, pa.int32()),
        "rank": pa.array(ranks, pa.int16()),
        "score": pa.array(scores, pa.float32()),
    })
