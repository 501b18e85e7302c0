"""The gate's rule (``evaluate.decide``) on metrics built by hand."""

from __future__ import annotations

import pytest

from recpipe.config import RunParams
from recpipe.stages.evaluate import balance, choose_slots, decide


def _metrics(candidate: str, cand: float, serving: str, serve: float) -> dict:
    row = lambda model, v: {"model": model, "version": "v", "ndcg@10": v, "users": 100, "repeat_slots": 0,  # noqa: E731
                            "balance@10": v}
    return {"candidate": row(candidate, cand), "serving": row(serving, serve),
            "popularity": row("popularity", 0.1), "recent": row("recent", 0.05)}


@pytest.mark.parametrize("allow, same_family, passed", [
    (False, True, True),    # a retrain may be within max_drop_vs_champion of its own family
    (False, False, False),  # another family may not be worse at all …
    (True, False, True),    # … unless the override is set
])
def test_a_family_switch_must_not_be_worse_unless_allowed(allow, same_family, passed):
    params = RunParams(max_drop_vs_champion=0.02, allow_worse_family_switch=allow, confidence_level=0)
    serve = 0.3
    cand = serve * (1 - params.max_drop_vs_champion / 2)  # 1 % below the serving model
    metrics = _metrics("mf" if same_family else "two_tower", cand, "mf", serve)
    ok, reasons, _ = decide(metrics, params)
    assert ok is passed
    assert ("FAILED" in reasons[-1]) is not passed


def test_a_family_switch_that_is_better_passes():
    params = RunParams(confidence_level=0)
    assert decide(_metrics("two_tower", 0.31, "mf", 0.3), params)[0]


def test_the_lower_bound_decides_when_confidence_is_on():
    params = RunParams(min_lift_over_popularity=0.05)
    metrics = _metrics("mf", 0.12, "mf", 0.12)  # popularity 0.1: the point estimate clears +5 %
    noisy = {"vs_popularity": {"low": 0.001, "high": 0.04, "level": 0.9},  # … its lower bound does not
             "vs_serving": {"low": 0.0, "high": 0.0, "level": 0.9}}
    assert decide(metrics, RunParams(confidence_level=0))[0]
    ok, reasons, _ = decide(metrics, params, noisy)
    assert not ok and "90% interval" in reasons[0] and "FAILED" in reasons[0]
    sure = {**noisy, "vs_popularity": {"low": 0.006, "high": 0.03, "level": 0.9}}  # 0.006 > 0.05 × 0.1
    assert decide(metrics, params, sure)[0]


def _hits(ndcg: float, purchase: float, new_item: float, users: int = 50) -> dict:
    return {"ndcg@10": ndcg, "purchase_hit_rate@10": purchase, "purchase_users": users,
            "new_item_hit_rate@10": new_item, "new_item_users": users}


def test_balance_is_the_worse_lift_over_each_objectives_baseline():
    recent, popularity = _hits(0.4, 0.6, 0.05), _hits(0.1, 0.2, 0.25)
    m = _hits(0.3, 0.48, 0.3)
    assert balance(m, recent, popularity, 10) == pytest.approx(min(0.48 / 0.6, 0.3 / 0.25))  # purchases are worse
    no_purchases = {**recent, "purchase_users": 0}  # e.g. ratings only: discovery alone counts
    assert balance(m, no_purchases, popularity, 10) == pytest.approx(0.3 / 0.25)
    # neither objective measurable: NDCG@K
    assert balance(m, no_purchases, {**popularity, "new_item_hit_rate@10": 0.0}, 10) == m["ndcg@10"]


def test_the_slot_count_with_the_best_balance_wins_not_the_best_ndcg():
    recent, popularity = _hits(0.4, 0.6, 0.05), _hits(0.1, 0.2, 0.25)
    # more repeat slots: NDCG (re-views) and purchases rise, new items fall
    tried = {r: _hits(0.1 + 0.03 * r, 0.1 + 0.05 * r, 0.4 - 0.03 * r) for r in range(11)}
    for m in tried.values():
        m["balance@10"] = balance(m, recent, popularity, 10)
    lifts = {r: min(m["purchase_hit_rate@10"] / 0.6, m["new_item_hit_rate@10"] / 0.25) for r, m in tried.items()}
    chosen = choose_slots(tried, 10)
    assert chosen == max(lifts, key=lifts.get) and 0 < chosen < 10  # the NDCG alone would take 10
    assert max(tried, key=lambda r: tried[r]["ndcg@10"]) == 10
    tie = {r: {**_hits(0.2, 0.3, 0.2), "balance@10": 1.0} for r in (2, 3, 5)}
    tie[5]["ndcg@10"] = 0.25
    assert choose_slots(tie, 10) == 5  # ties on balance: the better NDCG …
    tie[5]["ndcg@10"] = 0.2
    assert choose_slots(tie, 10) == 2  # … then fewer repeat slots


def test_a_candidate_below_the_recent_heuristics_balance_fails():
    params = RunParams(confidence_level=0)
    metrics = _metrics("mf", 0.3, "mf", 0.3)
    metrics["candidate"]["balance@10"] = metrics["recent"]["balance@10"] * 0.99  # NDCG alone would pass
    ok, reasons, thresholds = decide(metrics, params)
    assert not ok and any(r.startswith("balance@10") and "FAILED" in r for r in reasons)
    assert thresholds["min_balance@10"] == metrics["recent"]["balance@10"]
