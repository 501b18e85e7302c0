"""Model artifacts in ``models/<name>/<version>/`` and the champion pointers.

An artifact is one committed partition (see ``recpipe.io.partitions``): the model's own files,
the vocabularies it was trained with, and ``metadata.json``. ``models/<name>/champion.json``
names the version that serves; it is replaced by one conditional PUT (compare-and-swap),
so it flips atomically and concurrent promotions cannot move it backwards in time.

Every promotion is also recorded per date (``models/<name>/champions/dt=D.json``), so a
backfill of an old date judges and publishes against the champion *of that date*, and
never moves the current pointer backwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from recpipe.artifacts.features import Features
from recpipe.contracts import EVENT_TYPES, day_bounds
from recpipe.io import layout, pointers
from recpipe.io.partitions import Store, table_to_parquet
from recpipe.models import Recommender, model_class
from recpipe.models.popularity import Popularity
from recpipe.models.recent import Recent

log = logging.getLogger(__name__)

Ref = dict[str, str]  # {"name", "version", "prefix"}: names one model artifact


def ref(name: str, version: str) -> Ref:
    return {"name": name, "version": version, "prefix": layout.model(name, version)}


def version(dt: str, params: dict[str, Any]) -> str:
    """Same date and parameters → same version: a re-run replaces its own candidate."""
    digest = hashlib.sha1(json.dumps([dt, params], sort_keys=True).encode()).hexdigest()[:8]
    return f"{dt}-{digest}"


def popularity_ref(dt: str) -> Ref:
    """Popularity is rebuilt from each date's features; its ref names that date."""
    return {"name": "popularity", "version": dt, "prefix": layout.partition(layout.FEATURES, dt)}


def recent(store: Store, dt: str, before_day: bool, event_weights: dict[str, float]) -> Recent:
    """The recent-activity heuristic of ``dt``, rebuilt from its features: each user's last
    events before D (to judge on D's hold-out) or through the end of D (to publish), ranked by
    purchase propensity learned from the last day of them (``Recent.by_propensity``), or by
    engagement (``event_weights``, recency) when that day has too few purchases."""
    features = Features(store, dt)
    popularity = features.table("items", columns=["popularity"])["popularity"].to_numpy()
    users, items, weights, ts, types = features.recent_events(before_day, event_weights)
    start, end = day_bounds(dt)
    until = int((start if before_day else end).timestamp() * 1_000_000)
    learned = Recent.by_propensity(users, items, types, ts, until,
                                   EVENT_TYPES.index("purchase"), len(EVENT_TYPES), features.meta["n_users"], popularity)
    if learned is not None:
        return learned
    return Recent.from_events(users, items, weights, ts, features.meta["n_users"], popularity)


def save(store: Store, model: Recommender, version_: str, meta: dict[str, Any]) -> Ref:
    """Commit ``model`` with its metadata and vocabularies; returns its ref."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
    for vocab in ("users", "items"):
        files[f"vocab_{vocab}.parquet"] = table_to_parquet(store.read_table(layout.vocab(vocab), "ids"))
    out = ref(model.name, version_)
    files["metadata.json"] = json.dumps({**meta, **out}, indent=2, sort_keys=True, default=str).encode()
    store.write_files(out["prefix"], files, {"model": model.name})
    return out


def load(store: Store, ref_: Ref, dt: str | None = None) -> Recommender:
    """The model a ref names, every file checked against the artifact's manifest.

    Popularity is rebuilt from the features of ``dt``, the date being scored (default: the
    date its version starts with), so it always ranks by the popularity before that date.
    """
    if ref_["name"] == "popularity":
        features = layout.partition(layout.FEATURES, dt or ref_["version"][:10])
        items = store.read_table(features, "items", columns=["popularity"])
        return Popularity(items["popularity"].to_numpy().astype(np.float32))
    manifest = store.manifest(ref_["prefix"])
    cls = model_class(ref_["name"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in manifest["files"]:
            if not name.startswith("vocab_") and name != "metadata.json":
                (Path(tmp) / name).write_bytes(store.read_file(ref_["prefix"], name))
        return cls.load(Path(tmp))


def metadata(store: Store, ref_: Ref) -> dict[str, Any]:
    return json.loads(store.read_file(ref_["prefix"], "metadata.json"))


def champion(store: Store, name: str, before: str | None = None, on_or_before: str | None = None) -> Ref | None:
    """The serving version of model ``name``: now, or as it was before / on a date.

    None before the first promotion.
    """
    record = champion_record(store, name, before, on_or_before)
    return None if record is None else {k: record[k] for k in ("name", "version", "prefix")}


def champion_record(store: Store, name: str, before: str | None = None,
                    on_or_before: str | None = None) -> dict[str, Any] | None:
    """The whole promotion record of that champion: its ref, ``dt``, ``reason``, ``repeat_slots``."""
    if before is None and on_or_before is None:
        try:
            return store.get_json(layout.champion_pointer(name))
        except FileNotFoundError:
            return None
    history = [k for k in store.list_keys(layout.champions_prefix(name)) if k.endswith(".json")]
    dates = sorted(layout.date_of(k) for k in history)
    dates = [d for d in dates if (d < before if before else d <= on_or_before)]
    return store.get_json(layout.champion_record(name, dates[-1])) if dates else None


def promote(store: Store, ref: Ref, dt: str, reason: str, repeat_slots: int = 0) -> None:
    """Make ``ref`` the champion of its model name from date ``dt`` on (atomic PUTs).

    The current pointer only moves forward in time: promoting for an older date (a
    backfill) records that date's champion but leaves a newer champion serving.
    ``repeat_slots``: how many of its list's slots the recent items take (the gate chose it).
    """
    pointer = {**ref, "dt": dt, "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "reason": reason, "repeat_slots": repeat_slots}
    store.put_json(layout.champion_record(ref["name"], dt), pointer)
    if pointers.advance(store, layout.champion_pointer(ref["name"]), pointer):  # compare-and-swap
        log.info("champion of %s is now %s (%s)", ref["name"], ref["version"], reason)
    else:
        log.info("%s recorded as %s's champion for %s; a champion promoted for a later date keeps serving",
                 ref["version"], ref["name"], dt)
