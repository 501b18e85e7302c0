"""The object store against a real SeaweedFS: atomic commits, checksums, and access control."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from recpipe.errors import CorruptObjectError, PartitionNotFound, StorageError
from recpipe.io.partitions import Store


def _table(n: int) -> pa.Table:
    return pa.table({"user_id": [f"u{i}" for i in range(n)], "score": [float(i) for i in range(n)]})


def test_a_committed_partition_reads_back(store):
    store.write_partition("features/dt=2024-01-02", {"users": _table(3)})
    assert store.read_table("features/dt=2024-01-02", "users").to_pydict() == _table(3).to_pydict()
    assert store.committed_dates("features") == ["2024-01-02"]


def test_files_without_a_manifest_are_invisible(store):
    # a writer that died before its commit leaves data files but no manifest
    store.put_bytes("features/dt=2024-01-03/users-deadbeef.parquet", b"half written")
    with pytest.raises(PartitionNotFound, match="no committed data"):
        store.read_table("features/dt=2024-01-03", "users")
    assert store.committed_dates("features") == []


def test_a_rewrite_replaces_the_partition_and_leaves_no_old_files(store):
    prefix = "recommendations/dt=2024-01-04"
    store.write_partition(prefix, {"recs": _table(5)})
    store.write_partition(prefix, {"recs": _table(2)})
    assert store.read_table(prefix, "recs").num_rows == 2
    keys = store.list_keys(prefix + "/")
    assert len(keys) == 2  # the manifest and the one current file, nothing left over


def test_a_corrupt_object_is_detected_not_used(store):
    prefix = "models/mf/v1"
    manifest = store.write_partition(prefix, {"weights": _table(4)})
    key = manifest["files"]["weights.parquet"]["key"]
    data = store.get_bytes(key)
    store.put_bytes(key, data[: len(data) // 2])  # truncated behind the writer's back
    with pytest.raises(CorruptObjectError, match="does not match its manifest"):
        store.read_table(prefix, "weights")


def test_anonymous_requests_are_refused(store):
    url = f"{store.config.endpoint}/{store.bucket}/"
    store.put_bytes("secret.txt", b"top secret")
    for target in (url, url + "secret.txt"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(target, timeout=10)
        assert err.value.code == 403


def test_a_wrong_secret_key_is_refused(store):
    store.put_bytes("secret.txt", b"top secret")
    intruder = Store(dataclasses.replace(store.config, secret_key="not-the-key"))
    with pytest.raises(StorageError, match="403|SignatureDoesNotMatch|AccessDenied"):
        intruder.get_bytes("secret.txt")


def test_report_history_reads_only_the_dates_it_returns(store):
    from recpipe import reports
    from recpipe.io import layout

    dates = [f"2024-02-{d:02d}" for d in range(1, 8)]
    for d in dates:
        store.put_json(layout.feedback_report(d), {"dt": d})
    store.put_bytes(layout.feedback_report(dates[0]), b"{not json")  # older than any window asked below
    store.put_json(f"{layout.partition(layout.FEEDBACK_REPORTS, dates[3])}/old/metrics.json", {"dt": "nested"})
    assert reports.feedback_history(store, dates[6], days=3) == [{"dt": d} for d in dates[3:6]]
    assert reports.recent_reports(store, layout.FEEDBACK_REPORTS, "metrics.json", dates[2], 1) == [{"dt": dates[1]}]
