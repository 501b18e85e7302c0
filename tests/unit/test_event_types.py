"""Event types as producers name them, event weights, and optional columns' defaults."""

from __future__ import annotations

import pyarrow as pa
import pytest

from recpipe import contracts
from recpipe.config import RunParams
from recpipe.errors import ConfigError
from recpipe.io.landing import conform
from recpipe.stages.validate.check import map_event_types, unavailable_share


def test_event_weights_override_only_what_is_given():
    params = RunParams(event_weights={"purchase": 8, "favorite": 0})
    assert params.event_weights == {**contracts.EVENT_WEIGHTS, "purchase": 8.0, "favorite": 0.0}
    assert list(params.event_weights) == list(contracts.EVENT_TYPES)
    assert RunParams().event_weights == contracts.EVENT_WEIGHTS


@pytest.mark.parametrize("params, match", [
    ({"event_weights": {"like": 2}}, r"event_weights names \['like'\]"),
    ({"event_weights": {"view": -1}}, "event_weights must be >= 0"),
    ({"event_type_map": {"fav": "wishlist"}}, r"event_type_map maps to \['wishlist'\].*favorite"),
])
def test_bad_event_params_say_what_to_change(params, match):
    with pytest.raises(ConfigError, match=match):
        RunParams(**params)


def test_a_producers_names_map_to_contract_types_and_unknown_ones_stay():
    events = pa.table({"event_type": ["pv", "fav", "cart", "buy", "pv", "purchase", "zzz"]})
    mapping = {"pv": "view", "fav": "favorite", "cart": "add_to_cart", "buy": "purchase"}
    mapped, counts = map_event_types(events, mapping)
    assert mapped["event_type"].to_pylist() == ["view", "favorite", "add_to_cart", "purchase", "view", "purchase",
                                                "zzz"]
    assert counts == {"pv→view": 2, "fav→favorite": 1, "cart→add_to_cart": 1, "buy→purchase": 1}
    assert map_event_types(events, {}) == (events, {})


def test_a_catalog_without_available_makes_every_item_available():
    catalog = pa.table({"item_id": ["a", "b"], "category": ["x", None]})
    items = conform(catalog, contracts.ITEMS, "test", contracts.DEFAULTS["items"])
    assert items["available"].to_pylist() == [True, True]
    assert items["price"].to_pylist() == [None, None]  # other optional columns: unknown


def test_a_null_availability_means_available_and_false_stays_false():
    catalog = pa.table({"item_id": ["a", "b", "c"], "available": [None, False, True]})
    items = conform(catalog, contracts.ITEMS, "test", contracts.DEFAULTS["items"])
    assert items["available"].to_pylist() == [True, False, True]


def test_the_unavailable_share_counts_unlisted_items_as_unavailable():
    catalog = pa.table({"item_id": ["a", "b", "c"], "available": [True, False, True]})
    events = pa.table({"item_id": ["a", "a", "b", "d"]})  # distinct: a ok, b unavailable, d unlisted
    assert unavailable_share(events, catalog) == pytest.approx(2 / 3)
