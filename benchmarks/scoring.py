"""Publish scoring path vs this machine's limit: top-K for U users × I items (MF, dim D).

    python benchmarks/scoring.py --out benchmarks/results/scoring.json

``seconds``: ``recpipe.scoring.top_k`` on a real ``MatrixFactorization`` (random float32
embeddings), 10% of users with 20 past purchases excluded, 1% of items blocked.
``limit_seconds``: the bare ``U[batch] @ V.T`` + ``np.argpartition`` top-k over the same
batches, in the same run (rounds alternate; the best of each is kept).
``ratio`` = limit_seconds / seconds (target ≥ 0.7); ``matmul_seconds``: the product alone.
``reasons_seconds``: the same ``top_k`` computing each row's reason item in the batch
(``scoring.Reasons``, every user a history of ``--history`` items, cosine similarity of MF's
item embeddings); ``reasons_overhead`` = reasons_seconds / seconds − 1 (target ≤ 0.15).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, peak_rss_gib  # noqa: E402

from recpipe import scoring  # noqa: E402
from recpipe.models import mf  # noqa: E402


def model_with(U: np.ndarray, V: np.ndarray, b: np.ndarray) -> mf.MatrixFactorization:
    """A real MatrixFactorization whose Keras weights are U, V, b."""
    keras_model = mf.build(len(U), len(V), U.shape[1])
    keras_model.get_layer("user_embedding").embeddings.assign(U)
    keras_model.get_layer("item_embedding").embeddings.assign(V)
    keras_model.get_layer("item_bias").embeddings.assign(b[:, None])
    return mf.MatrixFactorization(keras_model)


def limit(U: np.ndarray, V: np.ndarray, k: int, step: int, product_only: bool = False) -> float:
    """Seconds for the bare product (+ argpartition top-k) over all users, batch by batch."""
    n = len(V)
    started = time.perf_counter()
    for lo in range(0, len(U), step):
        s = U[lo : lo + step] @ V.T
        if not product_only:
            np.argpartition(s, n - k, axis=1)[:, n - k :]
    return time.perf_counter() - started


def check(table, U, V, b, exclude, blocked, k, step, users) -> None:
    """The published rows of a few users equal a brute-force ranking (logit desc, item asc)."""
    ex_u, ex_i = exclude
    for u in users:
        lo = u // step * step  # the same product as top_k's batch, so bit-identical logits
        logit = (U[lo : lo + step] @ V.T)[u - lo] + b
        logit[blocked] = -np.inf
        logit[ex_i[ex_u == u]] = -np.inf
        want = np.lexsort((np.arange(len(V)), -logit))[:k]
        rows = table.filter(np.asarray(table["user_idx"]) == u)
        assert rows["item_idx"].to_pylist() == want.tolist(), f"user {u}: wrong top-{k}"
        np.testing.assert_allclose(rows["score"].to_numpy(), 1 / (1 + np.exp(-logit[want])), rtol=1e-6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--history", type=int, default=10, help="items per user the reasons choose among")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    scale = args.dim ** -0.25  # logits ~ N(0, 1)
    U = (rng.standard_normal((args.users, args.dim), dtype=np.float32) * scale).astype(np.float32)
    V = (rng.standard_normal((args.items, args.dim), dtype=np.float32) * scale).astype(np.float32)
    b = rng.normal(0, 0.5, args.items).astype(np.float32)
    buyers = np.sort(rng.choice(args.users, args.users // 10, replace=False))
    exclude = (np.repeat(buyers, 20), rng.integers(0, args.items, 20 * len(buyers)))
    blocked = rng.random(args.items) < 0.01
    model = model_with(U, V, b)
    users = np.arange(args.users)
    step = scoring.batch_users(args.items)

    reasons = scoring.Reasons(users, rng.integers(0, args.items, (args.users, args.history)), model.item_vectors())

    seconds, limit_seconds, reasons_seconds, table = [], [], [], None
    for _ in range(args.rounds):
        limit_seconds.append(limit(U, V, args.k, step))
        del table
        started = time.perf_counter()
        table = scoring.top_k(model, users, args.items, args.k, exclude, blocked)
        seconds.append(time.perf_counter() - started)
        del table
        started = time.perf_counter()
        table = scoring.top_k(model, users, args.items, args.k, exclude, blocked, reasons)
        reasons_seconds.append(time.perf_counter() - started)
    check(table, U, V, b, exclude, blocked, args.k, step, rng.choice(buyers, 20).tolist() + [0, args.users - 1])
    result = {
        "users": args.users, "items": args.items, "dim": args.dim, "k": args.k,
        "seconds": round(min(seconds), 3), "limit_seconds": round(min(limit_seconds), 3),
        "peak_rss_gib": None,
        "ratio": round(min(limit_seconds) / min(seconds), 3),
        "matmul_seconds": round(limit(U, V, args.k, step, product_only=True), 3),
        "history": args.history, "reasons_seconds": round(min(reasons_seconds), 3),
        "reasons_overhead": round(min(reasons_seconds) / min(seconds) - 1, 3),
        "rows": table.num_rows, "batch_users": step,
        "path": "logits" if isinstance(model, scoring.Logits) else "score",
        "rounds": {"seconds": [round(s, 3) for s in seconds], "limit_seconds": [round(s, 3) for s in limit_seconds],
                   "reasons_seconds": [round(s, 3) for s in reasons_seconds]},
        "machine": machine(),
    }
    result["peak_rss_gib"] = round(peak_rss_gib(), 3)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
