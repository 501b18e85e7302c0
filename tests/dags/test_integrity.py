"""Every DAG file parses without errors and without touching heavy libraries (what keeps
parsing fast; the parse time itself is a figure, not a test: it depends on the machine's load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))

PROBE = """
import json, sys, time
sys.path.insert(0, {plugins!r})
import airflow.sdk  # the cost of Airflow itself is not the DAG file's
before = set(sys.modules)
t = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={path!r})
seconds = time.perf_counter() - t
heavy = sorted(m for m in set(sys.modules) - before
               if m.split(".")[0] in ("tensorflow", "keras", "great_expectations", "boto3", "pandas", "pyarrow",
                                      "numpy"))
print(json.dumps({{"seconds": seconds, "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                  "dags": sorted(bag.dag_ids), "heavy": heavy}}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_and_pure(path):
    """Parsed in a fresh interpreter: no import errors, no TF/GX/boto3/pandas/pyarrow/numpy at module level."""
    code = PROBE.format(plugins=str(ROOT / "plugins"), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"], f"{path.name} defines no DAG"
    assert result["heavy"] == [], f"{path.name} imports heavy modules at parse time"


def _daily():
    sys.path.insert(0, str(ROOT / "plugins"))
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "recommendations_daily.py")).dags["recommendations_daily"]  # no DB


def test_daily_dag_shape_follows_the_diagram():
    dag = _daily()
    chain = ["wait_for_earlier_days", "build_features", "choose_path"]
    for up, down in zip(chain, chain[1:]):
        assert dag.get_task(up).downstream_task_ids == {down}, (up, down)
    assert dag.get_task("wait_for_events").downstream_task_ids == {"validate_events"}
    assert dag.get_task("validate_events").downstream_task_ids == {"wait_for_earlier_days", "realised_feedback"}
    assert dag.get_task("realised_feedback").downstream_task_ids == set()  # a report: nothing waits for it
    assert dag.get_task("train_candidate").downstream_task_ids == {"evaluate"}
    assert dag.get_task("choose_path").downstream_task_ids == {"train_candidate", "republish_champion"}
    assert dag.get_task("evaluate").downstream_task_ids == {"promote_candidate", "keep_champion"}
    assert dag.get_task("publish.plan_shards").upstream_task_ids == {"promote_candidate", "keep_champion",
                                                                     "republish_champion"}
    assert dag.get_task("publish.commit").upstream_task_ids == {"publish.publish_shard"}  # waits for every shard
    assert dag.get_task("flag_rejection").upstream_task_ids == {"publish.commit"}  # a rejection shows after publishing
    assert dag.get_task("wait_for_earlier_days").mode == "reschedule"  # waiting holds no worker slot
    assert dag.get_task("train_candidate").pool == "gpu"
    assert dag.max_active_runs == 3 and not dag.catchup
    assert all(t.execution_timeout is not None for t in dag.tasks)


def test_branch_edges_carry_labels():
    dag = _daily()
    labels = {(up, down): dag.get_edge_info(up, down).get("label") for up, down in [
        ("choose_path", "train_candidate"), ("choose_path", "republish_champion"),
        ("evaluate", "promote_candidate"), ("evaluate", "keep_champion")]}
    assert labels == {("choose_path", "train_candidate"): "mode=train",
                      ("choose_path", "republish_champion"): "mode=republish",
                      ("evaluate", "promote_candidate"): "pass", ("evaluate", "keep_champion"): "fail"}


def test_the_trigger_form_is_run_params_with_the_same_defaults_and_bounds():
    import dataclasses

    from recpipe.config import RunParams
    from recpipe.errors import ConfigError

    form, defaults = _daily().params, RunParams()
    fields = {f.name: f for f in dataclasses.fields(RunParams)}
    assert set(form.keys()) == set(fields)
    for name, f in fields.items():
        param = form.get_param(name)
        assert param.value == getattr(defaults, name), name
        assert param.description == f.metadata["doc"], name
        schema = param.schema
        assert (schema.get("minimum"), schema.get("maximum"), schema.get("enum")) == (
            f.metadata["minimum"], f.metadata["maximum"],
            list(f.metadata["choices"]) if f.metadata["choices"] else None), name
    # the library refuses what the form refuses, just past each bound
    bounded = [(name, bound, step) for name, f in fields.items()
               for bound, step in (("minimum", -1), ("maximum", +1)) if f.metadata[bound] is not None]
    assert len(bounded) >= 15
    for name, bound, step in bounded:
        with pytest.raises(ConfigError, match=name):
            RunParams(**{name: type(fields[name].default)(fields[name].metadata[bound] + step)})
    assert RunParams.from_mapping({k: form[k] for k in form.keys()}) == RunParams()


def test_refresh_dag_waits_rescheduling_and_emits_the_recommendations_asset():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "recommendations_refresh.py")).dags["recommendations_refresh"]
    assert dag.get_task("wait_for_drop").downstream_task_ids == {"refresh"}
    assert dag.get_task("wait_for_drop").mode == "reschedule" and dag.get_task("wait_for_drop").soft_fail
    assert [o.name for o in dag.get_task("refresh").outlets] == ["recommendations"]
    assert dag.max_active_runs == 1 and not dag.catchup
    assert all(t.execution_timeout is not None for t in dag.tasks)
    assert set(dag.params.keys()) == set(_daily().params.keys())  # the same RunParams form
