"""Publishing: the top-K table ``recommendations/dt=D/`` for downstream consumers.

Every user active in the window up to D gets K items: from the chosen model when it can
personalise for them (strategy ``personalized``), from popularity otherwise (``fallback``).
Unavailable items are never recommended; past purchases are excluded when
``exclude_purchased``. The partition commits atomically (see ``recpipe.storage``), then
``recommendations/_latest`` names the newest committed date.

Columns: user_id, item_id, rank, score, model_name, model_version, strategy, generated_at
(the end of day D, from when the table is meant to serve).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import gate, scoring
from recpipe.config import RunParams
from recpipe.contracts import day_bounds
from recpipe.errors import DataError
from recpipe.storage import Store, partition

log = logging.getLogger(__name__)

LATEST = "recommendations/_latest"


def publish(store: Store, dt: str, params: RunParams, ref: dict[str, str]) -> dict[str, Any]:
    """Score, assemble and commit ``recommendations/dt=D`` with the model ``ref`` names."""
    prefix = partition("features", dt)
    n_items = store.manifest(prefix)["meta"]["n_items"]
    users = store.read_table(prefix, "users", columns=["user_idx", "user_id", "has_history"])
    items = store.read_table(prefix, "items", columns=["item_id", "available"])
    blocked = ~items["available"].to_numpy(zero_copy_only=False)
    exclude = gate.exclusions(store, dt, before_day=False) if params.exclude_purchased else None
    user_idx = users["user_idx"].to_numpy()
    model = gate.load_model(store, ref, dt)
    personal = users["has_history"].to_numpy(zero_copy_only=False) & model.knows(user_idx)
    fallback_ref = gate.popularity_ref(dt)
    parts = []
    for strategy, chosen, r, who in (
        ("personalized", model, ref, user_idx[personal]),
        ("fallback", gate.load_model(store, fallback_ref, dt), fallback_ref, user_idx[~personal]),
    ):
        recs = scoring.top_k(chosen, who, n_items, params.top_k, exclude, blocked)
        n = recs.num_rows
        parts.append(recs.append_column("model_name", pa.array([r["name"]] * n, pa.string()))
                     .append_column("model_version", pa.array([r["version"]] * n, pa.string()))
                     .append_column("strategy", pa.array([strategy] * n, pa.string())))
        log.info("%s: %d users from %s %s", strategy, len(who), r["name"], r["version"])
    recs = pa.concat_tables(parts).sort_by([("user_idx", "ascending"), ("rank", "ascending")])
    pos = pc.index_in(recs["user_idx"], value_set=users["user_idx"])
    as_of = day_bounds(dt)[1]  # valid from the end of day D; fixed, so a re-run writes identical bytes
    table = pa.table({
        "user_id": pc.take(users["user_id"], pos),
        "item_id": pc.take(items["item_id"], recs["item_idx"]),
        "rank": recs["rank"],
        "score": recs["score"],
        "model_name": recs["model_name"],
        "model_version": recs["model_version"],
        "strategy": recs["strategy"],
        "generated_at": pa.array([as_of] * recs.num_rows, pa.timestamp("s", tz="UTC")),
    })
    out = partition("recommendations", dt)
    store.write_partition(out, {"part": table}, {"dt": dt, "model": ref, "top_k": params.top_k})
    _advance_latest(store, dt)
    summary = {"dt": dt, "prefix": out, "rows": table.num_rows, "users": len(user_idx),
               "personalized_users": int(personal.sum()), "model": ref}
    log.info("published s3://%s/%s: %d rows for %d users (%d personalized)", store.bucket, out,
             table.num_rows, len(user_idx), summary["personalized_users"])
    return summary


def _advance_latest(store: Store, dt: str) -> None:
    """Point ``_latest`` at ``dt`` unless a newer date is already published."""
    try:
        current = store.get_json(LATEST)["dt"]
    except FileNotFoundError:
        current = ""
    if dt >= current:
        store.put_json(LATEST, {"dt": dt, "prefix": partition("recommendations", dt)})


def read(store: Store, dt: str | None = None) -> pa.Table:
    """The committed recommendations of ``dt`` (default: the latest)."""
    dt = dt or store.get_json(LATEST)["dt"]
    return store.read_table(partition("recommendations", dt), "part")


COLUMNS = ("user_id", "item_id", "rank", "score", "model_name", "model_version", "strategy", "generated_at")


def check(store: Store, dt: str | None = None) -> dict[str, Any]:
    """What a consumer checks before using a table: columns, ranks 1..n per user, no repeats.

    Raises :class:`DataError` naming the first problem; returns a short summary otherwise.
    """
    dt = dt or store.get_json(LATEST)["dt"]
    table = read(store, dt)
    where = f"s3://{store.bucket}/{partition('recommendations', dt)}"
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
    if not strategies <= {"personalized", "fallback"}:
        raise DataError(f"{where}: unknown strategies {sorted(strategies)}.")
    return {"dt": dt, "rows": table.num_rows, "users": per_user.num_rows,
            "max_rank": pc.max(per_user["rank_max"]).as_py(), "strategies": sorted(strategies)}
