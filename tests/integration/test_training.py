"""The training stage against the real S3 server: artifacts, save → load → score, warm start."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, scoring, sources
from recpipe.artifacts import decision as decision_, registry
from recpipe.stages import train
from recpipe.artifacts.features import Features
from recpipe.models import model_class
from recpipe.models.keras_fit import setup_device
from recpipe.config import RunParams
from recpipe.errors import ConfigError
from recpipe.evaluation import evaluate
from recpipe.sources.synthetic import ShopSpec
from tests.conftest import copy_bucket

SPEC = ShopSpec(users=300, items=120, days=4, seed=3, start=date(2024, 5, 1))


@pytest.fixture(scope="module")
def template(new_store):
    """Four seeded days, validated, with features for the last two (built once)."""
    store = new_store()
    dates = sources.seed(store, SPEC)
    params = RunParams(epochs=2)
    for dt in dates:
        pipeline.validate(store, dt, params)
    for dt in dates[2:]:
        pipeline.features(store, dt, params)
    return store, dates


@pytest.fixture
def shop(template, store):
    """A copy of the template for one test: (store, day 3, day 4)."""
    source, dates = template
    return copy_bucket(source, store), dates[2], dates[3]


def test_warm_start_continues_from_the_champion_before_the_date(shop):
    store, day3, day4 = shop
    first = pipeline.train(store, day3, RunParams(model="mf", epochs=2, seed=7))  # another init than below
    registry.promote(store, first, day3, "test")

    warm = pipeline.train(store, day4, RunParams(model="mf", epochs=2, seed=1, warm_start=True))
    meta = registry.metadata(store, warm)
    assert meta["warm_start_from"] == first
    assert {"vocab_users.parquet", "vocab_items.parquet", "metadata.json", "model.keras"} <= set(
        store.manifest(warm["prefix"])["files"])

    # rows of the ids the champion knew start from its values: closer to them than a fresh model's
    old = registry.load(store, first).model.get_layer("user_embedding").embeddings.numpy()
    new = registry.load(store, warm).model.get_layer("user_embedding").embeddings.numpy()
    # the champion's table had day 3's users; the warm model's has day 4's (grown, not re-made)
    assert (old.shape[0], new.shape[0]) == (Features(store, day3).meta["n_users"], Features(store, day4).meta["n_users"])
    scratch = registry.load(store, pipeline.train(store, day4, RunParams(model="mf", epochs=2, seed=1)))
    scratch_u = scratch.model.get_layer("user_embedding").embeddings.numpy()
    n = old.shape[0]
    assert np.abs(new[:n] - old).mean() < np.abs(scratch_u[:n] - old).mean()


def test_warm_start_without_a_champion_trains_from_scratch(shop):
    store, day3, _ = shop
    ref = pipeline.train(store, day3, RunParams(model="mf", epochs=1, warm_start=True))
    assert registry.metadata(store, ref)["warm_start_from"] is None


def test_warm_start_from_a_champion_of_another_shape_says_how_to_fix_it(shop):
    store, day3, day4 = shop
    registry.promote(store, pipeline.train(store, day3, RunParams(model="mf", epochs=1, embedding_dim=8)), day3, "t")
    with pytest.raises(ConfigError, match="warm_start=false"):
        train.train(store, day4, RunParams(model="mf", epochs=1, embedding_dim=16, warm_start=True))


def test_saved_model_scores_as_before_saving(shop):
    store, day3, _ = shop
    data = Features(store, day3).training_data()
    for name in ("mf", "sasrec", "two_tower", "popularity"):
        params = RunParams(model=name, epochs=1, seed=2)
        setup_device(params.seed)
        model = model_class(name)()
        model.fit(data, train.fit_config(params))
        ref = registry.save(store, model, f"{day3}-test", {"dt": day3})
        users = np.arange(data.n_users)
        np.testing.assert_allclose(registry.load(store, ref).score(users, data.n_items),
                                   model.score(users, data.n_items), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["two_tower", "sasrec"])
def test_every_model_runs_the_whole_pipeline(shop, name):
    from recpipe.stages import publish

    store, _, day4 = shop
    out = pipeline.run(store, day4, RunParams(model=name, epochs=2, top_k=3))
    assert out["train"]["name"] == name
    table = publish.read(store, day4)
    assert table.num_rows > 0 and set(table["rank"].to_pylist()) == {1, 2, 3}
    decision = store.get_json(f"reports/evaluation/dt={day4}/decision.json")
    personal = table.filter(pc.equal(table["strategy"], "personalized"))
    assert set(personal["model_name"].to_pylist()) == {decision["publish"]["name"]}


def _truncate(store, prefix: str, name: str) -> None:
    key = store.manifest(prefix)["files"][name]["key"]
    data = store.get_bytes(key)
    store.put_bytes(key, data[: len(data) // 2])  # damaged behind the writer's back


def test_corrupt_features_and_models_are_reported_then_rebuilt(shop):
    from recpipe.errors import CorruptObjectError

    store, day3, _ = shop
    params = RunParams(model="mf", epochs=1)
    _truncate(store, f"features/dt={day3}", "interactions.parquet")
    with pytest.raises(CorruptObjectError, match=f"features/dt={day3}.*Re-run the stage"):
        pipeline.train(store, day3, params)
    pipeline.features(store, day3, params)  # the re-run rebuilds the partition
    ref = pipeline.train(store, day3, params)

    _truncate(store, ref["prefix"], "model.keras")
    with pytest.raises(CorruptObjectError, match=ref["prefix"]):
        registry.load(store, ref)
    assert registry.load(store, pipeline.train(store, day3, params)).score(np.arange(3), 5).shape == (3, 5)


def test_a_serving_model_older_than_some_users_is_judged_with_the_fallback_for_them(store):
    """Day 2's table is the latest before day 4 (day 3 published none), so day 4 compares
    against the model that published it, which has never seen the users who arrived on day 3."""
    d1, d2, d3, d4 = sources.seed(store, SPEC)
    params = RunParams(model="mf", epochs=1)
    for dt in (d1, d2, d3, d4):
        pipeline.validate(store, dt, params)
    pipeline.features(store, d2, params)
    served = pipeline.train(store, d2, params)
    registry.promote(store, served, d2, "test")
    decision_.write(store, d2, True, ["test"], served, 0)
    pipeline.publish(store, d2, params)
    pipeline.features(store, d4, params)
    pipeline.train(store, d4, params)
    decision = pipeline.evaluate(store, d4, params)
    old = registry.load(store, registry.champion(store, "mf"))
    holdout = store.read_table(f"features/dt={d4}", "holdout")["user_idx"].to_numpy()
    assert not old.knows(holdout).all()  # the case this test is about
    assert decision["serving"] == served
    # the serving model's NDCG, recomputed: its own lists for the users it knows, popularity's for the
    # others, the first `repeat_slots` (as the gate chose them) given to each user's recent items and
    # then the model's items the user had not touched before d4
    features = Features(store, d4)
    users = np.unique(holdout)
    known = old.knows(users)
    fallback = registry.load(store, registry.popularity_ref(d4), d4)
    exclude = features.exclusions(before_day=True)
    slots = decision["metrics"]["serving"]["repeat_slots"]
    recent = registry.recent(store, d4, before_day=True, event_weights=params.event_weights)
    touched = features.table("interactions", columns=["user_idx", "item_idx"])
    untouched = scoring.union_pairs(exclude, (touched["user_idx"].to_numpy(), touched["item_idx"].to_numpy()))
    model_excludes = untouched if slots else exclude
    primary = pa.concat_tables([scoring.top_k(old, users[known], features.n_items, 10 + slots, model_excludes),
                                scoring.top_k(fallback, users[~known], features.n_items, 10 + slots, model_excludes)])
    recs = scoring.blend(primary, scoring.top_k(recent, users, features.n_items, 10, exclude), slots, 10)
    expected = evaluate(features.holdout(), recs, 10, col_user="user_idx", col_item="item_idx")["ndcg@10"]
    assert decision["metrics"]["serving"]["ndcg@10"] == pytest.approx(expected)
