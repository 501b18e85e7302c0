"""The evaluate stage: is the candidate good enough to become champion and publish?

On the temporal hold-out of date D (what users with history before D did on D), the
candidate, the current champion and the popularity baseline each rank ALL items
(past purchases excluded when ``exclude_purchased``). The candidate passes when

- its NDCG@K beats popularity's by at least ``min_lift_over_popularity`` (relative), and
- it is not more than ``max_drop_vs_champion`` (relative) below the champion's NDCG@K.

:func:`evaluate` only judges and writes ``reports/evaluation/dt=D/``; the promote stage
acts on the decision.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from recpipe import reports, scoring
from recpipe.artifacts import registry
from recpipe.artifacts.features import Features
from recpipe.config import RunParams
from recpipe.evaluation import evaluate as compute_metrics
from recpipe.io import layout
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)


def evaluate(store: Store, dt: str, params: RunParams, candidate: registry.Ref) -> dict[str, Any]:
    """Score candidate, champion and popularity on the hold-out; decide; write the report."""
    features = Features(store, dt)
    holdout = features.holdout().to_pandas()
    n_items = features.n_items
    users = np.unique(holdout["user_idx"].to_numpy())
    exclude = features.exclusions(before_day=True) if params.exclude_purchased else None
    champion = registry.champion(store, candidate["name"], before=dt)  # as it was when day D began
    contenders = {"candidate": candidate, "popularity": registry.popularity_ref(dt)}
    if champion and champion["version"] != candidate["version"]:
        contenders["champion"] = champion
    k = params.top_k
    metrics = {}
    fallback = registry.load(store, contenders["popularity"], dt)
    for role, ref in contenders.items():
        # an older champion may predate some users: they get the fallback, as in publish
        ranked = scoring.top_k_with_fallback(registry.load(store, ref, dt), fallback, users, n_items, k, exclude)
        recs = pa.concat_tables(ranked).to_pandas()
        metrics[role] = {**compute_metrics(holdout, recs, k, n_items, col_user="user_idx", col_item="item_idx"),
                         "model": ref["name"], "version": ref["version"]}
        log.info("%s %s@%s: ndcg@%d=%.4f hit_rate@%d=%.4f over %d users", role, ref["name"], ref["version"],
                 k, metrics[role][f"ndcg@{k}"], k, metrics[role][f"hit_rate@{k}"], len(users))
    passed, reasons, thresholds = decide(metrics, params)
    decision = {"dt": dt, "k": k, "passed": passed, "reasons": reasons, "metrics": metrics,
                "thresholds": thresholds, "candidate": candidate, "champion": champion}
    reports.write_evaluation(store, decision, history(store, dt))
    return decision


def history(store: Store, dt: str, days: int = 60) -> list[dict[str, Any]]:
    """The evaluation decisions of up to ``days`` earlier dates, oldest first."""
    keys = [k for k in store.list_keys(layout.dates_prefix(layout.EVALUATION_REPORTS)) if k.endswith("/metrics.json")]
    dates = sorted(layout.date_of(k) for k in keys)
    return [store.get_json(layout.evaluation_report(d, "metrics.json")) for d in dates if d < dt][-days:]


def decide(metrics: dict[str, dict[str, float]], params: RunParams) -> tuple[bool, list[str], dict[str, float]]:
    """The gate's rule; returns (passed, one sentence per check, the thresholds it applied)."""
    key = f"ndcg@{params.top_k}"
    cand, pop = metrics["candidate"][key], metrics["popularity"][key]
    reasons, passed = [], True
    if metrics["candidate"]["users"] == 0:
        return False, ["no hold-out users for this date (no one with history was active on it): nothing to judge."], {}
    need = pop * (1 + params.min_lift_over_popularity)
    thresholds = {f"min_{key}": need}
    ok = cand > need if pop > 0 else cand > 0
    passed &= ok
    reasons.append(f"{key} {cand:.4f} vs popularity {pop:.4f}: needs > {need:.4f} "
                   f"(+{params.min_lift_over_popularity:.0%}) — {'ok' if ok else 'FAILED'}.")
    if "champion" in metrics:
        champ = metrics["champion"][key]
        floor = champ * (1 - params.max_drop_vs_champion)
        thresholds[f"min_{key}"] = max(need, floor)
        ok = cand >= floor
        passed &= ok
        reasons.append(f"{key} {cand:.4f} vs champion {champ:.4f}: needs >= {floor:.4f} "
                       f"(-{params.max_drop_vs_champion:.0%}) — {'ok' if ok else 'FAILED'}.")
    return passed, reasons, thresholds
