"""The data-quality gate on a day of raw events (Great Expectations).

Two levels of failure:

- row level: a null key, an unknown event type, a timestamp outside the partition's day,
  a value out of range, an exact duplicate. The row goes to
  ``quarantine/events/dt=D`` with a ``reason``; the rest goes on to ``clean/events/dt=D``.
- batch level: a missing or retyped column, an empty or unreadable partition, or more than
  ``max_reject_rate`` of the rows rejected. Nothing is written to ``clean/``, and a
  :class:`DataQualityError` says what is wrong and where.

The Great Expectations suite (:func:`events_suite`) is the reviewable statement of the
rules; its result and an HTML page land in ``reports/quality/dt=D/``.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts, landing
from recpipe.config import RunParams
from recpipe.errors import DataQualityError
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)
logging.getLogger("great_expectations").setLevel(logging.WARNING)

#: Row-level rules in the order they are checked; a row gets the first reason that applies.
REASONS = ("null_key", "unknown_event_type", "ts_outside_day", "value_out_of_range", "duplicate")


@dataclass(frozen=True)
class ValidationResult:
    dt: str
    rows: int
    clean_rows: int
    quarantined: dict[str, int]
    report: str

    @property
    def reject_rate(self) -> float:
        return 1 - self.clean_rows / self.rows if self.rows else 0.0


def day_bounds(dt: str) -> tuple[datetime, datetime]:
    """[start, end) of a partition's UTC day."""
    start = datetime.combine(date.fromisoformat(dt), datetime.min.time(), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def row_reasons(events: pa.Table, dt: str) -> pa.Array:
    """One reason per row (null where the row is clean), vectorised with pyarrow."""
    start, end = day_bounds(dt)
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


def events_suite(dt: str, params: RunParams):
    """The GX expectation suite for ``raw/events`` of one date."""
    import great_expectations as gx

    start, end = day_bounds(dt)
    mostly = 1 - params.max_reject_rate
    E = gx.expectations
    expectations = [E.ExpectColumnToExist(column=c) for c in contracts.EVENTS_REQUIRED]
    expectations += [E.ExpectColumnValuesToNotBeNull(column=c, mostly=mostly) for c in contracts.EVENTS_REQUIRED]
    expectations += [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(contracts.EVENT_TYPES), mostly=mostly),
        E.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=start, max_value=end - timedelta(microseconds=1), mostly=mostly
        ),
        E.ExpectColumnValuesToBeBetween(column="value", min_value=0, mostly=mostly),
        E.ExpectCompoundColumnsToBeUnique(column_list=list(contracts.EVENTS.names), mostly=mostly),
    ]
    return gx.ExpectationSuite(name="raw_events", expectations=expectations)


def run_suite(events: pa.Table, dt: str, params: RunParams) -> dict:
    """Validate the batch with Great Expectations; returns GX's result as JSON."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("raw").add_dataframe_asset("events")
    batch = asset.add_batch_definition_whole_dataframe(dt).get_batch(
        batch_parameters={"dataframe": events.to_pandas()}
    )
    return batch.validate(events_suite(dt, params)).to_json_dict()


def validate_events(store: Store, dt: str, params: RunParams) -> ValidationResult:
    """Validate ``raw/events/dt`` and split it into ``clean/`` and ``quarantine/``."""
    events = landing.read_raw(store, "events", dt, contracts.EVENTS)
    log.info("validating %d raw events of %s", events.num_rows, dt)
    reason = row_reasons(events, dt)
    gx_result = run_suite(events, dt, params)
    bad = pc.is_valid(reason)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(pc.drop_null(reason)).to_pylist()}
    clean = events.filter(pc.invert(bad)).select(contracts.EVENTS.names)
    result = ValidationResult(dt, events.num_rows, clean.num_rows, counts, f"reports/quality/dt={dt}/index.html")
    problems = _batch_problems(result, gx_result, params)
    _write_report(store, result, gx_result, problems)
    if problems:
        raise DataQualityError(
            f"raw/events for {dt} failed the quality gate: {' '.join(problems)} "
            f"Nothing from this date goes further.",
            report=store.url(result.report),
        )
    store.write_partition(partition("quarantine/events", dt), {"events": events.filter(bad).append_column("reason", reason.filter(bad))})
    store.write_partition(partition("clean/events", dt), {"events": clean}, {"source_rows": events.num_rows})
    log.info("%s: %d clean rows, %d quarantined %s; report %s", dt, clean.num_rows,
             result.rows - result.clean_rows, counts, store.url(result.report))
    return result


def _batch_problems(result: ValidationResult, gx_result: dict, params: RunParams) -> list[str]:
    """Sentences naming each batch-level failure (empty when the batch passes)."""
    problems = []
    if result.reject_rate > params.max_reject_rate:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(result.quarantined.items()))
        problems.append(
            f"{result.rows - result.clean_rows} of {result.rows} rows ({result.reject_rate:.1%}) "
            f"were rejected ({detail}), above the {params.max_reject_rate:.0%} limit (max_reject_rate)."
        )
    for r in gx_result["results"]:
        if not r["success"]:
            cfg = r["expectation_config"]
            problems.append(f"GX expectation {cfg['type']} on {cfg['kwargs'].get('column') or cfg['kwargs'].get('column_list', 'the table')} failed.")
    return problems


def _write_report(store: Store, result: ValidationResult, gx_result: dict, problems: list[str]) -> None:
    prefix = f"reports/quality/dt={result.dt}"
    summary = {
        "dt": result.dt, "rows": result.rows, "clean_rows": result.clean_rows,
        "quarantined": result.quarantined, "passed": not problems, "problems": problems,
    }
    store.put_json(f"{prefix}/result.json", {"summary": summary, "great_expectations": gx_result})
    rows = "".join(
        f"<tr class={'ok' if r['success'] else 'bad'}><td>{html.escape(r['expectation_config']['type'])}</td>"
        f"<td>{html.escape(str(r['expectation_config']['kwargs'].get('column', r['expectation_config']['kwargs'].get('column_list', ''))))}</td>"
        f"<td>{'pass' if r['success'] else 'FAIL'}</td>"
        f"<td>{html.escape(str({k: v for k, v in r['result'].items() if k in ('unexpected_count', 'unexpected_percent', 'observed_value')}))}</td></tr>"
        for r in gx_result["results"]
    )
    verdict = "passed" if not problems else "FAILED: " + " ".join(problems)
    page = f"""<!doctype html><meta charset=utf-8><title>Quality {result.dt}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}
.ok td:nth-child(3){{color:green}}.bad td:nth-child(3){{color:#b00;font-weight:bold}}</style>
<h1>raw/events dt={result.dt}: {html.escape(verdict)}</h1>
<p>{result.rows} rows, {result.clean_rows} clean, quarantined by reason: {html.escape(str(result.quarantined))}</p>
<table><tr><th>expectation</th><th>column</th><th>result</th><th>observed</th></tr>{rows}</table>"""
    store.put_bytes(f"{prefix}/index.html", page.encode())
