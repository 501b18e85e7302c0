"""Shared fixtures: a real SeaweedFS S3 server on free loopback ports, one per test session."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The read-only public data sets (../shared/data next to the repo; RECPIPE_SHARED_DATA overrides).
SHARED_DATA = Path(os.environ.get("RECPIPE_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Airflow reads its configuration at import: point it at a private home before any test imports it.
os.environ.update({
    "AIRFLOW_HOME": tempfile.mkdtemp(prefix="recpipe-airflow-"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
})

import pytest

from devstack import seaweedfs
from recpipe.io.partitions import Store


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """(base_port, credentials) of a SeaweedFS started for this test session."""
    with seaweedfs.Server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server.base_port, server.creds


@pytest.fixture(scope="session")
def new_store(s3_server):
    """A factory of fresh, empty buckets on the session's S3 server (for module-scoped fixtures)."""
    base, creds = s3_server

    def make() -> Store:
        s = Store(seaweedfs.store_config(base, creds, bucket=f"t-{uuid.uuid4().hex[:10]}"))
        s.ensure_bucket()
        return s

    return make


@pytest.fixture
def store(new_store) -> Store:
    """A fresh, empty bucket on the session's S3 server."""
    return new_store()


def copy_bucket(src: Store, dst: Store) -> Store:
    """Every object of ``src``'s bucket into ``dst``'s, copied server-side; returns ``dst``.

    A module builds an expensive state once (seeded, validated, trained) in a template
    bucket; each test then starts from its own copy, so tests cannot see each other.
    """
    for key in src.list_keys(""):
        dst.s3.copy_object(Bucket=dst.bucket, Key=key, CopySource={"Bucket": src.bucket, "Key": key})
    return dst
