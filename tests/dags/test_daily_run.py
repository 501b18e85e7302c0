"""A whole ``recommendations_daily`` run with ``dag.test()`` against the real S3 server."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, sources
from recpipe.stages import publish
from recpipe.config import RunParams
from recpipe.sources.synthetic import ShopSpec
from tests.conftest import copy_bucket

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop

ROOT = Path(__file__).resolve().parents[2]
SPEC = ShopSpec(users=800, items=300, days=7, seed=11)  # enough history for MF to beat popularity


def _dag():
    sys.path.insert(0, str(ROOT / "plugins"))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "recommendations_daily.py")).get_dag("recommendations_daily")


@pytest.fixture(scope="module")
def template(new_store):
    """Seven seeded days; the first six validated as earlier daily runs would have (built once)."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, RunParams())
    return store, dates[-1]


@pytest.fixture
def seeded(template, s3_connection):
    """A copy of the template in the bucket the DAG's connection points at."""
    source, last = template
    return copy_bucket(source, s3_connection), last


def test_daily_run_publishes_a_table_for_every_active_user(airflow_db, seeded):
    store, dt = seeded
    run = _dag().test(logical_date=datetime.fromisoformat(dt).replace(tzinfo=timezone.utc),
                      run_conf={"top_k": 5, "epochs": 3, "publish_shards": 2})
    assert run.state == "success"
    shards = [ti for ti in run.get_task_instances() if ti.task_id == "publish.publish_shard"]
    assert sorted(ti.map_index for ti in shards) == [0, 1] and {ti.state for ti in shards} == {"success"}
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
    from recpipe.io import landing
    from recpipe.sources.synthetic import generate

    store = s3_connection
    day = next(generate(ShopSpec(users=100, items=50, days=1)))
    landing.write_raw(store, "events", day.dt, day.events.drop_columns(["event_type"]))
    run = _dag().test(logical_date=datetime.fromisoformat(day.dt).replace(tzinfo=timezone.utc))
    assert run.state == "failed"
    validate = run.get_task_instance("validate_events")
    assert validate.state == "failed" and validate.try_number == 1  # not retried: data errors are not transient
    assert run.get_task_instance("build_features").state == "upstream_failed"
    assert store.committed_dates("clean/events") == []
    assert store.list_keys("recommendations/") == []
    report = store.get_json(f"reports/quality/dt={day.dt}/result.json")["summary"]
    assert not report["passed"] and "required column 'event_type' is missing" in report["problems"][0]


def test_a_rejected_candidate_publishes_the_champion_and_the_consumer_checks_it(airflow_db, seeded):
    store, last = seeded
    day4, day5 = store.committed_dates("clean/events")[-1], last  # validated already; the DAG re-validates
    dag = _dag()
    # first a normal run; its candidate beats popularity and becomes champion
    run = dag.test(logical_date=datetime.fromisoformat(day4).replace(tzinfo=timezone.utc))
    assert run.state == "success" and run.get_task_instance("promote_candidate").state == "success"
    champion = store.get_json("models/mf/champion.json")
    daily_day4 = publish.read(store, day4)
    # the next day, a gate no model can pass (NDCG 10x popularity's) forces a rejection
    run = dag.test(logical_date=datetime.fromisoformat(day5).replace(tzinfo=timezone.utc),
                   run_conf={"epochs": 2, "min_lift_over_popularity": 9.0})
    assert run.state == "failed"  # marked for a person: the candidate lost …
    flag = run.get_task_instance("flag_rejection")
    assert flag.state == "failed" and flag.try_number == 1  # … and that is not retried
    assert run.get_task_instance("publish.commit").state == "success"  # … yet the champion's table is out
    assert run.get_task_instance("keep_champion").state == "success"
    assert run.get_task_instance("promote_candidate").state == "skipped"
    assert store.get_json("models/mf/champion.json") == champion  # unchanged
    table = publish.read(store, day5)
    personal = table.filter(pc.equal(table["strategy"], "personalized"))
    assert set(pc.unique(personal["model_version"]).to_pylist()) == {champion["version"]}
    decision = store.get_json(f"reports/evaluation/dt={day5}/metrics.json")
    assert not decision["passed"] and "FAILED" in " ".join(decision["reasons"])
    page = store.get_bytes(f"reports/evaluation/dt={day5}/index.html").decode()
    assert "REJECTED" in page and page.count("<svg") >= 2 and day4 in page  # history chart reaches back a day

    # a backfill of day 4 that re-publishes with the champion of that date reproduces the daily table
    run = dag.test(logical_date=datetime.fromisoformat(day4).replace(tzinfo=timezone.utc), run_conf={"mode": "republish"})
    assert run.state == "success" and run.get_task_instance("train_candidate").state == "skipped"
    assert publish.read(store, day4).equals(daily_day4)
    assert store.get_json("recommendations/_latest")["dt"] == day5  # the pointer never moves back
    assert store.get_json("models/mf/champion.json") == champion

    from airflow.dag_processing.dagbag import DagBag

    consumer = DagBag(dag_folder=str(ROOT / "dags" / "recommendations_consumer.py")).get_dag("recommendations_consumer")
    run = consumer.test()
    assert run.state == "success"
    assert publish.check(store) == {"dt": day5, "rows": table.num_rows, "users": len(pc.unique(table["user_id"])),
                                    "max_rank": 10, "strategies": sorted(set(table["strategy"].to_pylist())),
                                    "reasons": sorted(set(table["reason"].to_pylist()))}
