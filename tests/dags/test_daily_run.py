"""A whole ``recommendations_daily`` run with ``dag.test()`` against the real S3 server."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, publish
from recpipe.config import RunParams
from recpipe.synthetic import ShopSpec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ShopSpec(users=400, items=150, days=6, seed=11)


def _dag():
    sys.path.insert(0, str(ROOT / "plugins"))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "recommendations_daily.py")).get_dag("recommendations_daily")


@pytest.fixture
def seeded(s3_connection):
    """Six seeded days; the first five validated as earlier daily runs would have."""
    store = s3_connection
    dates = pipeline.seed(store, SPEC)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, RunParams())
    return store, dates[-1]


def test_daily_run_publishes_a_table_for_every_active_user(airflow_db, seeded):
    store, dt = seeded
    run = _dag().test(logical_date=datetime.fromisoformat(dt).replace(tzinfo=timezone.utc),
                      run_conf={"top_k": 5, "epochs": 3})
    assert run.state == "success"
    table = publish.read(store, dt)
    assert store.get_json("recommendations/_latest")["dt"] == dt
    assert set(table.column_names) >= {"user_id", "item_id", "rank", "score", "model_version"}
    # every user with an event in the window up to dt has exactly top_k = 5 rows, ranks 1..5
    active = pc.unique(pa.concat_arrays([
        store.read_table(f"clean/events/dt={d}", "events")["user_id"].combine_chunks()
        for d in store.committed_dates("clean/events")
    ]))
    assert sorted(pc.unique(table["user_id"]).to_pylist()) == sorted(active.to_pylist())
    per_user = table.group_by("user_id").aggregate([("rank", "count"), ("rank", "max")])
    assert set(per_user["rank_count"].to_pylist()) == {5}
    assert set(per_user["rank_max"].to_pylist()) == {5}
    # the gate's decision is recorded, and the model published is the one it chose
    decision = store.get_json(f"reports/evaluation/dt={dt}/decision.json")
    assert set(pc.unique(table["model_version"]).to_pylist()) >= {decision["publish"]["version"]}


def test_bad_batch_fails_the_run_and_publishes_nothing(airflow_db, s3_connection):
    from recpipe import landing
    from recpipe.synthetic import generate

    store = s3_connection
    day = next(generate(ShopSpec(users=100, items=50, days=1)))
    landing.write_raw(store, "events", day.dt, day.events.drop_columns(["event_type"]))
    run = _dag().test(logical_date=datetime.fromisoformat(day.dt).replace(tzinfo=timezone.utc))
    assert run.state == "failed"
    assert store.committed_dates("clean/events") == []
    assert store.list_keys("recommendations/") == []
    report = store.get_json(f"reports/quality/dt={day.dt}/result.json") if store.exists(
        f"reports/quality/dt={day.dt}/result.json") else None
    assert report is None  # schema failures stop before GX runs: the message says what is missing
