"""A ``recommendations_refresh`` run with ``dag.test()`` against the real S3 server."""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, sources
from recpipe.artifacts import registry
from recpipe.config import RunParams
from recpipe.contracts import EVENTS
from recpipe.io import landing, layout
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from tests.conftest import copy_bucket

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop

ROOT = Path(__file__).resolve().parents[2]
SPEC = ShopSpec(users=300, items=120, days=4, seed=13, start=date(2024, 7, 1))


@pytest.fixture(scope="module")
def template(new_store):
    """Day 3 published by the library path; day 4's events held back, to arrive as a drop."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    day3, day4 = dates[-2], dates[-1]
    held = landing.read_raw(store, "events", day4, EVENTS)
    store.delete_keys(store.list_keys(layout.raw("events", day4) + "/"))
    params = RunParams(epochs=1)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, params)
    pipeline.features(store, day3, params)
    registry.promote(store, pipeline.train(store, day3, params), day3, "test: mf serves")
    pipeline.republish(store, day3, params)
    pipeline.publish(store, day3, params)
    return store, day3, day4, held


def test_a_drop_triggers_a_refresh_that_commits_todays_table(airflow_db, template, s3_connection):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    source, day3, day4, held = template
    store = copy_bucket(source, s3_connection)
    some = pc.unique(held["user_id"]).to_pylist()[::4]
    drop = held.filter(pc.is_in(held["user_id"], value_set=pa.array(some)))
    landing.write_drop(store, "events", day4, 1, drop)
    base = publish.read(store, day3)

    sys.path.insert(0, str(ROOT / "plugins"))
    dag = DagBag(dag_folder=str(ROOT / "dags" / "recommendations_refresh.py")).get_dag("recommendations_refresh")
    run = dag.test(logical_date=datetime.fromisoformat(day4).replace(hour=9, tzinfo=timezone.utc))
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"wait_for_drop": "success",
                                                                        "refresh": "success"}
    table = publish.read(store, day4)
    meta = store.manifest(layout.partition(layout.RECOMMENDATIONS, day4))["meta"]
    assert meta["refresh"]["drops"] == [1] and meta["refresh"]["from"] == day3
    assert store.get_json(layout.LATEST)["dt"] == day4
    untouched = pc.invert(pc.is_in(base["user_id"], value_set=pa.array(some)))
    order = [("user_id", "ascending"), ("rank", "ascending")]
    kept = table.filter(pc.invert(pc.is_in(table["user_id"], value_set=pa.array(some))))
    assert kept.sort_by(order).equals(base.filter(untouched).sort_by(order))
    assert set(pc.unique(table["user_id"]).to_pylist()) == set(pc.unique(base["user_id"]).to_pylist()) | set(some)
    publish.check(store, day4)
    with create_session() as session:  # the Asset event tells consumers which date and drops
        events = session.query(AssetEvent).filter(AssetEvent.source_dag_id == "recommendations_refresh",
                                                  AssetEvent.source_run_id == run.run_id).all()
    assert [(e.extra["dt"], e.extra["refresh"], e.extra["rows"]) for e in events] == [(day4, [1], table.num_rows)]
