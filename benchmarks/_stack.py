"""Benchmark helpers: a throwaway SeaweedFS store and the machine's description."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from devstack import seaweedfs
from recpipe.io.partitions import Store


@contextlib.contextmanager
def temporary_store() -> Iterator[Store]:
    """A fresh bucket on a SeaweedFS started for this benchmark on free loopback ports."""
    with seaweedfs.Server(Path(tempfile.mkdtemp(prefix="recpipe-bench-"))) as server:
        store = Store(server.store_config(bucket=f"bench-{uuid.uuid4().hex[:8]}"))
        store.ensure_bucket()
        yield store


def report(result: dict, out: str | Path | None) -> str:
    """Print a benchmark's JSON result and write it to ``out`` too, when given; returns the text."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return text


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
