"""The gate's record of each date: what the evaluation found and which model publishes.

``reports/evaluation/dt=D/metrics.json`` (written by the evaluate stage) and
``reports/evaluation/dt=D/decision.json`` (written by promote or republish):
``{"dt", "passed": true | false | null, "reasons": [...], "publish": <model ref>,
"repeat_slots": n}`` (the first n slots of each list are the user's recent items).

:func:`serving` answers which model serves on a date: the one whose table
(``recommendations/dt=…``, committed) is the latest on or before it, whatever its family.
"""

from __future__ import annotations

from typing import Any

from recpipe.io import layout
from recpipe.io.partitions import Store


def evaluation(store: Store, dt: str) -> dict[str, Any]:
    """The evaluate stage's decision for ``dt`` (metrics, thresholds, candidate, champion)."""
    return store.get_json(layout.evaluation_report(dt, "metrics.json"))


def write(store: Store, dt: str, passed: bool | None, reasons: list[str], publish: dict[str, str],
          repeat_slots: int) -> dict[str, Any]:
    outcome = {"dt": dt, "passed": passed, "reasons": reasons, "publish": publish, "repeat_slots": repeat_slots}
    store.put_json(layout.evaluation_report(dt, "decision.json"), outcome)
    return outcome


def read(store: Store, dt: str) -> dict[str, Any]:
    return store.get_json(layout.evaluation_report(dt, "decision.json"))



def serving(store: Store, on_or_before: str) -> dict[str, Any] | None:
    """What served on ``on_or_before``: ``{"dt", "publish": <model ref>, "repeat_slots"}`` of the
    latest committed table on or before that date (any model family); None before the first.

    Read from the table's own commit, so a refused or never-run publish does not count, and a
    backfill of an old date sees the table of that time, not a newer one.
    """
    dates = [d for d in store.committed_dates(layout.RECOMMENDATIONS) if d <= on_or_before]
    if not dates:
        return None
    meta = store.manifest(layout.partition(layout.RECOMMENDATIONS, dates[-1]))["meta"]
    return {"dt": dates[-1], "publish": meta["model"], "repeat_slots": meta.get("repeat_slots", 0)}
