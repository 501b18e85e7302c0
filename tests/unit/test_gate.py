"""The gate's rule (``evaluate.decide``) on metrics built by hand."""

from __future__ import annotations

import pytest

from recpipe.config import RunParams
from recpipe.stages.evaluate import decide


def _metrics(candidate: str, cand: float, serving: str, serve: float) -> dict:
    row = lambda model, v: {"model": model, "version": "v", "ndcg@10": v, "users": 100, "repeat_slots": 0}  # noqa: E731
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
