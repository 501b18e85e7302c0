"""Row-level quality rules: each bad row gets exactly the reason a person would give it."""

from datetime import datetime, timezone

import pyarrow as pa

from recpipe import contracts
from recpipe.io.landing import conform
from recpipe.stages.validate import row_reasons

import pytest

from recpipe.errors import DataQualityError


def ts(h, day=10):
    return datetime(2024, 1, day, h, tzinfo=timezone.utc)


def test_each_bad_row_gets_its_reason():
    rows = [
        ("u1", "i1", "view", ts(1), None, "clean"),
        (None, "i1", "view", ts(2), None, "null_key"),
        ("u1", "i1", "teleport", ts(3), None, "unknown_event_type"),
        ("u1", "i1", "view", ts(4, day=11), None, "ts_outside_day"),
        ("u1", "i1", "purchase", ts(5), -3.0, "value_out_of_range"),
        ("u1", "i1", "rating", ts(6), 7.0, "value_out_of_range"),
        ("u1", "i1", "view", ts(1), None, "duplicate"),  # same as the first row
        ("u2", "i2", "rating", ts(7), 5.0, "clean"),
    ]
    table = pa.table(
        {name: [r[i] for r in rows] for i, name in enumerate(contracts.EVENTS.names[:5])}
    )
    table = conform(table, contracts.EVENTS, "test")
    got = row_reasons(table, "2024-01-10").to_pylist()
    assert got == [None if r[-1] == "clean" else r[-1] for r in rows]


def test_missing_required_column_fails_the_batch():
    table = pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_ts": [ts(1)]})
    with pytest.raises(DataQualityError, match="'event_type' is missing"):
        conform(table, contracts.EVENTS, "s3://b/raw/events/dt=2024-01-10/")


def test_uncastable_column_fails_the_batch():
    table = pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["view"], "event_ts": ["yesterday"]})
    with pytest.raises(DataQualityError, match="'event_ts' has type string"):
        conform(table, contracts.EVENTS, "here")


def test_timestamps_after_now_are_in_the_future():
    # the run for "today" (2024-01-10) at 06:00: an event stamped 09:00 has not happened yet
    table = conform(pa.table({"user_id": ["u1", "u1"], "item_id": ["i1", "i2"], "event_type": ["view", "view"],
                              "event_ts": [ts(5), ts(9)]}), contracts.EVENTS, "test")
    got = row_reasons(table, "2024-01-10", now=ts(6)).to_pylist()
    assert got == [None, "ts_in_future"]
