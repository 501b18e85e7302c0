"""Bad input at the door: each case gets exactly its outcome, on the real S3 server.

A row-level problem quarantines the row with its reason and lets the rest through; a
batch-level problem fails ``validate`` with a message naming the problem, writes a report,
and leaves no ``clean/`` (hence no features, no recommendations) for that date.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recpipe import contracts
from recpipe.io import landing
from recpipe import pipeline, sources
from recpipe.config import RunParams
from recpipe.errors import DataQualityError, PartitionNotFound
from recpipe.io.layout import SUCCESS, partition
from recpipe.sources.synthetic import ShopSpec

SPEC = ShopSpec(users=300, items=100, days=6, seed=5)  # 2024-01-01 .. 2024-01-06
# Cases land on consecutive dates; "ratings out of range" turns a whole day into ratings, an event-type
# mix shift the drift check fails (tests/integration/test_drift.py covers it): off here, the row rules are tested.
PARAMS = RunParams(drift_type_mix_fail=0)


@pytest.fixture(scope="module")
def shop(s3_server):
    """Five validated days of history and a catalog; day 6's raw events are the base of every case."""
    import uuid

    from devstack import seaweedfs
    from recpipe.io.partitions import Store

    base, creds = s3_server
    store = Store(seaweedfs.store_config(base, creds, bucket=f"bad-{uuid.uuid4().hex[:8]}"))
    dates = sources.seed(store, SPEC)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, PARAMS)
    good = landing.read_raw(store, "events", dates[-1], contracts.EVENTS)
    return store, good


_counter = iter(range(1, 1000))


def _deliver(store, good: pa.Table, files) -> str:
    """A fresh date after the history; ``files(events_of_that_day)`` → {file name: bytes}."""
    dt = f"2024-02-{next(_counter):02d}"
    shift = pa.scalar(timedelta(days=(int(dt[-2:]) + 31 - 6)), pa.duration("us"))
    events = good.set_column(3, "event_ts", pc.add(good["event_ts"], shift))
    prefix = partition("raw/events", dt)
    for name, data in files(events).items():
        store.put_bytes(f"{prefix}/{name}", data)
    store.put_bytes(f"{prefix}/{SUCCESS}", b"")
    return dt


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def csv(table: pa.Table, delimiter: str = ",") -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(delimiter=delimiter))
    return sink.getvalue()


def jsonl(table: pa.Table) -> bytes:
    rows = table.to_pylist()
    return "".join(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}) + "\n"
                   for r in rows).encode()


def set_col(t: pa.Table, name: str, values) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), name, pa.array(values, t.schema.field(name).type))


def every(n: int, t: pa.Table, name: str, value) -> pa.Table:
    """Column ``name`` with every n-th row replaced by ``value``."""
    col = t[name].to_pylist()
    return set_col(t, name, [value if i % n == 0 else v for i, v in enumerate(col)])


FAILS = {
    "missing column": (lambda t: {"p.parquet": parquet(t.drop_columns(["event_type"]))},
                       r"required column 'event_type' is missing"),
    "column of the wrong type": (lambda t: {"p.parquet": parquet(t.set_column(3, "event_ts", pc.cast(t["event_ts"], pa.int64())))},
                                 r"'event_ts' has type int64, the contract says timestamp"),
    "id that is a float": (lambda t: {"p.parquet": parquet(t.set_column(0, "user_id", pa.array([float(i) for i in range(t.num_rows)])))},
                           r"'user_id' has type double, the contract says string"),
    "all-null user ids": (lambda t: {"p.parquet": parquet(set_col(t, "user_id", [None] * t.num_rows))},
                          r"rows \(100.0%\) were rejected \(\d+ null_key\)"),
    "empty partition": (lambda t: {}, r"is empty: no data file"),
    "zero-byte file": (lambda t: {"p.parquet": b""}, r"not readable parquet \(the file is empty"),
    "truncated parquet": (lambda t: {"p.parquet": parquet(t)[:-100]}, r"p\.parquet is not readable parquet"),
    "CSV with a wrong delimiter": (lambda t: {"p.csv": csv(t, ";")}, r"the CSV's delimiter must be a comma"),
    "non-UTF-8 text": (lambda t: {"p.csv": csv(t).replace(b"u0", "\u00fc0".encode("latin-1"), 3)},
                       r"'user_id' holds bytes that are not UTF-8 text"),
    "unknown event types (half)": (lambda t: {"p.parquet": parquet(every(2, t, "event_type", "teleport"))},
                                   r"\d+ unknown_event_type\), above the 5% limit"),
    "100% duplicates": (lambda t: {"p.parquet": parquet(pa.concat_tables([t, t]))},
                        r"\(50.0%\) were rejected \(\d+ duplicate\)"),
    "10x volume spike": (lambda t: {f"p{i}.parquet": parquet(set_col(t, "session_id", [f"s{i}"] * t.num_rows))
                                    for i in range(10)},
                         r"outside \d+\.\.\d+ \(max_volume_ratio 5 × the median"),
    "unknown items": (lambda t: {"p.parquet": parquet(every(5, t, "item_id", "never-heard-of"))},
                      r"of the events are about items the catalog \(raw/items\) does not list"),
    "unknown file type": (lambda t: {"p.xlsx": b"PK..."}, r"unknown file type '.xlsx'"),
}


@pytest.mark.parametrize("case", FAILS, ids=lambda c: c.replace(" ", "-"))
def test_a_bad_batch_fails_with_its_reason_and_nothing_goes_further(shop, case):
    store, good = shop
    files, message = FAILS[case]
    dt = _deliver(store, good, files)
    with pytest.raises(DataQualityError, match=message) as err:
        pipeline.validate(store, dt, PARAMS)
    assert f"reports/quality/dt={dt}/index.html" in str(err.value)
    assert store.exists(f"reports/quality/dt={dt}/index.html")
    assert dt not in store.committed_dates("clean/events")
    with pytest.raises(PartitionNotFound, match="run `recpipe validate"):  # the next stage refuses to run
        pipeline.features(store, dt, PARAMS)
    assert not store.list_keys(f"recommendations/dt={dt}/")


ROWS = {
    "a few unknown event types": (lambda t: every(50, t, "event_type", "teleport"), "unknown_event_type"),
    "timestamps from another day": (lambda t: t.set_column(3, "event_ts", pc.if_else(
        pc.equal(pc.modulo(pa.array(range(t.num_rows)), 50), 0),
        pc.subtract(t["event_ts"], pa.scalar(timedelta(days=1), pa.duration("us"))), t["event_ts"])), "ts_outside_day"),
    "negative prices": (lambda t: every(50, t, "value", -9.99), "value_out_of_range"),
    "ratings out of range": (lambda t: every(50, set_col(set_col(t, "event_type", ["rating"] * t.num_rows), "value",
                                                             [4.0] * t.num_rows), "value", 7.0), "value_out_of_range"),
    "a few duplicates": (lambda t: pa.concat_tables([t, t.slice(0, 20)]), "duplicate"),
}


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.replace(" ", "-"))
def test_bad_rows_are_quarantined_with_their_reason(shop, case):
    store, good = shop
    mutate, reason = ROWS[case]
    dt = _deliver(store, good, lambda t: {"p.parquet": parquet(mutate(t))})
    result = pipeline.validate(store, dt, PARAMS)
    quarantined = store.read_table(partition("quarantine/events", dt), "events")
    clean = store.read_table(partition("clean/events", dt), "events")
    assert set(quarantined["reason"].to_pylist()) == {reason}
    assert result["quarantined"] == {reason: quarantined.num_rows} and quarantined.num_rows > 0
    assert clean.num_rows + quarantined.num_rows == result["rows"]


def test_timestamps_in_the_future_fail_the_batch(shop):
    store, good = shop
    dt = "2031-05-05"  # a producer whose clock is years ahead: every event is in the future
    offset = pa.scalar(date(2031, 5, 5) - date(2024, 1, 6), pa.duration("us"))
    landing.write_raw(store, "events", dt, good.set_column(3, "event_ts", pc.add(good["event_ts"], offset)))
    with pytest.raises(DataQualityError, match=r"\(100.0%\) were rejected \(\d+ ts_in_future\)"):
        pipeline.validate(store, dt, PARAMS)
    assert dt not in store.committed_dates("clean/events")


def test_an_extra_column_is_allowed_and_recorded(shop):
    store, good = shop
    dt = _deliver(store, good, lambda t: {"p.parquet": parquet(t.append_column("campaign", pa.array(["x"] * t.num_rows)))})
    result = pipeline.validate(store, dt, PARAMS)
    assert result["quarantined"] == {}
    report = store.get_json(f"reports/quality/dt={dt}/result.json")
    assert report["summary"]["extra_columns"] == ["campaign"] and report["summary"]["passed"]
    assert store.read_table(partition("clean/events", dt), "events").column_names == list(contracts.EVENTS.names)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_json_lines_drops_read_like_parquet(shop, fmt):
    store, good = shop
    writer = {"csv": csv, "jsonl": jsonl}[fmt]
    dt = _deliver(store, good, lambda t: {f"part-0.{fmt}": writer(t)})
    result = pipeline.validate(store, dt, PARAMS)
    assert result["quarantined"] == {} and result["clean_rows"] == good.num_rows
    clean = store.read_table(partition("clean/events", dt), "events")
    assert clean.schema == pa.schema([f.with_nullable(True) for f in contracts.EVENTS])  # the contract's types
    assert sorted(clean["user_id"].to_pylist()) == sorted(good["user_id"].to_pylist())


def test_a_bad_catalog_fails_the_batch(shop):
    store, good = shop
    dt = _deliver(store, good, lambda t: {"p.parquet": parquet(t)})
    items = landing.read_raw(store, "items", "2024-01-06", contracts.ITEMS)
    landing.write_raw(store, "items", dt, every(3, items, "price", -1.0))
    with pytest.raises(DataQualityError, match=r"raw/items: GX expectation expect_column_values_to_be_between on price"):
        pipeline.validate(store, dt, PARAMS)
    assert dt not in store.committed_dates("clean/events")
