"""Faults injected into real runs: the S3 server stopped mid-stage, a task process SIGKILLed mid-write.

Each test asserts that readers only ever see the old committed partition or the new one,
and that re-running the stage (what Airflow's retry does) completes with the right output.
The recovery times are logged (``-o log_cli=true`` shows them).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import date

import numpy as np
import pytest

from devstack import seaweedfs
from recpipe import pipeline, sources
from recpipe.artifacts import registry
from recpipe.stages import train
from recpipe.config import RunParams
from recpipe.errors import StorageError
from recpipe.io.layout import partition
from recpipe.io.partitions import Store
from recpipe.sources.synthetic import ShopSpec

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop

log = logging.getLogger(__name__)
SPEC = ShopSpec(users=200, items=100, days=3, seed=4, start=date(2024, 9, 1))
PARAMS = RunParams(epochs=1, top_k=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(server, store, dt): a private S3 server; three validated days, every stage run once for the last.

    Shared by the module's tests: each one ends with the same committed outputs it found.
    """
    server = seaweedfs.Server(tmp_path_factory.mktemp("faults") / "s3")  # stopped and restarted by the tests
    server.start()
    store = Store(server.store_config(bucket="faults"))
    store.ensure_bucket()
    dates = sources.seed(store, SPEC)
    for dt in dates:
        pipeline.validate(store, dt, PARAMS)
    pipeline.run(store, dates[-1], PARAMS)
    try:
        yield server, store, dates[-1]
    finally:
        server.stop()


@pytest.fixture
def day(world):
    server, _, _ = world
    if server.proc.poll() is not None:  # a failed test may have left it stopped
        server.start()
    return world


def _files(store: Store, prefix: str) -> dict[str, str]:
    """name → sha256 of a committed partition."""
    return {n: e["sha256"] for n, e in store.manifest(prefix)["files"].items()}


STAGES = {  # stage → the key prefix its first upload goes to (where a fault is injected)
    "features": "features/dt={dt}/",
    "train": "models/mf/",
    "publish": "recommendations/_shards/",
}


def _committed(stage: str, dt: str) -> str:
    """The partition a stage commits for ``dt``."""
    if stage == "train":
        return train.candidate(dt, PARAMS)["prefix"]
    return partition("features" if stage == "features" else "recommendations", dt)


def _output(store: Store, stage: str, dt: str):
    """What a stage produced, in a form that must not change across a fault and its retry."""
    prefix = _committed(stage, dt)
    if stage == "train":
        model = registry.load(store, {"name": "mf", "version": prefix.rsplit("/", 1)[1], "prefix": prefix})
        return model.score(np.arange(50), 100)
    return _files(store, prefix)


def _assert_same(stage: str, got, expected) -> None:
    """Features and the published table: identical bytes; a model: identical scores."""
    if stage == "train":
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


@pytest.mark.parametrize("stage", list(STAGES))
def test_s3_stopped_mid_stage_then_restarted(day, stage, monkeypatch):
    server, store, dt = day
    before = _output(store, stage, dt)
    target = STAGES[stage].format(dt=dt)
    real_put = Store.put_bytes

    def put(self, key, data):  # the server goes away just as the stage starts writing its output
        if key.startswith(target) and server.proc.poll() is None:
            server.stop()
        return real_put(self, key, data)

    monkeypatch.setattr(Store, "put_bytes", put)
    with pytest.raises(StorageError):  # retryable: the DAG layer lets Airflow retry it
        getattr(pipeline, stage)(store, dt, PARAMS)
    monkeypatch.undo()
    down = time.monotonic()
    restart = server.start()
    fresh = Store(store.config)  # a retry is a new task process with a new client
    getattr(pipeline, stage)(fresh, dt, PARAMS)
    log.info("S3 outage during %s: restarted with its volumes registered in %.1fs; retried stage done %.1fs after the restart began",
             stage, restart, time.monotonic() - down)
    _assert_same(stage, _output(fresh, stage, dt), before)


KILLER = """
import json, os, signal, sys
from recpipe import pipeline
from recpipe.config import RunParams, StoreConfig
from recpipe.io.layout import partition
from recpipe.io.partitions import Store
config, stage, dt, target = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
real_put = Store.put_bytes
def put(self, key, data):
    real_put(self, key, data)
    if key.startswith(target) and not key.endswith("_manifest.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # one file of the new partition is up, its manifest is not
Store.put_bytes = put
getattr(pipeline, stage)(Store(StoreConfig(**config)), dt, RunParams(**json.loads(sys.argv[5])))
"""


@pytest.mark.parametrize("stage", list(STAGES))
def test_task_killed_mid_write_leaves_the_old_partition_then_the_retry_commits(day, stage):
    server, store, dt = day
    target, prefix = STAGES[stage].format(dt=dt), _committed(stage, dt)
    old_manifest = store.manifest(prefix)
    before = _output(store, stage, dt)
    cfg = store.config
    config = {"bucket": cfg.bucket, "access_key": cfg.access_key, "secret_key": cfg.secret_key,
              "endpoint": cfg.endpoint, "region": cfg.region}
    proc = subprocess.run([sys.executable, "-c", KILLER, json.dumps(config), stage, dt, target,
                           json.dumps(PARAMS.as_dict())], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # the half-written run is invisible: the committed manifest and its files are the old ones
    assert store.manifest(prefix) == old_manifest
    _assert_same(stage, _output(store, stage, dt), before)  # and readers still get the old output
    orphans = [k for k in store.list_keys(target) if k not in
               {e["key"] for e in old_manifest["files"].values()} and not k.endswith("_manifest.json")]
    assert orphans, "the killed process should have left an uncommitted file behind"
    started = time.monotonic()
    getattr(pipeline, stage)(store, dt, PARAMS)  # Airflow's retry
    log.info("SIGKILL during %s: retry committed in %.1fs", stage, time.monotonic() - started)
    assert store.manifest(prefix)["run_id"] != old_manifest["run_id"]
    _assert_same(stage, _output(store, stage, dt), before)
    live = {e["key"] for e in store.manifest(prefix)["files"].values()}
    assert not live & set(orphans)  # the retry wrote fresh keys; the orphans were never named
