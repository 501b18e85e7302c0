"""
### recommendations_daily

Every day, turn the day's raw interaction events into a fresh top-K recommendations table.

```
wait_for_events → validate_events → build_features → choose_path
    choose_path ─(mode=train)→ train_candidate → evaluate → gate ─(pass)→ promote_candidate ─┐
                │                                              └(fail)→ keep_champion ─────┤
                └(mode=republish)→ republish_champion ──────────────────────────────────────┴→ plan_shards
plan_shards → publish_shard[0..n-1] → publish → flag_rejection
```

- **wait_for_events** waits for `raw/events/dt=<ds>/_SUCCESS` (the producer's marker).
- **validate_events** runs the Great Expectations gate: bad rows → `quarantine/`, the rest
  → `clean/`; a bad batch fails the run (no retry). Report: `reports/quality/dt=<ds>/`.
- **build_features** writes point-in-time features to `features/dt=<ds>/` (only data ≤ ds).
- **train_candidate** trains `model` (pool `gpu`) into `models/<model>/<version>/`.
- **evaluate** + **gate** compare candidate, champion and popularity on day ds's hold-out
  (`reports/evaluation/dt=<ds>/`); a candidate that passes becomes champion.
- **republish_champion** (param `mode=republish`, for backfills) skips training and
  publishes with the champion that served on that date.
- **publish_shard** (one mapped task per shard, param `publish_shards`) scores its share of
  the users with the chosen model; **publish** commits the shards as `recommendations/dt=<ds>/`
  in one atomic step, updates `recommendations/_latest` and emits the `recommendations` Asset.
- **flag_rejection** fails the run (red in the grid, failure alerts fire) when the gate
  rejected the candidate: the champion's table *was* published, but a person should look at
  why the candidate lost. Set `fail_on_rejection=false` to only log a warning.

The run for logical date *ds* covers the UTC day *ds* and runs after it ends. All data lives
in the bucket of the `recpipe_s3` connection.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, TriggerRule, dag, task

RECOMMENDATIONS = Asset(name="recommendations", uri="s3://recpipe/recommendations/")
TRAIN_QUEUE = os.environ.get("RECPIPE_TRAIN_QUEUE", "default")

PARAMS = {
    "model": Param("mf", type="string", enum=["mf", "popularity", "sasrec", "two_tower"],
                   description="Model to train: mf (matrix factorisation), sasrec (self-attention over recent items), two_tower (id + content features, click/purchase heads; scores new items) or popularity (baseline)."),
    "mode": Param("train", type="string", enum=["train", "republish"],
                  description="train: train and gate a candidate. republish: skip training, publish with the champion of that date (for backfills)."),
    "top_k": Param(10, type="integer", minimum=1, maximum=500, description="Items per user in the table."),
    "lookback_days": Param(30, type="integer", minimum=1, maximum=365,
                           description="Days of events (before the run date) that features and training see."),
    "epochs": Param(8, type="integer", minimum=1, maximum=200, description="Maximum training epochs (early stopping may end sooner)."),
    "embedding_dim": Param(32, type="integer", minimum=4, maximum=512, description="Embedding size of the model."),
    "seed": Param(42, type="integer", minimum=0, description="Random seed: same seed and data, same model."),
    "max_reject_rate": Param(0.05, type="number", minimum=0, maximum=1,
                             description="Largest share of rejected raw rows before the whole batch fails."),
    "max_volume_ratio": Param(5.0, type="number", minimum=0, maximum=1000,
                              description="Fail the batch when its row count is off the median of the previous 7 days by more than this factor (0: off)."),
    "max_unknown_item_rate": Param(0.05, type="number", minimum=0, maximum=1,
                                   description="Largest share of events about items the catalog does not list."),
    "min_lift_over_popularity": Param(0.05, type="number", minimum=0, maximum=10,
                                      description="Candidate NDCG@K must beat popularity by this relative margin."),
    "max_drop_vs_champion": Param(0.02, type="number", minimum=0, maximum=1,
                                  description="Candidate NDCG@K may be at most this much (relative) below the champion."),
    "exclude_purchased": Param(True, type="boolean", description="Never recommend what the user already bought."),
    "warm_start": Param(False, type="boolean",
                        description="Continual training: start from the previous champion's weights, grown for new users and items."),
    "publish_shards": Param(1, type="integer", minimum=1, maximum=64,
                            description="Score users in this many parallel publish tasks (one per user shard)."),
    "fail_on_rejection": Param(True, type="boolean",
                               description="Mark the run failed when the gate rejects the candidate (the champion's table is still published)."),
}


@dag(
    dag_id="recommendations_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=3,  # a backfill can run beside the daily run; a waiting sensor blocks nothing
    params=PARAMS,
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
        from recpipe import landing
        from recpipe_airflow import store

        return landing.is_ready(store(), "events", ds)

    @task
    def validate_events(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("validate", ds, params)

    @task
    def build_features(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("features", ds, params)

    @task(pool="gpu", queue=TRAIN_QUEUE, execution_timeout=timedelta(hours=2))
    def train_candidate(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("train", ds, params)

    @task
    def evaluate(ds: str | None = None, params: dict | None = None) -> bool:
        from recpipe_airflow import run_stage

        return run_stage("evaluate", ds, params)["passed"]

    @task.branch
    def choose_path(params: dict | None = None) -> str:
        return "republish_champion" if params["mode"] == "republish" else "train_candidate"

    @task
    def republish_champion(ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("republish", ds, params)

    @task.branch
    def gate(passed: bool) -> str:
        return "promote_candidate" if passed else "keep_champion"

    @task
    def promote_candidate(ds: str | None = None) -> dict:
        from recpipe import pipeline
        from recpipe_airflow import store

        return pipeline.apply_gate(store(), ds)

    @task
    def keep_champion(ds: str | None = None) -> dict:
        from recpipe import pipeline
        from recpipe_airflow import store

        return pipeline.apply_gate(store(), ds)  # logs a warning naming why the candidate lost

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def plan_shards(params: dict | None = None) -> list[int]:
        return list(range(params["publish_shards"]))

    @task(execution_timeout=timedelta(hours=1))
    def publish_shard(shard: int, ds: str | None = None, params: dict | None = None) -> dict:
        from recpipe_airflow import run_stage

        return run_stage("publish_shard", ds, params, shard=shard)

    @task(outlets=[RECOMMENDATIONS])
    def publish(ds: str | None = None, params: dict | None = None, outlet_events=None) -> dict:
        from recpipe_airflow import run_stage

        summary = run_stage("commit_publish", ds, params)
        outlet_events[RECOMMENDATIONS].extra = {"dt": ds, "rows": summary["rows"]}  # tells consumers which date
        return summary

    @task
    def flag_rejection(ds: str | None = None, params: dict | None = None) -> str | None:
        from recpipe_airflow import flag_rejection

        return flag_rejection(ds, params["fail_on_rejection"])

    passed = evaluate()
    path = wait_for_events() >> validate_events() >> build_features() >> choose_path()
    path >> train_candidate() >> passed
    shards = plan_shards()
    gate(passed) >> [promote_candidate(), keep_champion()] >> shards
    path >> republish_champion() >> shards
    publish_shard.expand(shard=shards) >> publish() >> flag_rejection()


recommendations_daily()
