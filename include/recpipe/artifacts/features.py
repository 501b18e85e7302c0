"""One reader of a committed ``features/dt=D`` partition, for every stage that consumes it.

Training reads its :class:`~recpipe.models.TrainingData`; evaluation and publishing read
the users, the items, the hold-out and the purchases to exclude, all through here.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.contracts import EVENT_TYPES, day_bounds
from recpipe.errors import DataError, PartitionNotFound
from recpipe.io import layout
from recpipe.io.partitions import Store
from recpipe.models import TrainingData
from recpipe.models.base import Events, item_feature_codes


class Features:
    """``features/dt=D`` of one date (its manifest read once)."""

    def __init__(self, store: Store, dt: str):
        self.store, self.dt = store, dt
        self.prefix = layout.partition(layout.FEATURES, dt)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        manifest = self.store.manifest(self.prefix)
        if manifest is None:
            raise PartitionNotFound(f"s3://{self.store.bucket}/{self.prefix} has no committed features: "
                                    f"run `recpipe features --date {self.dt}` first.")
        return manifest

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest["meta"]

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def n_items(self) -> int:
        return self.meta["n_items"]

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return self.store.read_table(self.prefix, name, columns=columns)

    def users(self) -> pa.Table:
        """(user_idx, user_id, has_history): everyone active in the window up to D."""
        return self.table("users", columns=["user_idx", "user_id", "has_history"])

    def items(self) -> pa.Table:
        """(item_id, available), one row per item index."""
        return self.table("items", columns=["item_id", "available"])

    def item_events(self, days: int) -> np.ndarray:
        """(n_items,) events per item over the last ``days`` (1, 7 or 30) days up to D, all types."""
        names = [f"n_{t}_{days}d" for t in EVENT_TYPES]
        table = self.table("item_features", columns=["item_idx", *names])
        out = np.zeros(self.n_items, np.int64)
        out[table["item_idx"].to_numpy()] = sum(table[n].to_numpy(zero_copy_only=False).astype(np.int64) for n in names)
        return out

    def holdout(self) -> pa.Table:
        """(user_idx, item_idx): what users with history before D did on D."""
        return self.table("holdout")

    def exclusions(self, before_day: bool) -> tuple[np.ndarray, np.ndarray]:
        """(user_idx, item_idx) pairs already purchased: before D, or up to and including D."""
        table = self.table("purchased")
        if before_day:
            start, _ = day_bounds(self.dt)
            table = table.filter(pc.less(table["last_ts"], start))
        table = table.sort_by("user_idx")
        return table["user_idx"].to_numpy(), table["item_idx"].to_numpy()

    def events(self, before_day: bool) -> tuple[np.ndarray, ...]:
        """(user_idx, item_idx, type code of EVENT_TYPES, ts µs) of each user's last events
        (``sequences``: the last L events up to the end of D, in time order, repeats included);
        only those before D if ``before_day``."""
        seq = self.table("sequences")
        parent = pc.list_parent_indices(seq["item_idx"]).to_numpy()
        users = seq["user_idx"].to_numpy()[parent]
        items = pc.list_flatten(seq["item_idx"]).to_numpy()
        types = pc.dictionary_encode(pc.cast(pc.list_flatten(seq["event_type"]), pa.string()).combine_chunks())
        code = np.array([EVENT_TYPES.index(t) for t in types.dictionary.to_pylist()] + [0], np.int8)
        types = code[types.indices.to_numpy()]
        ts = pc.list_flatten(seq["event_ts"]).cast(pa.int64()).to_numpy()
        if before_day:
            start = int(day_bounds(self.dt)[0].timestamp() * 1_000_000)
            keep = ts < start
            users, items, types, ts = users[keep], items[keep], types[keep], ts[keep]
        return users, items, types, ts

    def recent_events(self, before_day: bool, event_weights: dict[str, float]) -> tuple[np.ndarray, ...]:
        """(user_idx, item_idx, weight, ts µs, type code): :meth:`events` with each type's weight."""
        users, items, types, ts = self.events(before_day)
        return users, items, np.array([event_weights.get(t, 0.0) for t in EVENT_TYPES])[types], ts, types

    def history(self, event_weights: dict[str, float]) -> TrainingData:
        """Every user's interactions through the end of D, as models score from them at publish:
        the (user, item) pairs before D (``interactions``) joined with D's own events (the
        ``sequences``' last L of them), one row per pair: weight summed (D's events weighted by
        ``event_weights``), ``last_ts`` the latest touch. Users first seen on D are included.
        ``popularity`` is through the end of D too: the decayed weight before D plus D's events'
        (D's own events weigh fully, as in ``features.window``)."""
        meta = self.meta
        inter = self.table("interactions", columns=["user_idx", "item_idx", "weight", "last_ts"])
        users, items, weights, ts, types = self.recent_events(False, event_weights)
        today = ts >= int(day_bounds(self.dt)[0].timestamp() * 1_000_000)
        u = np.concatenate([inter["user_idx"].to_numpy(), users[today]]).astype(np.int64)
        i = np.concatenate([inter["item_idx"].to_numpy(), items[today]]).astype(np.int64)
        w = np.concatenate([inter["weight"].to_numpy(), weights[today]]).astype(np.float64)
        t = np.concatenate([inter["last_ts"].cast("int64").to_numpy(), ts[today]])
        key = u << 32 | i
        order = np.lexsort((t, key))  # by pair, latest touch last
        key, t = key[order], t[order]
        last = np.r_[key[1:] != key[:-1], True] if len(key) else np.zeros(0, bool)
        group = np.cumsum(np.r_[False, last[:-1]]) if len(key) else np.zeros(0, np.int64)
        items_ = self.table("items", columns=["popularity", "category", "brand", "price"])
        return TrainingData(
            users=(key[last] >> 32).astype(np.int32), items=(key[last] & 0xFFFFFFFF).astype(np.int32),
            weights=np.bincount(group, weights=w[order]).astype(np.float32) if len(key) else np.zeros(0, np.float32),
            n_users=meta["n_users"], n_items=meta["n_items"],
            popularity=items_["popularity"].to_numpy() + np.bincount(items[today], weights[today], meta["n_items"]),
            last_ts=t[last], item_features=item_feature_codes(items_), events=Events(users, items, types, ts))

    def training_data(self) -> TrainingData:
        """What a model learns from: the interactions before D, as dense indices."""
        meta = self.meta
        inter = self.table("interactions")
        if inter.num_rows < 2:
            raise DataError(
                f"{self.prefix} has {inter.num_rows} interactions before {self.dt}: nothing to train on. The "
                f"window starting {meta['window']} has no validated days before {self.dt}; validate (or backfill) "
                f"earlier dates first, e.g. `recpipe validate --date {meta['window']}`."
            )
        items = self.table("items", columns=["popularity", "category", "brand", "price"])
        bought = self.table("purchased", columns=["user_idx", "item_idx"])
        key = inter["user_idx"].to_numpy().astype(np.int64) * meta["n_items"] + inter["item_idx"].to_numpy()
        bought_key = bought["user_idx"].to_numpy().astype(np.int64) * meta["n_items"] + bought["item_idx"].to_numpy()
        return TrainingData(
            users=inter["user_idx"].to_numpy(),
            items=inter["item_idx"].to_numpy(),
            weights=inter["weight"].to_numpy(),
            n_users=meta["n_users"],
            n_items=meta["n_items"],
            popularity=items["popularity"].to_numpy(),
            last_ts=inter["last_ts"].cast("int64").to_numpy(),
            item_features=item_feature_codes(items),
            purchased=np.isin(key, bought_key),
            events=Events(*self.events(True)),
        )
