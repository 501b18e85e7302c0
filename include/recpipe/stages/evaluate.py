"""The evaluate stage: is the candidate good enough to replace what serves, and publish?

On the temporal hold-out of date D (what users with history before D did on D), the
candidate, the serving model and the popularity baseline each rank ALL items (past
purchases excluded when ``exclude_purchased``). The serving model is the one that published
the latest table on or before D (``decision.serving``), whatever its family: a mf table
serving is what a two_tower candidate must match. The candidate passes when

- its NDCG@K beats popularity's by at least ``min_lift_over_popularity`` (relative), and
- it is not more than ``max_drop_vs_champion`` (relative) below the serving model's NDCG@K;
  a candidate of another family must be at least as good (no drop) unless
  ``allow_worse_family_switch``.

:func:`evaluate` only judges and writes ``reports/evaluation/dt=D/``; the promote stage
acts on the decision.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recpipe import reports, reranking, scoring
from recpipe.artifacts import decision as decisions, registry
from recpipe.artifacts.features import Features
from recpipe.config import RunParams
from recpipe.evaluation import beyond_accuracy, evaluate as compute_metrics, paired_bootstrap, per_user
from recpipe.evaluation.slices import BANDS, TERCILES, per_user_by_slice, popularity_bands, terciles
from recpipe.io import layout
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)

#: bootstrap resamples of each interval
RESAMPLES = 1000
#: a hold-out user first seen this many days before D (or fewer) is "new"
NEW_USER_DAYS = 7
#: categories sliced: the most frequent among the hold-out's relevant items
TOP_CATEGORIES = 5
#: user pairs drawn for personalisation (all pairs when there are fewer)
PERSONALIZATION_PAIRS = 10_000
#: a slice with fewer users is reported but not guarded (max_slice_drop)
MIN_SLICE_USERS = 50


def evaluate(store: Store, dt: str, params: RunParams, candidate: registry.Ref) -> dict[str, Any]:
    """Score candidate, serving model and the two baselines on the hold-out; decide; write the report.

    The baselines are popularity and ``recent`` (each user's recently touched items). The
    candidate and the serving model are judged as they would publish: their lists with the first
    ``repeat_slots`` taken by the user's recent items, that number chosen here, per
    contender, as the one (0..K) with the best NDCG@K (param ``repeat_slots`` ≥ 0 fixes it),
    and re-ranked for ``diversity`` as publish does. The report (``metrics.json``) adds, per
    contender, the beyond-accuracy metrics; ``confidence``: the bootstrap intervals of the
    candidate's NDCG@K gain; ``slices``: :func:`slice_masks`, summarised by :func:`summarise`.
    """
    features = Features(store, dt)
    holdout = features.holdout().to_pandas()
    n_items = features.n_items
    users = np.unique(holdout["user_idx"].to_numpy())
    exclude = features.exclusions(before_day=True) if params.exclude_purchased else None
    served = decisions.serving(store, dt)  # the latest table on or before D, of any family
    serving = served["publish"] if served else None
    contenders = {"candidate": candidate, "popularity": registry.popularity_ref(dt)}
    if serving and serving["name"] != "popularity" and serving["version"] != candidate["version"]:
        contenders["serving"] = serving  # popularity serving is the baseline itself
    k = params.top_k

    def judge(recs: pa.Table) -> dict[str, float]:
        return compute_metrics(holdout, recs.to_pandas(), k, n_items, col_user="user_idx", col_item="item_idx")

    catalog = features.table("items", columns=["popularity", "category"])
    fallback = registry.load(store, contenders["popularity"], dt)
    recent = scoring.top_k(registry.recent(store, dt, before_day=True, event_weights=params.event_weights),
                           users, n_items, k, exclude)
    metrics = {"recent": {**judge(recent), "model": "recent", "version": dt, "repeat_slots": 0}}
    lists = {"recent": recent.to_pandas()}  # role → its lists as judged (user_idx, item_idx, rank)
    for role, ref in contenders.items():
        blends = slot_choices(params, ref["name"])
        # an older serving model may predate some users: they get the fallback, as in publish
        lam = 0.0 if role == "popularity" else params.diversity  # re-ranked for diversity as publish would
        ranked = pa.concat_tables(scoring.top_k_with_fallback(registry.load(store, ref, dt), fallback, users, n_items,
                                                              reranking.depth(k + max(blends), lam), exclude))
        ranked = reranking.rerank([ranked], catalog["category"], k + max(blends), lam)[0]
        tried = {r: judge(scoring.blend(ranked, recent, r, k)) for r in blends}
        slots = max(blends, key=lambda r: (tried[r][f"ndcg@{k}"], -r))  # the best; ties: fewer repeat slots
        metrics[role] = {**tried[slots], "model": ref["name"], "version": ref["version"], "repeat_slots": slots}
        lists[role] = scoring.blend(ranked, recent, slots, k).select(["user_idx", "item_idx", "rank"]).to_pandas()
    popularity = pd.DataFrame({"item_idx": np.arange(n_items), "count": catalog["popularity"].to_numpy()})
    categories = (pd.DataFrame({"item_idx": np.arange(n_items), "category": catalog["category"].to_pandas()})
                  if catalog["category"].null_count < n_items else None)
    for role, recs in lists.items():  # diversity, novelty, coverage, personalisation (intra-list: by category)
        metrics[role].update(beyond_accuracy(recs, k, n_items, popularity, categories, col_user="user_idx",
                                             col_item="item_idx", max_pairs=PERSONALIZATION_PAIRS))
    for role, m in metrics.items():
        log.info("%s %s@%s: ndcg@%d=%.4f hit_rate@%d=%.4f over %d users (repeat slots %d)", role, m["model"],
                 m["version"], k, m[f"ndcg@{k}"], k, m[f"hit_rate@{k}"], len(users), m["repeat_slots"])
    cols = {"col_user": "user_idx", "col_item": "item_idx"}
    ndcgs = {role: per_user(holdout, lists[role], k, **cols).to_numpy() for role in ("candidate", "serving", "popularity")
             if role in lists}  # NDCG@K per hold-out user, in user order
    confidence = {f"vs_{role}": interval(ndcgs["candidate"], ndcgs[role], params)
                  for role in ("serving", "popularity") if role in ndcgs and params.confidence_level > 0}
    by_slice = per_user_by_slice(holdout, {r: lists[r] for r in ndcgs}, k, slice_masks(features, holdout, catalog), **cols)
    sliced = {name: summarise(parts, params) for name, parts in by_slice.items()}
    passed, reasons, thresholds = decide(metrics, params, confidence, sliced)
    decision = {"dt": dt, "k": k, "passed": passed, "reasons": reasons, "metrics": metrics,
                "confidence": confidence, "slices": sliced, "thresholds": thresholds, "candidate": candidate,
                "serving": serving}
    reports.write_evaluation(store, decision, history(store, dt))
    return decision


def interval(a: np.ndarray, b: np.ndarray, params: RunParams) -> dict[str, float]:
    """The ``confidence_level`` paired-bootstrap interval of mean(a − b) over users (seeded by ``seed``)."""
    return paired_bootstrap(a, b, params.confidence_level, resamples=RESAMPLES, seed=params.seed)


def slice_masks(features: Features, holdout: pd.DataFrame, catalog: pa.Table) -> dict[str, np.ndarray]:
    """The slices of the hold-out (masks over its rows), by user and by relevant item:

    - ``users:new`` (first seen in the :data:`NEW_USER_DAYS` days before D) / ``users:returning``;
    - ``activity:low|mid|high``: terciles of the users' interactions before D;
    - ``items:head|torso|tail``: the item's popularity band (``slices.popularity_bands``);
    - ``category:<c>``: the :data:`TOP_CATEGORIES` categories most present among the relevant
      items (none when the catalog has no categories).

    ``catalog``: the features' items table (popularity, category), one row per item index.
    """
    users, items = holdout["user_idx"].to_numpy(), holdout["item_idx"].to_numpy()
    first = features.store.read_table(layout.vocab("users"), "ids", columns=["first_dt"])["first_dt"]
    first = first.to_numpy().astype("datetime64[D]")[users]
    new = first >= np.datetime64(features.dt, "D") - np.timedelta64(NEW_USER_DAYS, "D")
    masks = {"users:new": new, "users:returning": ~new}
    past = np.bincount(features.table("interactions", columns=["user_idx"])["user_idx"].to_numpy(),
                       minlength=features.meta["n_users"])
    once, where = np.unique(users, return_inverse=True)
    level = terciles(past[once])[where]
    masks.update({f"activity:{t}": level == t for t in TERCILES})
    band = popularity_bands(catalog["popularity"].to_numpy())[items]
    masks.update({f"items:{b}": band == b for b in BANDS})
    category = catalog["category"].to_numpy(zero_copy_only=False)[items]
    for c in pd.Series(category).dropna().value_counts().index[:TOP_CATEGORIES]:
        masks[f"category:{c}"] = category == c
    return masks


def summarise(parts: dict[str, pd.DataFrame], params: RunParams) -> dict[str, Any]:
    """One slice for metrics.json: its users, each contender's mean metrics, and (with a
    serving model and ``confidence_level`` > 0) the interval of candidate − serving NDCG@K."""
    out: dict[str, Any] = {"users": len(parts["candidate"])}
    out.update({role: {m: float(v.mean()) if len(v) else 0.0 for m, v in df.items()} for role, df in parts.items()})
    if "serving" in parts and params.confidence_level > 0:
        key = f"ndcg@{params.top_k}"
        out["vs_serving"] = interval(parts["candidate"][key].to_numpy(), parts["serving"][key].to_numpy(), params)
    return out


def slot_choices(params: RunParams, model: str) -> list[int]:
    """The repeat-slot counts to try for a model: 0..K (auto), or the fixed ``repeat_slots``;
    only 0 for the baselines themselves."""
    if model in ("popularity", "recent"):
        return [0]
    return list(range(params.top_k + 1)) if params.repeat_slots < 0 else [min(params.repeat_slots, params.top_k)]


def history(store: Store, dt: str, days: int = 60) -> list[dict[str, Any]]:
    """The evaluation decisions of up to ``days`` earlier dates, oldest first."""
    keys = [k for k in store.list_keys(layout.dates_prefix(layout.EVALUATION_REPORTS)) if k.endswith("/metrics.json")]
    dates = sorted(layout.date_of(k) for k in keys)
    return [store.get_json(layout.evaluation_report(d, "metrics.json")) for d in dates if d < dt][-days:]


def decide(metrics: dict[str, dict[str, float]], params: RunParams, confidence: dict[str, dict[str, float]] | None = None,
           slices: dict[str, dict[str, Any]] | None = None) -> tuple[bool, list[str], dict[str, float]]:
    """The gate's rule; returns (passed, one sentence per check, the thresholds it applied).

    The candidate's NDCG@K must beat popularity's by ``min_lift_over_popularity`` and reach
    the recent heuristic's times 1 + ``min_lift_over_recent`` (relative), and be at most
    ``max_drop_vs_champion`` below the serving model's; when that model is of another family,
    no drop at all unless ``allow_worse_family_switch``.

    ``confidence`` (``vs_popularity``, ``vs_serving``: :func:`paired_bootstrap` intervals of
    candidate − that contender): where given, the interval's lower bound must clear the
    threshold (gain > lift × popularity's; gain ≥ −drop × serving's), not the point estimate.

    ``slices`` (:func:`summarise` per slice): no slice of at least :data:`MIN_SLICE_USERS`
    users may lose more than ``max_slice_drop`` (relative) of the serving model's NDCG@K —
    with an interval, only a loss its upper bound confirms counts (a slice is small and noisy).
    """
    key = f"ndcg@{params.top_k}"
    cand = metrics["candidate"][key]
    confidence = confidence or {}
    reasons, passed = [], True
    if metrics["candidate"]["users"] == 0:
        return False, ["no hold-out users for this date (no one with history was active on it): nothing to judge."], {}

    def check(role: str, label: str, margin: float, strict: bool, rule: str) -> tuple[bool, float]:
        """candidate − ``role`` (its lower bound, when there is an interval) against ``margin``."""
        base = metrics[role][key]
        bound = confidence.get(f"vs_{role}")
        gain = bound["low"] if bound else cand - base
        ok = gain > margin if strict else gain >= margin
        floor = base + margin
        said = (f"; the {bound['level']:.0%} interval of the difference is [{bound['low']:+.4f}, {bound['high']:+.4f}], "
                f"its lower bound needs {'>' if strict else '>='} {margin:+.4f}" if bound else "")
        reasons.append(f"{key} {cand:.4f} vs {label} {base:.4f}: needs {'>' if strict else '>='} {floor:.4f} "
                       f"({rule}){said} — {'ok' if ok else 'FAILED'}.")
        return ok, floor

    need = 0.0
    for baseline, lift, strict in (("popularity", params.min_lift_over_popularity, True),
                                   ("recent", params.min_lift_over_recent, False)):
        ok, floor = check(baseline, baseline, lift * metrics[baseline][key], strict, f"+{lift:.0%}")
        passed &= ok
        need = max(need, floor)
    thresholds = {f"min_{key}": need}
    if "serving" in metrics:
        serving = metrics["serving"]
        switch = serving["model"] != metrics["candidate"]["model"] and not params.allow_worse_family_switch
        drop = 0.0 if switch else params.max_drop_vs_champion
        why = "; another model family, allow_worse_family_switch is off" if switch else ""
        ok, floor = check("serving", f"serving {serving['model']}", -drop * serving[key], False, f"-{drop:.0%}{why}")
        passed &= ok
        thresholds[f"min_{key}"] = max(need, floor)
    guarded = {n: s for n, s in (slices or {}).items() if "serving" in s and s["users"] >= MIN_SLICE_USERS}
    if guarded:
        dropped = []
        for name, s in guarded.items():
            serve = s["serving"][key]
            gain = s["vs_serving"]["high"] if "vs_serving" in s else s["candidate"][key] - serve
            if gain < -params.max_slice_drop * serve:
                dropped.append(f"{name} {s['candidate'][key]:.4f} vs {serve:.4f} ({s['users']} users)")
        passed &= not dropped
        reasons.append(f"slices ({len(guarded)} of >= {MIN_SLICE_USERS} users): none may lose more than "
                       f"{params.max_slice_drop:.0%} of the serving {key}" +
                       (f"; lost more: {', '.join(dropped)} — FAILED." if dropped else " — ok."))
    return passed, reasons, thresholds
