"""Every DAG file parses quickly, without errors, and without touching heavy libraries."""

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
               if m.split(".")[0] in ("tensorflow", "keras", "great_expectations", "boto3", "pandas"))
print(json.dumps({{"seconds": seconds, "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                  "dags": sorted(bag.dag_ids), "heavy": heavy}}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_and_pure(path):
    """Parsed in a fresh interpreter: no import errors, < 2 s, no TF/GX/boto3/pandas at module level."""
    code = PROBE.format(plugins=str(ROOT / "plugins"), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"], f"{path.name} defines no DAG"
    assert result["heavy"] == [], f"{path.name} imports heavy modules at parse time"
    assert result["seconds"] < 2.0


def test_daily_dag_shape():
    sys.path.insert(0, str(ROOT / "plugins"))
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "recommendations_daily.py")).dags["recommendations_daily"]  # no DB needed
    chain = ["wait_for_events", "validate_events", "build_features", "choose_path", "train_candidate", "evaluate", "gate"]
    for up, down in zip(chain, chain[1:]):
        assert down in dag.get_task(up).downstream_task_ids, (up, down)
    assert dag.get_task("gate").downstream_task_ids == {"promote_candidate", "keep_champion"}
    assert dag.get_task("plan_shards").upstream_task_ids == {"promote_candidate", "keep_champion", "republish_champion"}
    assert dag.get_task("publish").upstream_task_ids == {"publish_shard"}  # the commit waits for every shard
    assert dag.get_task("flag_rejection").upstream_task_ids == {"publish"}  # a rejection shows after publishing
    assert dag.get_task("choose_path").downstream_task_ids == {"train_candidate", "republish_champion"}
    assert dag.get_task("train_candidate").pool == "gpu"
    assert dag.max_active_runs == 3 and not dag.catchup
    assert all(t.execution_timeout is not None for t in dag.tasks)
    assert dag.params["model"] == "mf"
