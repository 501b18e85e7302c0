"""The evaluation gate: is the candidate good enough to become champion and publish?

On the temporal hold-out of date D (what users with history before D did on D), the
candidate, the current champion and the popularity baseline each rank ALL items
(past purchases excluded when ``exclude_purchased``). The candidate passes when

- its NDCG@K beats popularity's by at least ``min_lift_over_popularity`` (relative), and
- it is not more than ``max_drop_vs_champion`` (relative) below the champion's NDCG@K.

:func:`evaluate` only judges and writes ``reports/evaluation/dt=D/``; :func:`apply`
acts on the decision (promote, or keep the champion) and names the model to publish.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import registry, reports, scoring
from recpipe.config import RunParams
from recpipe.evaluation import evaluate as compute_metrics
from recpipe.models import Recommender
from recpipe.models.popularity import Popularity
from recpipe.contracts import day_bounds
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)


def popularity_ref(dt: str) -> dict[str, str]:
    """Popularity is rebuilt from each date's features; its ref names that date."""
    return {"name": "popularity", "version": dt, "prefix": partition("features", dt)}


def load_model(store: Store, ref: dict[str, str], dt: str) -> Recommender:
    """A registered model, or popularity from ``features/dt=D``."""
    if ref["name"] == "popularity":
        items = store.read_table(partition("features", dt), "items", columns=["popularity"])
        return Popularity(items["popularity"].to_numpy().astype(np.float32))
    return registry.load(store, ref)


def exclusions(store: Store, dt: str, before_day: bool) -> tuple[np.ndarray, np.ndarray]:
    """(user_idx, item_idx) pairs already purchased: before D, or up to and including D."""
    table = store.read_table(partition("features", dt), "purchased")
    if before_day:
        start, _ = day_bounds(dt)
        table = table.filter(pc.less(table["last_ts"], start))
    table = table.sort_by("user_idx")
    return table["user_idx"].to_numpy(), table["item_idx"].to_numpy()


def evaluate(store: Store, dt: str, params: RunParams, candidate: dict[str, str]) -> dict[str, Any]:
    """Score candidate, champion and popularity on the hold-out; decide; write the report."""
    prefix = partition("features", dt)
    holdout = store.read_table(prefix, "holdout").to_pandas().rename(columns={"user_idx": "user_id", "item_idx": "item_id"})
    n_items = store.manifest(prefix)["meta"]["n_items"]
    users = np.unique(holdout["user_id"].to_numpy())
    exclude = exclusions(store, dt, before_day=True) if params.exclude_purchased else None
    champion = registry.champion(store, candidate["name"], before=dt)  # as it was when day D began
    contenders = {"candidate": candidate, "popularity": popularity_ref(dt)}
    if champion and champion["version"] != candidate["version"]:
        contenders["champion"] = champion
    k = params.top_k
    metrics = {}
    fallback = load_model(store, contenders["popularity"], dt)
    for role, ref in contenders.items():
        # an older champion may predate some users: they get the fallback, as in publish
        ranked = scoring.top_k_with_fallback(load_model(store, ref, dt), fallback, users, n_items, k, exclude)
        recs = pa.concat_tables(ranked).to_pandas()
        recs = recs.rename(columns={"user_idx": "user_id", "item_idx": "item_id"})
        metrics[role] = {**compute_metrics(holdout, recs, k, n_items), "model": ref["name"], "version": ref["version"]}
        log.info("%s %s@%s: ndcg@%d=%.4f hit_rate@%d=%.4f over %d users", role, ref["name"], ref["version"],
                 k, metrics[role][f"ndcg@{k}"], k, metrics[role][f"hit_rate@{k}"], len(users))
    passed, reasons, thresholds = decide(metrics, params)
    decision = {"dt": dt, "k": k, "passed": passed, "reasons": reasons, "metrics": metrics,
                "thresholds": thresholds, "candidate": candidate, "champion": champion}
    reports.write_evaluation(store, decision, history(store, dt))
    return decision


def history(store: Store, dt: str, days: int = 60) -> list[dict[str, Any]]:
    """The evaluation decisions of up to ``days`` earlier dates, oldest first."""
    keys = [k for k in store.list_keys("reports/evaluation/dt=") if k.endswith("/metrics.json")]
    dates = sorted(k.split("dt=")[1].split("/")[0] for k in keys)
    return [store.get_json(f"reports/evaluation/dt={d}/metrics.json") for d in dates if d < dt][-days:]


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


def apply(store: Store, decision: dict[str, Any]) -> dict[str, str]:
    """Promote a passing candidate; otherwise keep the champion (popularity if none).

    Returns the ref of the model to publish.
    """
    if decision["passed"]:
        registry.promote(store, decision["candidate"], decision["dt"], f"passed the gate on {decision['dt']}")
        return decision["candidate"]
    fallback = decision["champion"] or popularity_ref(decision["dt"])
    log.warning("candidate %s REJECTED by the gate on %s: %s Publishing %s %s instead; the candidate "
                "stays in %s for inspection.", decision["candidate"]["version"], decision["dt"],
                " ".join(decision["reasons"]), fallback["name"], fallback["version"], decision["candidate"]["prefix"])
    return fallback
