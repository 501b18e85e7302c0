"""A shop's own event log file through the importer, the quality gate and the daily run, on
the real S3 server: the synthetic shop's days written out as a producer would (its own
column and event names, millisecond or ISO timestamps), read back into the same events."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from recpipe import contracts, pipeline, sources
from recpipe.config import RunParams
from recpipe.errors import DataError
from recpipe.io import landing
from recpipe.io.layout import partition
from recpipe.sources.eventlog import LogColumns
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from tests.integration.test_cli import _cli

SPEC = ShopSpec(users=150, items=60, days=4, seed=5, start=date(2024, 5, 1))
#: the producer's names for the contract's types, RetailRocket-like
NAMES = {"view": "view", "click": "clk", "add_to_cart": "addtocart", "purchase": "transaction"}
BACK = {v: k for k, v in NAMES.items() if v != k}
KEY = ["user_id", "item_id", "event_type", "event_ts"]


@pytest.fixture(scope="module")
def shop():
    """(the shop's events, its last catalog) as the contract has them."""
    days = list(sources.generate(SPEC))
    return pa.concat_tables(d.events for d in days), days[-1].items


def _sorted(table: pa.Table) -> list[dict]:
    return table.select(KEY).sort_by([(c, "ascending") for c in KEY]).to_pylist()


def _clean(store, dates: list[str]) -> pa.Table:
    return pa.concat_tables(store.read_table(partition("clean/events", d), "events", columns=KEY) for d in dates)


def test_a_retailrocket_like_csv_lands_as_the_same_events_per_day(shop, store, tmp_path):
    events, _ = shop
    log = pa.table({"timestamp": pc.divide(events["event_ts"].cast(pa.int64()), 1000),  # ms, as RetailRocket's
                    "visitorid": events["user_id"], "event": [NAMES[t] for t in events["event_type"].to_pylist()],
                    "itemid": events["item_id"]})
    pacsv.write_csv(log, tmp_path / "events.csv")

    cols = LogColumns(user="visitorid", item="itemid", event_type="event", ts="timestamp")
    dates = sources.import_eventlog(store, str(tmp_path / "events.csv"), cols)
    assert dates == sorted(set(pc.strftime(events["event_ts"], format="%Y-%m-%d").to_pylist()))
    for dt in dates:
        result = pipeline.validate(store, dt, RunParams(event_type_map=BACK))
        assert result["rows"] == result["clean_rows"]  # every row passes once the names are mapped
    assert _sorted(_clean(store, dates)) == _sorted(events)
    catalog = landing.read_raw(store, "items", dates[0], contracts.ITEMS)  # the log's items, available by default
    assert sorted(catalog["item_id"].to_pylist()) == sorted(set(events["item_id"].to_pylist()))
    assert catalog["available"].to_pylist() == [True] * catalog.num_rows


def test_unmapped_producer_names_are_quarantined_not_guessed(shop, store, tmp_path):
    events, _ = shop
    named = events.select(KEY).set_column(2, "event_type", pa.array([NAMES[t] for t in events["event_type"].to_pylist()]))
    pq.write_table(named, tmp_path / "events.parquet")  # the contract's column names: no flags needed
    first = sources.import_eventlog(store, str(tmp_path / "events.parquet"))[0]
    result = pipeline.validate(store, first, RunParams(event_type_map={"transaction": "purchase"}, max_reject_rate=1.0))
    day = named.filter(pc.equal(pc.strftime(named["event_ts"], format="%Y-%m-%d"), first))
    unmapped = pc.sum(pc.is_in(day["event_type"], pa.array(["clk", "addtocart"])).cast(pa.int64())).as_py()
    assert unmapped > 0 and result["rows"] - result["clean_rows"] == unmapped


def test_a_headerless_taobao_like_tsv_with_categories_publishes_a_table(shop, store, tmp_path):
    events, items = shop
    category = dict(zip(items["item_id"].to_pylist(), items["category"].to_pylist()))
    secs = pc.divide(events["event_ts"].cast(pa.int64()), 1_000_000).to_pylist()
    lines = [f"{u}\t{i}\t{category.get(i, 'none')}\t{NAMES[t]}\t{s}" for u, i, t, s in
             zip(events["user_id"].to_pylist(), events["item_id"].to_pylist(), events["event_type"].to_pylist(), secs)]
    (tmp_path / "UserBehavior.tsv").write_text("\n".join(lines) + "\n")
    result = _cli(store, "import", "eventlog", str(tmp_path / "UserBehavior.tsv"),
                  "--names", "user,item,cat,behavior,ts", "--user", "user", "--item", "item", "--type", "behavior",
                  "--ts", "ts", "--category", "cat", "--validate", "--event-type-map", json.dumps(BACK))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["rows"] == out["clean_rows"] == events.num_rows
    dates = store.committed_dates("clean/events")
    assert _sorted(_clean(store, dates)) == _sorted(events)
    catalog = landing.read_raw(store, "items", dates[0], contracts.ITEMS)
    assert dict(zip(catalog["item_id"].to_pylist(), catalog["category"].to_pylist())) == {
        i: category.get(i, "none") for i in set(events["item_id"].to_pylist())}
    dt = dates[-1]
    pipeline.run(store, dt, RunParams(model="propensity", top_k=5, event_type_map=BACK, fail_on_rejection=False))
    table = publish.read(store, dt)
    users = set(_clean(store, dates)["user_id"].to_pylist())
    assert set(table["user_id"].to_pylist()) == users
    assert set(pc.value_counts(table["user_id"]).field("counts").to_pylist()) == {5}


def test_ids_keep_their_leading_zeros(store, tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,event_type,event_ts\n007,0012,view,2024-05-01T10:00:00Z\n")
    (tmp_path / "items.csv").write_text("item_id,category\n0012,01\n")
    dt = sources.import_eventlog(store, str(tmp_path / "log.csv"), items=str(tmp_path / "items.csv"))[0]
    assert landing.read_raw(store, "events", dt, contracts.EVENTS).select(["user_id", "item_id"]).to_pylist() == [
        {"user_id": "007", "item_id": "0012"}]
    assert landing.read_raw(store, "items", dt, contracts.ITEMS).select(["item_id", "category"]).to_pylist() == [
        {"item_id": "0012", "category": "01"}]


def test_a_log_without_the_named_columns_says_which_it_has(store, tmp_path):
    (tmp_path / "log.csv").write_text("ts,visitor,item,event\n1700000000,u1,i1,view\n")
    with pytest.raises(DataError, match=r"no column \['user_id'.*\['ts', 'visitor', 'item', 'event'\].*--user"):
        sources.import_eventlog(store, str(tmp_path / "log.csv"))
