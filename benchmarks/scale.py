"""Training at catalog scale: one epoch of sasrec and of mf on a synthetic log of 1,000,000
items, 1,000,000 users and 20,000,000 interactions, with seconds per epoch and peak memory.

    python benchmarks/scale.py --out benchmarks/results/scale.json

The log is generated directly as ``TrainingData`` numpy arrays (seeded): user activity
log-normal (at least 2 items per user, the total scaled to the interaction count), item
popularity Zipf-like (p ∝ 1 / (rank + 10)), timestamps uniform over a year. Each model runs
in its own subprocess, so ``peak_rss_gib`` (ru_maxrss: data generation, TensorFlow and
training together) is that model's alone. Parameters: the RunParams defaults (``mf``:
batch 1024, 4 negatives per positive, d 32; ``sasrec``: batch 1024, adaptive max_len,
sampled loss with 256 shared negatives since the catalog is large, d 32) with epochs=1.

``epoch_seconds`` is the measured epoch (with its validation pass) when it ends within
``--budget`` seconds; when the first ``--probe`` steps predict a longer epoch, training
stops there, and the epoch time is extrapolated from the measured steps/second
(``extrapolated: true``, ``steps_measured`` of ``steps_per_epoch``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, report, peak_rss_gib  # noqa: E402

from recpipe.models import FitConfig, TrainingData  # noqa: E402


def synthetic(n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(2, np.round(activity / activity.sum() * n_interactions)).astype(np.int64)
    excess = int(counts.sum() - n_interactions)  # trim the most active users to hit the total exactly
    if excess > 0:
        top = np.argsort(-counts)[:1000]
        counts[top] -= np.minimum(counts[top] - 2, -(-excess // 1000))
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)[:n_interactions]
    weights = 1.0 / (np.arange(n_items) + 10.0)
    cdf = np.cumsum(weights / weights.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1).astype(np.int64)
    items = rng.permutation(n_items)[items]  # popular items anywhere in the index range
    year_us = 365 * 86_400 * 10**6
    last_ts = 1_700_000_000 * 10**6 + rng.integers(0, year_us, len(users), dtype=np.int64)
    return TrainingData(users=users, items=items, weights=np.ones(len(users), np.float32), n_users=n_users,
                        n_items=n_items, popularity=np.bincount(items, minlength=n_items).astype(np.float32),
                        last_ts=last_ts)


def worker(args) -> dict:
    """Runs in the model's own process: generate, train one epoch, report."""
    from recpipe.models import keras_fit, model_class
    import keras

    started = time.monotonic()
    data = synthetic(args.users, args.items, args.interactions)
    generate_s = time.monotonic() - started
    timing: dict = {}

    class StepTimer(keras.callbacks.Callback):
        """Times training steps; stops after --probe steps when the epoch would exceed --budget."""

        def on_train_begin(self, logs=None):
            self.t0 = time.monotonic()

        def on_train_batch_end(self, batch, logs=None):
            now = time.monotonic()
            if batch == 0:
                timing["first_step_s"] = now - self.t0  # includes tracing the graph
                self.t1 = now
                return
            timing["steps_measured"] = batch + 1
            timing["steady_step_s"] = (now - self.t1) / batch
            steps = self.params.get("steps") or 0
            timing["steps_per_epoch"] = steps
            if batch == args.probe and timing["steady_step_s"] * steps > args.budget:
                timing["extrapolated"] = True
                self.model.stop_training = True

    plain_fit = keras_fit.fit

    def timed_fit(*a, callbacks=(), **kw):
        return plain_fit(*a, callbacks=(StepTimer(), *callbacks), **kw)

    keras_fit.fit = timed_fit
    keras_fit.setup_device(0)
    config = FitConfig(epochs=1, seed=0)
    model = model_class(args.worker)()
    t = time.monotonic()
    summary = model.fit(data, config)
    fit_s = time.monotonic() - t
    if timing.get("extrapolated"):
        epoch_s = timing["first_step_s"] + timing["steady_step_s"] * (timing["steps_per_epoch"] - 1)
    else:
        epoch_s = fit_s
    return {"epoch_seconds": round(epoch_s, 1), "fit_seconds_measured": round(fit_s, 1),
            "extrapolated": bool(timing.get("extrapolated")), **{k: (round(v, 4) if isinstance(v, float) else v)
                                                                 for k, v in timing.items() if k != "extrapolated"},
            "peak_rss_gib": round(peak_rss_gib(), 2), "generate_seconds": round(generate_s, 1),
            "params": {k: v for k, v in vars(config).items()},
            "summary": {k: v for k, v in summary.items() if k != "history"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--models", default="sasrec,mf")
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds an epoch may take before extrapolating")
    ap.add_argument("--probe", type=int, default=200, help="steps measured before deciding to extrapolate")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    result = {"users": args.users, "items": args.items, "interactions": args.interactions,
              "machine": machine(), "models": {}}
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--worker", name, *sys.argv[1:]]
        if "--out" in cmd:
            i = cmd.index("--out")
            del cmd[i:i + 2]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        result["models"][name] = json.loads(lines[-1][7:]) if lines else {"error": f"exit {proc.returncode}"}
        logging.info("%s: %s", name, result["models"][name])
    report(result, args.out)


if __name__ == "__main__":
    main()
