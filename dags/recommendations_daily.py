"""
### recommendations_daily

Every day, turn the day's raw interaction events into a fresh top-K recommendations table.

```
wait_for_events → validate_events → wait_for_earlier_days → build_features → choose_path
                   validate_events → realised_feedback
choose_path ─(mode=train)→ train_candidate → evaluate ─(pass)→ promote_candidate ─┐
            │                                         └(fail)→ keep_champion ─────┤
            └(mode=republish)→ republish_champion ────────────────────────────────┴→ publish
publish = [plan_shards → publish_shard[0..n-1] → commit] → flag_rejection
```

- **wait_for_events** waits for `raw/events/dt=<ds>/_SUCCESS` (the producer's marker).
- **validate_events** runs the Great Expectations gate: bad rows → `quarantine/`, the rest
  → `clean/`; a bad batch fails the run (no retry). Report: `reports/quality/dt=<ds>/`.
- **realised_feedback** scores yesterday's published table against today's validated
  events (purchases, clicks; per strategy and model) into `reports/feedback/dt=<ds-1>/`.
- **wait_for_earlier_days** waits (rescheduling, holding no worker slot) while an earlier
  day of the window has raw events that are not validated yet: features built without it
  would miss it.
- **build_features** writes point-in-time features to `features/dt=<ds>/` (only data ≤ ds).
- **train_candidate** trains `model` (pool `gpu`) into `models/<model>/<version>/`.
- **evaluate** compares the candidate with the serving model (whatever published the latest
  table on or before ds, of any family), popularity and the recent heuristic on day ds's
  hold-out, with bootstrap intervals and slices (`reports/evaluation/dt=<ds>/`), and
  branches: **promote_candidate** makes a passing candidate the champion of its family and
  the model that publishes; **keep_champion** leaves the serving model serving.
- **republish_champion** (param `mode=republish`, for backfills) skips training and
  publishes with the model that served on that date.
- **publish** (a task group): **publish_shard** (one mapped task per shard, param
  `publish_shards`) scores its share of the users with the chosen model; **commit** joins
  the shards as `recommendations/dt=<ds>/` in one atomic step, moves
  `recommendations/_latest` and emits the `recommendations` Asset.
- **flag_rejection** fails the run (red in the grid, failure alerts fire) when the gate
  rejected the candidate: the serving model's table *was* published, but a person should look at
  why the candidate lost. Set `fail_on_rejection=false` to only log a warning.

The run for logical date *ds* covers the UTC day *ds* and runs after it ends. All data lives
in the bucket of the `recpipe_s3` connection. Every task calls one function of
`recpipe.pipeline` through the `recpipe_airflow` plugin.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Label, TaskGroup, TriggerRule, dag, task
from recpipe_airflow import RECOMMENDATIONS, params

TRAIN_QUEUE = os.environ.get("RECPIPE_TRAIN_QUEUE", "default")


@dag(
    dag_id="recommendations_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=3,  # a backfill can run beside the daily run; a waiting sensor blocks nothing
    params=params(),
    doc_md=__doc__,
    tags=["recpipe"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
    },
)
def recommendations_daily():
    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_events(ds: str | None = None) -> bool:
        from recpipe.io import landing
        from recpipe_airflow import store

        return landing.is_ready(store(), "events", ds)

    @task
    def validate_events(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("validate", ds, params)

    @task
    def realised_feedback(ds: str | None = None, params: dict | None = None) -> dict | None:
        from recpipe_airflow import run_stage

        return run_stage("feedback", ds, params)

    @task.sensor(poke_interval=60, timeout=6 * 3600, mode="reschedule")
    def wait_for_earlier_days(ds: str | None = None, params: dict | None = None) -> bool:
        from recpipe_airflow import run_stage

        return not run_stage("pending_days", ds, params)

    @task
    def build_features(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("features", ds, params)

    @task.branch
    def choose_path(params: dict | None = None) -> str:
        return "republish_champion" if params["mode"] == "republish" else "train_candidate"

    @task(pool="gpu", queue=TRAIN_QUEUE, execution_timeout=timedelta(hours=2))
    def train_candidate(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("train", ds, params)

    @task.branch
    def evaluate(ds: str | None = None, params: dict | None = None) -> str:
        from recpipe_airflow import run_stage

        return "promote_candidate" if run_stage("evaluate", ds, params)["passed"] else "keep_champion"

    @task
    def promote_candidate(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("promote", ds, params)

    @task
    def keep_champion(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("keep_champion", ds, params)  # logs a warning naming why the candidate lost

    @task
    def republish_champion(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("republish", ds, params)

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def plan_shards(params: dict | None = None) -> list[int]:
        return list(range(params["publish_shards"]))

    @task(execution_timeout=timedelta(hours=1))
    def publish_shard(shard: int, ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("publish_shard", ds, params, shard=shard)

    @task(outlets=[RECOMMENDATIONS])
    def commit(ds: str | None = None, params: dict | None = None, outlet_events=None) -> dict:
        from recpipe_airflow import run_stage

        summary = run_stage("commit_publish", ds, params)
        outlet_events[RECOMMENDATIONS].extra = {"dt": ds, "rows": summary["rows"]}  # tells consumers which date
        return summary

    @task
    def flag_rejection(ds: str | None = None, params: dict | None = None) -> str | None:
        from recpipe_airflow import flag_rejection

        return flag_rejection(ds, params)

    # -- wiring, in the diagram's order -------------------------------------------------
    path = choose_path()
    judged = evaluate()
    promoted, kept, republished = promote_candidate(), keep_champion(), republish_champion()
    with TaskGroup("publish") as publish:
        publish_shard.expand(shard=plan_shards()) >> commit()

    validated = wait_for_events() >> validate_events()
    validated >> realised_feedback()
    validated >> wait_for_earlier_days() >> build_features() >> path
    path >> Label("mode=train") >> train_candidate() >> judged
    path >> Label("mode=republish") >> republished
    judged >> Label("pass") >> promoted
    judged >> Label("fail") >> kept
    [promoted, kept, republished] >> publish
    publish >> flag_rejection()


recommendations_daily()
