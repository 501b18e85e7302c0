"""The Great Expectations suites of the input contract, one per raw table, and how they run.

These suites are the reviewable statement of what data may enter the pipeline
(docs/contract.md says the same in prose). Row-level expectations carry
``meta={"row_level": True}``: their failing rows are quarantined and judged together by
``max_reject_rate``; every other expectation failing fails the batch. Column types are
enforced before GX sees the data: ``recpipe.io.landing.conform`` casts to the contract's
Arrow schema and refuses unsafe casts.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts
from recpipe.config import RunParams
from recpipe.contracts import day_bounds

ROW = {"row_level": True}


def events_suite(dt: str, params: RunParams, volume: tuple[int, int, float] | None, has_catalog: bool):
    """``raw/events`` of one date; ``volume`` = (min, max, median) rows allowed, None: not checked."""
    import great_expectations as gx

    E = gx.expectations
    start, end = day_bounds(dt)
    mostly = 1 - params.max_reject_rate
    suite = [E.ExpectColumnToExist(column=c) for c in contracts.EVENTS_REQUIRED]
    suite += [E.ExpectColumnValuesToNotBeNull(column=c, mostly=mostly, meta=ROW) for c in contracts.EVENTS_REQUIRED]
    suite += [
        E.ExpectTableRowCountToBeBetween(min_value=volume[0] if volume else 1, max_value=volume[1] if volume else None),
        E.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(contracts.EVENT_TYPES), mostly=mostly, meta=ROW),
        E.ExpectColumnValuesToBeBetween(column="event_ts", min_value=start, max_value=end - timedelta(microseconds=1),
                                        mostly=mostly, meta=ROW),
        E.ExpectColumnValuesToBeBetween(column="value", min_value=0, mostly=mostly, meta=ROW),
        E.ExpectColumnValuesToBeBetween(column="rating_value", min_value=1, max_value=5, mostly=mostly, meta=ROW),
        E.ExpectCompoundColumnsToBeUnique(column_list=list(contracts.EVENTS.names), mostly=mostly, meta=ROW),
    ]
    if has_catalog:
        suite.append(E.ExpectColumnValuesToBeInSet(column="item_in_catalog", value_set=[True],
                                                   mostly=1 - params.max_unknown_item_rate))
    return gx.ExpectationSuite(name="raw_events", expectations=suite)


def events_frame(events: pa.Table, catalog: pa.Array | None) -> pd.DataFrame:
    """The events as GX sees them, with two derived columns the suite checks:
    ``rating_value`` (the value of rating events only) and ``item_in_catalog``."""
    is_rating = pc.equal(events["event_type"], "rating")
    derived = {"rating_value": pc.if_else(is_rating, events["value"], pa.scalar(None, pa.float64()))}
    if catalog is not None:
        derived["item_in_catalog"] = pc.is_in(events["item_id"], value_set=catalog)
    frame = events.select(contracts.EVENTS.names)
    for name, column in derived.items():
        frame = frame.append_column(name, column)
    return frame.to_pandas()


def items_suite():
    """The item catalog snapshot: unique ids, sane prices, a known availability flag."""
    import great_expectations as gx

    E = gx.expectations
    return gx.ExpectationSuite(name="raw_items", expectations=[
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="item_id"),
        E.ExpectColumnValuesToBeUnique(column="item_id"),
        E.ExpectColumnValuesToBeBetween(column="price", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="release_year", min_value=1800, max_value=2100),
    ])


def users_suite():
    """User profiles: unique ids; profile columns are optional but plausible when given."""
    import great_expectations as gx

    E = gx.expectations
    return gx.ExpectationSuite(name="raw_users", expectations=[
        E.ExpectColumnValuesToNotBeNull(column="user_id"),
        E.ExpectColumnValuesToBeUnique(column="user_id"),
        E.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120),
    ])


SUITES = {"items": items_suite, "users": users_suite}


def run(suite, frame: pd.DataFrame, batch_name: str) -> dict:
    """Validate ``frame`` against ``suite`` in an ephemeral GX context; GX's result as JSON."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)  # GX sets its own loggers to INFO on import
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("raw").add_dataframe_asset(batch_name)
    batch = asset.add_batch_definition_whole_dataframe(batch_name).get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite).to_json_dict()
