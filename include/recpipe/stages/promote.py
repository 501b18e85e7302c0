"""The promote stage: act on the evaluation of a date, and record which model publishes it.

- :func:`promote_candidate`: the candidate passed; it becomes the champion from ``dt`` on.
- :func:`keep_champion`: the candidate failed; the model that served on that date (whatever
  its family; the better baseline before any table) keeps serving, with its repeat slots,
  and the candidate stays in ``models/`` for inspection.
- :func:`republish`: no candidate (``mode=republish``); the model that served on ``dt``
  publishes again.

Each writes ``reports/evaluation/dt=D/decision.json``, which the publish stage reads.
"""

from __future__ import annotations

import logging
from typing import Any

from recpipe.artifacts import decision, registry
from recpipe.errors import ConfigError
from recpipe.io import layout
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)


def promote_candidate(store: Store, dt: str) -> dict[str, Any]:
    """Make the candidate that passed the gate on ``dt`` the champion; it publishes."""
    found = decision.evaluation(store, dt)
    if not found["passed"]:
        raise ConfigError(f"the candidate for {dt} did not pass the gate: keep the champion instead.")
    slots = found["metrics"]["candidate"]["repeat_slots"]
    registry.promote(store, found["candidate"], dt, f"passed the gate on {dt}", slots)
    return decision.write(store, dt, True, found["reasons"], found["candidate"], slots)


def keep_champion(store: Store, dt: str) -> dict[str, Any]:
    """The candidate failed the gate on ``dt``: the serving model (a baseline if none) publishes."""
    found = decision.evaluation(store, dt)
    if found["passed"]:
        raise ConfigError(f"the candidate for {dt} passed the gate: promote it instead.")
    metrics, k, serving = found["metrics"], found["k"], found["serving"]
    model_serves = serving is not None and serving["name"] != "popularity"
    fallback = serving if model_serves else registry.popularity_ref(dt)
    if model_serves:  # its repeat slots as this evaluation chose them (its own, when it is the candidate's twin)
        slots = metrics.get("serving", metrics["candidate"])["repeat_slots"]
    else:  # no model served yet: the better baseline, popularity or the recent items (backfilled by popularity)
        slots = k if metrics["recent"][f"ndcg@{k}"] > metrics["popularity"][f"ndcg@{k}"] else 0
    log.warning("candidate %s REJECTED by the gate on %s: %s Publishing %s %s instead; the candidate "
                "stays in %s for inspection.", found["candidate"]["version"], dt, " ".join(found["reasons"]),
                fallback["name"], fallback["version"], found["candidate"]["prefix"])
    return decision.write(store, dt, False, found["reasons"], fallback, slots)


def apply(store: Store, dt: str) -> dict[str, Any]:
    """Promote or keep, as the evaluation of ``dt`` decided (the one-process path: CLI, tests)."""
    passed = decision.evaluation(store, dt)["passed"]
    return promote_candidate(store, dt) if passed else keep_champion(store, dt)


def republish(store: Store, dt: str, model: str) -> dict[str, Any]:
    """Skip training: publish with the model that served on ``dt`` (the latest table on or before it,
    any family); before any table, the ``model`` champion of that date, or popularity."""
    served = decision.serving(store, dt)
    if served is not None:
        ref, slots = served["publish"], served["repeat_slots"]
        why = f"mode=republish: the model serving on {dt} (table of {served['dt']})"
    else:
        record = registry.champion_record(store, model, on_or_before=dt)
        ref = registry.champion(store, model, on_or_before=dt) or registry.popularity_ref(dt)
        slots, why = (record or {}).get("repeat_slots", 0), f"mode=republish: the {model} champion as of {dt}"
    if ref["name"] == "popularity":
        ref = registry.popularity_ref(dt)  # rebuilt from this date's features
    log.info("republishing %s with %s %s (repeat slots %d)", dt, ref["name"], ref["version"], slots)
    return decision.write(store, dt, None, [why], ref, slots)


def rejection(store: Store, dt: str) -> str | None:
    """Why this date's candidate was rejected (None if it passed or was not trained)."""
    outcome = decision.read(store, dt)
    if outcome["passed"] is not False:
        return None
    ref = outcome["publish"]
    return (f"The candidate for {dt} was rejected by the gate: {'; '.join(outcome['reasons'])}. "
            f"{layout.partition(layout.RECOMMENDATIONS, dt)} was published with {ref['name']} {ref['version']} "
            f"instead. Read s3://{store.bucket}/{layout.evaluation_report(dt)}; to ship a candidate anyway, "
            "re-run with looser gate params (min_lift_over_popularity, max_drop_vs_champion, "
            "allow_worse_family_switch, confidence_level, max_slice_drop).")
