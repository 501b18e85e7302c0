"""The features stage on the real S3 server: point-in-time, incremental = full, stable ids, idempotence."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe.stages.features import daily
from recpipe import contracts
from devstack import seaweedfs
from recpipe.stages import features
from recpipe.io import landing
from recpipe.artifacts.features import Features
from recpipe.stages.features.window import FEATURE_WINDOWS
from recpipe.stages.features.tables import TABLES
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import PartitionNotFound
from recpipe.io.layout import partition
from recpipe.io.partitions import Store
from recpipe.sources.synthetic import ShopSpec, generate

pytestmark = pytest.mark.s3

SPEC = ShopSpec(users=250, items=90, days=9, seed=5)
PARAMS = RunParams(lookback_days=30, negatives=3)
L = 6  # short sequences, so that they are cut across days


def _deliver(store: Store, days) -> list[str]:
    """Raw catalog/profiles and clean events, as the quality stage would leave them."""
    for day in days:
        landing.write_raw(store, "items", day.dt, day.items)
        landing.write_raw(store, "users", day.dt, day.users)
        store.write_partition(partition("clean/events", day.dt), {"events": day.events},
                              {"source_rows": day.events.num_rows})
    return [day.dt for day in days]


@pytest.fixture
def shop(store):
    return store, _deliver(store, list(generate(SPEC)))


def _fresh_store(s3_server) -> Store:
    base, creds = s3_server
    s = Store(seaweedfs.store_config(base, creds, bucket=f"t-{uuid.uuid4().hex[:10]}"))
    s.ensure_bucket()
    return s


def _build(store: Store, dt: str, **kw) -> features.FeatureResult:
    return features.build_features(store, dt, PARAMS, sequence_length=L, **kw)


def _digests(store: Store, dt: str) -> dict[str, str]:
    manifest = store.manifest(partition("features", dt))
    return {name: entry["sha256"] for name, entry in manifest["files"].items()}


def _meta(store: Store, dt: str) -> dict:
    meta = dict(store.manifest(partition("features", dt))["meta"])
    meta.pop("inputs")  # the clean partitions' run ids: provenance, not content
    return meta


def _rows(events: pa.Table, n: int, **columns) -> pa.Table:
    """The first ``n`` events with some columns replaced, in the events' own schema."""
    data = events.slice(0, n).to_pydict()
    data.update(columns)
    return pa.table(data, schema=events.schema)


def _read(store: Store, dt: str, name: str) -> pa.Table:
    return store.read_table(partition("features", dt), name)


# -- a full recomputation straight from the events, to compare with ---------------------------


def _reference(store: Store, dt: str) -> dict:
    """What features/dt=D must hold, computed naively from the clean events of the window."""
    ev = features.read_clean_window(store, dt, PARAMS.lookback_days)
    users_v = store.read_table("vocab/users", "ids")["id"]
    items_v = store.read_table("vocab/items", "ids")["id"]
    start, end = day_bounds(dt)
    t = pa.table({
        "u": pc.index_in(ev["user_id"], value_set=users_v).cast(pa.int32()),
        "i": pc.index_in(ev["item_id"], value_set=items_v).cast(pa.int32()),
        "type": ev["event_type"],
        "w": pc.take(pa.array(list(PARAMS.event_weights.values())),
                     pc.index_in(ev["event_type"], value_set=pa.array(list(PARAMS.event_weights)))),
        "code": pc.index_in(ev["event_type"], value_set=pa.array(contracts.EVENT_TYPES)).cast(pa.int8()),
        "ts": ev["event_ts"],
    })
    past = t.filter(pc.less(t["ts"], pa.scalar(start, t["ts"].type)))
    today = t.filter(pc.greater_equal(t["ts"], pa.scalar(start, t["ts"].type)))
    key = [("u", "ascending"), ("i", "ascending")]
    ref = {"interactions": past.group_by(["u", "i"]).aggregate([("w", "sum"), ("w", "count"), ("ts", "max")])
           .sort_by(key).rename_columns(["u", "i", "weight", "n_events", "last_ts"])}
    known = pc.unique(ref["interactions"]["u"])
    ref["holdout"] = today.filter(pc.is_in(today["u"], known)).group_by(["u", "i"]).aggregate([]).sort_by(key)
    ref["users"] = t.group_by("u").aggregate([("w", "count"), ("ts", "max")]).sort_by("u")
    buys = t.filter(pc.equal(t["type"], "purchase"))
    ref["purchased"] = buys.group_by(["u", "i"]).aggregate([("ts", "max")]).sort_by(key)
    age = pc.divide(pc.cast(pc.subtract(pa.scalar(start, t["ts"].type), past["ts"]), pa.int64()).cast(pa.float64()),
                    86_400e6)
    decayed = pc.multiply(past["w"], pc.power(0.5, pc.divide(age, daily.POPULARITY_HALF_LIFE_DAYS)))
    ref["popularity"] = (past["i"].to_numpy(), decayed.to_numpy())
    for n in FEATURE_WINDOWS:
        since = pa.scalar(end - timedelta(days=n), t["ts"].type)
        recent = t.filter(pc.greater_equal(t["ts"], since))
        for side in ("u", "i"):
            counts = recent.group_by([side, "type"]).aggregate([("w", "count")])
            ref[(side, n)] = {(r[side], r["type"]): r["w_count"] for r in counts.to_pylist()}
    recent = t.filter(pc.greater_equal(t["ts"], pa.scalar(end - timedelta(days=30), t["ts"].type)))
    ref["pairs30"] = recent.group_by(["u", "i"]).aggregate([]).to_pylist()
    ref["events"] = t
    return ref


def test_daily_runs_equal_a_full_recomputation_from_the_events(shop):
    store, dates = shop
    for dt in dates:
        result = _build(store, dt)
        assert result.rebuilt == [dt]  # a daily run aggregates its own day only
    dt = dates[-1]
    ref = _reference(store, dt)
    got = {name: _read(store, dt, name) for name in TABLES}

    inter = got["interactions"]
    assert inter.column_names == ["user_idx", "item_idx", "weight", "n_events", "last_ts"]
    assert inter.rename_columns(["u", "i", "weight", "n_events", "last_ts"]).cast(ref["interactions"].schema).equals(
        ref["interactions"])
    assert got["holdout"].to_pydict() == {"user_idx": ref["holdout"]["u"].to_pylist(),
                                          "item_idx": ref["holdout"]["i"].to_pylist()}
    users = got["users"]
    assert users["user_idx"].to_pylist() == ref["users"]["u"].to_pylist()
    assert users["n_events"].to_pylist() == ref["users"]["w_count"].to_pylist()
    assert users["last_ts"].equals(ref["users"]["ts_max"])
    assert set(pc.unique(users.filter(users["has_history"])["user_idx"]).to_pylist()) == set(
        ref["interactions"]["u"].to_pylist())
    assert got["purchased"].to_pydict() == {"user_idx": ref["purchased"]["u"].to_pylist(),
                                            "item_idx": ref["purchased"]["i"].to_pylist(),
                                            "last_ts": ref["purchased"]["ts_max"].to_pylist()}
    items = got["items"]
    n_items = store.manifest(partition("features", dt))["meta"]["n_items"]
    assert items.num_rows == n_items and items["item_idx"].to_pylist() == list(range(n_items))
    idx, decayed = ref["popularity"]
    np.testing.assert_allclose(items["popularity"].to_numpy(), np.bincount(idx, decayed, minlength=n_items), rtol=1e-12)

    # user and item features: counts per type and window, distinct items/categories, rates
    uf, itf = got["user_features"], got["item_features"]
    assert uf["user_idx"].equals(users["user_idx"]) and itf["item_idx"].equals(items["item_idx"])
    for n in FEATURE_WINDOWS:
        for table, side, key in ((uf, "u", "user_idx"), (itf, "i", "item_idx")):
            for etype in contracts.EVENT_TYPES:
                want = [ref[(side, n)].get((k, etype), 0) for k in table[key].to_pylist()]
                assert table[f"n_{etype}_{n}d"].to_pylist() == want, (side, n, etype)
    pairs30 = ref["pairs30"]
    cat = dict(zip(items["item_idx"].to_pylist(), items["category"].to_pylist()))
    price = dict(zip(items["item_idx"].to_pylist(), items["price"].to_pylist()))
    per_user: dict[int, set] = {}
    for p in pairs30:
        per_user.setdefault(p["u"], set()).add(p["i"])
    for row in uf.to_pylist():
        mine = per_user.get(row["user_idx"], set())
        assert row["n_items_30d"] == len(mine)
        assert row["n_categories_30d"] == len({cat[i] for i in mine if cat[i] is not None})
        prices = [price[i] for i in mine if price[i] is not None]
        assert row["mean_price_30d"] == (pytest.approx(sum(prices) / len(prices)) if prices else None)
        views = row["n_view_30d"]
        assert row["ctr_30d"] == (pytest.approx(row["n_click_30d"] / views) if views else None)
        assert 0 <= row["recency_days"] <= 31
    assert uf["age"].null_count < uf.num_rows  # the profile snapshot is joined
    assert itf["n_users_30d"].to_pylist() == [
        sum(1 for p in pairs30 if p["i"] == i) for i in itf["item_idx"].to_pylist()]

    # sequences: the last L events per user, oldest first (ties: event type, then item)
    ev = ref["events"].sort_by([("u", "ascending"), ("ts", "ascending"), ("code", "ascending"), ("i", "ascending")])
    want: dict[int, list] = {}
    for r in ev.select(["u", "i", "type", "ts"]).to_pylist():
        want.setdefault(r["u"], []).append((r["i"], r["type"], r["ts"]))
    seq = got["sequences"]
    assert seq["user_idx"].equals(users["user_idx"])
    for r in seq.to_pylist():
        assert list(zip(r["item_idx"], r["event_type"], r["event_ts"])) == want[r["user_idx"]][-L:]
    assert max(len(v) for v in want.values()) > L  # the cut happened

    # examples: every pair of day D is a positive with its labels; negatives avoid them
    ex = got["examples"]
    ts = ref["events"]["ts"]
    day = ref["events"].filter(pc.greater_equal(ts, pa.scalar(day_bounds(dt)[0], ts.type)))
    pos = {(r["u"], r["i"]) for r in day.to_pylist()}
    clicks = {(r["u"], r["i"]) for r in day.to_pylist() if r["type"] in ("click", "add_to_cart", "purchase")}
    buys = {(r["u"], r["i"]) for r in day.to_pylist() if r["type"] == "purchase"}
    rows = ex.to_pylist()
    assert {(r["user_idx"], r["item_idx"]) for r in rows if r["label"]} == pos
    assert {(r["user_idx"], r["item_idx"]) for r in rows if r["click"]} == clicks
    assert {(r["user_idx"], r["item_idx"]) for r in rows if r["purchase"]} == buys
    negatives = [(r["user_idx"], r["item_idx"]) for r in rows if not r["label"]]
    assert len(negatives) == len(set(negatives)) > len(pos) and not set(negatives) & pos
    assert ex.sort_by([("user_idx", "ascending"), ("item_idx", "ascending")]).equals(ex)

    # the consumers' view is unchanged
    data = Features(store, dt).training_data()
    assert len(data.users) == inter.num_rows and len(data.popularity) == data.n_items == n_items


def test_incremental_equals_a_rebuild_and_a_fresh_store_bit_for_bit(shop, s3_server):
    store, dates = shop
    for dt in dates:
        _build(store, dt)
    daily = _digests(store, dates[-1])
    assert _build(store, dates[-1], rebuild=True).rebuilt == dates  # every aggregate recomputed
    assert _digests(store, dates[-1]) == daily
    other = _fresh_store(s3_server)  # no aggregates, no vocabulary: all of the window at once
    _deliver(other, list(generate(SPEC)))
    assert _build(other, dates[-1]).rebuilt == dates
    assert _digests(other, dates[-1]) == daily
    assert _meta(other, dates[-1]) == _meta(store, dates[-1])


def test_a_rerun_is_idempotent_and_recomputes_nothing(shop):
    store, dates = shop
    first = _build(store, dates[3])
    digests = _digests(store, dates[3])
    again = _build(store, dates[3])
    assert again.rebuilt == [] and again.rows == first.rows
    assert _digests(store, dates[3]) == digests


def test_point_in_time_later_events_change_nothing(shop):
    store, dates = shop
    mid = dates[4]
    for dt in dates[:5]:
        _build(store, dt)
    before, meta = _digests(store, mid), _meta(store, mid)
    # the later days arrive and are built (new users and items enter the vocabularies)
    n_users = len(store.read_table("vocab/users", "ids"))
    for dt in dates[5:]:
        _build(store, dt)
    assert len(store.read_table("vocab/users", "ids")) > n_users
    assert _build(store, mid).rebuilt == []
    assert _digests(store, mid) == before and _meta(store, mid) == meta
    # an event dated after D inside D's partition (the quality gate refuses those) is ignored too
    events = store.read_table(partition("clean/events", mid), "events")
    stray = _rows(events, 1, user_id=["u-from-the-future"], event_ts=[day_bounds(mid)[1]])
    store.write_partition(partition("clean/events", mid), {"events": pa.concat_tables([events, stray])})
    assert _build(store, mid).rebuilt == [mid]
    assert _digests(store, mid) == before
    assert "u-from-the-future" not in store.read_table("vocab/users", "ids")["id"].to_pylist()


def test_a_backfill_recomputes_only_its_day_and_never_remaps_an_id(shop):
    store, dates = shop
    for dt in dates:
        _build(store, dt)
    vocab = {n: store.read_table(f"vocab/{n}", "ids") for n in ("users", "items")}
    early = _digests(store, dates[2])
    # day 5 is re-delivered and re-validated: a new user buys a new item, some events go
    day = dates[5]
    events = store.read_table(partition("clean/events", day), "events")
    extra = _rows(events, 2, user_id=["u-new"] * 2, item_id=["i-new"] * 2, event_type=["view", "purchase"])
    store.write_partition(partition("clean/events", day), {"events": pa.concat_tables([events.slice(10), extra])})
    result = _build(store, dates[-1])
    assert result.rebuilt == [day]  # only the re-validated day is aggregated again
    for name, before in vocab.items():
        after = store.read_table(f"vocab/{name}", "ids")
        assert after.slice(0, before.num_rows).equals(before)  # old ids never move
        assert after.num_rows == before.num_rows + 1 and after["id"][-1].as_py() == f"{name[0]}-new"
    users = _read(store, dates[-1], "users")
    assert "u-new" in users["user_id"].to_pylist()
    new_item = store.read_table("vocab/items", "ids").num_rows - 1
    bought = _read(store, dates[-1], "purchased")
    assert new_item in bought["item_idx"].to_pylist()
    # a date before the backfilled day does not depend on it: same bytes
    assert _build(store, dates[2]).rebuilt == [] and _digests(store, dates[2]) == early

    # an older day is backfilled: its ids are known from then on, none moves
    older = (day_bounds(dates[0])[0] - timedelta(days=1)).date().isoformat()
    first = store.read_table(partition("clean/events", dates[0]), "events")
    head = first.slice(0, 40)
    shifted = _rows(first, 40, user_id=[u + "-old" for u in head["user_id"].to_pylist()],
                    event_ts=[t - timedelta(days=1) for t in head["event_ts"].to_pylist()])
    store.write_partition(partition("clean/events", older), {"events": shifted})
    before = store.read_table("vocab/users", "ids")
    _build(store, older)
    after = store.read_table("vocab/users", "ids")
    assert after.slice(0, before.num_rows)["id"].equals(before["id"])
    known = dict(zip(after["id"].to_pylist(), after["first_dt"].to_pylist()))
    assert {known[u].isoformat() for u in pc.unique(shifted["user_id"]).to_pylist()} == {older}
    items_first = dict(zip(*store.read_table("vocab/items", "ids").to_pydict().values()))
    assert {items_first[i].isoformat() for i in pc.unique(shifted["item_id"]).to_pylist()} == {older}
    meta = store.manifest(partition("features", older))["meta"]
    assert meta["n_users"] == after.num_rows  # the ids it introduced are the newest


def test_features_refuse_a_date_that_was_never_validated(shop):
    store, dates = shop
    with pytest.raises(PartitionNotFound, match="run `recpipe validate --date 2030-01-01` first"):
        _build(store, "2030-01-01")
