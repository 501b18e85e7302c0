"""The quality gate's row rules on one intraday drop (``raw/events/dt=D/part-<n>.*``).

The same rules as the daily gate (``check.row_reasons``, after ``event_type_map``): a bad
row goes to ``quarantine/drops/dt=D/part-<n>`` with its ``reason``, the rest (pseudonymised
like ``clean/events``) to ``clean/drops/dt=D/part-<n>``, both committed partitions. Of the
batch rules only the reject rate applies: a partial day has no volume to compare, and the
catalog and profile suites run with the day's gate. A drop with more than
``max_reject_rate`` bad rows writes nothing and fails with a :class:`DataQualityError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow.compute as pc

from recpipe import contracts, privacy
from recpipe.config import RunParams
from recpipe.errors import DataQualityError
from recpipe.io import landing, layout
from recpipe.io.partitions import Store
from recpipe.stages.validate.check import map_event_types, row_reasons

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DropResult:
    dt: str
    drop: int
    rows: int
    clean_rows: int
    quarantined: dict[str, int]
    clean: str  # the committed partition of the clean rows


def validate_drop(store: Store, dt: str, n: int, params: RunParams) -> DropResult:
    """Split drop ``n`` of ``dt`` into ``clean/drops`` and ``quarantine/drops`` by the row rules."""
    key = privacy.key_from_env()
    events = landing.read_drop(store, "events", dt, n, contracts.EVENTS)
    events, _ = map_event_types(events, params.event_type_map)
    reason = row_reasons(events, dt)
    bad = pc.is_valid(reason)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(pc.drop_null(reason)).to_pylist()}
    rejected = sum(counts.values())
    if events.num_rows and rejected / events.num_rows > params.max_reject_rate:
        detail = ", ".join(f"{c} {r}" for r, c in sorted(counts.items()))
        raise DataQualityError(
            f"drop {n} of {dt} ({store.url(layout.drop_file('events', dt, n, '.*'))}): {rejected} of "
            f"{events.num_rows} rows were rejected ({detail}), above the {params.max_reject_rate:.0%} limit "
            "(max_reject_rate). Nothing of this drop was applied; re-deliver it (data file, then its marker).")
    quarantine = events.filter(bad).select(contracts.EVENTS.names).append_column("reason", reason.filter(bad))
    store.write_partition(layout.quarantine_drop(dt, n), {"events": quarantine})
    clean = privacy.pseudonymise(events.filter(pc.invert(bad)).select(contracts.EVENTS.names), key)
    out = layout.clean_drop(dt, n)
    store.write_partition(out, {"events": clean}, {"source_rows": events.num_rows, "quarantined": counts})
    log.info("drop %d of %s: %d clean rows, %d quarantined %s", n, dt, clean.num_rows, rejected, counts)
    return DropResult(dt, n, events.num_rows, clean.num_rows, counts, out)
