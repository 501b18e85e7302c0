"""The intraday refresh against the real S3 server: drops, re-scoring only their users, the commit."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import contracts, pipeline, sources
from recpipe.artifacts import registry
from recpipe.config import DRIFT_MEASURES, RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import DataQualityError, PartitionNotFound
from recpipe.io import landing, layout
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from tests.conftest import copy_bucket
from tests.integration.test_cli import _cli

SPEC = ShopSpec(users=300, items=120, days=4, seed=5, start=date(2024, 6, 1))


@pytest.fixture(scope="module")
def template(new_store):
    """Days 1-3 validated and day 3 published (mf, the gate's choice); day 4 not delivered yet."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    params = RunParams(epochs=1)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, params)
    day3, day4 = dates[-2], dates[-1]
    pipeline.features(store, day3, params)
    registry.promote(store, pipeline.train(store, day3, params), day3, "test: mf serves")
    pipeline.republish(store, day3, params)
    pipeline.publish(store, day3, params)
    store.delete_keys(store.list_keys(layout.raw("events", day4) + "/"))  # day 4 arrives in drops
    return store, day3, day4


@pytest.fixture
def day(template, store):
    source, day3, day4 = template
    return copy_bucket(source, store), day3, day4


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])


def _rows_of(table: pa.Table, users) -> pa.Table:
    return _sorted(table.filter(pc.is_in(table["user_id"], value_set=pa.array(sorted(users)))))


def _events(rows: list[tuple[str, str, str]], dt: str, hour: int = 9) -> pa.Table:
    """(user_id, item_id, event_type) rows on ``dt``, a second apart from ``hour`` o'clock."""
    start = day_bounds(dt)[0] + timedelta(hours=hour)
    return pa.table({
        "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "event_type": [r[2] for r in rows],
        "event_ts": pa.array([start + timedelta(seconds=s) for s in range(len(rows))], pa.timestamp("us", tz="UTC")),
        "value": pa.array([None] * len(rows), pa.float64()), "session_id": pa.array([None] * len(rows), pa.string()),
    })


def _buy_top_item(base: pa.Table, users: list[str], dt: str, hour: int = 9) -> pa.Table:
    """Each of ``users`` buys the item at rank 1 of their list: it must leave their refreshed list."""
    first = _sorted(base.filter(pc.equal(base["rank"], 1)))
    top = dict(zip(first["user_id"].to_pylist(), first["item_id"].to_pylist()))
    return _events([(u, top[u], "purchase") for u in users], dt, hour)


def test_a_drop_rescores_exactly_its_users_and_quarantines_a_bad_row(day):
    store, day3, day4 = day
    base = publish.read(store, day3)
    users = sorted(pc.unique(base["user_id"]).to_pylist())
    touched = users[::10][:40]
    known_item = base["item_id"][0].as_py()
    drop = pa.concat_tables([_buy_top_item(base, touched, day4),
                             _events([("newcomer", known_item, "view"), (touched[0], known_item, "teleport")], day4, 10)])
    landing.write_drop(store, "events", day4, 1, drop)
    assert pipeline.drops_pending(store, day4, RunParams()) == [1]

    ran = _cli(store, "refresh", "--date", day4)  # as a user runs it
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)["drops"]
    assert [(d["drop"], d["status"]) for d in summary] == [(1, "applied")]
    assert summary[0]["rescored_users"] == len(touched) + 1 and summary[0]["new_users"] == 1
    assert summary[0]["quarantined"] == {"unknown_event_type": 1}
    bad = store.read_table(layout.quarantine_drop(day4, 1), "events")
    assert bad["event_type"].to_pylist() == ["teleport"] and bad["reason"].to_pylist() == ["unknown_event_type"]

    table = publish.read(store, day4)
    others = set(users) - set(touched)
    assert _rows_of(table, others).equals(_rows_of(base, others))  # untouched users keep their rows
    bought = dict(zip(drop["user_id"].to_pylist()[:len(touched)], drop["item_id"].to_pylist()[:len(touched)]))
    for u in touched:  # each re-scored list has lost the item just bought, and is full again
        items = _rows_of(table, [u])["item_id"].to_pylist()
        assert bought[u] not in items and len(items) == 10
        assert items != _rows_of(base, [u])["item_id"].to_pylist()
    newcomer = _rows_of(table, ["newcomer"])
    assert newcomer["rank"].to_pylist() == list(range(1, 11))
    assert set(pc.unique(table["user_id"]).to_pylist()) == set(users) | {"newcomer"}
    assert publish.check(store, day4)["users"] == len(users) + 1  # the consumer's checks pass
    assert store.get_json(layout.LATEST)["dt"] == day4
    manifest = store.manifest(layout.partition(layout.RECOMMENDATIONS, day4))
    meta = store.manifest(layout.partition(layout.RECOMMENDATIONS, day3))["meta"]
    assert manifest["meta"]["refresh"]["drops"] == [1] and manifest["meta"]["model"] == meta["model"]
    assert meta["model"]["name"] == "mf"  # the serving model re-scored them, no training
    assert manifest["meta"]["users"] == meta["users"] + 1 and manifest["meta"]["rows"] == table.num_rows
    assert manifest["meta"]["full_users"] == manifest["meta"]["users"]  # the measures add up to the table

    # a re-run for the drop already applied commits nothing new
    assert pipeline.refresh(store, day4, RunParams()) == {"dt": day4, "drops": []}
    assert store.manifest(layout.partition(layout.RECOMMENDATIONS, day4))["run_id"] == manifest["run_id"]
    assert publish.refresh(store, day4, RunParams(), 1)["status"] == "applied already"


def test_drops_accumulate_and_the_daily_run_closes_the_day(day):
    store, day3, day4 = day
    base = publish.read(store, day3)
    users = sorted(pc.unique(base["user_id"]).to_pylist())
    first, second = users[1:30:3], users[2:30:3]
    landing.write_drop(store, "events", day4, 1, _buy_top_item(base, first, day4, 8))
    pipeline.refresh(store, day4, RunParams())
    after_first = publish.read(store, day4)
    landing.write_drop(store, "events", day4, 2, _buy_top_item(base, second, day4, 11))
    out = pipeline.refresh(store, day4, RunParams())
    assert [(d["drop"], d["status"], d["base"]) for d in out["drops"]] == [(2, "applied", day3)]
    table = publish.read(store, day4)
    assert _rows_of(table, first).equals(_rows_of(after_first, first))  # drop 1's users keep their refreshed rows
    rest = set(users) - set(first) - set(second)
    assert _rows_of(table, rest).equals(_rows_of(base, rest))
    assert not _rows_of(table, second).equals(_rows_of(base, second))
    assert store.manifest(layout.partition(layout.RECOMMENDATIONS, day4))["meta"]["refresh"]["drops"] == [1, 2]

    # the producer closes the day; the daily run reads every drop and its table replaces the refreshed one
    store.put_bytes(layout.raw_success("events", day4), b"")
    # two small drops: not a day's volume nor a day's mix of users, items and types
    drift_off = {f"drift_{m}_fail": 0.0 for m in DRIFT_MEASURES}
    params = RunParams(max_volume_ratio=0, mode="republish", **drift_off)
    validated = pipeline.validate(store, day4, params)
    assert validated["rows"] == validated["clean_rows"] == len(first) + len(second)
    pipeline.features(store, day4, params)
    pipeline.republish(store, day4, params)
    pipeline.publish(store, day4, params)
    daily = publish.read(store, day4)
    assert "refresh" not in store.manifest(layout.partition(layout.RECOMMENDATIONS, day4))["meta"]
    landing.write_drop(store, "events", day4, 3, _buy_top_item(base, users[:5], day4, 20))
    assert pipeline.drops_pending(store, day4, params) == []  # the day is closed
    assert publish.refresh(store, day4, params, 3)["status"] == "day closed"
    assert publish.read(store, day4).equals(daily)


def test_a_bad_drop_is_refused_and_nothing_is_committed(day):
    store, day3, day4 = day
    rows = [(f"u{i}", "x", "teleport" if i % 2 else "view") for i in range(20)]
    landing.write_drop(store, "events", day4, 1, _events(rows, day4))
    with pytest.raises(DataQualityError, match=r"drop 1 of .*10 of 20 rows were rejected.*max_reject_rate"):
        pipeline.refresh(store, day4, RunParams())
    assert store.committed_dates(layout.RECOMMENDATIONS) == [day3]
    assert store.manifest(layout.clean_drop(day4, 1)) is None
    assert store.get_json(layout.LATEST)["dt"] == day3


def test_without_a_published_table_the_refresh_says_what_to_run(store):
    dt = "2024-06-10"
    landing.write_drop(store, "events", dt, 0, _events([("a", "b", "view")], dt))
    with pytest.raises(PartitionNotFound, match="no table was published on or before 2024-06-10.*recpipe run"):
        pipeline.refresh(store, dt, RunParams())


def test_drops_are_found_by_marker_and_read_in_any_landing_format(store):
    dt = "2024-06-10"
    one, ten = _events([("a", "x", "view"), ("b", "y", "click")], dt), _events([("c", "z", "purchase")], dt, 12)
    store.put_bytes(layout.drop_file("events", dt, 1, ".csv"), b"user_id,item_id,event_type,event_ts\n" + "\n".join(
        f"{r['user_id']},{r['item_id']},{r['event_type']},{r['event_ts'].isoformat()}" for r in one.to_pylist()).encode())
    store.put_bytes(layout.drop_ready("events", dt, 1), b"")
    landing.write_drop(store, "events", dt, 10, ten)
    store.put_bytes(layout.drop_file("events", dt, 2), b"not yet complete")  # no marker: not a drop yet
    store.put_bytes(layout.drop_ready("events", dt, 3), b"")  # a marker without its data file
    assert landing.ready_drops(store, "events", dt) == [1, 3, 10]
    assert landing.read_drop(store, "events", dt, 1, contracts.EVENTS).select(["user_id", "event_ts"]).equals(
        one.select(["user_id", "event_ts"]))
    assert landing.read_drop(store, "events", dt, 10, contracts.EVENTS)["user_id"].to_pylist() == ["c"]
    with pytest.raises(DataQualityError, match=r"marks drop 3 ready but there is no data file .*part-3"):
        landing.read_drop(store, "events", dt, 3, contracts.EVENTS)
    assert not landing.is_ready(store, "events", dt)  # drops do not close the day
