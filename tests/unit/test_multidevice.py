"""The multi-GPU code path without a GPU: the CPU split into 2 logical devices, each
registered model built and trained under ``tf.distribute.MirroredStrategy`` (what
``keras_fit.strategy()`` gives a worker with several GPUs), then scored, saved and loaded.

Each model trains in a subprocess (``python -m tests.unit.test_multidevice OUT NAME``): the
logical-device split must happen before TensorFlow initialises and would leak into the
other tests of the session, and a failed collective aborts every later one in its process.
The subprocess writes what it saw to OUT/results.json; the test asserts on it. No mixed
precision: it stays GPU-only, and the subprocess sees no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recpipe.models import REGISTRY

pytestmark = pytest.mark.slow  # a TensorFlow process per model: minutes; `pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 2


def train_under_mirrored_strategy(name: str, out: Path) -> dict:
    """Run the subprocess for model ``name``; returns what it recorded."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "tests.unit.test_multidevice", str(out), name],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_model_trains_under_mirrored_strategy_on_two_devices_scores_and_round_trips(name, tmp_path):
    r = train_under_mirrored_strategy(name, tmp_path)
    assert len(r["logical_cpus"]) == REPLICAS
    assert r["strategy"] == "MirroredStrategy" and r["num_replicas_in_sync"] == REPLICAS
    assert r["error"] is None, r["error"]
    assert r["scores_finite"] and r["loaded_scores_equal"]
    if not r["keras"]:  # popularity, recent: no TensorFlow, nothing to mirror
        return
    assert r["trained_by_keras_fit"] >= 1 and r["epochs"] >= 1 and np.isfinite(r["loss"])
    # the Keras model was built under the strategy; every trainable weight lives on both
    # replicas, identical there (synchronised updates), and training moved it
    assert r["model_replicas"] == REPLICAS
    assert r["weights"] > 0 and r["weights_on_both_devices"] == r["weights"]
    assert r["replicas_identical"] == r["weights"] == r["weights_trained"]


def _worker(out: Path, name: str) -> None:
    """The subprocess: split the CPU, train ``name`` under MirroredStrategy, record."""
    import keras
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)

    from recpipe.models import keras_fit, model_class
    from tests.unit.test_model_contract import CONFIG, N_ITEMS, N_USERS, shop

    fitted = []  # (the Keras model keras_fit.fit trained, its weights before training)
    fit = keras_fit.fit

    def recording_fit(model, *args, **kwargs):
        fitted.append((model, [w.numpy() for w in model.trainable_weights]))
        return fit(model, *args, **kwargs)

    keras_fit.fit = recording_fit
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    users = np.arange(N_USERS)
    r: dict = {"logical_cpus": devices, "error": None}
    try:
        keras_fit.setup_device(CONFIG.seed)
        strategy = keras_fit.strategy(devices)
        r["strategy"], r["num_replicas_in_sync"] = type(strategy).__name__, strategy.num_replicas_in_sync
        with strategy.scope():
            model = model_class(name)()
            summary = model.fit(shop(), CONFIG)
        r["epochs"], r["loss"] = summary.get("epochs", 0), summary.get("loss", 0.0)
        r["keras"] = isinstance(getattr(model, "model", None), keras.Model)
        r["trained_by_keras_fit"] = len(fitted)
        for keras_model, before in fitted:
            r["model_replicas"] = keras_model.distribute_strategy.num_replicas_in_sync
            weights = keras_model.trainable_weights
            local = [strategy.experimental_local_results(w.value) for w in weights]
            r["weights"] = len(weights)
            r["weights_on_both_devices"] = sum(
                sorted(tf.DeviceSpec.from_string(v.device).device_index for v in vs) == list(range(REPLICAS))
                for vs in local)
            r["replicas_identical"] = sum(all(np.array_equal(vs[0].numpy(), v.numpy()) for v in vs[1:])
                                          for vs in local)
            r["weights_trained"] = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, weights))
        scores = model.score(users, N_ITEMS)
        r["scores_finite"] = bool(np.isfinite(scores).all())
        (out / name).mkdir()
        model.save(out / name)
        loaded = model_class(name).load(out / name)  # outside the strategy, as the scorer loads it
        r["loaded_scores_equal"] = bool(np.allclose(loaded.score(users, N_ITEMS), scores, rtol=1e-5, atol=1e-7))
    except Exception as e:  # recorded with its traceback, for the test's message
        import traceback

        r["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"
    (out / "results.json").write_text(json.dumps(r, indent=1, default=float))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
