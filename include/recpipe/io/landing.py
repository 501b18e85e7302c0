"""Reading and writing the landing zone ``raw/<table>/dt=YYYY-MM-DD/``.

Producers drop files (one or many; Parquet, CSV with a header, or JSON Lines) into a date's
partition and write ``_SUCCESS`` last; the partition is ready when the marker is there.

A day's events may also arrive in *drops* during the day: drop ``n`` is one data file
``raw/events/dt=D/part-<n>.<ext>`` followed by its marker ``_READY-<n>`` (n = 1, 2, …,
any non-negative integers, applied in ascending order). The intraday refresh reads each
drop once its marker is there; ``_SUCCESS`` still closes the day, and the daily run reads
every file of the partition (all drops) as for any other day.

Columns are cast to the contract's schema on read; a column that is missing or cannot be
cast safely fails the whole batch.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from recpipe import contracts
from recpipe.errors import DataQualityError
from recpipe.io import layout
from recpipe.io.layout import SUCCESS
from recpipe.io.partitions import Store, table_to_parquet

log = logging.getLogger(__name__)


def is_ready(store: Store, table: str, dt: str) -> bool:
    """True once the producer has written ``raw/<table>/dt=<dt>/_SUCCESS``."""
    return store.exists(layout.raw_success(table, dt))


def data_keys(store: Store, table: str, dt: str) -> list[str]:
    """The data files of a raw partition (hidden files and markers excluded)."""
    prefix = layout.raw(table, dt) + "/"
    return [k for k in store.list_keys(prefix) if not k[len(prefix) :].startswith(("_", "."))]


def ready_drops(store: Store, table: str, dt: str) -> list[int]:
    """The drops of ``raw/<table>/dt=D`` whose ``_READY-<n>`` marker is there, ascending."""
    prefix = f"{layout.raw(table, dt)}/{layout.DROP_READY}"
    tails = [k[len(prefix):] for k in store.list_keys(prefix)]
    return sorted(int(t) for t in tails if t.isdigit())


def drop_keys(store: Store, table: str, dt: str, n: int) -> list[str]:
    """The data file(s) of drop ``n``: ``part-<n>.<ext>`` (any suffix a reader knows)."""
    stem = layout.drop_file(table, dt, n, "")
    return [k for k in data_keys(store, table, dt) if k.startswith(stem) and k[len(stem):].lower() in READERS]


def write_drop(store: Store, table: str, dt: str, n: int, data: pa.Table) -> str:
    """Deliver drop ``n`` of a day as a producer would: ``part-<n>.parquet``, then ``_READY-<n>``."""
    key = layout.drop_file(table, dt, n)
    store.put_bytes(key, table_to_parquet(data))
    store.put_bytes(layout.drop_ready(table, dt, n), b"")
    return key


def read_drop(store: Store, table: str, dt: str, n: int, schema: pa.Schema) -> pa.Table:
    """Drop ``n`` of a raw partition, cast to ``schema`` as :func:`read_raw` casts a day."""
    keys = drop_keys(store, table, dt, n)
    if not keys:
        raise DataQualityError(
            f"s3://{store.bucket}/{layout.drop_ready(table, dt, n)} marks drop {n} ready but there is no data file "
            f"{layout.drop_file(table, dt, n, '.<parquet|csv|jsonl>')}: deliver the file, then the marker.")
    return _read_keys(store, table, keys, schema)


def write_raw(store: Store, table: str, dt: str, data: pa.Table) -> str:
    """Deliver a table into the landing zone as a producer would: data, then ``_SUCCESS``."""
    prefix = layout.raw(table, dt)
    store.put_bytes(f"{prefix}/part-0.parquet", table_to_parquet(data))
    store.put_bytes(layout.raw_success(table, dt), b"")
    return prefix


def write_days(store: Store, events: pa.Table, items: pa.Table, what: str, users: pa.Table | None = None) -> list[str]:
    """Deliver a whole history at once: ``events`` into one partition per UTC day of
    ``event_ts``, the catalog ``items`` (and ``users``) once, into the first day's; returns the dates."""
    days = pc.strftime(events["event_ts"], format="%Y-%m-%d")
    dates = sorted(pc.unique(days).to_pylist())
    write_raw(store, "items", dates[0], items)
    if users is not None:
        write_raw(store, "users", dates[0], users)
    order = pc.array_sort_indices(days)
    events, days = events.take(order), days.take(order)
    bounds = np.searchsorted(days.to_numpy(zero_copy_only=False), dates + ["9999"])
    for i, dt in enumerate(dates):
        write_raw(store, "events", dt, events.slice(bounds[i], bounds[i + 1] - bounds[i]))
    log.info("imported %d events of %s into raw/events for %d days (%s..%s)", events.num_rows, what, len(dates),
             dates[0], dates[-1])
    return dates


#: File formats a producer may drop, by file name suffix.
READERS = {
    ".parquet": lambda data: pq.read_table(pa.BufferReader(data)),
    ".csv": lambda data: pacsv.read_csv(pa.BufferReader(data)),
    ".jsonl": lambda data: pajson.read_json(pa.BufferReader(data)),
    ".json": lambda data: pajson.read_json(pa.BufferReader(data)),
}


def read_raw(store: Store, table: str, dt: str, schema: pa.Schema) -> pa.Table:
    """Every file of a raw partition (Parquet, CSV or JSON Lines), concatenated and cast to ``schema``.

    Columns the contract does not name are kept after the contract's columns (recorded in
    the quality report); optional contract columns that are absent take their default
    (``contracts.DEFAULTS``: ``available`` → true) or null.
    """
    where = f"s3://{store.bucket}/{layout.raw(table, dt)}/"
    keys = data_keys(store, table, dt)
    if not keys:
        raise DataQualityError(f"raw/{table} for {dt} is empty: no data file under {where}.")
    return _read_keys(store, table, keys, schema)


def _read_keys(store: Store, table: str, keys: list[str], schema: pa.Schema) -> pa.Table:
    """The files ``keys`` of ``raw/<table>``, each read by its suffix, cast to ``schema``, concatenated."""
    parts = []
    for key in keys:
        suffix = "." + key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""
        reader = READERS.get(suffix)
        if reader is None:
            raise DataQualityError(
                f"s3://{store.bucket}/{key}: unknown file type {suffix or '(no suffix)'!r}; "
                f"deliver {', '.join(READERS)} files (docs/contract.md)."
            )
        data = store.get_bytes(key)
        try:
            if not data:
                raise pa.ArrowInvalid("the file is empty (0 bytes)")
            parts.append(conform(reader(data), schema, f"s3://{store.bucket}/{key}", contracts.DEFAULTS.get(table)))
        except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
            raise DataQualityError(
                f"s3://{store.bucket}/{key} is not readable {suffix[1:]} ({exc}); "
                "re-deliver the file and its marker (_SUCCESS, or _READY-<n> for a drop)."
            ) from exc
    return pa.concat_tables(parts, promote_options="permissive")


def conform(data: pa.Table, schema: pa.Schema, where: str, defaults: dict[str, object] | None = None) -> pa.Table:
    """Cast ``data`` to ``schema``; a missing required column or an unsafe cast fails the batch.

    Safe casts only: integers may become string ids, ISO-8601 strings timestamps, integers
    floats. A float id (``12.0``) or a string where a number belongs is refused, not guessed.
    An optional column that is absent, and the nulls of one that is present, take the
    contract's default for it (``contracts.DEFAULTS``; null where it has none).
    """
    columns, fields = [], []
    for field in schema:
        if field.name not in data.column_names:
            if not field.nullable:
                names = data.column_names
                hint = (" A single column whose name holds ';', '|' or a tab: the CSV's delimiter must be a comma."
                        if len(names) == 1 and any(d in names[0] for d in ";|\t") else "")
                raise DataQualityError(
                    f"{where}: required column {field.name!r} is missing; the file has "
                    f"{names}.{hint} Fix the producer's export to the contract (docs/contract.md)."
                )
            columns.append(_default(field, pa.nulls(data.num_rows, field.type), defaults))
        else:
            col = data.column(field.name)
            if pa.types.is_binary(col.type) and pa.types.is_string(field.type):
                raise DataQualityError(
                    f"{where}: column {field.name!r} holds bytes that are not UTF-8 text; "
                    "export the file as UTF-8."
                )
            if not _castable(col.type, field.type):
                raise DataQualityError(
                    f"{where}: column {field.name!r} has type {col.type}, the contract says "
                    f"{field.type} (docs/contract.md); fix the producer's export."
                )
            try:
                columns.append(_default(field, col.cast(field.type), defaults))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataQualityError(
                    f"{where}: column {field.name!r} has type {col.type}, the contract says "
                    f"{field.type}, and it does not convert ({exc})."
                ) from exc
        fields.append(field.with_nullable(True))
    extra = [name for name in data.column_names if name not in schema.names]
    if extra:
        log.warning("%s: columns not in the contract are kept but unused: %s", where, extra)
    return pa.table(columns + [data.column(n) for n in extra], schema=pa.schema(fields + [data.schema.field(n) for n in extra]))


def _default(field: pa.Field, column: pa.Array | pa.ChunkedArray, defaults: dict[str, object] | None):
    """``column`` with its nulls replaced by the contract's default for ``field``, if it has one."""
    if not defaults or field.name not in defaults:
        return column
    return pc.fill_null(column, pa.scalar(defaults[field.name], field.type))


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a column of ``source`` type may be cast to the contract's ``target`` type."""
    if source == target or pa.types.is_null(source):
        return True
    if pa.types.is_string(target):
        return pa.types.is_string(source) or pa.types.is_large_string(source) or pa.types.is_integer(source)
    if pa.types.is_timestamp(target):
        return pa.types.is_timestamp(source) or pa.types.is_string(source)
    if pa.types.is_floating(target):
        return pa.types.is_floating(source) or pa.types.is_integer(source)
    if pa.types.is_integer(target):
        return pa.types.is_integer(source)
    if pa.types.is_boolean(target):
        return pa.types.is_boolean(source)
    return False


def ready_dates(store: Store, table: str) -> list[str]:
    """Dates of ``raw/<table>`` whose producer has written ``_SUCCESS``, ascending."""
    prefix = layout.dates_prefix(f"raw/{table}")
    return [k[len(prefix) : -len(SUCCESS) - 1] for k in store.list_keys(prefix) if k.endswith("/" + SUCCESS)]
