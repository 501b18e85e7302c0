"""The input contract: schemas of the landing zone ``raw/{events,items,users}/dt=YYYY-MM-DD/``.

A producer drops one or more files into a date's partition and writes ``_SUCCESS`` last;
recpipe reads the partition only once ``_SUCCESS`` is there. docs/contract.md is the
human-readable version of this module.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from recpipe.events import EVENT_TYPES, EVENT_WEIGHTS

__all__ = ["DEFAULTS", "EVENTS", "EVENTS_REQUIRED", "EVENT_TYPES", "EVENT_WEIGHTS", "ITEMS", "USERS", "day_bounds"]


#: Raw events: one row per user action; ``value`` is the rating (1–5) or the price paid.
EVENTS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("session_id", pa.string()),
    ]
)
EVENTS_REQUIRED = ("user_id", "item_id", "event_type", "event_ts")

#: Item catalog snapshot of that date.
ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),  # free text for content features (description, genres)
        pa.field("release_year", pa.int32()),
        pa.field("available", pa.bool_()),
    ]
)

#: What an optional column means when a producer leaves it out (or leaves a value null):
#: ``available`` defaults to true, every other optional column to null ("unknown").
DEFAULTS = {"items": {"available": True}}

#: User profiles snapshot of that date; every column but ``user_id`` is optional.
USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("age", pa.int32()),
        pa.field("gender", pa.string()),
        pa.field("occupation", pa.string()),
    ]
)




def day_bounds(dt: str) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day a ``dt=YYYY-MM-DD`` partition holds."""
    start = datetime.combine(date.fromisoformat(dt), datetime.min.time(), tzinfo=timezone.utc)
    return start, start + timedelta(days=1)
