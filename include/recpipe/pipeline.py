"""The pipeline: its stages in order, one function each, ``stage(store, dt, params) -> dict``.

    validate → features → train → evaluate → promote → publish
       └→ feedback (yesterday's table against today's events)
    refresh: during the day, each drop of events → today's table for the drop's users

The CLI (``recpipe <stage> --date D``) and the DAG's tasks (through the Airflow plugin)
call exactly the functions of :data:`STAGES`. Stages hand each other nothing but the store:
every output is committed under a date's partition, so any stage can be re-run alone and a
re-run replaces that date's output.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import date, timedelta
from typing import Any, Callable

from recpipe.config import RunParams
from recpipe.io.partitions import Store
from recpipe.stages import evaluate as _evaluate
from recpipe.stages import feedback as _feedback
from recpipe.stages import features as _features
from recpipe.stages import promote as _promote
from recpipe.stages import publish as _publish
from recpipe.stages import train as _train
from recpipe.stages import validate as _validate

log = logging.getLogger("recpipe")


def stage(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Log a stage's start, end and duration."""

    @functools.wraps(fn)
    def wrapper(store: Store, dt: str, *args, **kwargs):
        log.info("%s %s: start", fn.__name__, dt)
        started = time.monotonic()
        result = fn(store, dt, *args, **kwargs)
        log.info("%s %s: done in %.1fs", fn.__name__, dt, time.monotonic() - started)
        return result

    return wrapper


@stage
def validate(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """The quality gate on ``raw/*/dt=D``: clean/ + quarantine/ + report."""
    r = _validate.validate_events(store, dt, params)
    return {"dt": dt, "rows": r.rows, "clean_rows": r.clean_rows, "quarantined": r.quarantined,
            "report": store.url(r.report)}


@stage
def feedback(store: Store, dt: str, params: RunParams) -> dict[str, Any] | None:
    """Now that ``dt`` is validated: how the table published for the day before did on it."""
    return _feedback.realised(store, (date.fromisoformat(dt) - timedelta(days=1)).isoformat())


def pending_days(store: Store, dt: str, params: RunParams) -> list[str]:
    """Earlier days of D's window still waiting for validation (features must wait for them)."""
    return _features.pending_days(store, dt, params.lookback_days)


@stage
def features(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Point-in-time feature tables in ``features/dt=D``."""
    r = _features.build_features(store, dt, params)
    return {"dt": dt, "prefix": r.prefix, "rows": r.rows}


@stage
def train(store: Store, dt: str, params: RunParams) -> dict[str, str]:
    """A candidate of ``params.model`` in ``models/<model>/<version>/``."""
    return _train.train(store, dt, params)


@stage
def evaluate(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Judge this date's candidate (the version ``train`` wrote for these params)."""
    return _evaluate.evaluate(store, dt, params, _train.candidate(dt, params))


@stage
def promote(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """The candidate passed: it becomes the champion and publishes."""
    return _promote.promote_candidate(store, dt)


@stage
def keep_champion(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """The candidate failed: the champion (popularity before any) publishes."""
    return _promote.keep_champion(store, dt)


@stage
def republish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Skip training: publish with the champion that served on ``dt`` (popularity before any)."""
    return _promote.republish(store, dt, params.model)


@stage
def publish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Publish with the model the gate chose for this date (every shard, then the commit)."""
    return _publish.publish(store, dt, params)


@stage
def publish_shard(store: Store, dt: str, params: RunParams, shard: int) -> dict[str, Any]:
    """Stage one shard of this date's table (a mapped task in the DAG)."""
    return _publish.publish_shard(store, dt, params, shard)


@stage
def commit_publish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Commit the staged shards as ``recommendations/dt=D``."""
    return _publish.commit(store, dt, params)


def drops_pending(store: Store, dt: str, params: RunParams) -> list[int]:
    """The drops of ``dt`` (``raw/events/dt=D/_READY-<n>``) that today's table has not applied yet."""
    return _publish.pending_drops(store, dt)


@stage
def refresh(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Intraday: for each drop of ``dt`` not applied yet, the row rules of the quality gate, then
    today's table re-scored for the drop's users with the serving model (no training), committed."""
    applied = []
    for n in _publish.pending_drops(store, dt):
        checked = _validate.validate_drop(store, dt, n, params)
        applied.append({**_publish.refresh(store, dt, params, n), "clean_rows": checked.clean_rows,
                        "quarantined": checked.quarantined})
    return {"dt": dt, "drops": applied}


def rejection(store: Store, dt: str, params: RunParams) -> str | None:
    """Why this date's candidate was rejected (None if it passed or was not trained)."""
    return _promote.rejection(store, dt)


@stage
def gate(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Promote or keep the champion, as the evaluation decided (the DAG branches instead)."""
    return _promote.apply(store, dt)


#: Every stage function, in pipeline order: the DAG's tasks call them by name, and the CLI
#: offers validate, features, train, evaluate (+ gate), publish and refresh as commands.
STAGES: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    validate, feedback, pending_days, features, train, evaluate, gate, promote, keep_champion, republish,
    publish_shard, commit_publish, publish, rejection, drops_pending, refresh)}


def run(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Every stage for one date, in order."""
    out = {"validate": validate(store, dt, params), "features": features(store, dt, params)}
    if params.mode == "republish":
        out["gate"] = republish(store, dt, params)
        out["publish"] = publish(store, dt, params)
        return out
    out["train"] = train(store, dt, params)
    out["evaluate"] = {k: v for k, v in evaluate(store, dt, params).items() if k in ("passed", "reasons")}
    out["gate"] = gate(store, dt, params)
    out["publish"] = publish(store, dt, params)
    return out
