"""The intraday refresh: today's table re-scored for the users of each new drop, without training.

A producer may deliver day D in drops (``raw/events/dt=D/part-<n>.*`` + ``_READY-<n>``,
see ``recpipe.io.landing``); the validate stage leaves each drop's clean rows in
``clean/drops/dt=D/part-<n>``. :func:`refresh` applies one drop:

- **base**: the table ``recommendations/dt=D`` if a refresh already committed it, else the
  newest table published before D (normally D − 1's: the daily run of D has not happened
  yet). Once the daily run has published D, the day is closed and a refresh does nothing:
  the daily table is the source of truth.
- **serving model**: the model (and repeat slots, top_k) that published the base table.
  No training.
- **history**: the features of the base table's date F, with the events of D's drops applied
  so far added to the users' ``sequences``, ``purchased`` and ``users`` tables (new users get
  indices after F's); every scoring path of publish (``table.recommend``: the model, the
  popularity fallback, the repeat slots, the purchase exclusions) reads them so. Days between
  F and D that are not published yet are not in this history: their daily run brings them.
- **rows**: only the users with an event in the drop are re-scored; every other user keeps
  their rows byte for byte.
- **commit**: the checks of publish (``checks.problems``, on the table's measures with the
  re-scored users' old contribution replaced by the new), then one manifest commit of
  ``recommendations/dt=D`` conditional on the base it read (a concurrent daily commit wins),
  and ``recommendations/_latest`` moves to D (never backwards). The drops applied are in the
  commit's meta (``refresh.drops``): re-running a drop already applied changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import contracts
from recpipe.artifacts.features import Features
from recpipe.artifacts.recommendations import read
from recpipe.config import RunParams
from recpipe.errors import PartitionNotFound, PublishRefused
from recpipe.io import landing, layout, pointers
from recpipe.io.partitions import Store, table_to_parquet
from recpipe.stages.publish import checks
from recpipe.stages.publish.table import previous_meta, recommend

log = logging.getLogger(__name__)


def base(store: Store, dt: str) -> dict[str, Any] | None:
    """The manifest of the table a refresh of ``dt`` starts from: ``dt``'s own, else the newest before it."""
    dates = [d for d in store.committed_dates(layout.RECOMMENDATIONS) if d <= dt]
    return store.manifest(layout.partition(layout.RECOMMENDATIONS, dates[-1])) if dates else None


def pending_drops(store: Store, dt: str) -> list[int]:
    """The drops of ``dt`` with their marker that today's table has not applied yet, ascending
    (none once the daily run has published ``dt``)."""
    ready = landing.ready_drops(store, "events", dt)
    manifest = base(store, dt) if ready else None
    if manifest is None or manifest["meta"]["dt"] != dt:
        return ready
    state = manifest["meta"].get("refresh")
    return [] if state is None else [n for n in ready if n not in state["drops"]]


def refresh(store: Store, dt: str, params: RunParams, n: int) -> dict[str, Any]:
    """Apply drop ``n`` of ``dt`` (its clean rows committed by the validate stage) to today's table."""
    manifest = base(store, dt)
    if manifest is None:
        raise PartitionNotFound(
            f"no table was published on or before {dt}: a refresh re-scores the day's drops on top of a published "
            "table. Run the daily pipeline for an earlier day first (e.g. `recpipe run --date <D-1>`).")
    meta = manifest["meta"]
    own = meta["dt"] == dt
    state = meta.get("refresh") if own else {"from": meta["dt"], "features_dt": meta["dt"], "drops": []}
    summary = {"dt": dt, "drop": n, "prefix": layout.partition(layout.RECOMMENDATIONS, dt), "model": meta["model"]}
    if state is None:
        log.info("drop %d of %s: the daily table of %s is published, which has every drop; nothing to do", n, dt, dt)
        return {**summary, "status": "day closed"}
    if n in state["drops"]:
        log.info("drop %d of %s was applied already; nothing to do", n, dt)
        return {**summary, "status": "applied already"}
    drops = sorted([*state["drops"], n])
    before, after = _events(store, dt, state["drops"]), _events(store, dt, drops)
    drop_users = pc.unique(store.read_table(layout.clean_drop(dt, n), "events", columns=["user_id"])["user_id"])
    choice = {"publish": meta["model"], "repeat_slots": meta.get("repeat_slots", 0)}
    params = dataclasses.replace(params, top_k=meta["top_k"])
    fdt = state["features_dt"]
    table = read(store, meta["dt"])

    view, users, new_users = _view(store, fdt, after)
    rescored = users.filter(pc.is_in(users["user_id"], value_set=drop_users))
    if rescored.num_rows:
        rows, measured = recommend(Features(view, fdt), params, choice, rescored)
    else:  # a drop whose every row was quarantined: the table stays, the drop is recorded as applied
        rows, measured = table.slice(0, 0), {**_zero(), "distinct_items": 0, "available_items": meta["available_items"]}
    if rows.num_rows and "generated_at" in rows.column_names:  # valid from the newest event it reflects
        newest = pc.max(after["event_ts"]).as_py().replace(microsecond=0)
        rows = rows.set_column(rows.schema.get_field_index("generated_at"), rows.schema.field("generated_at"),
                               pa.array([newest] * rows.num_rows, rows.schema.field("generated_at").type))
    # the same users' contribution to the base table's measures, scored as the base table scored them
    view_before, users_before, _ = _view(store, fdt, before)
    again = users_before.filter(pc.is_in(users_before["user_id"], value_set=rescored["user_id"]))
    old = recommend(Features(view_before, fdt), params, choice, again)[1] if again.num_rows else _zero()
    total = {k: meta[k] - old[k] + measured[k] for k in checks.ADDITIVE}
    total["distinct_items"] = max(meta.get("distinct_items", 0), measured["distinct_items"])
    total["available_items"] = measured["available_items"]
    previous = previous_meta(store, dt)
    refused = checks.problems(total, previous, params)
    out = summary["prefix"]
    if refused:
        raise PublishRefused(
            f"drop {n} of {dt}: the refreshed s3://{store.bucket}/{out} was NOT committed: {' '.join(refused)} "
            f"The table of {meta['dt']} stays and {layout.LATEST} did not move. Fix the cause and re-run "
            f"`recpipe refresh --date {dt}`.")
    keep = pc.invert(pc.is_in(table["user_id"], value_set=rescored["user_id"]))
    merged = pa.concat_tables([table.filter(keep), rows], promote_options="permissive")
    state = {**state, "drops": drops, "rescored_users": rescored.num_rows, "new_users": new_users,
             "refreshed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    commit_meta = {"dt": dt, "model": meta["model"], "repeat_slots": choice["repeat_slots"], "top_k": params.top_k,
                   "shards": 1, **total, "refresh": state}
    # conditional on the base read: a daily commit of dt in between wins (the retry sees the day closed)
    store.write_files(out, {"part-000.parquet": table_to_parquet(merged)}, commit_meta,
                      replaces=manifest["run_id"] if own else None)
    pointers.advance(store, layout.LATEST, {"dt": dt, "prefix": out})
    log.info("refreshed s3://%s/%s with drop %d: %d users re-scored (%d new), %d rows in all, from the table of %s",
             store.bucket, out, n, rescored.num_rows, new_users, merged.num_rows, state["from"])
    return {**summary, "status": "applied", "drops": drops, "rows": merged.num_rows, "users": total["users"],
            "rescored_users": rescored.num_rows, "new_users": new_users, "base": state["from"], "features_dt": fdt}


def _zero() -> dict[str, int]:
    return {k: 0 for k in checks.ADDITIVE}


def _events(store: Store, dt: str, drops: list[int]) -> pa.Table:
    """The clean rows of ``drops`` of ``dt``, in drop order."""
    parts = [store.read_table(layout.clean_drop(dt, n), "events") for n in drops]
    return pa.concat_tables(parts) if parts else contracts.EVENTS.empty_table()


class _WithDrops(Store):
    """The store as publish reads it, except that ``features/dt=F``'s ``users``, ``sequences``
    and ``purchased`` tables (and ``n_users``) carry the day's drops. Writes go to the store."""

    def __init__(self, store: Store, prefix: str, tables: dict[str, pa.Table], n_users: int):
        super().__init__(store.config)
        self.__dict__["s3"] = store.s3  # the same client
        self._prefix, self._tables, self._n_users = prefix, tables, n_users

    def read_table(self, prefix: str, name: str, columns: list[str] | None = None) -> pa.Table:
        if prefix == self._prefix and name in self._tables:
            table = self._tables[name]
            return table.select(columns) if columns else table
        return super().read_table(prefix, name, columns)

    def manifest(self, prefix: str) -> dict[str, Any] | None:
        manifest = super().manifest(prefix)
        if prefix == self._prefix and manifest is not None:
            manifest = {**manifest, "meta": {**manifest["meta"], "n_users": self._n_users}}
        return manifest


def _view(store: Store, fdt: str, events: pa.Table) -> tuple[Store, pa.Table, int]:
    """(the store with ``events`` in F's features, its users (user_idx, user_id, has_history), #new users).

    Users first seen in ``events`` get the indices after F's ``n_users`` (sorted by id) and
    ``has_history`` false, as the daily run treats a user first seen on D; users of F keep
    their index and have history before D. Events about items F does not know are not used.
    """
    features = Features(store, fdt)
    users = features.table("users")
    if events.num_rows == 0:
        return store, users.select(["user_idx", "user_id", "has_history"]), 0
    n_users, seq_len = features.meta["n_users"], features.meta.get("sequence_length", 50)
    ids = pc.unique(events["user_id"].combine_chunks())
    new_ids = ids.filter(pc.is_null(pc.index_in(ids, value_set=users["user_id"])))
    new_ids = pc.take(new_ids, pc.array_sort_indices(new_ids))
    fresh = {f.name: pa.nulls(len(new_ids), f.type) for f in users.schema}
    fresh.update(user_idx=pa.array(np.arange(n_users, n_users + len(new_ids)), users.schema.field("user_idx").type),
                 user_id=new_ids.cast(users.schema.field("user_id").type),
                 has_history=pa.array(np.zeros(len(new_ids), bool)))
    touched = pc.is_in(users["user_id"], value_set=ids)
    users = users.set_column(users.schema.get_field_index("has_history"), "has_history",
                             pc.or_(users["has_history"], touched))
    users = pa.concat_tables([users, pa.table(fresh, schema=users.schema)])
    u = pc.take(users["user_idx"], pc.index_in(events["user_id"], value_set=users["user_id"]))
    i = pc.index_in(events["item_id"], value_set=features.items()["item_id"])
    usable = pc.is_valid(i)
    ev = {"user_idx": u.filter(usable).to_numpy().astype(np.int64), "item_idx": i.filter(usable).to_numpy(),
          "type": pc.index_in(events["event_type"].filter(usable), value_set=pa.array(contracts.EVENT_TYPES))
          .to_numpy().astype(np.int8),
          "ts": events["event_ts"].filter(usable).cast(pa.int64()).to_numpy()}
    rows = pc.take(users["user_idx"], pc.index_in(ids, value_set=users["user_id"])).to_numpy()
    tables = {"users": users, "sequences": _sequences(features.table("sequences"), rows, ev, seq_len),
              "purchased": _purchased(features.table("purchased"), ev)}
    view = _WithDrops(store, features.prefix, tables, n_users + len(new_ids))
    return view, users.select(["user_idx", "user_id", "has_history"]), len(new_ids)


def _sequences(seq: pa.Table, rows: np.ndarray, ev: dict[str, np.ndarray], length: int) -> pa.Table:
    """``seq`` with the rows of users ``rows`` replaced: their events then ``ev``'s, the last ``length``."""
    mine = pc.is_in(seq["user_idx"], value_set=pa.array(rows, seq.schema.field("user_idx").type))
    old = seq.filter(mine)
    parent = pc.list_parent_indices(old["item_idx"]).to_numpy()
    types = pc.cast(pc.list_flatten(old["event_type"]), pa.string())
    u = np.r_[old["user_idx"].to_numpy()[parent].astype(np.int64), ev["user_idx"]]
    i = np.r_[pc.list_flatten(old["item_idx"]).to_numpy(), ev["item_idx"]].astype(np.int32)
    t = np.r_[pc.index_in(types, value_set=pa.array(contracts.EVENT_TYPES)).to_numpy(), ev["type"]].astype(np.int8)
    ts = np.r_[pc.list_flatten(old["event_ts"]).cast(pa.int64()).to_numpy(), ev["ts"]].astype(np.int64)
    order = np.lexsort((np.arange(len(u)), ts, u))  # per user by time; old before new on ties
    u, i, t, ts = u[order], i[order], t[order], ts[order]
    users = np.sort(rows.astype(np.int64))
    count = np.bincount(np.searchsorted(users, u), minlength=len(users))
    end = np.cumsum(count)
    from_end = np.repeat(end, count) - np.arange(len(u))  # 1 = the user's newest event
    keep = from_end <= length
    offsets = pa.array(np.r_[0, np.cumsum(np.minimum(count, length))].astype(np.int32))
    types_field = seq.schema.field("event_type").type.value_type
    kind = pa.DictionaryArray.from_arrays(pa.array(t[keep], types_field.index_type), pa.array(contracts.EVENT_TYPES))
    fresh = pa.table({
        "user_idx": pa.array(users, seq.schema.field("user_idx").type),
        "item_idx": pa.ListArray.from_arrays(offsets, pa.array(i[keep], pa.int32())),
        "event_type": pa.ListArray.from_arrays(offsets, kind),
        "event_ts": pa.ListArray.from_arrays(offsets, pa.array(ts[keep], pa.int64()).cast(
            seq.schema.field("event_ts").type.value_type)),
    })
    return pa.concat_tables([seq.filter(pc.invert(mine)), fresh.cast(seq.schema)]).sort_by("user_idx")


def _purchased(purchased: pa.Table, ev: dict[str, np.ndarray]) -> pa.Table:
    """``purchased`` with the purchases of ``ev`` (each pair once, its latest time)."""
    buy = ev["type"] == contracts.EVENT_TYPES.index("purchase")
    if not buy.any():
        return purchased
    new = pa.table({"user_idx": pa.array(ev["user_idx"][buy], purchased.schema.field("user_idx").type),
                    "item_idx": pa.array(ev["item_idx"][buy], purchased.schema.field("item_idx").type),
                    "last_ts": pa.array(ev["ts"][buy], pa.int64()).cast(purchased.schema.field("last_ts").type)})
    merged = pa.concat_tables([purchased.select(["user_idx", "item_idx", "last_ts"]), new])
    merged = merged.group_by(["user_idx", "item_idx"], use_threads=False).aggregate([("last_ts", "max")])
    return merged.rename_columns({"last_ts_max": "last_ts"}).select(["user_idx", "item_idx", "last_ts"]) \
        .sort_by([("user_idx", "ascending"), ("item_idx", "ascending")])
