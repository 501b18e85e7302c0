"""The evaluation gate against the real S3 server: one serving model across families."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow.compute as pc
import pytest

from recpipe import pipeline, sources
from recpipe.artifacts import decision
from recpipe.config import RunParams
from recpipe.evaluation import BEYOND_ACCURACY
from recpipe.evaluation.metrics import intra_list_diversity
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from tests.conftest import copy_bucket

# No re-engagement (p_revisit 0): on the default shop mf and "the user's recent items" are within
# a few 1e-4 of NDCG@10 of each other, so whether mf serves would hang on training noise.
SPEC = ShopSpec(days=6, p_revisit=0.0)


@pytest.fixture(scope="module")
def served(new_store):
    """The seeded shop; the daily run of its last day published mf (built once): (store, that day, its decision)."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    params = RunParams(model="mf")
    for dt in dates:
        pipeline.validate(store, dt, params)
    day = dates[-1]
    pipeline.run(store, day, params)
    return store, day, decision.read(store, day)


@pytest.fixture
def shop(served, store):
    source, day, first = served
    return copy_bucket(source, store), day, first


def _personalized_models(store, dt):
    table = publish.read(store, dt)
    personal = table.filter(pc.equal(table["strategy"], "personalized"))
    return set(zip(personal["model_name"].to_pylist(), personal["model_version"].to_pylist()))


def test_a_weak_candidate_of_another_family_leaves_the_serving_model_serving(shop):
    store, day, first = shop
    assert first["publish"]["name"] == "mf"  # the case: mf serves day 4
    mf = first["publish"]

    out = pipeline.run(store, day, RunParams(model="two_tower", epochs=1, embedding_dim=4))
    found = decision.evaluation(store, day)
    assert found["serving"] == mf  # judged against mf, not against a two_tower champion (there is none)
    assert found["metrics"]["serving"]["model"] == "mf"
    assert found["metrics"]["candidate"]["ndcg@10"] < found["metrics"]["serving"]["ndcg@10"]
    assert out["evaluate"]["passed"] is False
    assert set(found["confidence"]) == {"vs_serving", "vs_popularity"}
    assert "serving" in found["slices"]["users:returning"]
    kept = decision.read(store, day)
    assert kept["publish"] == mf and kept["repeat_slots"] == found["metrics"]["serving"]["repeat_slots"]
    assert _personalized_models(store, day) == {(mf["name"], mf["version"])}  # neither two_tower nor popularity
    assert store.manifest(f"recommendations/dt={day}")["meta"]["model"] == mf


def test_metrics_json_has_confidence_and_slices(shop):
    store, day, _ = shop
    found = decision.evaluation(store, day)  # the fixture's mf run: judged against popularity only
    assert set(found["confidence"]) == {"vs_popularity"}
    c = found["confidence"]["vs_popularity"]
    m = found["metrics"]
    assert c["low"] <= c["mean"] <= c["high"] and c["level"] == 0.9
    assert c["mean"] == pytest.approx(m["candidate"]["ndcg@10"] - m["popularity"]["ndcg@10"])
    slices = found["slices"]
    users = m["candidate"]["users"]
    # user slices split the hold-out's users; item slices and categories each hold some of them
    assert slices["users:new"]["users"] + slices["users:returning"]["users"] == users
    assert sum(slices[f"activity:{t}"]["users"] for t in ("low", "mid", "high")) == users
    assert all(0 < slices[f"items:{b}"]["users"] <= users for b in ("head", "torso", "tail"))
    assert [n for n in slices if n.startswith("category:")]
    assert {"candidate", "popularity"} <= set(slices["users:returning"])
    # the two objectives: D's purchases and D's first touches, each of the hold-out's users; balance is the worse lift
    holdout = store.read_table(f"features/dt={day}", "holdout").to_pandas()
    inter = store.read_table(f"features/dt={day}", "interactions", columns=["user_idx", "item_idx"]).to_pandas()
    seen = set(zip(inter.user_idx, inter.item_idx))
    new = holdout[[pair not in seen for pair in zip(holdout.user_idx, holdout.item_idx)]]
    assert m["candidate"]["new_item_users"] == new.user_idx.nunique() > 0
    assert 0 < m["candidate"]["purchase_users"] <= users
    lifts = [m["candidate"][f"{o}_hit_rate@10"] / m[b][f"{o}_hit_rate@10"] for o, b in
             (("purchase", "recent"), ("new_item", "popularity")) if m[b][f"{o}_hit_rate@10"] > 0]
    assert m["candidate"]["balance@10"] == pytest.approx(min(lifts))
    for role in ("candidate", "popularity", "recent"):  # beyond accuracy, per contender
        assert {f"{n}@10" for n in BEYOND_ACCURACY} <= set(m[role])
    assert m["popularity"]["personalization@10"] < m["candidate"]["personalization@10"]  # one list for all vs. own
    page = store.get_bytes(f"reports/evaluation/dt={day}/index.html").decode()
    assert "intra_list_diversity@10" in page and "personalization@10" in page


def test_diversity_rerank_at_publish_spans_more_categories(shop):
    store, day, first = shop
    items = store.read_table(f"features/dt={day}", "items", columns=["item_id", "category"])

    def diversity_of_table() -> float:
        table = publish.read(store, day)
        return intra_list_diversity(table, items, 10)

    plain = diversity_of_table()
    pipeline.publish(store, day, RunParams(diversity=0.7))
    assert diversity_of_table() > plain
    assert _personalized_models(store, day) == {(first["publish"]["name"], first["publish"]["version"])}


def test_the_serving_model_of_a_date_ignores_later_tables(shop):
    store, day, first = shop
    before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    assert decision.serving(store, day) == {"dt": day, "publish": first["publish"], "repeat_slots": first["repeat_slots"]}
    assert decision.serving(store, before) is None  # a backfill of the day before sees no table yet


def test_republish_publishes_what_served_whatever_the_model_param(shop):
    store, day, first = shop
    pipeline.run(store, day, RunParams(mode="republish", model="two_tower"))
    assert decision.read(store, day)["publish"] == first["publish"]
    assert _personalized_models(store, day) == {(first["publish"]["name"], first["publish"]["version"])}
