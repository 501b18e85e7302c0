"""Paired significance over users: is candidate − baseline more than noise?

``paired_bootstrap(a, b, level)``: ``a`` and ``b`` are one metric per user (aligned (n,)
arrays: the same users in the same order, e.g. two :func:`recpipe.evaluation.per_user`
Series over the same hold-out). It resamples the users with replacement ``resamples`` times
(seeded) and returns the percentile interval of the mean difference a − b at ``level``
(two-sided: the (1 − level)/2 and (1 + level)/2 quantiles of the resampled means).

Above :data:`MAX_UNITS` users, the users are dealt at random into that many blocks of
(nearly) equal size and the blocks are resampled (the mean: Σ block sums / Σ block sizes):
a random partition leaves the blocks i.i.d., so the interval estimates the same sampling
spread at a cost of O(users + MAX_UNITS × resamples) instead of O(users × resamples).
"""

from __future__ import annotations

import numpy as np

from recpipe.errors import DataError

#: resampled units gathered at once (bounds the memory: 8 bytes each)
CHUNK_CELLS = 1 << 22
#: most units resampled: more users than this are resampled in random blocks
MAX_UNITS = 20_000


def paired_bootstrap(a: np.ndarray, b: np.ndarray, level: float = 0.9, resamples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """``{"mean", "low", "high", "level", "resamples", "users"}`` of mean(a − b) over users."""
    if np.shape(a) != np.shape(b) or np.ndim(a) != 1:
        raise DataError(f"paired_bootstrap needs aligned 1-d arrays (one value per user), got {np.shape(a)} "
                        f"and {np.shape(b)}.")
    if not 0 < level < 1 or resamples < 1:
        raise DataError(f"paired_bootstrap needs 0 < level < 1 and resamples >= 1, got {level} and {resamples}.")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    out = {"level": level, "resamples": resamples, "users": n}
    if n == 0:
        return {"mean": 0.0, "low": 0.0, "high": 0.0, **out}
    rng = np.random.default_rng(seed)
    sums, sizes = d, np.ones(n)
    if n > MAX_UNITS:
        block = rng.permutation(n) % MAX_UNITS
        sums, sizes = np.bincount(block, d, MAX_UNITS), np.bincount(block, minlength=MAX_UNITS).astype(float)
    units = len(sums)
    means = np.empty(resamples)
    step = max(1, CHUNK_CELLS // units)
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        pick = rng.integers(0, units, size=(m, units))
        means[start:start + m] = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), **out}
