"""Publishing: the top-K table ``recommendations/dt=D/`` for downstream consumers.

Every user active in the window up to D gets K items: from the chosen model when it can
personalise for them (strategy ``personalized``), from popularity otherwise (``fallback``).
Unavailable items are never recommended; past purchases are excluded when
``exclude_purchased``. Users are split into ``publish_shards`` shards by ``user_idx``
(the DAG scores them as parallel mapped tasks); each shard is staged under
``recommendations/_shards/``, then one commit copies them into the partition atomically
(see ``recpipe.io.partitions``) and ``recommendations/_latest`` names the newest committed date.

The model scores from each user's history through the end of D (``Features.history``: D's
own events too) without retraining: sequence models and two_tower read the newer
histories, mf folds in the users active since it was trained (``Recommender.with_history``),
so a user first seen on D with an event gets personalised recommendations.

Columns: user_id, item_id, rank, score, model_name, model_version, strategy, reason,
reason_item_id, generated_at (the end of day D, from when the table is meant to serve).

``reason`` (computed in the scoring batch, ``scoring.Reasons``), first that applies:
``recently_viewed`` (the user touched the item: a repeat slot, or among their latest
``REASON_HISTORY`` items), ``new_item_content`` (a personalised item the model never trained
on, scored from its content), ``history_similar`` (the user's latest item whose model vector
is most similar to the item's), ``trending`` (``TRENDING_LIFT`` × its 7-day daily mean on D),
``popular``. ``reason_item_id``: the user's own item behind a ``recently_viewed`` or
``history_similar`` row (the item itself for ``recently_viewed``), null otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import reranking, scoring
from recpipe.artifacts import decision, registry
from recpipe.artifacts.recommendations import COLUMNS, HISTORY_REASONS, REASONS, read
from recpipe.artifacts.features import Features
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import ConfigError, DataError, PartitionNotFound, PublishRefused
from recpipe.io import layout, pointers
from recpipe.io.partitions import Store
from recpipe.models import Recommender, TrainingData
from recpipe.models.sequences import last_items
from recpipe.stages.publish import checks

log = logging.getLogger(__name__)


def publish(store: Store, dt: str, params: RunParams, choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score, assemble and commit ``recommendations/dt=D`` with the model and repeat slots of
    ``choice`` (default: what the gate chose for ``dt``, ``decision.json``).

    The one-process path (CLI, tests): every shard in turn, then the commit. The DAG runs
    the shards as parallel mapped tasks and then :func:`commit`.
    """
    choice = choice or decision.read(store, dt)
    for shard in range(params.publish_shards):
        publish_shard(store, dt, params, shard, choice)
    return commit(store, dt, params, choice)


def publish_shard(store: Store, dt: str, params: RunParams, shard: int,
                  choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the users with ``user_idx % publish_shards == shard``; commit them as one staged shard.

    Memory is bounded by the shard: users are scored in batches (``scoring.top_k``) and
    only this shard's rows are held. A re-run overwrites the shard.
    """
    shards = params.publish_shards
    if not 0 <= shard < shards:
        raise ConfigError(f"shard {shard} is outside 0..{shards - 1} (publish_shards={shards}).")
    choice = choice or decision.read(store, dt)
    features = Features(store, dt)
    users = features.users()
    users = users.filter(pa.array(users["user_idx"].to_numpy() % shards == shard))
    table, measured = recommend(features, params, choice, users)
    out = layout.shard(dt, shard, shards)
    store.write_partition(out, {"part": table}, {"inputs": _inputs(features, params, choice), "checks": measured})
    log.info("shard %d/%d of %s: %d rows for %d users (%d personalized)", shard + 1, shards, dt,
             table.num_rows, users.num_rows, measured["personalized_users"])
    return {"dt": dt, "shard": shard, "prefix": out, "rows": table.num_rows, "users": users.num_rows}


def commit(store: Store, dt: str, params: RunParams, choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the staged shards into ``recommendations/dt=D`` (one atomic commit), move ``_latest``.

    Every shard must have been staged for exactly these inputs (model, params, features
    commit); a missing or stale shard is refused, naming the shard to re-run. The table
    must pass ``checks`` first: a refused table is not committed, the previous one stays.
    """
    choice = choice or decision.read(store, dt)
    ref = choice["publish"]
    shards, expected = params.publish_shards, _inputs(Features(store, dt), params, choice)
    sources, measured = {}, []
    for shard in range(shards):
        staged = layout.shard(dt, shard, shards)
        manifest = store.manifest(staged)
        if manifest is None or manifest["meta"]["inputs"] != expected:
            state = "missing" if manifest is None else "stale (staged for other inputs)"
            raise PartitionNotFound(f"s3://{store.bucket}/{staged} is {state}: re-run publish for "
                                    f"shard {shard} of {shards} on {dt}, then commit again.")
        sources[f"part-{shard:03d}.parquet"] = manifest["files"]["part.parquet"]
        measured.append(manifest["meta"]["checks"])
    total = checks.combine(measured)
    previous = previous_meta(store, dt)
    refused = checks.problems(total, previous, params)
    out = layout.partition(layout.RECOMMENDATIONS, dt)
    if refused:
        kept = f"the table of {previous['dt']} stays" if previous else "no table was published before"
        raise PublishRefused(
            f"s3://{store.bucket}/{out} was NOT published: {' '.join(refused)} Nothing was committed; {kept} and "
            f"{layout.LATEST} did not move. Fix the cause and re-run publish for {dt} (thresholds: "
            "min_full_user_share, max_personalized_drop).")
    store.commit_copies(out, sources, {"dt": dt, "model": ref, "repeat_slots": choice.get("repeat_slots", 0),
                                       "top_k": params.top_k, "shards": shards, **total})
    # _latest names the newest published date; compare-and-swap, so it never moves back
    pointers.advance(store, layout.LATEST, {"dt": dt, "prefix": out})
    store.delete_keys(store.list_keys(layout.partition(layout.STAGING, dt) + "/"))
    log.info("published s3://%s/%s: %d rows for %d users (%d personalized, %d with a full list, %d distinct items) "
             "in %d shard(s)", store.bucket, out, total["rows"], total["users"], total["personalized_users"],
             total["full_users"], total["distinct_items"], shards)
    return {"dt": dt, "prefix": out, "rows": total["rows"], "users": total["users"],
            "personalized_users": total["personalized_users"], "shards": shards, "model": ref}


def previous_meta(store: Store, dt: str) -> dict[str, Any] | None:
    """The commit meta of the newest table published before ``dt`` (None before the first)."""
    earlier = [d for d in store.committed_dates(layout.RECOMMENDATIONS) if d < dt]
    return store.manifest(layout.partition(layout.RECOMMENDATIONS, earlier[-1]))["meta"] if earlier else None


def _inputs(features: Features, params: RunParams, choice: dict[str, Any]) -> dict[str, Any]:
    """What a shard's rows depend on; the commit only joins shards staged for the same."""
    return {"model": choice["publish"], "repeat_slots": choice.get("repeat_slots", 0), "top_k": params.top_k,
            "exclude_purchased": params.exclude_purchased, "event_weights": params.event_weights,
            "diversity": params.diversity,
            "features_run": features.run_id, "history": "through_day"}


REASON_HISTORY = 10  # a user's latest items a reason item is chosen among
TRENDING_LIFT = 2.0  # trending: events on D ≥ this × the item's daily mean over the last 7 days …
TRENDING_MIN_EVENTS = 3  # … and at least this many events on D


def serving_model(store: Store, ref: registry.Ref, dt: str, history: TrainingData | None) -> Recommender:
    """The model ``ref`` names, scoring from ``history`` (interactions up to now, see
    ``Features.history``) without retraining, or as trained when None. Models that fold users in
    (mf) refresh those active since the start of the date it was trained for (its version's)."""
    model = registry.load(store, ref, dt)
    if history is None:
        return model
    try:
        since = int(day_bounds(ref["version"][:10])[0].timestamp() * 1_000_000)
    except ValueError:  # not a dated version: fold every user in
        since = None
    return model.with_history(history, since)


def recommend(features: Features, params: RunParams, choice: dict[str, Any], users: pa.Table,
              history: TrainingData | None = None, fresh: bool = True) -> tuple[pa.Table, dict[str, int]]:
    """The published rows for ``users`` (user_idx, user_id, has_history), and their ``checks.measure``.

    history: the interactions to score and explain from (default ``features.history``: through
    the end of D); fresh=False scores from the histories saved with the model instead (users
    without history before D fall back), as before fresh history (benchmarks compare the two).
    Strategies: ``personalized`` (the model knows the user), ``fallback`` (popularity),
    ``repeat`` (the first ``repeat_slots`` items: what the user touched lately, through the
    end of D, and did not buy; with repeat slots the model's items are ones the user has not
    touched: discovery). Reasons: see the module docstring.
    """
    store, dt, ref, slots, k = features.store, features.dt, choice["publish"], choice.get("repeat_slots", 0), params.top_k
    items = features.items()
    blocked = ~items["available"].to_numpy(zero_copy_only=False)
    exclude = features.exclusions(before_day=False) if params.exclude_purchased else None
    user_idx = users["user_idx"].to_numpy()
    history = features.history(params.event_weights) if history is None else history
    model = serving_model(store, ref, dt, history if fresh else None)
    personal = model.knows(user_idx)
    if not fresh:
        personal &= users["has_history"].to_numpy(zero_copy_only=False)
    ordered = np.sort(user_idx)
    reasons = scoring.Reasons(ordered, last_items(history, ordered, features.n_items, REASON_HISTORY),
                              model.item_vectors())
    fallback_ref = registry.popularity_ref(dt)
    # beside repeat slots, the model's slots are for discovery: items the user has not touched
    excluded = scoring.union_pairs(exclude, (history.users, history.items)) if slots else exclude
    ranked = scoring.top_k_with_fallback(model, registry.load(store, fallback_ref, dt), user_idx, features.n_items,
                                         reranking.depth(k + slots, params.diversity), excluded, blocked, personal,
                                         reasons)
    ranked = reranking.rerank(ranked, features.table("items", ["category"])["category"], k + slots, params.diversity)
    labelled = [r.append_column("strategy", pa.array([s] * r.num_rows, pa.string()))
                .append_column("ref", pa.array([i] * r.num_rows, pa.int8()))
                for s, i, r in zip(("personalized", "fallback"), (0, 1), ranked)]
    primary = pa.concat_tables(labelled).sort_by([("user_idx", "ascending"), ("rank", "ascending")])
    recent = registry.recent(store, dt, before_day=False, event_weights=params.event_weights)
    repeats = scoring.top_k(recent, user_idx, features.n_items, k if slots else 0, exclude, blocked)  # k: fillers
    recs = scoring.blend(primary.select(["user_idx", "item_idx", "rank", "score"]), repeats, slots, k)
    # each row's strategy, model and reason item: the primary row it came from, or the recent items
    origin = pc.index_in(pa.array(recs["user_idx"].to_numpy().astype("int64") << 32
                                  | recs["item_idx"].to_numpy().astype("int64")),
                         value_set=pa.array(primary["user_idx"].to_numpy().astype("int64") << 32
                                            | primary["item_idx"].to_numpy().astype("int64")))
    repeat = recs["repeat"].to_numpy(zero_copy_only=False)
    strategy = np.where(repeat, "repeat", pc.take(primary["strategy"], origin).to_numpy(zero_copy_only=False))
    which = np.where(repeat, 2, pc.fill_null(pc.take(primary["ref"], origin), 0).to_numpy())
    names = np.array([ref["name"], fallback_ref["name"], "recent"])[which]
    versions = np.array([ref["version"], fallback_ref["version"], dt])[which]
    item_idx = recs["item_idx"].to_numpy()
    because = np.where(repeat, item_idx, pc.fill_null(pc.take(primary["reason_idx"], origin), -1).to_numpy())
    reason, because = _reasons(item_idx, because, strategy == "personalized", model.trained_items(),
                               features.item_events(1), features.item_events(7))
    pos = pc.index_in(recs["user_idx"], value_set=users["user_idx"])
    as_of = day_bounds(dt)[1]  # valid from the end of day D; fixed, so a re-run writes identical bytes
    table = pa.table({
        "user_id": pc.take(users["user_id"], pos),
        "item_id": pc.take(items["item_id"], recs["item_idx"]),
        "rank": recs["rank"],
        "score": recs["score"],
        "model_name": pa.array(names, pa.string()),
        "model_version": pa.array(versions, pa.string()),
        "strategy": pa.array(strategy, pa.string()),
        "reason": pa.array(reason, pa.string()),
        "reason_item_id": pc.take(items["item_id"], pa.array(because, pa.int32(), mask=because < 0)),
        "generated_at": pa.array([as_of] * recs.num_rows, pa.timestamp("s", tz="UTC")),
    })
    measured = checks.measure(recs["user_idx"].to_numpy(), item_idx, user_idx, int(personal.sum()),
                              ~blocked, exclude, k)
    return table, measured


def _reasons(items: np.ndarray, because: np.ndarray, personalized: np.ndarray, trained: int | None,
             day: np.ndarray, week: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``reason`` and reason item (−1: none), from its item, the reason item its
    scoring batch found (``scoring.Reasons``; the item itself for repeats) and the item counts
    of events on D (``day``) and over the 7 days up to D (``week``)."""
    new = personalized & (items >= trained) if trained is not None else np.zeros(len(items), bool)
    because = np.where(new, -1, because)
    hot = (day >= TRENDING_LIFT * week / 7) & (day >= TRENDING_MIN_EVENTS)
    reason = np.select([because == items, new, because >= 0, hot[items]],
                       ["recently_viewed", "new_item_content", "history_similar", "trending"], "popular")
    return reason, because


def check(store: Store, dt: str | None = None) -> dict[str, Any]:
    """What a consumer checks before using a table: columns, ranks 1..n per user, no repeats.

    Raises :class:`DataError` naming the first problem; returns a short summary otherwise.
    """
    dt = dt or store.get_json(layout.LATEST)["dt"]
    table = read(store, dt)
    where = f"s3://{store.bucket}/{layout.partition(layout.RECOMMENDATIONS, dt)}"
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{where} lacks columns {missing}.")
    if table.num_rows == 0:
        raise DataError(f"{where} is empty.")
    per_user = table.group_by("user_id").aggregate([("rank", "count"), ("rank", "max"), ("item_id", "count_distinct")])
    if not pc.all(pc.equal(per_user["rank_count"], per_user["rank_max"])).as_py():
        raise DataError(f"{where}: some users' ranks are not 1..n without gaps.")
    if not pc.all(pc.equal(per_user["rank_count"], per_user["item_id_count_distinct"])).as_py():
        raise DataError(f"{where}: some users get the same item twice.")
    strategies = set(pc.unique(table["strategy"]).to_pylist())
    if not strategies <= {"personalized", "fallback", "repeat"}:
        raise DataError(f"{where}: unknown strategies {sorted(strategies)}.")
    reasons = set(pc.unique(table["reason"]).to_pylist())
    if not reasons <= set(REASONS):
        raise DataError(f"{where}: unknown reasons {sorted(map(str, reasons))} (known: {', '.join(REASONS)}).")
    cited = pc.is_valid(table["reason_item_id"])
    if not pc.all(pc.equal(cited, pc.is_in(table["reason"], pa.array(HISTORY_REASONS)))).as_py():
        raise DataError(f"{where}: reason_item_id must be set exactly on the rows whose reason is one of "
                        f"{', '.join(HISTORY_REASONS)}.")
    return {"dt": dt, "rows": table.num_rows, "users": per_user.num_rows,
            "max_rank": pc.max(per_user["rank_max"]).as_py(), "strategies": sorted(strategies),
            "reasons": sorted(reasons)}
