"""Shop logs as they come, against the real S3 server: a producer's own event names, a
catalog without optional columns, a catalog with nothing available, and a publish that
refuses a broken table."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from recpipe import contracts, pipeline, sources
from recpipe.artifacts import registry
from recpipe.config import RunParams
from recpipe.errors import PublishRefused
from recpipe.io import landing
from recpipe.io.layout import SUCCESS, partition
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from tests.conftest import copy_bucket

SPEC = ShopSpec(users=250, items=90, days=4, seed=12, start=date(2024, 9, 1))
PARAMS = RunParams(model="popularity", top_k=5)  # no training needed to test what publish commits
#: The producer's own names for the contract's types.
NAMES = {"view": "pv", "click": "fav", "add_to_cart": "cart", "purchase": "buy"}
MAP = {v: k if k != "click" else "favorite" for k, v in NAMES.items()}  # pv → view, fav → favorite, …


@pytest.fixture(scope="module")
def template(new_store):
    """Four seeded days in the landing zone, nothing validated."""
    store = new_store()
    return store, sources.seed(store, SPEC)


@pytest.fixture
def shop(template, store):
    source, dates = template
    return copy_bucket(source, store), dates


def _redeliver(store, table: str, dt: str, data: pa.Table) -> None:
    """Replace a raw partition by one CSV file, as a producer re-delivering the day would."""
    prefix = partition(f"raw/{table}", dt)
    store.delete_keys(store.list_keys(prefix + "/"))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(data, sink)
    store.put_bytes(f"{prefix}/part-0.csv", sink.getvalue().to_pybytes())
    store.put_bytes(f"{prefix}/{SUCCESS}", b"")


def test_a_catalog_of_item_id_and_category_only_publishes_a_full_table(shop):
    store, dates = shop
    for dt in dates:
        items = landing.read_raw(store, "items", dt, contracts.ITEMS)
        _redeliver(store, "items", dt, items.select(["item_id", "category"]))  # no `available` column
    for dt in dates[:-1]:
        pipeline.validate(store, dt, PARAMS)
    pipeline.run(store, dates[-1], PARAMS)
    table = publish.read(store, dates[-1])
    users = store.read_table(partition("features", dates[-1]), "users")
    per_user = table.group_by("user_id").aggregate([("item_id", "count_distinct")])
    assert per_user.num_rows == users.num_rows  # every active user …
    assert set(per_user["item_id_count_distinct"].to_pylist()) == {PARAMS.top_k}  # … gets top_k items
    meta = store.manifest(partition("recommendations", dates[-1]))["meta"]
    assert (meta["full_users"], meta["users"], meta["rows"]) == (users.num_rows, users.num_rows, table.num_rows)


def test_a_catalog_with_nothing_available_is_flagged_and_publish_refuses_it(shop):
    store, dates = shop
    for dt in dates[:-1]:
        pipeline.validate(store, dt, PARAMS)
    pipeline.run(store, dates[-2], PARAMS)  # yesterday's table serves
    served = store.manifest(partition("recommendations", dates[-2]))
    items = landing.read_raw(store, "items", dates[-1], contracts.ITEMS)
    _redeliver(store, "items", dates[-1], items.set_column(
        items.schema.get_field_index("available"), "available", pa.array([False] * items.num_rows)))
    with pytest.raises(PublishRefused) as refused:
        pipeline.run(store, dates[-1], PARAMS)
    message = str(refused.value)
    assert f"recommendations/dt={dates[-1]} was NOT published" in message
    assert "no item is available" in message and f"the table of {dates[-2]} stays" in message
    assert store.manifest(partition("recommendations", dates[-1])) is None  # nothing committed …
    assert store.get_json("recommendations/_latest")["dt"] == dates[-2]  # … and _latest did not move
    assert store.manifest(partition("recommendations", dates[-2])) == served
    summary = store.get_json(f"reports/quality/dt={dates[-1]}/result.json")["summary"]
    assert summary["passed"] and summary["unavailable_item_share"] == 1.0
    assert "unavailable" in summary["warnings"][0] and "max_unavailable_share" in summary["warnings"][0]


def test_a_producers_own_event_names_map_to_contract_types(shop):
    store, dates = shop
    params = RunParams(model="popularity", top_k=5, event_type_map=MAP)
    dt = dates[0]
    events = landing.read_raw(store, "events", dt, contracts.EVENTS)
    renamed = pc.take(pa.array(list(NAMES.values())), pc.index_in(events["event_type"], value_set=pa.array(list(NAMES))))
    n_unknown = 3  # "like" is nobody's name for anything: still quarantined
    renamed = pa.concat_arrays([renamed.combine_chunks()[: -n_unknown], pa.array(["like"] * n_unknown)])
    _redeliver(store, "events", dt, events.set_column(events.schema.get_field_index("event_type"), "event_type",
                                                      renamed).drop_columns(["value", "session_id"]))
    result = pipeline.validate(store, dt, params)
    assert result["quarantined"] == {"unknown_event_type": n_unknown}
    clean = store.read_table(partition("clean/events", dt), "events")
    expected = pc.value_counts(pc.take(pa.array([MAP[n] for n in NAMES.values()]),
                                       pc.index_in(renamed[: -n_unknown], value_set=pa.array(list(NAMES.values())))))
    assert sorted(pc.value_counts(clean["event_type"]).to_pylist(), key=str) == sorted(expected.to_pylist(), key=str)
    summary = store.get_json(f"reports/quality/dt={dt}/result.json")["summary"]
    assert summary["event_types_mapped"]["fav→favorite"] == pc.sum(pc.equal(renamed, "fav")).as_py()
    # favourites count in the features like any contract type
    pipeline.features(store, dt, params)
    feats = store.read_table(partition("features", dt), "user_features")
    assert pc.sum(feats["n_favorite_1d"]).as_py() == pc.sum(pc.equal(clean["event_type"], "favorite")).as_py() > 0


def test_event_weights_change_popularity_and_recompute_the_aggregates(shop):
    store, dates = shop
    for dt in dates:
        pipeline.validate(store, dt, PARAMS)
    pipeline.features(store, dates[-1], PARAMS)
    before = store.read_table(partition("features", dates[-1]), "items")["popularity"]
    heavy = RunParams(model="popularity", event_weights={"purchase": 40.0})
    rebuilt = pipeline.features(store, dates[-1], heavy)
    after = store.read_table(partition("features", dates[-1]), "items")["popularity"]
    assert rebuilt["rows"]["items"] == len(before)
    assert store.manifest(partition("aggregates", dates[0]))["meta"]["event_weights"] == heavy.event_weights
    bought = pc.greater(store.read_table(partition("features", dates[-1]), "item_features")["n_purchase_30d"], 0)
    # items someone bought before D gained popularity, items nobody bought kept theirs
    gained = pc.greater(after, pc.add(before, 1e-9))
    assert pc.all(pc.equal(pc.and_(gained, pc.invert(bought)), False)).as_py()
    assert pc.any(gained).as_py()


def test_realised_feedback_scores_yesterdays_table_on_todays_purchases_and_clicks(shop):
    store, dates = shop
    params = RunParams(model="popularity", top_k=5)
    for dt in dates[:-1]:
        pipeline.validate(store, dt, params)
    pipeline.run(store, dates[-2], params)
    assert pipeline.feedback(store, dates[-2], params) is None  # nothing was published for the day before
    pipeline.validate(store, dates[-1], params)
    out = pipeline.feedback(store, dates[-1], params)
    assert store.get_json(f"reports/feedback/dt={dates[-2]}/metrics.json") == out
    # the oracle: per user who bought on the next day and has a list, a hit if one of the items is in it
    table = publish.read(store, dates[-2]).to_pandas()
    events = store.read_table(f"clean/events/dt={dates[-1]}", "events").to_pandas()
    lists = table.groupby("user_id")["item_id"].agg(set)
    bought = events[events.event_type == "purchase"].groupby("user_id")["item_id"].agg(set)
    served = [u for u in bought.index if u in lists.index]
    expected = sum(bool(bought[u] & lists[u]) for u in served) / len(served)
    assert out["purchase"]["all"]["users"] == len(served) > 0
    assert out["purchase"]["all"]["hit_rate@5"] == pytest.approx(expected)
    assert set(out["click"]["strategy"]) == set(table.strategy)
    # the next evaluation page charts it, whatever that run's top_k (each table at its own)
    pipeline.run(store, dates[-1], RunParams(model="popularity", top_k=7))
    page = store.get_bytes(f"reports/evaluation/dt={dates[-1]}/index.html").decode()
    assert "realised purchase hit rate" in page and "realised click hit rate" in page


def test_propensity_learns_from_the_shops_purchases_and_mixes_repeats_and_discovery(shop):
    store, dates = shop
    params = RunParams(model="propensity", top_k=5)
    for dt in dates:
        pipeline.validate(store, dt, params)
    dt = dates[-1]
    pipeline.features(store, dt, params)
    ref = pipeline.train(store, dt, params)
    fit = registry.metadata(store, ref)["training"]
    assert fit["label"] == "purchase" and fit["touched_learnt"] and fit["untouched_learnt"]
    publish.publish(store, dt, params, {"publish": ref, "repeat_slots": 0})
    table = publish.read(store, dt).to_pandas()
    mine = table[table.model_name == "propensity"]
    # one list per user holds both the user's own items and items they never touched
    touched = set()
    for d in dates:
        ev = store.read_table(partition("clean/events", d), "events", columns=["user_id", "item_id"])
        touched |= set(zip(ev["user_id"].to_pylist(), ev["item_id"].to_pylist()))
    own = [(u, i) in touched for u, i in zip(mine.user_id, mine.item_id)]
    mine = mine.assign(own=own)
    mixed = mine.groupby("user_id")["own"].agg(["any", "all"])
    assert (mixed["any"] & ~mixed["all"]).sum() >= 20
    # a touched item is likelier to be bought than an untouched one: the learnt odds rank them first
    assert mine[mine.own]["rank"].mean() + 1 < mine[~mine.own]["rank"].mean()
