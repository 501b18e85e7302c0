"""Model artifacts in ``models/<name>/<version>/`` and the champion pointer.

An artifact is one committed partition (see ``recpipe.storage``): the model's own files,
the vocabularies it was trained with, and ``metadata.json``. ``models/<name>/champion.json``
names the version that serves; it is replaced by one conditional PUT (compare-and-swap),
so it flips atomically and concurrent promotions cannot move it backwards in time.

Every promotion is also recorded per date (``models/<name>/champions/dt=D.json``), so a
backfill of an old date judges and publishes against the champion *of that date*, and
never moves the current pointer backwards.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recpipe.models import Recommender, model_class
from recpipe.storage import Store, table_to_parquet

log = logging.getLogger(__name__)


def prefix(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def save(store: Store, model: Recommender, version: str, meta: dict[str, Any]) -> dict[str, str]:
    """Commit ``model`` with its metadata and vocabularies; returns its ref."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir())}
    for vocab in ("users", "items"):
        files[f"vocab_{vocab}.parquet"] = table_to_parquet(store.read_table(f"vocab/{vocab}", "ids"))
    ref = {"name": model.name, "version": version, "prefix": prefix(model.name, version)}
    files["metadata.json"] = json.dumps({**meta, **ref}, indent=2, sort_keys=True, default=str).encode()
    store.write_files(ref["prefix"], files, {"model": model.name})
    return ref


def load(store: Store, ref: dict[str, str]) -> Recommender:
    """The model a ref names, every file checked against the artifact's manifest."""
    manifest = store.manifest(ref["prefix"])
    cls = model_class(ref["name"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in manifest["files"]:
            if not name.startswith("vocab_") and name != "metadata.json":
                (Path(tmp) / name).write_bytes(store.read_file(ref["prefix"], name))
        return cls.load(Path(tmp))


def metadata(store: Store, ref: dict[str, str]) -> dict[str, Any]:
    return json.loads(store.read_file(ref["prefix"], "metadata.json"))


def champion(store: Store, name: str, before: str | None = None, on_or_before: str | None = None) -> dict[str, str] | None:
    """The serving version of model ``name``: now, or as it was before / on a date.

    None before the first promotion.
    """
    if before is None and on_or_before is None:
        try:
            pointer = store.get_json(f"models/{name}/champion.json")
        except FileNotFoundError:
            return None
    else:
        history = [k for k in store.list_keys(f"models/{name}/champions/dt=") if k.endswith(".json")]
        dates = sorted(k.rsplit("dt=", 1)[1][:-5] for k in history)
        dates = [d for d in dates if (d < before if before else d <= on_or_before)]
        if not dates:
            return None
        pointer = store.get_json(f"models/{name}/champions/dt={dates[-1]}.json")
    return {k: pointer[k] for k in ("name", "version", "prefix")}


def promote(store: Store, ref: dict[str, str], dt: str, reason: str) -> None:
    """Make ``ref`` the champion of its model name from date ``dt`` on (atomic PUTs).

    The current pointer only moves forward in time: promoting for an older date (a
    backfill) records that date's champion but leaves a newer champion serving.
    """
    pointer = {**ref, "dt": dt, "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "reason": reason}
    store.put_json(f"models/{ref['name']}/champions/dt={dt}.json", pointer)
    if store.advance_pointer(f"models/{ref['name']}/champion.json", pointer):  # compare-and-swap
        log.info("champion of %s is now %s (%s)", ref["name"], ref["version"], reason)
    else:
        log.info("%s recorded as %s's champion for %s; a champion promoted for a later date keeps serving",
                 ref["version"], ref["name"], dt)
