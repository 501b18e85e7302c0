"""The pipeline's stages, one function each: ``stage(store, dt, params) -> dict``.

The CLI (``recpipe <stage> --date D``) and the DAG's tasks call exactly these. Stages hand
each other nothing but the store: every output is committed under a date's partition, so
any stage can be re-run alone and a re-run replaces that date's output.

    validate → features → train → evaluate → apply_gate → publish
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

from recpipe import features as _features
from recpipe import gate, landing, publish as _publish, quality, registry, training
from recpipe.config import RunParams
from recpipe.storage import Store
from recpipe.synthetic import ShopSpec, generate

log = logging.getLogger("recpipe")

DECISION = "reports/evaluation/dt={dt}/decision.json"


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


def seed(store: Store, spec: ShopSpec = ShopSpec()) -> list[str]:
    """Write the synthetic shop's days into the landing zone; returns the dates."""
    store.ensure_bucket()
    dates = []
    for day in generate(spec):
        landing.write_raw(store, "items", day.dt, day.items)
        landing.write_raw(store, "users", day.dt, day.users)
        landing.write_raw(store, "events", day.dt, day.events)
        log.info("seeded raw/*/dt=%s: %d events, %d items, %d users", day.dt,
                 day.events.num_rows, day.items.num_rows, day.users.num_rows)
        dates.append(day.dt)
    return dates


def import_movielens(store: Store, path: str) -> list[str]:
    """Deliver a MovieLens release into the landing zone; returns the dates of its days."""
    from recpipe import movielens

    store.ensure_bucket()
    return movielens.import_to_store(store, path)


@stage
def validate(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    r = quality.validate_events(store, dt, params)
    return {"dt": dt, "rows": r.rows, "clean_rows": r.clean_rows, "quarantined": r.quarantined,
            "report": store.url(r.report)}


@stage
def features(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    r = _features.build_features(store, dt, params)
    return {"dt": dt, "prefix": r.prefix, "rows": r.rows}


@stage
def train(store: Store, dt: str, params: RunParams) -> dict[str, str]:
    return training.train(store, dt, params)


@stage
def evaluate(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Judge this date's candidate (the version ``train`` wrote for these params)."""
    version = training.model_version(dt, params)
    candidate = {"name": params.model, "version": version, "prefix": registry.prefix(params.model, version)}
    return gate.evaluate(store, dt, params, candidate)


@stage
def apply_gate(store: Store, dt: str) -> dict[str, Any]:
    """Act on the evaluation: promote or keep the champion; record what to publish."""
    decision = store.get_json(f"reports/evaluation/dt={dt}/metrics.json")
    ref = gate.apply(store, decision)
    outcome = {"dt": dt, "passed": decision["passed"], "reasons": decision["reasons"], "publish": ref}
    store.put_json(DECISION.format(dt=dt), outcome)
    return outcome


@stage
def republish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Skip training: publish with the champion that served on ``dt`` (popularity before any)."""
    ref = registry.champion(store, params.model, on_or_before=dt) or gate.popularity_ref(dt)
    outcome = {"dt": dt, "passed": None, "reasons": [f"mode=republish: the {params.model} champion as of {dt}"],
               "publish": ref}
    store.put_json(DECISION.format(dt=dt), outcome)
    log.info("republishing %s with %s %s", dt, ref["name"], ref["version"])
    return outcome


def _chosen(store: Store, dt: str) -> dict[str, str]:
    """The model the gate (or republish) chose for ``dt``."""
    return store.get_json(DECISION.format(dt=dt))["publish"]


@stage
def publish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Publish with the model the gate chose for this date (every shard, then the commit)."""
    return _publish.publish(store, dt, params, _chosen(store, dt))


@stage
def publish_shard(store: Store, dt: str, params: RunParams, shard: int) -> dict[str, Any]:
    """Stage one shard of this date's table (a mapped task in the DAG)."""
    return _publish.publish_shard(store, dt, params, _chosen(store, dt), shard)


@stage
def commit_publish(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Commit the staged shards as ``recommendations/dt=D``."""
    return _publish.commit(store, dt, params, _chosen(store, dt))


def rejection(store: Store, dt: str) -> str | None:
    """Why this date's candidate was rejected (None if it passed or was not trained)."""
    decision = store.get_json(DECISION.format(dt=dt))
    if decision["passed"] is not False:
        return None
    ref = decision["publish"]
    return (f"The candidate for {dt} was rejected by the gate: {'; '.join(decision['reasons'])}. "
            f"recommendations/dt={dt} was published with {ref['name']} {ref['version']} instead. "
            f"Read s3://{store.bucket}/reports/evaluation/dt={dt}/index.html; to ship a candidate anyway, "
            "re-run with looser gate params (min_lift_over_popularity, max_drop_vs_champion).")


def run(store: Store, dt: str, params: RunParams) -> dict[str, Any]:
    """Every stage for one date, in order."""
    out = {"validate": validate(store, dt, params), "features": features(store, dt, params)}
    if params.mode == "republish":
        out["gate"] = republish(store, dt, params)
        out["publish"] = publish(store, dt, params)
        return out
    out["train"] = train(store, dt, params)
    out["evaluate"] = {k: v for k, v in evaluate(store, dt, params).items() if k in ("passed", "reasons")}
    out["gate"] = apply_gate(store, dt)
    out["publish"] = publish(store, dt, params)
    return out
