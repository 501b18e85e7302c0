"""With RECPIPE_PSEUDONYM_KEY set, no raw user id gets past the quality gate (real S3)."""

from __future__ import annotations

from datetime import date

import pyarrow.compute as pc

from recpipe.io import landing
from recpipe import pipeline, sources
from recpipe import privacy
from recpipe.config import RunParams
from recpipe.contracts import EVENTS, USERS
from recpipe.sources.synthetic import ShopSpec

KEY = "a-test-key-of-32-characters-long"


def test_clean_events_features_and_profiles_hold_only_pseudonyms(store, monkeypatch):
    monkeypatch.setenv(privacy.ENV, KEY)
    dates = sources.seed(store, ShopSpec(users=100, items=80, days=2, seed=5, start=date(2024, 6, 1)))
    for dt in dates:
        pipeline.validate(store, dt, RunParams())
    pipeline.features(store, dates[-1], RunParams())

    raw = set(landing.read_raw(store, "events", dates[-1], EVENTS)["user_id"].to_pylist())
    clean = store.read_table(f"clean/events/dt={dates[-1]}", "events")["user_id"].to_pylist()
    assert clean and all(u.startswith("p_") for u in clean)
    assert set(clean) == {privacy.pseudonym(u, KEY.encode()) for u in raw}  # same rows, mapped one to one
    features = store.read_table(f"features/dt={dates[-1]}", "user_features")
    assert not set(features["user_id"].to_pylist()) & raw
    # profiles were mapped the same way, so they still join: every user with a profile has an age
    profiles = landing.read_raw(store, "users", dates[-1], USERS)
    with_profile = {privacy.pseudonym(u, KEY.encode()) for u, a in
                    zip(profiles["user_id"].to_pylist(), profiles["age"].to_pylist()) if a is not None}
    ages = dict(zip(features["user_id"].to_pylist(), features["age"].to_pylist()))
    joined = [u for u in ages if u in with_profile]
    assert joined and all(ages[u] is not None for u in joined)
    assert pc.sum(pc.is_null(features["user_id"])).as_py() == 0
