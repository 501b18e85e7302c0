"""Pointers: small JSON objects naming the newest of something, moved by compare-and-swap.

``models/<name>/champion.json`` and ``recommendations/_latest`` each hold a ``dt``; they
only ever move forward in time, even when a backfill of an older date runs beside the
daily run: every move is a conditional PUT (S3 ``If-Match``) against the version read.
"""

from __future__ import annotations

import logging
from typing import Any

from recpipe.errors import ConcurrentUpdate
from recpipe.io.objects import ObjectStore

log = logging.getLogger(__name__)


def advance(store: ObjectStore, key: str, obj: dict[str, Any], attempts: int = 20) -> bool:
    """Point ``key`` at ``obj`` unless it already names a later ``obj["dt"]``.

    Compare-and-swap, so concurrent runs can never move a pointer backwards. Returns
    whether ``key`` now holds ``obj``.
    """
    for _ in range(attempts):
        current, etag = store.get_json_versioned(key)
        if current is not None and current.get("dt", "") > obj["dt"]:
            return False
        try:
            store.put_json_if(key, obj, etag)
            return True
        except ConcurrentUpdate:
            log.info("s3://%s/%s changed meanwhile; re-reading it", store.bucket, key)
    raise ConcurrentUpdate(f"s3://{store.bucket}/{key} kept changing ({attempts} attempts); retry the task.")


def read(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """The pointer's object, or None before anything was pointed at."""
    return store.get_json_versioned(key)[0]
