"""The checks a table passes before publish commits it, on tables built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recpipe.config import RunParams
from recpipe.stages.publish import checks

K = 3
AVAILABLE = np.array([True, True, True, True, False])  # item 4 cannot be sold


def table(lists: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    users = np.array([u for u, items in lists.items() for _ in items], np.int32)
    items = np.array([i for items in lists.values() for i in items], np.int32)
    return users, items


def test_a_sound_table_measures_what_it_holds_and_passes():
    # user 7 bought items 0 and 1: only 2 candidates left, so 2 items are a full list for them
    users, items = table({5: [0, 1, 2], 6: [3, 2, 1], 7: [2, 3]})
    measured = checks.measure(users, items, np.array([7, 5, 6]), 2, AVAILABLE, (np.array([7, 7]), np.array([0, 1])), K)
    assert measured == {"users": 3, "personalized_users": 2, "rows": 8, "full_users": 3, "over_k_users": 0,
                        "duplicate_rows": 0, "unavailable_rows": 0, "distinct_items": 4, "available_items": 4}
    assert checks.problems(checks.combine([measured]), None, RunParams(top_k=K)) == []


def test_shards_add_up_and_distinct_items_is_a_lower_bound():
    a = checks.measure(*table({1: [0, 1, 2]}), np.array([1]), 1, AVAILABLE, None, K)
    b = checks.measure(*table({2: [3, 2, 1], 4: [0, 1, 3]}), np.array([2, 4]), 0, AVAILABLE, None, K)
    total = checks.combine([a, b])
    assert {k: total[k] for k in ("users", "personalized_users", "rows", "full_users", "distinct_items")} == {
        "users": 3, "personalized_users": 1, "rows": 9, "full_users": 3, "distinct_items": 4}


@pytest.mark.parametrize("lists, expected", [
    ({1: [0, 0, 1]}, "1 rows repeat an item for the same user"),
    ({1: [0, 4, 1]}, "1 rows recommend an unavailable item"),
    ({1: [0, 1, 2, 3], 2: [0, 1, 2]}, "1 users got more than top_k=3 items"),
    ({1: [0], 2: [1], 3: [0, 1, 2]}, "only 33% of the 3 users got min(top_k, their candidates) items"),
])
def test_a_broken_or_degenerate_table_is_refused_naming_why(lists, expected):
    users, items = table(lists)
    measured = checks.measure(users, items, np.array(sorted(lists)), 0, AVAILABLE, None, K)
    found = checks.problems(measured, None, RunParams(top_k=K))
    assert len(found) == 1 and found[0].startswith(expected)


def test_an_empty_table_says_whether_nothing_was_available():
    nothing = checks.measure(*table({}), np.array([1, 2]), 0, np.zeros(5, bool), None, K)
    assert checks.problems(nothing, None, RunParams(top_k=K)) == [
        "the table is empty: no item is available: the catalog snapshot marks every one of the date's items "
        "unavailable; check the catalog's `available` column (raw/items)."]
    empty = checks.measure(*table({}), np.array([1, 2]), 0, AVAILABLE, None, K)
    assert checks.problems(empty, None, RunParams(top_k=K)) == ["the table is empty: no user got a single item (2 users)."]


def test_a_drop_in_personalised_users_against_the_previous_table_is_refused():
    users, items = table({1: [0, 1, 2], 2: [0, 1, 2], 3: [0, 1, 2], 4: [0, 1, 2]})
    measured = checks.measure(users, items, np.array([1, 2, 3, 4]), 1, AVAILABLE, None, K)  # 25 % personalised
    previous = {"dt": "2024-01-01", "users": 10, "personalized_users": 8}  # 80 %
    params = RunParams(top_k=K, max_personalized_drop=0.5)
    assert checks.problems(measured, previous, params) == [
        "the share of personalised users fell from 80% (dt=2024-01-01) to 25%, more than max_personalized_drop "
        "50% allows."]
    assert checks.problems(measured, previous, RunParams(top_k=K, max_personalized_drop=0.75)) == []
