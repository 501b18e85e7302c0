"""The synthetic shop: deterministic, inside the contract, and with the structure models learn from."""

import pyarrow.compute as pc

from recpipe import contracts
from recpipe.stages.validate import row_reasons
from recpipe.sources.synthetic import ShopSpec, generate

SMALL = ShopSpec(users=300, items=120, days=4, seed=3)


def test_same_seed_same_tables_other_seed_other_tables():
    a = [d.events for d in generate(SMALL)]
    b = [d.events for d in generate(SMALL)]
    c = [d.events for d in generate(ShopSpec(users=300, items=120, days=4, seed=4))]
    assert all(x.equals(y) for x, y in zip(a, b))
    assert not a[0].equals(c[0])


def test_days_fit_the_contract_and_pass_every_row_rule():
    for day in generate(SMALL):
        assert day.events.schema == contracts.EVENTS
        assert pc.all(pc.is_null(row_reasons(day.events, day.dt))).as_py(), day.dt


def test_funnel_and_growth():
    days = list(generate(SMALL))
    counts = {r["values"]: r["counts"] for r in pc.value_counts(days[0].events["event_type"]).to_pylist()}
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    # new users and items appear over time
    assert days[-1].users.num_rows > days[0].users.num_rows
    assert days[-1].items.num_rows > days[0].items.num_rows


def test_a_catalog_smaller_than_needed_to_fill_every_category_still_generates():
    spec = ShopSpec(users=40, items=12, categories=15, days=2, seed=1)  # at least 3 categories are empty
    days = list(generate(spec))
    assert len(days) == 2 and all(d.events.num_rows > 0 for d in days)
    assert set(pc.unique(days[0].events["item_id"]).to_pylist()) <= set(days[-1].items["item_id"].to_pylist())
