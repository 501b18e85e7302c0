"""Partitions that commit atomically: the manifest protocol (spec: docs/storage.md).

A *partition* is a key prefix such as ``features/dt=2024-01-10``. Writers never leave a
half-written partition visible: every file is uploaded under a name carrying a fresh run
id, then ``_manifest.json`` (one PUT, atomic on S3) names the files of that run with their
sizes and SHA-256 checksums. Readers go through the manifest, so they see either the old
commit or the new one, never a mix; after the commit, the files of the replaced commit are
deleted, and files of writers that died before committing once they are an hour old.
Shared state (vocabularies) is committed with a conditional PUT of the manifest
(``replaces=<run id>``: compare-and-swap).

    store.write_partition("features/dt=2024-01-10", {"items": table})
    table = store.read_table("features/dt=2024-01-10", "items")
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from recpipe.errors import ConcurrentUpdate, CorruptObjectError, PartitionNotFound
from recpipe.io.layout import MANIFEST, dates_prefix
from recpipe.io.objects import ObjectStore

log = logging.getLogger(__name__)

ANY = object()  # write_files(replaces=ANY): commit whatever is committed now

def _versioned(prefix: str, name: str, run_id: str) -> str:
    """``prefix/<stem>-<run id><suffix>``: every run writes fresh keys, never over a committed file."""
    stem, dot, suffix = name.partition(".")
    return f"{prefix}/{stem}-{run_id}{dot}{suffix}"


def table_to_parquet(table: pa.Table) -> bytes:
    """Serialise a table to Parquet bytes (zstd); same table → same bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class Store(ObjectStore):
    """An object store whose partitions commit atomically (see the module's docstring)."""

    #: files of a partition that no manifest names are deleted once this old (seconds):
    #: leftovers of a writer killed before its commit
    orphan_after_s = 3600.0

    # -- committed partitions -----------------------------------------------------------

    def write_files(
        self, prefix: str, files: Mapping[str, bytes], meta: Mapping[str, Any] | None = None,
        replaces: str | None | object = ANY,
    ) -> dict[str, Any]:
        """Upload ``files`` (name → bytes) under ``prefix`` and commit them atomically.

        Names may carry a suffix (``model.keras``); each is stored as
        ``<stem>-<run id><suffix>``. Returns the manifest that was committed.
        ``replaces``: commit only if the committed run is still this run id (None: only if
        nothing is committed), else :class:`ConcurrentUpdate`; default: commit regardless.
        """
        run_id, started = uuid.uuid4().hex[:12], time.monotonic()
        entries = {}
        for name, data in files.items():
            key = _versioned(prefix, name, run_id)
            self.put_bytes(key, data)
            entries[name] = {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return self._commit(prefix, run_id, entries, meta, started, replaces)

    def commit_copies(
        self, prefix: str, sources: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Commit files of other committed partitions under ``prefix``, copied server-side.

        ``sources``: name → that file's manifest entry (key, bytes, sha256). Assembles
        partitions written in pieces (publish shards) without downloading them.
        """
        run_id, started = uuid.uuid4().hex[:12], time.monotonic()
        entries = {}
        for name, src in sources.items():
            key = _versioned(prefix, name, run_id)
            self._call("copy", self.s3.copy_object, Key=key, CopySource={"Bucket": self.bucket, "Key": src["key"]})
            entries[name] = {"key": key, "bytes": src["bytes"], "sha256": src["sha256"]}
        return self._commit(prefix, run_id, entries, meta, started)

    def _commit(self, prefix: str, run_id: str, entries: dict[str, Any], meta: Mapping[str, Any] | None,
                started: float, replaces: str | None | object = ANY) -> dict[str, Any]:
        """Write the manifest naming ``entries`` (the commit point), then drop older runs' files."""
        manifest = {
            "run_id": run_id,
            "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": entries,
            "meta": dict(meta or {}),
        }
        key = f"{prefix}/{MANIFEST}"
        previous, etag = self.get_json_versioned(key)
        if replaces is not ANY and (previous or {}).get("run_id") != replaces:
            self.delete_keys([e["key"] for e in entries.values()])
            raise ConcurrentUpdate(f"s3://{self.bucket}/{prefix} was committed by another run meanwhile; retry.")
        if replaces is ANY:
            self.put_json(key, manifest)  # the commit point
        else:
            self.put_json_if(key, manifest, etag)  # the commit point, unless another writer beat us
        self._drop_superseded(prefix, previous, manifest)
        total = sum(e["bytes"] for e in entries.values())
        log.info("committed s3://%s/%s: %d files, %.1f MiB in %.1fs", self.bucket, prefix,
                 len(entries), total / 2**20, time.monotonic() - started)
        return manifest

    def _drop_superseded(self, prefix: str, previous: dict[str, Any] | None, current: dict[str, Any]) -> None:
        """Delete the files of the manifest we replaced, and orphans older than ``orphan_after_s``.

        Orphans are files of runs that died before their commit (invisible to readers).
        Young unnamed files may belong to a writer still uploading, so they are left alone.
        """
        keep = {e["key"] for e in current["files"].values()} | {f"{prefix}/{MANIFEST}"}
        superseded = {e["key"] for e in (previous or {}).get("files", {}).values()} - keep
        cutoff = datetime.now(timezone.utc).timestamp() - self.orphan_after_s
        orphans = {o["Key"] for o in self._list(prefix + "/")
                   if "/" not in o["Key"][len(prefix) + 1:] and o["Key"] not in keep
                   and o["LastModified"].timestamp() < cutoff}
        self.delete_keys(sorted(superseded | orphans))

    def write_partition(
        self, prefix: str, tables: Mapping[str, pa.Table], meta: Mapping[str, Any] | None = None,
        replaces: str | None | object = ANY,
    ) -> dict[str, Any]:
        """Commit Arrow tables as ``<name>.parquet`` files of one partition (see ``write_files``)."""
        rows = {name: t.num_rows for name, t in tables.items()}
        files = {f"{name}.parquet": table_to_parquet(t) for name, t in tables.items()}
        return self.write_files(prefix, files, {**(meta or {}), "rows": rows}, replaces)

    def manifest(self, prefix: str) -> dict[str, Any] | None:
        """The committed manifest of a partition, or None if it was never committed."""
        try:
            return self.get_json(f"{prefix}/{MANIFEST}")
        except FileNotFoundError:
            return None

    def read_file(self, prefix: str, name: str, attempts: int = 3) -> bytes:
        """One committed file's bytes, checked against the manifest's size and checksum.

        A concurrent re-commit may delete the file our manifest named between the two reads:
        then the new manifest is read and its file fetched instead.
        """
        for attempt in range(attempts):
            manifest = self.manifest(prefix)
            if manifest is None:
                raise PartitionNotFound(
                    f"s3://{self.bucket}/{prefix} has no committed data (no {MANIFEST}): "
                    "run the stage that writes it for that date first."
                )
            entry = manifest["files"].get(name)
            if entry is None:
                raise PartitionNotFound(
                    f"s3://{self.bucket}/{prefix} has no file {name!r}; it has {sorted(manifest['files'])}."
                )
            try:
                data = self.get_bytes(entry["key"])
                break
            except FileNotFoundError:
                if attempt == attempts - 1 or (self.manifest(prefix) or {}).get("run_id") == manifest["run_id"]:
                    raise CorruptObjectError(
                        f"s3://{self.bucket}/{entry['key']} is named by its manifest but missing. "
                        "Re-run the stage that writes it for that date to rebuild it.") from None
                log.info("s3://%s/%s was re-committed while we read it; reading the new commit", self.bucket, prefix)
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CorruptObjectError(
                f"s3://{self.bucket}/{entry['key']} does not match its manifest "
                f"({len(data)} bytes, expected {entry['bytes']}): the object is corrupt. "
                "Re-run the stage that writes it for that date to rebuild it."
            )
        return data

    def read_table(self, prefix: str, name: str, columns: list[str] | None = None) -> pa.Table:
        """A committed table ``<name>.parquet`` of a partition."""
        return pq.read_table(pa.BufferReader(self.read_file(prefix, f"{name}.parquet")), columns=columns)

    def committed_dates(self, dataset: str) -> list[str]:
        """The dates of ``dataset`` that have a committed partition, ascending."""
        suffix = "/" + MANIFEST
        return [
            key[len(dataset) + 4 : -len(suffix)]
            for key in self.list_keys(dates_prefix(dataset))
            if key.endswith(suffix) and key.count("/") == dataset.count("/") + 2
        ]
