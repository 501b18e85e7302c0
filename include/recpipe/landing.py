"""Reading and writing the landing zone ``raw/<table>/dt=YYYY-MM-DD/``.

Producers drop Parquet files (one or many) into a date's partition and write ``_SUCCESS``
last; the partition is ready when the marker is there. Columns are cast to the contract's
schema on read; a column that is missing or cannot be cast fails the whole batch.
"""

from __future__ import annotations

import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from recpipe.errors import DataQualityError
from recpipe.storage import SUCCESS, Store, partition, table_to_parquet

log = logging.getLogger(__name__)


def is_ready(store: Store, table: str, dt: str) -> bool:
    """True once the producer has written ``raw/<table>/dt=<dt>/_SUCCESS``."""
    return store.exists(f"{partition('raw/' + table, dt)}/{SUCCESS}")


def data_keys(store: Store, table: str, dt: str) -> list[str]:
    """The data files of a raw partition (hidden files and markers excluded)."""
    prefix = partition("raw/" + table, dt) + "/"
    return [k for k in store.list_keys(prefix) if not k[len(prefix) :].startswith(("_", "."))]


def write_raw(store: Store, table: str, dt: str, data: pa.Table) -> str:
    """Deliver a table into the landing zone as a producer would: data, then ``_SUCCESS``."""
    prefix = partition("raw/" + table, dt)
    store.put_bytes(f"{prefix}/part-0.parquet", table_to_parquet(data))
    store.put_bytes(f"{prefix}/{SUCCESS}", b"")
    return prefix


def read_raw(store: Store, table: str, dt: str, schema: pa.Schema) -> pa.Table:
    """Every file of a raw partition, concatenated and cast to ``schema``.

    Columns the contract does not name are kept after the contract's columns (recorded in
    the quality report); optional contract columns that are absent are added as nulls.
    """
    where = f"s3://{store.bucket}/{partition('raw/' + table, dt)}/"
    keys = data_keys(store, table, dt)
    if not keys:
        raise DataQualityError(f"raw/{table} for {dt} is empty: no data file under {where}.")
    parts = []
    for key in keys:
        try:
            parts.append(pq.read_table(io.BytesIO(store.get_bytes(key))))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataQualityError(
                f"s3://{store.bucket}/{key} is not readable Parquet ({exc}); "
                "re-deliver the file and its _SUCCESS marker."
            ) from exc
    return conform(pa.concat_tables(parts, promote_options="permissive"), schema, where)


def conform(data: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Cast ``data`` to ``schema``; a missing required column or a failed cast fails the batch."""
    columns, fields = [], []
    for field in schema:
        if field.name not in data.column_names:
            if not field.nullable:
                raise DataQualityError(
                    f"{where}: required column {field.name!r} is missing; the file has "
                    f"{data.column_names}. Fix the producer's export to the contract (docs/contract.md)."
                )
            columns.append(pa.nulls(data.num_rows, field.type))
        else:
            col = data.column(field.name)
            try:
                columns.append(col.cast(field.type))
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


def ready_dates(store: Store, table: str) -> list[str]:
    """Dates of ``raw/<table>`` whose producer has written ``_SUCCESS``, ascending."""
    prefix = f"raw/{table}/dt="
    return [k[len(prefix) : -len(SUCCESS) - 1] for k in store.list_keys(prefix) if k.endswith("/" + SUCCESS)]
