"""Airflow in the dev stack: its services spelled out, the ``airflow`` CLI, and the few calls
of its REST API that ``make up`` needs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devstack import process

log = logging.getLogger(__name__)

DAG_ID = "recommendations_daily"
CONSUMER_DAG_ID = "recommendations_consumer"  # the example downstream DAG, scheduled on the Asset


def binary() -> str:
    """The ``airflow`` executable of this environment."""
    return str(Path(sys.executable).with_name("airflow"))


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment Airflow's processes run with: ours, the stack's ``env``, this venv first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **env, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``airflow *args`` with ``env`` (a full process environment), output captured."""
    return subprocess.run([binary(), *args], env=env, capture_output=True, text=True, check=check)


#: What ``airflow standalone`` runs, spelled out so that every socket binds 127.0.0.1
#: (standalone gives no way to bind the API server or to skip the log servers, which listen
#: on all interfaces; on one machine the API server reads task logs from disk anyway).
def services(api_port: int) -> dict[str, list[str]]:
    return {
        "airflow-api-server": ["api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
        "airflow-scheduler": ["scheduler", "--skip-serve-logs"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer", "--skip-serve-logs"],
    }


def start(env: dict[str, str], api_port: int, home: Path, pids: Path, logs: Path) -> dict[str, subprocess.Popen]:
    """Start Airflow's services unless their recorded processes (``pids/<service>.pid``) still run;
    returns the ones started. ``env`` is the stack's; ``home`` is AIRFLOW_HOME."""
    commands = services(api_port)
    missing = [name for name in commands if not process.alive(pids / f"{name}.pid")]
    if not missing:
        log.info("Airflow already running")
        return {}
    full_env = process_env(env)
    log.info("migrating the Airflow metadata DB (%s)", home / "airflow.db")
    cli(full_env, "db", "migrate")
    cli(full_env, "pools", "set", "gpu", "1", "Training tasks: one per GPU (or one on CPU).")
    procs = {name: process.spawn([binary(), *commands[name]], logs / f"{name}.log", cwd=home, env=full_env,
                                 pid_file=pids / f"{name}.pid")
             for name in missing}
    if "airflow-api-server" in procs:
        process.wait_http(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", procs["airflow-api-server"],
                          "Airflow API server", timeout=300, log_path=logs / "airflow-api-server.log")
    log.info("Airflow UI on http://localhost:%d (%s)", api_port, ", ".join(f"{n} pid {p.pid}" for n, p in procs.items()))
    return procs


class AirflowAPI:
    """The few calls of Airflow's REST API (``/api/v2``) that ``make up`` needs, as admin."""

    def __init__(self, env: dict[str, str]):
        self.base = env["AIRFLOW__API__BASE_URL"]
        body = {"username": "admin", "password": env["AIRFLOW_ADMIN_PASSWORD"]}
        self.token = self._call("POST", "/auth/token", body, auth=False)["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` (fresh installs take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def run_state(self, dag_id: str, logical_date: str) -> str | None:
        """State of the run with this logical date, or None when there is none."""
        q = urllib.parse.urlencode({"logical_date_gte": logical_date, "logical_date_lte": logical_date})
        runs = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns?{q}")["dag_runs"]
        return runs[0]["state"] if runs else None

    def trigger(self, dag_id: str, logical_date: str) -> None:
        self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date})


def run_dag(env: dict[str, str], dt: str, timeout: float = 1800) -> str:
    """Trigger ``recommendations_daily`` for ``dt`` through Airflow and wait; returns the state."""
    api = AirflowAPI(env)
    for dag_id in (CONSUMER_DAG_ID, DAG_ID):
        api.wait_for_dag(dag_id)
    logical = f"{dt}T00:00:00Z"
    state = api.run_state(DAG_ID, logical)
    if state == "success":
        log.info("%s for %s already succeeded; not re-running", DAG_ID, dt)
        return state
    for dag_id in (CONSUMER_DAG_ID, DAG_ID):
        api.unpause(dag_id)
    if state not in ("running", "queued"):
        api.trigger(DAG_ID, logical)
        log.info("triggered %s for %s; follow it on %s/dags/%s", DAG_ID, dt, api.base, DAG_ID)
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        state = api.run_state(DAG_ID, logical)
        if state in ("success", "failed"):
            return state
        if state != last:
            log.info("%s %s: %s", DAG_ID, dt, state)
            last = state
        time.sleep(3)
    return "timeout"
