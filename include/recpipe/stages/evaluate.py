"""The evaluate stage: is the candidate good enough to replace what serves, and publish?

On the temporal hold-out of date D (what users with history before D did on D), the
candidate, the serving model and the popularity baseline each rank ALL items (past
purchases excluded when ``exclude_purchased``). The serving model is the one that published
the latest table on or before D (``decision.serving``), whatever its family: a mf table
serving is what a two_tower candidate must match. The candidate passes when

- its NDCG@K beats popularity's by at least ``min_lift_over_popularity`` (relative),
- its ``balance@K`` (:func:`balance`: purchases against the recent heuristic, new items
  against popularity) reaches the recent heuristic's times 1 + ``min_lift_over_recent``, and
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
import pyarrow.compute as pc

from recpipe import reports, reranking, scoring
from recpipe.artifacts import decision as decisions, registry
from recpipe.artifacts.features import Features
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
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
    ``repeat_slots`` taken by the user's recent items and the rest by the model's items the
    user had not touched, that number chosen here, per contender, as the one (0..K) with the
    best ``balance@K`` (:func:`choose_slots`; param ``repeat_slots`` ≥ 0 fixes it), and
    re-ranked for ``diversity`` as publish does. Each contender's metrics add the hit rates
    on the two :func:`objectives` (``purchase_hit_rate@K``, ``new_item_hit_rate@K``, with
    their ``_users``) and ``balance@K``. The report (``metrics.json``) adds, per
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

    inter = features.table("interactions", columns=["user_idx", "item_idx"])
    touched = (inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy())  # before D
    purchases, new_items = objectives(features, holdout, touched)

    def judge(recs: pa.Table) -> dict[str, float]:
        recs = recs.to_pandas()
        cols = {"col_user": "user_idx", "col_item": "item_idx"}
        out = compute_metrics(holdout, recs, k, n_items, **cols)
        for name, truth in (("purchase", purchases), ("new_item", new_items)):
            m = compute_metrics(truth, recs, k, **cols)
            out[f"{name}_hit_rate@{k}"], out[f"{name}_users"] = m[f"hit_rate@{k}"], m["users"]
        return out

    catalog = features.table("items", columns=["popularity", "category"])
    fallback = registry.load(store, contenders["popularity"], dt)
    recent = scoring.top_k(registry.recent(store, dt, before_day=True, event_weights=params.event_weights),
                           users, n_items, k, exclude)
    discovery = scoring.union_pairs(exclude, touched)  # the model's slots beside repeat slots: untouched items
    metrics = {"recent": {**judge(recent), "model": "recent", "version": dt, "repeat_slots": 0}}
    lists = {"recent": recent.to_pandas()}  # role → its lists as judged (user_idx, item_idx, rank)
    for role in ("popularity", *(r for r in contenders if r != "popularity")):  # popularity: a yardstick of balance
        ref = contenders[role]
        blends = slot_choices(params, ref["name"])
        model = registry.load(store, ref, dt)
        # an older serving model may predate some users: they get the fallback, as in publish
        lam = 0.0 if role == "popularity" else params.diversity  # re-ranked for diversity as publish would

        def ranked(excluded: tuple[np.ndarray, np.ndarray] | None) -> pa.Table:
            depth = k + max(blends)
            top = scoring.top_k_with_fallback(model, fallback, users, n_items, reranking.depth(depth, lam), excluded)
            return reranking.rerank([pa.concat_tables(top)], catalog["category"], depth, lam)[0]

        plain = ranked(exclude) if 0 in blends else None
        untouched = ranked(discovery) if max(blends) > 0 else None
        built = {r: scoring.blend(untouched if r else plain, recent, r, k) for r in blends}
        tried = {r: judge(b) for r, b in built.items()}
        for m in tried.values():  # popularity, judged first, is its own yardstick of new items
            m[f"balance@{k}"] = balance(m, metrics["recent"], metrics.get("popularity", m), k)
        slots = choose_slots(tried, k)
        metrics[role] = {**tried[slots], "model": ref["name"], "version": ref["version"], "repeat_slots": slots}
        lists[role] = built[slots].select(["user_idx", "item_idx", "rank"]).to_pandas()
    metrics["recent"][f"balance@{k}"] = balance(metrics["recent"], metrics["recent"], metrics["popularity"], k)
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


def objectives(features: Features, holdout: pd.DataFrame, touched: tuple[np.ndarray, np.ndarray]
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The hold-out's two objectives of a table, (user_idx, item_idx) of its users' pairs on D:
    ``purchase`` (bought on D: re-engagement, the recent heuristic's game) and ``new_item``
    (touched on D and not in ``touched``, the (user_idx, item_idx) pairs before D: discovery,
    popularity's)."""
    start = day_bounds(features.dt)[0]
    bought = features.table("purchased")
    bought = bought.filter(pc.greater_equal(bought["last_ts"], pa.scalar(start, bought["last_ts"].type)))
    bought = bought.select(["user_idx", "item_idx"]).to_pandas()
    bought = bought[bought["user_idx"].isin(holdout["user_idx"].unique())]
    before = touched[0].astype(np.int64) << 32 | touched[1]
    key = holdout["user_idx"].to_numpy().astype(np.int64) << 32 | holdout["item_idx"].to_numpy()
    return bought.reset_index(drop=True), holdout[~np.isin(key, before)].reset_index(drop=True)


def balance(m: dict[str, float], recent: dict[str, float], popularity: dict[str, float], k: int) -> float:
    """A list's worst lift over the specialised baseline of each objective (:func:`objectives`):
    min(purchase hit rate@K / the recent heuristic's, new-item hit rate@K / popularity's).

    An objective with no hold-out users, or whose baseline scores 0, is left out; with neither,
    the list's NDCG@K (then every contender is judged on it alike)."""
    lifts = [m[f"{name}_hit_rate@{k}"] / base[f"{name}_hit_rate@{k}"]
             for name, base in (("purchase", recent), ("new_item", popularity))
             if base[f"{name}_users"] and base[f"{name}_hit_rate@{k}"] > 0]
    return min(lifts) if lifts else m[f"ndcg@{k}"]


def choose_slots(tried: dict[int, dict[str, float]], k: int) -> int:
    """The repeat-slot count whose list (``tried``: metrics by count) has the best ``balance@K``;
    ties: the best NDCG@K, then fewer repeat slots."""
    return max(tried, key=lambda r: (tried[r][f"balance@{k}"], tried[r][f"ndcg@{k}"], -r))


def slot_choices(params: RunParams, model: str) -> list[int]:
    """The repeat-slot counts to try for a model: 0..K (auto), or the fixed ``repeat_slots``;
    only 0 for the baselines themselves."""
    if model in ("popularity", "recent"):
        return [0]
    return list(range(params.top_k + 1)) if params.repeat_slots < 0 else [min(params.repeat_slots, params.top_k)]


def history(store: Store, dt: str, days: int = 60) -> list[dict[str, Any]]:
    """The evaluation decisions of up to ``days`` earlier dates, oldest first."""
    return reports.recent_reports(store, layout.EVALUATION_REPORTS, "metrics.json", dt, days)


def decide(metrics: dict[str, dict[str, float]], params: RunParams, confidence: dict[str, dict[str, float]] | None = None,
           slices: dict[str, dict[str, Any]] | None = None) -> tuple[bool, list[str], dict[str, float]]:
    """The gate's rule; returns (passed, one sentence per check, the thresholds it applied).

    The candidate's NDCG@K must beat popularity's by ``min_lift_over_popularity``, its
    ``balance@K`` (:func:`balance`: the worse of its purchase lift over the recent heuristic and
    its new-item lift over popularity) reach the recent heuristic's times 1 +
    ``min_lift_over_recent`` (relative), and its NDCG@K be at most
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
    confidence = confidence or {}
    reasons: list[str] = []
    if metrics["candidate"]["users"] == 0:
        return False, ["no hold-out users for this date (no one with history was active on it): nothing to judge."], {}

    def check(role: str, label: str, margin: float, strict: bool, rule: str, metric: str = key) -> tuple[bool, float]:
        """candidate − ``role`` on ``metric`` (its lower bound, when there is an interval) against ``margin``."""
        base, mine = metrics[role][metric], metrics["candidate"][metric]
        bound = confidence.get(f"vs_{role}") if metric == key else None
        gain = bound["low"] if bound else mine - base
        ok = gain > margin if strict else gain >= margin
        floor = base + margin
        said = (f"; the {bound['level']:.0%} interval of the difference is [{bound['low']:+.4f}, {bound['high']:+.4f}], "
                f"its lower bound needs {'>' if strict else '>='} {margin:+.4f}" if bound else "")
        reasons.append(f"{metric} {mine:.4f} vs {label} {base:.4f}: needs {'>' if strict else '>='} {floor:.4f} "
                       f"({rule}){said} — {'ok' if ok else 'FAILED'}.")
        return ok, floor

    lift = params.min_lift_over_popularity
    passed, need = check("popularity", "popularity", lift * metrics["popularity"][key], True, f"+{lift:.0%}")
    thresholds = {f"min_{key}": need}
    lift, balanced = params.min_lift_over_recent, f"balance@{params.top_k}"
    ok, thresholds[f"min_{balanced}"] = check("recent", "recent", lift * metrics["recent"][balanced], False,
                                              f"+{lift:.0%}", balanced)
    passed &= ok
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
