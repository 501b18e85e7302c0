"""
### recommendations_refresh

During the day, fold each new drop of events into today's table, without training.

```
wait_for_drop → refresh
```

- **wait_for_drop** waits (rescheduling, holding no worker slot between pokes) for a drop of
  the run's day that today's table has not applied yet: `raw/events/dt=<ds>/part-<n>.*`
  followed by its marker `_READY-<n>`. No drop within the run's 10 minutes: the run is
  skipped, and the next run waits again.
- **refresh** validates each new drop with the quality gate's row rules (bad rows →
  `quarantine/drops/dt=<ds>/part-<n>/`), re-scores only the users with an event in it with
  the model that published the latest table, and commits `recommendations/dt=<ds>/` again
  in one atomic step (publish's checks first; every other user keeps their rows). It moves
  `recommendations/_latest` and emits the `recommendations` Asset with `extra.refresh`.

A run starts every 10 minutes (UTC); its logical date's day is the day refreshed. The daily
run (`recommendations_daily`) stays the source of truth: once it has published the day, the
refresh leaves that table alone. All data lives in the bucket of the `recpipe_s3`
connection; each task calls one function of `recpipe.pipeline` through the `recpipe_airflow` plugin.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, dag, task
from recpipe_airflow import RECOMMENDATIONS, params

EVERY = 10  # minutes between runs; a run's sensor waits at most this long


@dag(
    dag_id="recommendations_refresh",
    schedule=CronTriggerTimetable(f"*/{EVERY} * * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,  # drops are applied in order, one commit at a time
    params=params(),
    doc_md=__doc__,
    tags=["recpipe"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=15),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=10),
    },
)
def recommendations_refresh():
    @task.sensor(poke_interval=60, timeout=EVERY * 60 - 60, mode="reschedule", soft_fail=True)
    def wait_for_drop(ds: str | None = None, params: dict | None = None) -> bool:
        from recpipe_airflow import run_stage

        return bool(run_stage("drops_pending", ds, params))

    @task(outlets=[RECOMMENDATIONS])
    def refresh(ds: str | None = None, params: dict | None = None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from recpipe_airflow import run_stage

        summary = run_stage("refresh", ds, params)
        applied = [d["drop"] for d in summary["drops"] if d["status"] == "applied"]
        if not applied:  # another run applied them, or the daily run closed the day: no new table
            raise AirflowSkipException(f"no new drop to apply for {ds}: {summary['drops']}")
        rows = summary["drops"][-1]["rows"]
        outlet_events[RECOMMENDATIONS].extra = {"dt": ds, "rows": rows, "refresh": applied}
        return summary

    # -- wiring, in the diagram's order -------------------------------------------------
    wait_for_drop() >> refresh()


recommendations_refresh()
