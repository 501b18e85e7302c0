"""Distribution drift of a day of clean events against the previous days (the quality gate's ``drift``).

Each measure compares date D with the previous ``DAYS`` calendar days that have a committed
``clean/events`` partition (the others are listed as missing), through each day's
:func:`profile` (events per event type, item and user, saved with its quality report):

    event_type_mix   total-variation distance of D's event-type shares to the mean shares of the previous days
    popularity       Jensen–Shannon divergence (base 2, 0..1) of D's item shares to the mean of the previous
                     days' item shares
    active_users     distinct users on D ÷ the previous days' mean (judged as a factor either way)
    active_items     distinct items on D ÷ the previous days' mean
    new_user_share   share of D's users not seen on the previous days, minus the same share of the
                     previous days (read from their quality reports)
    new_item_share   the same for items

Both distances are noisy on a small shop (a few events per item a day give a large JS
divergence between two perfectly normal days), so what the thresholds judge is the *excess*
over the baseline: the median distance of each previous day to the mean of the other previous
days. Fewer than ``MIN_HISTORY`` previous days: nothing is judged (the object says so).
"""

from __future__ import annotations

import statistics
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recpipe.config import RunParams
from recpipe.io import layout
from recpipe.io.partitions import Store

DAYS = 7  # previous calendar days compared with
MIN_HISTORY = 3  # fewer previous days with clean events than this: no drift judged
#: what a day's profile counts: kind → the column of the events
KINDS = {"type": "event_type", "item": "item_id", "user": "user_id"}
#: measure → (the RunParams prefix of its warn/fail thresholds, what its statistic is)
MEASURES = {
    "event_type_mix": ("drift_type_mix", "total-variation distance of the event-type shares, excess over baseline"),
    "popularity": ("drift_popularity", "Jensen-Shannon divergence of the item-popularity distribution, "
                                       "excess over baseline"),
    "active_users": ("drift_active_ratio", "factor between the distinct users and the previous days' mean"),
    "active_items": ("drift_active_ratio", "factor between the distinct items and the previous days' mean"),
    "new_user_share": ("drift_new_share", "change of the share of users not seen on the previous days"),
    "new_item_share": ("drift_new_share", "change of the share of items not seen on the previous days"),
}
Profile = dict[str, tuple[pa.Array, np.ndarray]]  # kind → (distinct values, events per value)


def previous_days(dt: str) -> list[str]:
    """The ``DAYS`` calendar days before ``dt``, oldest first."""
    d = date.fromisoformat(dt)
    return [(d - timedelta(days=n)).isoformat() for n in range(DAYS, 0, -1)]


def profile(events: pa.Table) -> pa.Table:
    """A day's events reduced to what drift compares: (kind, value, events) rows, one per
    distinct event type, item and user. Saved next to the day's quality report
    (``profile.parquet``), so later days read ~distinct ids instead of every event."""
    parts = []
    for kind, column in KINDS.items():
        values, counts = pc.value_counts(events[column]).flatten()
        parts.append(pa.table({"kind": pa.array([kind] * len(values), pa.string()),
                               "value": values.cast(pa.string()), "events": counts.cast(pa.int64())}))
    return pa.concat_tables(parts)


def _split(table: pa.Table) -> Profile:
    out = {}
    for kind in KINDS:
        rows = table.filter(pc.equal(table["kind"], kind))
        out[kind] = (rows["value"].combine_chunks(), rows["events"].to_numpy())
    return out


def _day_profile(store: Store, dt: str) -> Profile:
    """A previous day's profile; days validated before profiles existed: from their clean events."""
    try:
        return _split(pq.read_table(pa.BufferReader(store.get_bytes(layout.quality_report(dt, "profile.parquet")))))
    except FileNotFoundError:
        events = store.read_table(layout.partition(layout.CLEAN_EVENTS, dt), "events", list(KINDS.values()))
        return _split(profile(events))


def measure(store: Store, dt: str, today: pa.Table, params: RunParams,
            reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``drift`` object of ``dt``; ``today`` is D's :func:`profile` (of the clean events, user
    ids as written to ``clean/``), ``reports`` the previous days' quality summaries by date."""
    window = previous_days(dt)
    committed = set(store.committed_dates(layout.CLEAN_EVENTS))
    days = [d for d in window if d in committed]
    profiles = [_day_profile(store, d) for d in days] + [_split(today)]
    out: dict[str, Any] = {"days": days, "missing_days": [d for d in window if d not in committed]}
    if out["missing_days"]:
        out["note"] = (f"{len(out['missing_days'])} of the previous {DAYS} days have no clean events "
                       f"(not delivered, not validated or failed); compared with the other {len(days)}.")
    measures = {
        "event_type_mix": _distance([p["type"] for p in profiles], _total_variation),
        "popularity": _distance([p["item"] for p in profiles], _jensen_shannon),
        "active_users": _ratio([p["user"][0] for p in profiles]),
        "active_items": _ratio([p["item"][0] for p in profiles]),
        "new_user_share": _new_share([p["user"][0] for p in profiles], days, reports, "new_user_share"),
        "new_item_share": _new_share([p["item"][0] for p in profiles], days, reports, "new_item_share"),
    }
    enough = len(days) >= MIN_HISTORY
    if not enough:
        out["note"] = (f"only {len(days)} of the previous {DAYS} days have clean events (at least {MIN_HISTORY} "
                       "needed): drift is recorded, not judged.")
    for name, m in measures.items():
        prefix = MEASURES[name][0]
        m["warn"], m["fail"] = getattr(params, f"{prefix}_warn"), getattr(params, f"{prefix}_fail")
        m["status"] = _status(m.get("statistic"), m["warn"], m["fail"]) if enough else "not judged"
    out["measures"] = measures
    return out


def problems(drift: dict[str, Any], level: str) -> list[str]:
    """One sentence per measure at ``level`` ("fail" or "warn"): the values, the threshold, the override."""
    out = []
    for name, m in drift["measures"].items():
        if m["status"] != level:
            continue
        prefix, what = MEASURES[name]
        facts = ", ".join(f"{k} {_fmt(m[k])}" for k in ("value", "reference", "baseline") if m.get(k) is not None)
        advice = (f"If the shift is expected (a campaign, a new tracking release, a catalog change), re-run with a "
                  f"higher {prefix}_fail (0 turns the check off)." if level == "fail" else "")
        out.append(f"drift in {name}: {m['statistic']:.3f} ({what}; {facts}; against {len(drift['days'])} "
                   f"previous days) is above {prefix}_{level} {m[level]:g}. {advice}".rstrip())
    return out


def _status(statistic: float | None, warn: float, fail: float) -> str:
    if statistic is None:
        return "not judged"
    if fail and statistic > fail:
        return "fail"
    if warn and statistic > warn:
        return "warn"
    return "ok"


def _shares(counts: list[tuple[pa.Array, np.ndarray]]) -> np.ndarray:
    """(days, distinct values) matrix: each day's share of events per value."""
    values = pc.unique(pa.chunked_array([v for v, _ in counts]))
    matrix = np.zeros((len(counts), len(values)))
    for row, (keys, n) in enumerate(counts):
        matrix[row, pc.index_in(keys, value_set=values).to_numpy()] = n
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def _distance(counts: list[tuple[pa.Array, np.ndarray]], distance) -> dict[str, Any]:
    """D's (the last day's) distance to the mean of the previous days, the baseline (median
    leave-one-out distance of the previous days), and the excess judged."""
    if len(counts) == 1:
        return {"value": None, "baseline": None, "statistic": None}
    shares = _shares(counts)
    past, today = shares[:-1], shares[-1]
    value = distance(today, past.mean(axis=0))
    n = len(past)
    loo = [distance(past[i], (past.sum(axis=0) - past[i]) / (n - 1)) for i in range(n)] if n > 1 else []
    baseline = statistics.median(loo) if loo else 0.0
    return {"value": round(value, 4), "baseline": round(baseline, 4), "statistic": round(max(value - baseline, 0.0), 4)}


def _total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(p - q).sum())


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def _ratio(distinct: list[pa.Array]) -> dict[str, Any]:
    """Distinct ids on D (the last array) against the mean of the previous days; the factor either way."""
    value, past = len(distinct[-1]), [len(a) for a in distinct[:-1]]
    if not past or not value or not statistics.mean(past):
        return {"value": value, "reference": None, "statistic": None}
    ratio = value / statistics.mean(past)
    return {"value": value, "reference": round(statistics.mean(past), 1), "ratio": round(ratio, 4),
            "statistic": round(max(ratio, 1 / ratio), 4)}


def _new_share(distinct: list[pa.Array], days: list[str], reports: dict[str, dict[str, Any]],
               name: str) -> dict[str, Any]:
    """Share of D's ids absent from the previous days, against that share on the previous days."""
    today = distinct[-1]
    if len(distinct) == 1 or not len(today):
        return {"value": None, "reference": None, "statistic": None}
    seen = pc.unique(pa.chunked_array(distinct[:-1]))
    value = 1 - pc.sum(pc.is_in(today, value_set=seen).cast(pa.int64())).as_py() / len(today)
    past = [m[name]["value"] for d in days
            if (m := reports.get(d, {}).get("drift", {}).get("measures")) and m.get(name, {}).get("value") is not None]
    if len(past) < MIN_HISTORY:  # the previous days' shares come from their reports (older ones have none)
        return {"value": round(value, 4), "reference": None, "statistic": None}
    reference = statistics.mean(past)
    return {"value": round(value, 4), "reference": round(reference, 4), "statistic": round(abs(value - reference), 4)}


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
