"""A shop's own event log (one file: CSV, TSV or Parquet), read into the input contract and
delivered to the landing zone, one events partition per UTC day.

Real shop logs name their columns and types their own way (RetailRocket's
``timestamp,visitorid,event,itemid``, milliseconds, ``view``/``addtocart``/``transaction``;
Taobao's header-less ``user,item,category,behavior,timestamp`` with ``pv``/``fav``/``cart``/
``buy``). :class:`LogColumns` says which column is which; the event names stay as the producer
wrote them, and the run param ``event_type_map`` maps them to contract types at validation,
as for any other delivery (an unmapped name is quarantined there, not here).

The catalog lands once, in the first day's partition: the ``items`` file when one is given
(contract columns: ``item_id`` and any of ``category``, ``available``, …; absent ones take
their defaults), else the log's own items, with the last ``category`` the log gives each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recpipe import contracts
from recpipe.errors import DataError, ResourceLimit
from recpipe.io import landing
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)

#: numeric timestamps: the unit by magnitude (a second count stays below 1e11 until the year 5138)
UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass(frozen=True)
class LogColumns:
    """Which of the file's columns holds what; ``names``: the header of a file without one."""

    user: str = "user_id"
    item: str = "item_id"
    event_type: str = "event_type"
    ts: str = "event_ts"
    value: str | None = None
    session: str | None = None
    category: str | None = None
    ts_unit: str = "auto"  # s, ms, us, or auto (by magnitude); text timestamps are ISO 8601
    names: tuple[str, ...] = ()


def read_file(path: str | Path, names: tuple[str, ...] = (), text: tuple[str, ...] = ()) -> pa.Table:
    """A CSV (``,``), TSV (``.tsv``/``.txt``: tab) or Parquet file as a table of its columns;
    a CSV's columns named in ``text`` stay text (ids: ``007`` is not ``7``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file: give the shop log's file (CSV, TSV or Parquet).")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.rename_columns(list(names)) if names else table
    delimiter = "\t" if path.suffix in (".tsv", ".txt") else ","
    read = pacsv.ReadOptions(column_names=list(names) or None, block_size=1 << 26)
    convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types={c: pa.string() for c in text})
    return pacsv.read_csv(path, read_options=read, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                          convert_options=convert)


def events(raw: pa.Table, cols: LogColumns, where: str) -> pa.Table:
    """The log's rows as contract events (``user_id``, ``item_id``, ``event_type``, ``event_ts``, …)."""
    wanted = {"user_id": cols.user, "item_id": cols.item, "event_type": cols.event_type, "event_ts": cols.ts,
              "value": cols.value, "session_id": cols.session}
    missing = [c for c in wanted.values() if c and c not in raw.column_names]
    if missing:
        raise DataError(f"{where}: no column {missing} in {raw.column_names}; name the log's columns with "
                        "--user/--item/--type/--ts (or --names for a file without a header).")
    out = {name: raw[col] for name, col in wanted.items() if col}
    out["event_ts"] = _timestamps(out["event_ts"], cols.ts_unit, where)
    return landing.conform(pa.table(out), contracts.EVENTS, where)  # integer ids become text, float ids fail


def _timestamps(col: pa.ChunkedArray, unit: str, where: str) -> pa.ChunkedArray:
    if pa.types.is_timestamp(col.type) or pa.types.is_string(col.type):
        return col  # conform casts ISO 8601 text and any timestamp to the contract's
    if not pa.types.is_integer(col.type) and not pa.types.is_floating(col.type):
        raise DataError(f"{where}: timestamp column has type {col.type}; give seconds, milliseconds, "
                        "microseconds since 1970 or ISO 8601 text.")
    if unit == "auto":
        top = pc.max(pc.abs(col)).as_py() or 0
        unit = "us" if top >= 1e14 else "ms" if top >= 1e11 else "s"
        log.info("%s: numeric timestamps up to %s read as %s since 1970 (--ts-unit to say otherwise)", where, top, unit)
    if unit not in UNITS:
        raise DataError(f"{where}: timestamp unit {unit!r} is not one of s, ms, us, auto.")
    micros = pc.multiply(pc.cast(col, pa.int64()), UNITS[unit])
    return pc.cast(micros, pa.timestamp("us", tz="UTC"))


def catalog(events: pa.Table, category: pa.ChunkedArray | None, items: str | Path | None) -> pa.Table:
    """The catalog to land: the ``items`` file, or the items of ``events`` (each with its last
    ``category``, a column of the log's rows)."""
    if items is not None:
        return landing.conform(read_file(items, text=("item_id", "category", "brand", "title", "text")),
                               contracts.ITEMS, f"catalog {items}")
    ids = events["item_id"]
    if category is None:
        return landing.conform(pa.table({"item_id": pc.unique(ids.combine_chunks())}), contracts.ITEMS, "the log's items")
    table = pa.table({"item_id": ids, "category": category, "row": pa.array(range(len(ids)))})
    last = table.group_by("item_id").aggregate([("row", "max")])
    return landing.conform(table.take(last["row_max"]).select(["item_id", "category"]), contracts.ITEMS,
                           "the log's items")


def import_to_store(store: Store, path: str | Path, cols: LogColumns = LogColumns(),
                    items: str | Path | None = None) -> list[str]:
    """Deliver the log at ``path`` into ``raw/``; returns the dates of its days."""
    try:
        ids = tuple(c for c in (cols.user, cols.item, cols.event_type, cols.session, cols.category) if c)
        raw = read_file(path, cols.names, ids)
        log.info("read %d rows (columns %s) from %s", raw.num_rows, raw.column_names, path)
        data = events(raw, cols, str(path))
        if not data.num_rows:
            raise DataError(f"{path} holds no events.")
        category = raw[cols.category] if cols.category else None
        return landing.write_days(store, data, catalog(data, category, items), f"the log {path}")
    except MemoryError as exc:  # the whole file is read at once
        raise ResourceLimit(f"{path} does not fit in this machine's memory as one table: split it into files of "
                            "consecutive days and import them one after the other (each lands its own days; "
                            "give the catalog with --items).") from exc
