"""recpipe's reports in the Airflow UI: a FastAPI app on the api-server and a tab on each DAG run.

    /recpipe/reports/<quality|evaluation|feedback>/<YYYY-MM-DD>   that date's page, read from the bucket
    /recpipe/runs/<dag_id>/<run_id>                               links to the run's logical date's pages

Every route sits behind Airflow's login (the auth manager's JWT, from the UI's cookie or a
bearer token; without one: 401/403) and asks for read access to DAG runs. The pages are read
through the ``recpipe_s3`` connection on the server and sent as they are: no credentials and
no presigned URLs reach the browser. The external view puts a "Reports" tab on every DAG run
that opens ``/recpipe/runs/...`` inside the UI.

Airflow loads this file as a plugin module (every ``.py`` under ``plugins/``); DAG files never
import it.
"""

from __future__ import annotations

import html
import json
from datetime import date
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin

from recpipe.io import layout

URL_PREFIX = "/recpipe"
Kind = Literal["quality", "evaluation", "feedback"]
#: The page of each kind of report; feedback has only its metrics.json (shown as such).
KEYS = {"quality": layout.quality_report, "evaluation": layout.evaluation_report, "feedback": layout.feedback_report}
STYLE = "body{font-family:sans-serif;margin:2em}pre{white-space:pre-wrap}"

app = FastAPI(title="recpipe reports", dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])


def _read(kind: Kind, dt: str) -> bytes | None:
    """The bytes of ``dt``'s ``kind`` report, None when there is none."""
    import recpipe_airflow

    try:
        return recpipe_airflow.store().get_bytes(KEYS[kind](dt))
    except FileNotFoundError:
        return None


@app.get("/reports/{kind}/{dt}", response_class=HTMLResponse)
def report(kind: Kind, dt: date) -> HTMLResponse:
    """One date's report page, as the stage wrote it."""
    body = _read(kind, dt.isoformat())
    if body is None:
        raise HTTPException(404, f"no {kind} report for {dt} (reports/{kind}/dt={dt}/ in the bucket): the run of "
                                 f"that date has not reached that stage yet, or failed before it.")
    if kind == "feedback":  # a JSON document: shown, escaped, in a page
        text = json.dumps(json.loads(body), indent=2)
        body = (f"<!doctype html><meta charset=utf-8><title>Feedback {dt}</title><style>{STYLE}</style>"
                f"<h1>Realised feedback of the table of {dt}</h1><pre>{html.escape(text)}</pre>").encode()
    return HTMLResponse(body)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
def run(dag_id: str, run_id: str) -> HTMLResponse:
    """Links to the pages of the run's logical date (those that exist)."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        logical = session.scalar(select(DagRun.logical_date).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if logical is None:
        raise HTTPException(404, f"no DAG run {run_id!r} of {dag_id!r} with a logical date.")
    dt = logical.date().isoformat()
    items = "".join(
        f"<li><a href='../../reports/{kind}/{dt}'>{kind}</a></li>" if _read(kind, dt) is not None
        else f"<li>{kind}: none yet</li>" for kind in KEYS)
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>recpipe reports {dt}</title><style>{STYLE}</style>"
                        f"<h1>recpipe reports of {html.escape(dt)}</h1><ul>{items}</ul>")


class RecpipeReportsPlugin(AirflowPlugin):
    name = "recpipe_reports"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "recpipe reports"}]
    external_views = [{
        "name": "Reports",
        "href": URL_PREFIX.lstrip("/") + "/runs/{DAG_ID}/{RUN_ID}",  # relative to the UI's base URL
        "destination": "dag_run",
        "url_route": "recpipe-reports",
    }]
