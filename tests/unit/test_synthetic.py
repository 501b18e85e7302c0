"""The synthetic shop: deterministic, inside the contract, and with the structure models learn from."""

import pyarrow.compute as pc

from recpipe import contracts
from recpipe.stages.validate import row_reasons
from recpipe.sources.synthetic import ShopSpec, generate, purchase_odds

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


def test_purchase_odds_expect_the_day_that_generate_yields():
    day = 3
    odds = purchase_odds(SMALL, day, samples=200)
    events = list(generate(SMALL))[day].events
    bought = set(zip(*[pc.filter(events[c], pc.equal(events["event_type"], "purchase")).to_pylist()
                       for c in ("user_id", "item_id")]))
    assert bought and all(0 < p <= 1 for p in odds.values())
    # the real day is one draw of what the odds expect: its purchases have higher odds than the others'
    real = sum(odds.get(pair, 0.0) for pair in bought) / len(bought)
    other = sum(p for pair, p in odds.items() if pair not in bought) / max(len(odds) - len(bought & set(odds)), 1)
    assert real > 2 * other
    # and the expected number of purchases is the real day's, within the day-to-day noise
    assert abs(sum(odds.values()) - len(bought)) < 0.25 * len(bought)
