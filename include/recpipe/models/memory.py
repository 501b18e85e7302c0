"""Peak memory of a training run, estimated before it starts, and the memory there is.

A run whose estimate exceeds the memory available fails at once with
:class:`~recpipe.errors.ResourceLimit` naming the parameter to change, instead of an
out-of-memory traceback minutes (or hours) into training. The estimates are upper bounds
of the big allocations, in bytes (4 per float32 / int32, 8 per int64):

SASRec (V = n_items + 1 rows, d = embedding_dim, L = max_len, B = batch_size, W training
windows, N = n_interactions, K = shared negatives, b = blocks, h = heads, P parameters):

    parameters   24·P          P ≈ V·d + L·d + b·(6d² + 12d); weight, gradient, Adam m and v,
                               two update temporaries
    data         32·N + 24·W·L TrainingData working copies and sort order; windows x, their
                               event types and y as numpy arrays and again as tensors
    activations  4·B·L·(24·b·d + 8·d) + 16·b·h·B·L²   encoder forward + backward (attention)
    loss         full: 12·B·L·V (logits, softmax, gradient at up to B·L real positions)
                 sampled: 12·B·L·(2K + 1) + 16·K·d (K uniform + K in-batch negatives)
    validation   12·C·V        one chunk of C = min(1024, 2²⁶ / V) users scored against the catalog

MF (U users, V items, d, B, k = negatives per positive):

    parameters   24·((U + V)·d + V)
    data         24·N          the shuffled (user, item, purchased) tensors and the order
    activations  4·B·(1 + k)·(4·d + 8)

TensorFlow itself (about 0.6 GiB) is running already and is in what is "used", not in
what is "available".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from recpipe.errors import ResourceLimit

#: Override of the memory available to training, e.g. "8G", "512M" or bytes.
ENV = "RECPIPE_MEMORY_LIMIT"
GIB = 2**30
#: Share of the available memory a run may plan to use (allocator slack, fragmentation).
HEADROOM = 0.85


def parse_size(text: str) -> int:
    """"8G", "512M", "1.5GiB", "1000000" → bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ResourceLimit(f"{ENV}={text!r} is not a size: give bytes or a number with K, M, G or T, e.g. 8G.")
    return int(float(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper()))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> tuple[int, str]:
    """(bytes, where the figure comes from): the memory this process may still allocate.

    ``RECPIPE_MEMORY_LIMIT`` when set; otherwise the smaller of MemAvailable in
    /proc/meminfo and the cgroup's limit minus its usage (v2, then v1).
    """
    if os.environ.get(ENV):
        return parse_size(os.environ[ENV]), ENV
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except OSError:
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim, use = _read_int(limit), _read_int(usage)
        if lim is not None and use is not None and lim < 1 << 60:
            found.append((max(0, lim - use), f"cgroup limit {limit}"))
            break
    return min(found) if found else (1 << 62, "unknown (no /proc/meminfo)")


def validation_chunk(n_items: int) -> int:
    """Users scored at once against the whole catalog in validation: at most 2²⁶ scores."""
    return int(min(1024, max(1, 2**26 // (n_items + 1))))


def sasrec_terms(*, n_items: int, n_interactions: int, n_windows: int, max_len: int, dim: int, blocks: int,
                 heads: int, batch_size: int, sampled: bool, negatives: int) -> dict[str, int]:
    """The terms of SASRec's peak training memory in bytes (formula in the module docstring)."""
    V, d, L, B, b = n_items + 1, dim, max_len, batch_size, blocks
    P = V * d + L * d + b * (6 * d * d + 12 * d)
    loss = 12 * B * L * (2 * negatives + 1) + 16 * negatives * d if sampled else 12 * B * L * V
    return {
        "parameters": 24 * P,
        "data": 32 * n_interactions + 24 * n_windows * L,
        "activations": 4 * B * L * (24 * b * d + 8 * d) + 16 * b * heads * B * L * L,
        "loss": loss,
        "validation": 12 * validation_chunk(n_items) * V,
    }


def mf_terms(*, n_users: int, n_items: int, n_interactions: int, dim: int, batch_size: int,
             negatives: int) -> dict[str, int]:
    """The terms of MF's peak training memory in bytes (formula in the module docstring)."""
    return {
        "parameters": 24 * ((n_users + n_items) * dim + n_items),
        "data": 24 * n_interactions,
        "activations": 4 * batch_size * (1 + negatives) * (4 * dim + 8),
    }


#: What to change when a term is the largest one.
REMEDY = {
    "parameters": "lower embedding_dim (the embedding tables are the parameters)",
    "data": "lower max_len (sequence models) or lookback_days (fewer interactions)",
    "activations": "lower batch_size (or max_len for sasrec)",
    "loss": "set loss=sampled (or lower batch_size, max_len or shared_negatives)",
    "validation": "lower embedding_dim",
}


def check(model: str, terms: dict[str, int], available: tuple[int, str] | None = None) -> int:
    """Raise :class:`ResourceLimit` when the terms exceed the available memory; returns their sum."""
    total = sum(terms.values())
    have, source = available if available is not None else available_bytes()
    if total > HEADROOM * have:
        worst = max(terms, key=terms.get)
        parts = ", ".join(f"{k} {v / GIB:.2f}" for k, v in terms.items())
        raise ResourceLimit(
            f"{model} training with these parameters needs about {total / GIB:.1f} GiB ({parts} GiB), but only "
            f"{have / GIB:.1f} GiB are available ({source}). The largest part is {worst}: {REMEDY[worst]}. "
            f"(Set {ENV} to override the available figure.)")
    return total
