"""Drift in the quality gate: a day compared with its previous 7, on the real S3 server.

A normal synthetic shop day passes with every measure "ok"; a day whose event-type mix or
item popularity shifts fails (or, with the fail threshold off, warns) with the measure
named. Expected distances are recomputed here from the clean events, independently of
``recpipe.stages.validate.drift``.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import contracts, pipeline, sources
from recpipe.config import RunParams
from recpipe.errors import ConfigError, DataQualityError
from recpipe.io import landing, layout
from recpipe.sources.synthetic import ShopSpec
from tests.conftest import copy_bucket

SPEC = ShopSpec(users=800, items=300, days=12, seed=11)  # 2024-01-01 .. 2024-01-12
DT = "2024-01-12"  # judged against 2024-01-05 .. 2024-01-11


@pytest.fixture(scope="module")
def template(new_store):
    """Eleven validated days; day 12 delivered but not validated."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    assert dates[-1] == DT
    for dt in dates[:-1]:
        pipeline.validate(store, dt, RunParams())
    return store


@pytest.fixture
def shop(template, new_store):
    """A copy of the template and day 12's raw events."""
    store = copy_bucket(template, new_store())
    return store, landing.read_raw(store, "events", DT, contracts.EVENTS)


def _previous(store) -> list[pa.Table]:
    d = date.fromisoformat(DT)
    return [store.read_table(layout.partition(layout.CLEAN_EVENTS, (d - timedelta(days=n)).isoformat()), "events")
            for n in range(7, 0, -1)]


def _shares(values: list) -> dict:
    counts = Counter(values)
    return {k: v / len(values) for k, v in counts.items()}


def _mean(dists: list[dict]) -> dict:
    keys = set().union(*dists)
    return {k: sum(d.get(k, 0.0) for d in dists) / len(dists) for k in keys}


def _tv(p: dict, q: dict) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def _js(p: dict, q: dict) -> float:
    total = 0.0
    for k in set(p) | set(q):
        a, b = p.get(k, 0.0), q.get(k, 0.0)
        m = (a + b) / 2
        total += 0.5 * (a * math.log2(a / m) if a else 0.0) + 0.5 * (b * math.log2(b / m) if b else 0.0)
    return total


def _expected(store, today: pa.Table, column: str, distance) -> tuple[float, float]:
    """(distance of today to the previous days' mean, median leave-one-out distance of those days)."""
    past = [_shares(t[column].to_pylist()) for t in _previous(store)]
    value = distance(_shares(today[column].to_pylist()), _mean(past))
    loo = sorted(distance(p, _mean(past[:i] + past[i + 1:])) for i, p in enumerate(past))
    return value, (loo[3] if len(loo) % 2 else (loo[len(loo) // 2 - 1] + loo[len(loo) // 2]) / 2)


def _drift(store) -> dict:
    return store.get_json(layout.quality_report(DT, "result.json"))["summary"]["drift"]


def test_a_normal_shop_day_passes_with_every_measure_ok(shop):
    store, today = shop
    pipeline.validate(store, DT, RunParams())
    drift = _drift(store)
    assert drift["days"] == [f"2024-01-{d:02d}" for d in range(5, 12)] and drift["missing_days"] == []
    assert {n: m["status"] for n, m in drift["measures"].items()} == dict.fromkeys(drift["measures"], "ok")
    clean = store.read_table(layout.partition(layout.CLEAN_EVENTS, DT), "events")
    for name, column, distance in (("event_type_mix", "event_type", _tv), ("popularity", "item_id", _js)):
        value, baseline = _expected(store, clean, column, distance)
        assert drift["measures"][name]["value"] == pytest.approx(value, abs=1e-4)
        assert drift["measures"][name]["baseline"] == pytest.approx(baseline, abs=1e-4)
    users = [set(t["user_id"].to_pylist()) for t in _previous(store)]
    assert drift["measures"]["active_users"]["ratio"] == pytest.approx(
        len(set(clean["user_id"].to_pylist())) / np.mean([len(u) for u in users]), abs=1e-4)
    new = set(clean["user_id"].to_pylist()) - set().union(*users)
    assert drift["measures"]["new_user_share"]["value"] == pytest.approx(
        len(new) / len(set(clean["user_id"].to_pylist())), abs=1e-4)
    page = store.get_bytes(layout.quality_report(DT)).decode()
    assert page.count("<svg") == len(drift["measures"])  # one chart over time per measure


def _views_to_carts(events: pa.Table, share: float) -> pa.Table:
    rng = np.random.default_rng(0)
    flip = pc.and_(pc.equal(events["event_type"], "view"), pa.array(rng.random(events.num_rows) < share))
    return events.set_column(2, "event_type", pc.if_else(flip, "add_to_cart", events["event_type"]))


def _permute_items(events: pa.Table) -> pa.Table:
    """Each item id replaced by another of the day's ids: the same items, another popularity."""
    ids = pc.unique(events["item_id"])
    shuffled = pa.array(np.random.default_rng(1).permutation(ids.to_numpy(zero_copy_only=False)))
    return events.set_column(1, "item_id", pc.take(shuffled, pc.index_in(events["item_id"], value_set=ids)))


def _new_user_ids(events: pa.Table) -> pa.Table:
    """Every user id rewritten (a tracking change): the same behaviour, all users unseen."""
    return events.set_column(0, "user_id", pc.binary_join_element_wise("web-", events["user_id"], ""))


@pytest.mark.parametrize("name,shift", [("event_type_mix", lambda e: _views_to_carts(e, 0.6)),
                                        ("popularity", _permute_items), ("new_user_share", _new_user_ids)])
def test_a_shifted_day_fails_naming_the_measure_and_the_override(shop, name, shift):
    store, today = shop
    assert contracts.EVENTS.names[:3] == ["user_id", "item_id", "event_type"]  # the columns the shifts set
    landing.write_raw(store, "events", DT, shift(today))
    with pytest.raises(DataQualityError) as err:
        pipeline.validate(store, DT, RunParams())
    prefix = {"event_type_mix": "drift_type_mix", "popularity": "drift_popularity",
              "new_user_share": "drift_new_share"}[name]
    message = str(err.value)
    assert f"drift in {name}" in message and f"{prefix}_fail" in message and "re-run with a higher" in message
    drift = _drift(store)
    assert drift["measures"][name]["status"] == "fail"
    assert drift["measures"][name]["statistic"] > getattr(RunParams(), f"{prefix}_fail")
    assert DT not in store.committed_dates(layout.CLEAN_EVENTS)  # nothing from this date goes further

    # the override: the fail threshold off, the shift is a warning and the day goes on
    result = pipeline.validate(store, DT, RunParams(**{f"{prefix}_fail": 0.0}))
    summary = store.get_json(layout.quality_report(DT, "result.json"))["summary"]
    assert summary["passed"] and result["clean_rows"] == today.num_rows
    assert summary["drift"]["measures"][name]["status"] == "warn"
    assert any(w.startswith(f"drift in {name}") and f"{prefix}_warn" in w for w in summary["warnings"])
    assert DT in store.committed_dates(layout.CLEAN_EVENTS)


def test_missing_previous_days_are_named_and_too_few_are_not_judged(template, new_store):
    store = new_store()
    for key in template.list_keys(""):  # keep only 2024-01-05 and 2024-01-06 of the clean history
        if not key.startswith(layout.CLEAN_EVENTS) or layout.date_of(key) in ("2024-01-05", "2024-01-06"):
            store.s3.copy_object(Bucket=store.bucket, Key=key, CopySource={"Bucket": template.bucket, "Key": key})
    shifted = _views_to_carts(landing.read_raw(template, "events", DT, contracts.EVENTS), 0.6)
    landing.write_raw(store, "events", DT, shifted)
    pipeline.validate(store, DT, RunParams(max_volume_ratio=0))  # a big shift, but 2 days are too few to judge it
    drift = _drift(store)
    assert drift["days"] == ["2024-01-05", "2024-01-06"]
    assert drift["missing_days"] == [f"2024-01-{d:02d}" for d in range(7, 12)] and "not judged" in drift["note"]
    assert {m["status"] for m in drift["measures"].values()} == {"not judged"}


@pytest.mark.parametrize("kwargs", [{"drift_type_mix_warn": 0.5, "drift_type_mix_fail": 0.2},
                                    {"drift_active_ratio_fail": 0.5}, {"drift_popularity_fail": 1.5}])
def test_drift_thresholds_are_checked(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs)).rsplit("_", 1)[0]):
        RunParams(**kwargs)


def test_days_without_a_saved_profile_are_profiled_from_their_clean_events(shop):
    store, _ = shop
    pipeline.validate(store, DT, RunParams())
    with_profiles = _drift(store)
    for d in with_profiles["days"][:3]:  # as if validated before profiles were saved
        store.s3.delete_object(Bucket=store.bucket, Key=layout.quality_report(d, "profile.parquet"))
    pipeline.validate(store, DT, RunParams())
    assert _drift(store) == with_profiles
