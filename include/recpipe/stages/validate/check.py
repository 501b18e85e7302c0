"""The data-quality gate on a day of raw data (Great Expectations).

Two levels of failure:

- row level: a null key, an unknown event type, a timestamp outside the partition's day or
  in the future, a value out of range, an exact duplicate. The row goes to
  ``quarantine/events/dt=D`` with a ``reason``; the rest goes on to ``clean/events/dt=D``.
- batch level: a missing or retyped column, an empty or unreadable partition, more than
  ``max_reject_rate`` of the rows rejected, a row count outside ``max_volume_ratio`` × the
  median of the previous 7 partitions, more than ``max_unknown_item_rate`` of the events
  about items the catalog does not list, a failed items/users suite, or a distribution
  drift against the previous 7 days above its ``drift_*_fail`` threshold (``drift``; above
  ``drift_*_warn`` it is a warning). Nothing is written to ``clean/``, and a
  :class:`DataQualityError` says what is wrong and where.

The suites (``suites``) are the reviewable statement of the rules; the GX
result, an HTML page and the day's drift profile land in ``reports/quality/dt=D/``.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts, privacy, reports
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import DataQualityError
from recpipe.io import landing, layout
from recpipe.io.partitions import Store, table_to_parquet
from recpipe.stages.validate import drift, suites

log = logging.getLogger(__name__)

#: Row-level rules in the order they are checked; a row gets the first reason that applies.
REASONS = ("null_key", "unknown_event_type", "ts_outside_day", "ts_in_future", "value_out_of_range", "duplicate")
#: Clock skew tolerated before a timestamp counts as "in the future".
FUTURE_SKEW_SECONDS = 300
VOLUME_HISTORY = 7  # partitions whose median row count is the volume reference
VOLUME_MIN_HISTORY = 3  # fewer previous partitions than this: no volume check


@dataclass(frozen=True)
class ValidationResult:
    dt: str
    rows: int
    clean_rows: int
    quarantined: dict[str, int]
    report: str
    extra_columns: list[str] = field(default_factory=list)

    @property
    def reject_rate(self) -> float:
        return 1 - self.clean_rows / self.rows if self.rows else 0.0


def row_reasons(events: pa.Table, dt: str, now: datetime | None = None) -> pa.Array:
    """One reason per row (null where the row is clean), vectorised with pyarrow."""
    start, end = day_bounds(dt)
    now = now or datetime.now(timezone.utc)
    ts = events["event_ts"]
    value = events["value"]
    is_rating = pc.equal(events["event_type"], "rating")
    rules = {
        "null_key": pc.or_kleene(
            pc.or_kleene(pc.is_null(events["user_id"]), pc.is_null(events["item_id"])),
            pc.or_kleene(pc.is_null(events["event_type"]), pc.is_null(ts)),
        ),
        "unknown_event_type": pc.invert(pc.is_in(events["event_type"], pa.array(contracts.EVENT_TYPES))),
        "ts_outside_day": pc.or_(pc.less(ts, pa.scalar(start, ts.type)), pc.greater_equal(ts, pa.scalar(end, ts.type))),
        "ts_in_future": pc.greater(ts, pa.scalar(now.timestamp() * 1e6 + FUTURE_SKEW_SECONDS * 1e6).cast(pa.int64()).cast(ts.type)),
        "value_out_of_range": pc.or_(
            pc.less(value, 0.0),
            pc.and_(is_rating, pc.or_(pc.less(value, 1.0), pc.greater(value, 5.0))),
        ),
        "duplicate": _duplicates(events),
    }
    reason = pa.nulls(events.num_rows, pa.string())
    for name in reversed(REASONS):  # earlier rules overwrite later ones
        hit = pc.fill_null(rules[name], False)
        reason = pc.if_else(hit, pa.scalar(name), reason)
    return reason


def _duplicates(events: pa.Table) -> pa.Array:
    """True for every repeat of an exact duplicate row (the first occurrence stays clean)."""
    keyed = events.select(contracts.EVENTS.names).append_column("_row", pa.array(range(events.num_rows), pa.int64()))
    first = keyed.group_by(contracts.EVENTS.names, use_threads=False).aggregate([("_row", "min")])
    return pc.invert(pc.is_in(keyed["_row"], first["_row_min"]))


def volume_bounds(store: Store, dt: str, params: RunParams) -> tuple[int, int, float] | None:
    """(min, max, median) allowed row count from the previous committed partitions, or None."""
    if not params.max_volume_ratio:
        return None
    history = [d for d in store.committed_dates(layout.CLEAN_EVENTS) if d < dt][-VOLUME_HISTORY:]
    if len(history) < VOLUME_MIN_HISTORY:
        return None
    counts = [store.manifest(layout.partition(layout.CLEAN_EVENTS, d))["meta"]["source_rows"] for d in history]
    median = statistics.median(counts)
    return int(median / params.max_volume_ratio), int(median * params.max_volume_ratio) + 1, median


def catalog_snapshot(store: Store, dt: str) -> pa.Table | None:
    """(item_id, available) of the newest catalog snapshot on or before ``dt`` (None without one)."""
    dates = [d for d in landing.ready_dates(store, "items") if d <= dt]
    if not dates:
        return None
    return landing.read_raw(store, "items", dates[-1], contracts.ITEMS).select(["item_id", "available"])


def map_event_types(events: pa.Table, mapping: dict[str, str]) -> tuple[pa.Table, dict[str, int]]:
    """``event_type`` with the producer's names replaced by contract types (``event_type_map``);
    also how many rows each mapping renamed. Names the map does not know stay as they are
    (an unknown type is quarantined by the row rules)."""
    if not mapping:
        return events, {}
    col = events["event_type"]
    pos = pc.index_in(col, value_set=pa.array(list(mapping), pa.string()))
    mapped = pc.coalesce(pc.take(pa.array(list(mapping.values()), pa.string()), pos), col)
    counts = {f"{r['values']}→{mapping[r['values']]}": r["counts"]
              for r in pc.value_counts(pc.filter(col, pc.is_valid(pos))).to_pylist()}
    return events.set_column(events.schema.get_field_index("event_type"), "event_type", mapped), counts


def unavailable_share(events: pa.Table, catalog: pa.Table) -> float:
    """Share of the distinct items of ``events`` that ``catalog`` marks unavailable or does not list."""
    items = pc.unique(events["item_id"].combine_chunks()).drop_null()
    if not len(items):
        return 0.0
    pos = pc.index_in(items, value_set=catalog["item_id"])
    available = pc.fill_null(pc.take(catalog["available"], pos), False)
    return 1 - pc.sum(available.cast(pa.int64())).as_py() / len(items)


def validate_events(store: Store, dt: str, params: RunParams) -> ValidationResult:
    """Validate ``raw/{events,items,users}/dt`` and split events into ``clean/`` and ``quarantine/``."""
    report = layout.quality_report(dt)
    key = privacy.key_from_env()  # a bad key fails before anything is written
    try:
        events = landing.read_raw(store, "events", dt, contracts.EVENTS)
    except DataQualityError as exc:  # unreadable or retyped: still leave a report behind
        reports.write_quality(store, dt, {"dt": dt, "passed": False, "problems": [str(exc)]}, {})
        raise DataQualityError(f"{exc} Nothing from this date goes further.", report=store.url(report)) from exc
    log.info("validating %d raw events of %s", events.num_rows, dt)
    events, renamed = map_event_types(events, params.event_type_map)
    reason = row_reasons(events, dt)
    catalog = catalog_snapshot(store, dt)
    bounds = volume_bounds(store, dt, params)
    ids = None if catalog is None else catalog["item_id"].combine_chunks()
    gx_results = {"events": suites.run(
        suites.events_suite(dt, params, bounds, catalog is not None),
        suites.events_frame(events, ids), f"events-{dt}")}
    for table, schema in (("items", contracts.ITEMS), ("users", contracts.USERS)):
        if landing.is_ready(store, table, dt):
            data = landing.read_raw(store, table, dt, schema)
            gx_results[table] = suites.run(suites.SUITES[table](), data.to_pandas(), f"{table}-{dt}")
    bad = pc.is_valid(reason)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(pc.drop_null(reason)).to_pylist()}
    clean = events.filter(pc.invert(bad)).select(contracts.EVENTS.names)
    extra = [c for c in events.column_names if c not in contracts.EVENTS.names]
    result = ValidationResult(dt, events.num_rows, clean.num_rows, counts, report, extra)
    problems = _batch_problems(result, gx_results, params, bounds)
    clean = privacy.pseudonymise(clean, key)  # drift compares D's users with clean/ (pseudonyms, when on)
    history = reports.quality_history(store, dt)
    today = drift.profile(clean)
    shift = drift.measure(store, dt, today, params, {s["dt"]: s for s in history})
    problems += drift.problems(shift, "fail")
    warnings = drift.problems(shift, "warn")
    for w in warnings:
        log.warning(w)
    share = None if catalog is None else unavailable_share(clean, catalog)
    if share is not None and share > params.max_unavailable_share:
        warnings.append(f"the catalog snapshot makes {share:.0%} of the items with events on {dt} unavailable "
                        f"(or does not list them), above max_unavailable_share {params.max_unavailable_share:.0%}: "
                        "is the catalog's `available` column right? Unavailable items are never recommended.")
        log.warning(warnings[-1])
    summary = {"dt": dt, "rows": result.rows, "clean_rows": result.clean_rows, "quarantined": counts,
               "event_types_mapped": renamed, "extra_columns": extra, "volume_bounds": bounds,
               "catalog_items": None if catalog is None else catalog.num_rows, "unavailable_item_share": share,
               "drift": shift, "passed": not problems, "problems": problems, "warnings": warnings}
    store.put_bytes(layout.quality_report(dt, "profile.parquet"), table_to_parquet(today))
    reports.write_quality(store, dt, summary, gx_results, history)
    if problems:
        raise DataQualityError(
            f"raw data for {dt} failed the quality gate: {' '.join(problems)} Nothing from this date goes further.",
            report=store.url(report),
        )
    quarantine = events.filter(bad).select(contracts.EVENTS.names).append_column("reason", reason.filter(bad))
    store.write_partition(layout.partition(layout.QUARANTINE_EVENTS, dt), {"events": quarantine})
    store.write_partition(layout.partition(layout.CLEAN_EVENTS, dt), {"events": clean}, {"source_rows": events.num_rows})
    log.info("%s: %d clean rows, %d quarantined %s; report %s", dt, clean.num_rows,
             result.rows - result.clean_rows, counts, store.url(report))
    return result


def _batch_problems(result: ValidationResult, gx_results: dict[str, dict], params: RunParams,
                    bounds: tuple[int, int, float] | None) -> list[str]:
    """Sentences naming each batch-level failure (empty when the batch passes)."""
    problems = []
    if result.reject_rate > params.max_reject_rate:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(result.quarantined.items()))
        problems.append(
            f"{result.rows - result.clean_rows} of {result.rows} rows ({result.reject_rate:.1%}) "
            f"were rejected ({detail}), above the {params.max_reject_rate:.0%} limit (max_reject_rate)."
        )
    for table, gx in gx_results.items():
        for r in gx["results"]:
            if r["success"]:
                continue
            kind, kwargs = r["expectation_config"]["type"], r["expectation_config"]["kwargs"]
            if kind == "expect_table_row_count_to_be_between" and bounds and table == "events":
                problems.append(
                    f"raw/events has {result.rows} rows, outside {bounds[0]}..{bounds[1]} "
                    f"(max_volume_ratio {params.max_volume_ratio:g} × the median {bounds[2]:g} of the previous days)."
                )
            elif kwargs.get("column") == "item_in_catalog":
                share = r["result"].get("unexpected_percent", 0.0)
                problems.append(
                    f"{share:.1f}% of the events are about items the catalog (raw/items) does not list, "
                    f"above the {params.max_unknown_item_rate:.0%} limit (max_unknown_item_rate)."
                )
            elif kind.startswith("expect_column") and r["expectation_config"].get("meta", {}).get("row_level"):
                continue  # counted in the reject rate above
            else:
                column = kwargs.get("column") or kwargs.get("column_list") or "the table"
                problems.append(f"raw/{table}: GX expectation {kind} on {column} failed ({_observed(r)}).")
    return problems


def _observed(result: dict) -> str:
    r = result["result"]
    if "observed_value" in r:
        return f"observed {r['observed_value']}"
    return f"{r.get('unexpected_count', '?')} unexpected values"
