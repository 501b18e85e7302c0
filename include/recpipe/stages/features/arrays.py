"""numpy/Arrow helpers of the features stage: timestamps as int64 µs, sorted runs, pair keys."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY_US = 86_400_000_000
TS = pa.timestamp("us", tz="UTC")
INT64_MIN = np.iinfo(np.int64).min  # a null timestamp in µs arrays
#: Readers of aggregates / writers of tables run this many S3 requests at once.
IO_THREADS = 8
_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """One thread pool for the process's S3 reads and Parquet encoding (threads start once)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="recpipe-io")
    return _pool


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: faster than np.unique's hash for large int arrays)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def pair_key(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One int64 per (user, item): ``user << 32 | item``; sorting it sorts by user, then item."""
    return (users.astype(np.int64) << 32) | items.astype(np.int64)


def split_pair_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pair_key`: (users, items) as int32."""
    return (key >> 32).astype(np.int32), (key & 0xFFFFFFFF).astype(np.int32)


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start positions of the runs of equal values of a sorted array."""
    if not len(sorted_keys):
        return np.zeros(0, np.int64)
    return np.concatenate([[0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1])


def ts_us(table: pa.Table, name: str) -> np.ndarray:
    """A timestamp column as int64 µs (nulls → INT64_MIN)."""
    col = pc.cast(table[name], pa.int64())
    return pc.fill_null(col, INT64_MIN).to_numpy()


def ts_array(values: np.ndarray) -> pa.Array:
    """int64 µs (INT64_MIN = null) → a UTC timestamp array."""
    return pa.array(values, pa.int64(), mask=values == INT64_MIN).cast(TS)


def column(tables: list[pa.Table], name: str) -> np.ndarray:
    """One column of several tables as one numpy array (timestamps as int64 µs, nulls → INT64_MIN)."""
    if not tables:
        return np.zeros(0)
    if pa.types.is_timestamp(tables[0].schema.field(name).type):
        return np.concatenate([ts_us(t, name) for t in tables])
    return np.concatenate([t[name].to_numpy() for t in tables])


def dense(idx: np.ndarray, values: np.ndarray | None, n: int) -> np.ndarray:
    """Sum of ``values`` (or a count) per index 0..n-1; an index ≥ n is a stale aggregate."""
    out = np.bincount(idx, weights=values, minlength=n)
    if len(out) != n:
        raise ValueError(f"an aggregate holds index {len(out) - 1}, beyond the {n} ids known on this date: "
                         "rebuild the features with rebuild=True")
    return out


def rate(num: np.ndarray, den: np.ndarray) -> pa.Array:
    """num / den, null where den is 0."""
    zero = den == 0
    return pa.array(np.divide(num, np.where(zero, 1, den), dtype=np.float64), mask=zero)
