"""Slices of the hold-out: labels, per-slice metrics, and the gate's slice guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recpipe.config import RunParams
from recpipe.evaluation import evaluate
from recpipe.evaluation.slices import per_user_by_slice, popularity_bands, terciles
from recpipe.stages.evaluate import MIN_SLICE_USERS, decide


def test_terciles_split_at_the_thirds():
    values = np.arange(9)
    assert list(terciles(values)) == ["low"] * 3 + ["mid"] * 3 + ["high"] * 3
    assert list(terciles(np.array([5, 5, 5]))) == ["low"] * 3  # all equal: one tercile


def test_popularity_bands_follow_the_cumulative_share_of_interactions():
    pop = np.array([1, 30, 0, 25, 20, 24])  # total 100, descending: 30, 25, 24, 20, 1, 0
    # the share of interactions before each: 0, .30 (< 1/3: head), .55 (torso), .79, .99 (tail)
    assert list(popularity_bands(pop)) == ["tail", "head", "tail", "head", "tail", "torso"]
    assert list(popularity_bands(np.zeros(2))) == ["tail", "tail"]


def test_each_slice_is_evaluated_against_its_own_truth():
    truth = pd.DataFrame({"u": [1, 1, 2, 3], "i": [10, 11, 20, 30]})
    recs = pd.DataFrame({"u": [1, 1, 2, 3], "i": [10, 99, 21, 30], "r": [1, 2, 1, 1]})
    masks = {"items:a": truth["i"].isin([10, 20]).to_numpy(), "users:one": (truth["u"] == 1).to_numpy()}
    out = per_user_by_slice(truth, {"m": recs}, 2, masks, col_user="u", col_item="i", col_rank="r")
    for name, mask in masks.items():
        expected = evaluate(truth[mask], recs, 2, col_user="u", col_item="i", col_rank="r")
        assert out[name]["m"]["ndcg@2"].mean() == pytest.approx(expected["ndcg@2"])
        assert len(out[name]["m"]) == expected["users"]
    assert list(out["items:a"]["m"].index) == [1, 2]


def _metrics(cand: float, serve: float) -> dict:
    row = lambda v: {"model": "mf", "version": "v", "ndcg@10": v, "users": 500, "repeat_slots": 0,  # noqa: E731
                     "balance@10": v}
    return {"candidate": row(cand), "serving": row(serve), "popularity": row(0.01), "recent": row(0.01)}


def _slice(users: int, cand: float, serve: float, high: float | None = None) -> dict:
    out = {"users": users, "candidate": {"ndcg@10": cand}, "serving": {"ndcg@10": serve}}
    return {**out, "vs_serving": {"low": -1.0, "high": high, "level": 0.9}} if high is not None else out


def test_a_slice_that_collapses_fails_the_gate_and_is_named():
    params = RunParams(max_slice_drop=0.2, confidence_level=0)
    slices = {"users:new": _slice(MIN_SLICE_USERS, 0.1, 0.3), "items:head": _slice(500, 0.3, 0.3),
              "category:x": _slice(MIN_SLICE_USERS - 1, 0.0, 0.3)}  # too small to guard
    ok, reasons, _ = decide(_metrics(0.3, 0.3), params, None, slices)
    assert not ok and "users:new" in reasons[-1] and "category:x" not in reasons[-1] and "FAILED" in reasons[-1]
    assert decide(_metrics(0.3, 0.3), params, None, {"items:head": _slice(500, 0.25, 0.3)})[0]  # -17 %: allowed


def test_with_an_interval_only_a_confirmed_slice_loss_counts():
    params = RunParams(max_slice_drop=0.2)
    noisy = {"users:new": _slice(100, 0.1, 0.3, high=-0.01)}  # point -67 %, but the bound allows -3 %
    assert decide(_metrics(0.3, 0.3), params, None, noisy)[0]
    sure = {"users:new": _slice(100, 0.1, 0.3, high=-0.07)}  # the bound confirms -23 %
    assert not decide(_metrics(0.3, 0.3), params, None, sure)[0]
