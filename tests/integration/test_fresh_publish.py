"""Publish scores from history through the end of D, and says why: the synthetic shop with the
``recpipe seed`` defaults (14 days), a sasrec trained for its last date, against the real S3 server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from recpipe import pipeline, sources
from recpipe.artifacts.features import Features
from recpipe.artifacts.recommendations import REASONS
from recpipe.config import RunParams
from recpipe.io.layout import partition
from recpipe.sources.synthetic import ShopSpec
from recpipe.stages import publish
from recpipe.stages.publish import table as publish_table

pytestmark = pytest.mark.slow  # the default shop and a sasrec: minutes; `pytest -m "not slow"` skips it
PARAMS = RunParams(model="sasrec", epochs=1, top_k=10)


@pytest.fixture(scope="module")
def shop(new_store):
    """The default shop validated, features and a sasrec for its last date, and that date's table."""
    store = new_store()
    dates = sources.seed(store, ShopSpec())
    for dt in dates:
        pipeline.validate(store, dt, PARAMS)
    dt = dates[-1]
    pipeline.features(store, dt, PARAMS)
    choice = {"publish": pipeline.train(store, dt, PARAMS), "repeat_slots": 0}
    publish.publish(store, dt, PARAMS, choice)
    events = pd.concat([store.read_table(partition("clean/events", d), "events",
                                         columns=["user_id", "item_id", "event_ts"]).to_pandas() for d in dates])
    return store, dt, choice, events, publish.read(store, dt).to_pandas()


def test_users_first_seen_on_the_day_get_personalised_rows_from_sasrec(shop):
    store, dt, choice, events, table = shop
    first_day = events.groupby("user_id")["event_ts"].min().dt.strftime("%Y-%m-%d")
    newcomers = set(first_day[first_day == dt].index)
    assert len(newcomers) >= 20
    personal = table[(table.strategy == "personalized") & (table.model_name == "sasrec")]
    share = len(newcomers & set(personal.user_id)) / len(newcomers)
    assert share >= 0.9, f"only {share:.0%} of the {len(newcomers)} users first seen on {dt} are personalised"
    # from the histories saved at training time, none of them would be
    features = Features(store, dt)
    stale, _ = publish_table.recommend(features, PARAMS, choice, features.users(), fresh=False)
    stale = stale.filter(pc.equal(stale["strategy"], "personalized")).to_pandas()
    assert not newcomers & set(stale.user_id)


def test_personalised_rows_cite_an_item_of_the_users_own_history(shop):
    _, _, _, events, table = shop
    assert set(table.reason) <= set(REASONS)
    own = events.groupby("user_id")["item_id"].agg(set)
    personal = table[table.strategy == "personalized"]
    cited = [item in own[user] for user, item in zip(personal.user_id, personal.reason_item_id) if item is not None]
    assert len(personal) > 0
    assert sum(cited) / len(personal) >= 0.95  # cited from their own history, over all personalised rows
    assert all(cited)  # and never an item the user did not touch
    # recently_viewed cites the item itself; history_similar another of the user's items
    viewed = table[table.reason == "recently_viewed"]
    assert (viewed.reason_item_id == viewed.item_id).all()
    similar = table[table.reason == "history_similar"]
    assert len(similar) and (similar.reason_item_id != similar.item_id).all()
    assert table[~table.reason.isin(["recently_viewed", "history_similar"])].reason_item_id.isna().all()
    assert publish.check(shop[0], shop[1])["reasons"] == sorted(set(table.reason))


def test_history_popularity_adds_the_days_own_events(shop):
    from recpipe.events import EVENT_WEIGHTS
    from recpipe.stages.features import SEQUENCE_LENGTH

    store, dt, _, _, _ = shop
    features = Features(store, dt)
    day = store.read_table(partition("clean/events", dt), "events", columns=["user_id", "item_id", "event_type"])
    day = day.to_pandas()
    assert day.groupby("user_id").size().max() <= SEQUENCE_LENGTH  # every event of D is in the sequences
    vocab = features.table("items", columns=["item_id"])["item_id"].to_pylist()
    idx = day.item_id.map({item: i for i, item in enumerate(vocab)}).to_numpy()
    weight = day.event_type.map(EVENT_WEIGHTS).to_numpy()
    before = features.table("items", columns=["popularity"])["popularity"].to_numpy()
    expected = before + np.bincount(idx, weight, minlength=len(before))
    np.testing.assert_allclose(features.history(PARAMS.event_weights).popularity, expected, rtol=1e-9)
    assert (expected > before).sum() > 100  # D's events moved many items
