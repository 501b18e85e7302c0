"""Load benchmark: a backfill of N consecutive dates on the embedded stack, end to end.

    python benchmarks/backfill.py --dates 30 --out benchmarks/results/backfill-30.json [--epochs 3]

What it does:

1. starts a whole embedded stack (SeaweedFS + Airflow api-server, scheduler, dag-processor,
   triggerer; SQLite, LocalExecutor) in a temporary folder on free loopback ports, as the
   e2e tests do; seeds the synthetic shop with N+1 days (``ShopSpec(days=N+1)``, from
   2024-01-01) before ``stack.start`` so that every day has ``raw/events/dt=D/_SUCCESS``,
   and lets ``stack.start`` validate the history as ``make up`` does;
2. runs ``airflow backfill create`` for days 2..N+1 (mode train, model mf, ``--epochs``,
   ``fail_on_rejection: false``, ``--max-active-runs 3``) and polls the REST API until every
   backfill run has finished.

What it measures: wall time from ``backfill create`` to the end of the last run (from the
runs' ``end_date``), runs succeeded/failed, failed tasks, tasks that needed a retry, and peak
memory sampled every second: the summed RSS (and PSS, which counts pages shared by forked
workers once) of the stack's processes — each service in ``<tmp>/.local/pids`` and all its
descendants, task processes included — and the machine's used memory (which includes
anything else running on the machine). Finally it counts the committed
``recommendations/dt=*`` partitions. The stack is always stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psutil

from devstack import process, stack
from recpipe import sources
from recpipe.config import StoreConfig
from recpipe.io.partitions import Store
from recpipe.sources.synthetic import ShopSpec

sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
log = logging.getLogger("bench.backfill")


class MemorySampler(threading.Thread):
    """Every ``interval`` s: summed RSS/PSS of the stack's process trees and machine used memory."""

    def __init__(self, pid_dir: Path, interval: float = 1.0):
        super().__init__(daemon=True)
        self.pid_dir, self.interval = pid_dir, interval
        self.peak = {"stack_rss": 0, "stack_pss": 0, "machine_used": 0, "processes": 0}
        self.samples = 0
        self._done = threading.Event()

    def _stack_processes(self) -> list[psutil.Process]:
        procs = []
        for pid_file in self.pid_dir.glob("*.pid"):
            try:
                root = psutil.Process(int(pid_file.read_text()))
                procs += [root, *root.children(recursive=True)]
            except (ValueError, psutil.Error):
                pass
        return procs

    def sample(self) -> None:
        rss = pss = 0
        procs = self._stack_processes()
        for p in procs:
            try:
                mem = p.memory_full_info()
                rss, pss = rss + mem.rss, pss + mem.pss
            except psutil.Error:
                pass  # exited between listing and reading
        now = {"stack_rss": rss, "stack_pss": pss, "machine_used": psutil.virtual_memory().used,
               "processes": len(procs)}
        self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
        self.samples += 1

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(env: dict[str, str], days: int) -> list[str]:
    """Seed ``days`` synthetic days (from 2024-01-01) into the stack's bucket."""
    store = Store(StoreConfig.from_env(env))
    store.ensure_bucket()
    return sources.seed(store, ShopSpec(days=days))


def create_backfill(env: dict[str, str], first: date, last: date, max_active_runs: int, conf: dict) -> None:
    """``airflow backfill create``, retried when SQLite is busy (Airflow then removes the partial backfill)."""
    cmd = [str(Path(sys.executable).with_name("airflow")), "backfill", "create", "--dag-id", stack.DAG_ID,
           "--from-date", first.isoformat(), "--to-date", last.isoformat(), "--max-active-runs", str(max_active_runs),
           "--reprocess-behavior", "completed", "--dag-run-conf", json.dumps(conf)]
    for attempt in range(1, 6):
        cli = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if cli.returncode == 0:
            return
        if "database is locked" not in cli.stderr or attempt == 5:
            raise RuntimeError(f"airflow backfill create failed ({cli.returncode}):\n{cli.stdout}\n{cli.stderr[-3000:]}")
        log.warning("airflow backfill create: SQLite busy (attempt %d); retrying", attempt)
        time.sleep(5)


def backfill_runs(api: stack.AirflowAPI) -> list[dict]:
    return api._call("GET", f"/api/v2/dags/{stack.DAG_ID}/dagRuns?run_type=backfill&limit=1000")["dag_runs"]


def task_instances(api: stack.AirflowAPI, run_id: str) -> list[dict]:
    run = urllib.parse.quote(run_id, safe="")
    return api._call("GET", f"/api/v2/dags/{stack.DAG_ID}/dagRuns/{run}/taskInstances?limit=1000")["task_instances"]


def consumer_states(api: stack.AirflowAPI) -> dict[str, int]:
    """Runs of the downstream DAG (triggered by each publish's Asset event) by state."""
    runs = api._call("GET", f"/api/v2/dags/{stack.CONSUMER_DAG_ID}/dagRuns?limit=1000")["dag_runs"]
    return {s: sum(r["state"] == s for r in runs) for s in sorted({r["state"] for r in runs})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", type=int, default=30, help="dates to backfill (consecutive days)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per run (DAG param)")
    ap.add_argument("--max-active-runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="give up after this many seconds")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)

    first = date(2024, 1, 2)  # day 1 (2024-01-01) is history only
    last = first + timedelta(days=args.dates - 1)
    expected = [(first + timedelta(days=i)).isoformat() for i in range(args.dates)]
    tmp = Path(tempfile.mkdtemp(prefix="recpipe-backfill-"))
    paths = stack.Paths(ROOT, local=tmp / ".local", s3_base=process.free_port_block(),
                        api_port=free_port())
    machine_before = psutil.virtual_memory().used
    sampler = MemorySampler(paths.pids)
    try:
        t0 = time.monotonic()
        env = stack.write_env(paths)
        stack.start_services(paths, env)
        seeded = seed(env, args.dates + 1)
        env, _ = stack.start(paths)  # services already up, events already there: validates days < the last
        log.info("stack up, %d days seeded and validated in %.0f s (%s)", len(seeded), time.monotonic() - t0, tmp)
        api = stack.AirflowAPI(env)
        for dag_id in (stack.CONSUMER_DAG_ID, stack.DAG_ID):
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)

        conf = {"mode": "train", "model": "mf", "epochs": args.epochs, "fail_on_rejection": False}
        cli_env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        sampler.start()
        started = datetime.now(timezone.utc)
        create_backfill(cli_env, first, last, args.max_active_runs, conf)
        runs = backfill_runs(api)
        if sorted(r["logical_date"][:10] for r in runs) != expected:
            raise RuntimeError(f"backfill created runs for {[r['logical_date'] for r in runs]}, expected {expected}")
        log.info("backfill %s..%s created; waiting for %d runs", first, last, len(runs))

        deadline, seen = time.monotonic() + args.timeout, None
        while True:
            runs = backfill_runs(api)
            states = {s: sum(r["state"] == s for r in runs) for s in ("queued", "running", "success", "failed")}
            if states != seen:
                log.info("runs: %s", states)
                seen = states
            if states["success"] + states["failed"] == len(runs):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill not finished after {args.timeout:.0f} s: {states}")
            time.sleep(5)
        sampler.stop()

        ends = [datetime.fromisoformat(r["end_date"].replace("Z", "+00:00")) for r in runs]
        failed_tasks, retried_tasks = [], []
        for r in runs:
            for ti in task_instances(api, r["dag_run_id"]):
                name = f"{r['logical_date'][:10]}:{ti['task_id']}" + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
                if ti["state"] in ("failed", "upstream_failed"):
                    failed_tasks.append(f"{name} ({ti['state']})")
                if (ti["try_number"] or 0) > 1:
                    retried_tasks.append(f"{name} (try {ti['try_number']}, {ti['state']})")
        consumer = consumer_states(api)
        partitions = Store(StoreConfig.from_env(env)).committed_dates("recommendations")
        result = {
            "benchmark": "backfill", "dates": args.dates, "from": first.isoformat(), "to": last.isoformat(),
            "conf": conf, "max_active_runs": args.max_active_runs,
            "wall_seconds": round((max(ends) - started).total_seconds(), 1),
            "seconds_per_date": round((max(ends) - started).total_seconds() / args.dates, 1),
            "runs_success": states["success"], "runs_failed": states["failed"],
            "failed_tasks": sorted(failed_tasks), "retried_tasks": sorted(retried_tasks),
            "consumer_runs": consumer,
            "peak_stack_rss_gib": round(sampler.peak["stack_rss"] / GIB, 3),
            "peak_stack_pss_gib": round(sampler.peak["stack_pss"] / GIB, 3),
            "peak_stack_processes": sampler.peak["processes"],
            "peak_machine_used_gib": round(sampler.peak["machine_used"] / GIB, 3),
            "machine_used_before_gib": round(machine_before / GIB, 3),
            "memory_samples": sampler.samples,
            "partitions": len(set(partitions) & set(expected)),
            "cpu_count": os.cpu_count(), "machine": {**machine(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1)},
        }
    finally:
        try:
            if sampler.is_alive():
                sampler.stop()
        finally:
            stack.down(paths)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = result["runs_failed"] == 0 and result["partitions"] == args.dates
    if ok and not result["retried_tasks"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:  # task logs: <tmp>/.local/airflow/logs/dag_id=…/run_id=…/task_id=…/attempt=N.log
        log.warning("kept the stack's folder for its logs: %s", tmp / ".local")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
