"""Concurrent writers on the real S3 server: pointers, vocabularies, whole runs side by side."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe.stages.features import vocab
from recpipe import pipeline, sources
from recpipe.stages import publish
from recpipe.artifacts import registry
from recpipe.config import RunParams
from recpipe.errors import ConcurrentUpdate, UpstreamNotReady
from recpipe.io.partitions import Store
from recpipe.sources.synthetic import ShopSpec

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop


def _together(n: int, fn) -> list:
    """Run ``fn(i)`` for i < n in n threads released at the same instant."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def _retrying(fn, attempts: int = 60):
    """Call ``fn`` again while it says an earlier date is not ready, as Airflow's task retries do."""
    for _ in range(attempts - 1):
        try:
            return fn()
        except UpstreamNotReady:
            time.sleep(1)
    return fn()


def test_concurrent_promotions_never_move_the_champion_backwards(store):
    store.s3  # one client, shared by the threads (boto3 clients are thread-safe)
    dates = [f"2024-02-{d:02d}" for d in range(1, 13)]
    for round_ in range(3):
        random.Random(round_).shuffle(dates)
        refs = [{"name": "mf", "version": f"{dt}-r{round_}", "prefix": f"models/mf/{dt}-r{round_}"} for dt in dates]
        _together(len(dates), lambda i: registry.promote(store, refs[i], dates[i], "test"))
        latest = max(dates)
        assert store.get_json("models/mf/champion.json")["version"] == f"{latest}-r{round_}"
        assert registry.champion(store, "mf", on_or_before="2024-02-05")["version"] == f"2024-02-05-r{round_}"


def test_a_conditional_commit_refuses_a_writer_that_lost_the_race(store):
    table = pa.table({"id": ["a"]})
    first = store.write_partition("vocab/x", {"ids": table}, replaces=None)
    with pytest.raises(ConcurrentUpdate, match="committed by another run"):
        store.write_partition("vocab/x", {"ids": pa.table({"id": ["b"]})}, replaces=None)  # expected: nothing yet
    assert store.read_table("vocab/x", "ids").equals(table)
    assert store.list_keys("vocab/x/") == sorted([first["files"]["ids.parquet"]["key"], "vocab/x/_manifest.json"])


def test_concurrent_vocabulary_additions_keep_every_id_once(store):
    store.s3

    def add(i):
        users = vocab.load_vocab(store, "users")
        users.add(pa.array([f"u{i}-{j}" for j in range(50)] + ["shared"]), "2024-02-01")
        return vocab.save_vocab(store, users, attempts=20)

    _together(6, add)
    ids = vocab.load_vocab(store, "users").ids
    assert len(ids) == len(pc.unique(ids)) == 6 * 50 + 1


def test_features_wait_for_an_earlier_day_still_to_be_validated(store):
    d1, d2, d3 = sources.seed(store, ShopSpec(users=100, items=80, days=3, seed=2, start=date(2024, 8, 1)))
    for dt in (d1, d3):
        pipeline.validate(store, dt, RunParams())
    with pytest.raises(UpstreamNotReady, match=f"earlier days {d2} validated first"):
        pipeline.features(store, d3, RunParams())
    assert store.committed_dates("features") == []
    pipeline.validate(store, d2, RunParams())
    assert pipeline.features(store, d3, RunParams())["rows"]


def test_runs_for_two_dates_and_a_republish_beside_them_do_not_interfere(store):
    """Like a backfill beside the daily run: three stages for three dates at once."""
    spec = ShopSpec(users=300, items=120, days=4, seed=8, start=date(2024, 7, 1))
    d1, d2, d3, d4 = sources.seed(store, spec)
    params = RunParams(epochs=1, top_k=4)
    for dt in (d1, d2):
        pipeline.validate(store, dt, params)
    pipeline.run(store, d2, params)  # a champion (or popularity) for the republish of d2
    jobs = [lambda: _retrying(lambda: pipeline.run(store, d3, params)),
            lambda: _retrying(lambda: pipeline.run(store, d4, params)),  # waits until d3 is validated
            lambda: pipeline.run(store, d2, RunParams(mode="republish", top_k=4))]
    store.s3
    results = _together(3, lambda i: jobs[i]())
    for dt, out in zip((d3, d4, d2), results):
        assert out["publish"]["dt"] == dt
        assert publish.check(store, dt)["max_rank"] == 4
        assert store.manifest(f"recommendations/dt={dt}")["meta"]["dt"] == dt
    assert store.get_json("recommendations/_latest")["dt"] == d4  # never moved back by d2 or d3
    # each date's evaluation says whether its candidate was promoted; the pointer names the newest
    promoted = [dt for dt in (d2, d3, d4) if store.get_json(f"reports/evaluation/dt={dt}/metrics.json")["passed"]]
    pointer = store.get_json_versioned("models/mf/champion.json")[0]
    assert (pointer or {}).get("dt") == max(promoted, default=None)
    ids = vocab.load_vocab(store, "users").ids
    assert len(ids) == len(pc.unique(ids))  # concurrent feature builds appended each id once
    assert store.list_keys("recommendations/_shards/") == []


def test_a_reader_whose_file_is_deleted_by_a_recommit_reads_the_new_commit(store, monkeypatch):
    """A training task reads vocab/ while a feature build of another date re-commits it: the
    re-commit lands (and deletes the old file) between the reader's manifest read and file read."""
    old, new = pa.table({"id": ["a"]}), pa.table({"id": ["a", "b"]})
    first = store.write_partition("vocab/users", {"ids": old})
    real_get = Store.get_bytes

    def get_bytes(self, key):
        if key == first["files"]["ids.parquet"]["key"] and not self.exists("test/recommitted"):
            self.put_bytes("test/recommitted", b"")  # once
            self.write_partition("vocab/users", {"ids": new})  # the other run's commit, deleting `key`
        return real_get(self, key)

    monkeypatch.setattr(Store, "get_bytes", get_bytes)
    assert store.read_table("vocab/users", "ids").equals(new)
