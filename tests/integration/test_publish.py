"""Publishing against the real S3 server: shards, the atomic commit, re-runs."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, sources
from recpipe.stages import publish
from recpipe.config import RunParams
from recpipe.errors import PartitionNotFound
from recpipe.sources.synthetic import ShopSpec
from tests.conftest import copy_bucket

SPEC = ShopSpec(users=300, items=120, days=3, seed=5, start=date(2024, 6, 1))


@pytest.fixture(scope="module")
def template(new_store):
    """Three validated days; features, a trained MF candidate and the gate's decision for the last."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    params = RunParams(epochs=1)
    for dt in dates:
        pipeline.validate(store, dt, params)
    dt = dates[-1]
    pipeline.features(store, dt, params)
    pipeline.train(store, dt, params)
    pipeline.evaluate(store, dt, params)
    pipeline.gate(store, dt, RunParams())
    return store, dt


@pytest.fixture
def day(template, store):
    """A copy of the template for one test: (store, the last day)."""
    source, dt = template
    return copy_bucket(source, store), dt


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])


def test_sharded_publish_equals_the_single_shard_table(day):
    store, dt = day
    pipeline.publish(store, dt, RunParams(top_k=5))
    single = _sorted(publish.read(store, dt))
    summary = pipeline.publish(store, dt, RunParams(top_k=5, publish_shards=3))
    assert summary["shards"] == 3 and summary["rows"] == single.num_rows
    manifest = store.manifest(f"recommendations/dt={dt}")
    assert sorted(manifest["files"]) == ["part-000.parquet", "part-001.parquet", "part-002.parquet"]
    assert _sorted(publish.read(store, dt)).equals(single)
    # each shard holds exactly the users with user_idx % 3 == shard, so no user is split or repeated
    users = store.read_table(f"features/dt={dt}", "users", columns=["user_idx", "user_id"]).to_pandas()
    shard_of = dict(zip(users["user_id"], users["user_idx"] % 3))
    for shard in range(3):
        part = store.read_table(f"recommendations/dt={dt}", f"part-{shard:03d}")
        assert {shard_of[u] for u in pc.unique(part["user_id"]).to_pylist()} == {shard}
    assert store.list_keys("recommendations/_shards/") == []  # staging is cleaned after the commit


def test_commit_refuses_missing_or_stale_shards_and_the_old_table_stays(day):
    store, dt = day
    pipeline.publish(store, dt, RunParams(top_k=4))
    old = publish.read(store, dt)
    params = RunParams(top_k=6, publish_shards=2)
    pipeline.publish_shard(store, dt, params, shard=0)
    with pytest.raises(PartitionNotFound, match="missing: re-run publish for shard 1 of 2"):
        pipeline.commit_publish(store, dt, params)
    pipeline.publish_shard(store, dt, RunParams(top_k=5, publish_shards=2), shard=1)  # other params: stale
    with pytest.raises(PartitionNotFound, match="stale"):
        pipeline.commit_publish(store, dt, params)
    assert publish.read(store, dt).equals(old)  # readers still get the last committed table
    pipeline.publish_shard(store, dt, params, shard=1)
    pipeline.commit_publish(store, dt, params)
    assert pc.max(publish.read(store, dt)["rank"]).as_py() == 6


def test_rerunning_a_date_replaces_its_partition_with_identical_bytes(day):
    store, dt = day
    first = pipeline.run(store, dt, RunParams(epochs=1, seed=9))
    files = store.manifest(f"recommendations/dt={dt}")["files"]
    second = pipeline.run(store, dt, RunParams(epochs=1, seed=9))
    assert second["train"] == first["train"]  # same version: same data, params and seed
    again = store.manifest(f"recommendations/dt={dt}")["files"]
    assert {n: e["sha256"] for n, e in again.items()} == {n: e["sha256"] for n, e in files.items()}
    keys = store.list_keys(f"recommendations/dt={dt}/")
    assert len(keys) == 2 and again["part-000.parquet"]["key"] in keys  # one data file + manifest, no duplicate
    assert files["part-000.parquet"]["key"] not in keys  # the first run's file was replaced
