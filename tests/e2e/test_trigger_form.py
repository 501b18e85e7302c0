"""The Airflow UI in headless Chromium: log in, fill the trigger form, run, check the table.

Screenshots of the form and of the finished run land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from recpipe.stages import publish
from recpipe.artifacts import registry
from devstack import stack
from recpipe.config import StoreConfig
from recpipe.io import layout
from recpipe.io.partitions import Store

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DAG = stack.DAG_ID


def _number(page, name: str):
    """The input of the trigger form's number field for param ``name``."""
    return page.locator(f"[data-scope=number-input][data-part=root]:has(#number-input\\:element_{name}\\:inc) input")


def _wait_for_run(api: stack.AirflowAPI, logical: str, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.run_state(DAG, logical)
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    return "timeout"


def _logged_in(browser, env: dict[str, str]):
    """A new page of the UI, logged in as admin."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(env["AIRFLOW__API__BASE_URL"] + "/")
    page.wait_for_url("**/auth/login**")  # nobody gets in without logging in
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", env["AIRFLOW_ADMIN_PASSWORD"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def test_trigger_form_runs_the_dag_with_the_params_given(live_stack, browser):
    paths, env, dt = live_stack
    ARTIFACTS.mkdir(exist_ok=True)
    base = env["AIRFLOW__API__BASE_URL"]
    api = stack.AirflowAPI(env)
    api.wait_for_dag(DAG)
    api.unpause(DAG)

    page = _logged_in(browser, env)
    page.goto(f"{base}/dags/{DAG}")
    page.get_by_role("button", name="Trigger").first.click()
    page.get_by_test_id("datetime-input").click()
    y, m, d = dt.split("-")
    page.fill("input[placeholder='YYYY/MM/DD']", f"{y}/{m}/{d}")
    page.fill("input[placeholder='HH:mm']", "00:00")
    page.get_by_text("Logical Date", exact=True).click()
    # the form refuses an out-of-bounds value itself: top_k has minimum 1
    _number(page, "top_k").fill("0")
    _number(page, "epochs").click()
    assert _number(page, "top_k").input_value() == "1"
    _number(page, "top_k").fill("7")
    _number(page, "epochs").fill("3")
    _number(page, "lookback_days").click()
    page.screenshot(path=str(ARTIFACTS / "trigger-form.png"), full_page=True)
    page.get_by_test_id("trigger-dag-submit").click()

    assert _wait_for_run(api, f"{dt}T00:00:00Z") == "success"
    page.goto(f"{base}/dags/{DAG}/runs")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(ARTIFACTS / "finished-run.png"), full_page=True)

    store = Store(StoreConfig.from_env(env))
    table = publish.read(store, dt)
    per_user = table.group_by("user_id").aggregate([("rank", "count")])
    assert set(per_user["rank_count"].to_pylist()) == {7}  # the form's top_k, not the default 10
    manifest = store.manifest(f"recommendations/dt={dt}")
    assert manifest["meta"]["top_k"] == 7
    candidate = store.get_json(f"reports/evaluation/dt={dt}/metrics.json")["candidate"]
    assert registry.metadata(store, candidate)["params"]["epochs"] == 3  # trained with the form's epochs
    assert pc.max(table["rank"]).as_py() == 7


def test_no_secret_reaches_task_logs_or_xcom(live_stack):
    """After the run above: the generated keys appear in no task log and no XCom value."""
    paths, env, dt = live_stack
    secrets = [env[k] for k in stack.SECRET_KEYS]
    logs = [p for p in (paths.airflow / "logs").rglob("*") if p.is_file()]
    assert any("train_candidate" in str(p) for p in logs)  # the run's task logs are there to check
    for p in logs:
        text = p.read_text(errors="replace")
        assert not any(s in text for s in secrets), f"a secret is in {p}"
    api = stack.AirflowAPI(env)
    runs = api._call("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]
    values = []
    for run in runs:
        tis = api._call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        for ti in tis:
            entries = api._call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances/"
                                       f"{ti['task_id']}/xcomEntries")["xcom_entries"]
            values += [str(api._call("GET", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}/taskInstances/"
                                           f"{ti['task_id']}/xcomEntries/{e['key']}?map_index={e['map_index']}")
                           .get("value")) for e in entries]
    assert any("recommendations/dt=" in v for v in values)  # publish's summary is there to check
    assert not any(s in v for s in secrets for v in values)


def test_the_runs_reports_open_from_its_reports_tab(live_stack, browser):
    """After the run above: its "Reports" tab (the plugin's external view) links to the date's
    pages, served by the api-server from the bucket through the connection, byte for byte."""
    paths, env, dt = live_stack
    base = env["AIRFLOW__API__BASE_URL"]
    api = stack.AirflowAPI(env)
    run_id = next(r["dag_run_id"] for r in api._call("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]
                  if r["logical_date"].startswith(dt))
    store = Store(StoreConfig.from_env(env))
    page = _logged_in(browser, env)
    page.goto(f"{base}/dags/{DAG}/runs/{run_id}/plugin/recpipe-reports")
    frame = page.frame_locator("iframe")
    frame.get_by_role("link", name="evaluation").click()
    frame.locator("h1").filter(has_text=f"Evaluation dt={dt}").wait_for()
    page.screenshot(path=str(ARTIFACTS / "reports-tab.png"), full_page=True)

    for kind, key in (("evaluation", layout.evaluation_report(dt)), ("quality", layout.quality_report(dt))):
        served = page.request.get(f"{base}/recpipe/reports/{kind}/{dt}")  # the logged-in browser's cookie
        assert served.status == 200 and served.body() == store.get_bytes(key)
        text = served.text()
        assert not any(env[k] in text for k in stack.SECRET_KEYS) and "X-Amz-" not in text
    assert page.request.get(f"{base}/recpipe/reports/evaluation/1999-01-01").status == 404
