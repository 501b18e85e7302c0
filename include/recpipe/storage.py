"""The object store: S3 objects, and partitions that commit atomically.

A *partition* is a key prefix such as ``features/dt=2024-01-10``. Writers never leave a
half-written partition visible: every file is uploaded under a name carrying a fresh run
id, then ``_manifest.json`` (one PUT, atomic on S3) names the files of that run with their
sizes and SHA-256 checksums. Readers go through the manifest, so they see either the old
commit or the new one, never a mix; after the commit, the files of the replaced commit are
deleted, and files of writers that died before committing once they are an hour old.
Shared state (vocabularies, pointers) is written with conditional PUTs (compare-and-swap).

    store.write_partition("features/dt=2024-01-10", {"items": table})
    table = store.read_table("features/dt=2024-01-10", "items")
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Mapping
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from recpipe.config import StoreConfig
from recpipe.errors import ConcurrentUpdate, CorruptObjectError, PartitionNotFound, StorageError

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
ANY = object()  # write_files(replaces=ANY): commit whatever is committed now
SUCCESS = "_SUCCESS"


def partition(dataset: str, dt: str) -> str:
    """The prefix of one date's partition: ``partition("clean/events", "2024-01-10")``."""
    return f"{dataset}/dt={dt}"


def _versioned(prefix: str, name: str, run_id: str) -> str:
    """``prefix/<stem>-<run id><suffix>``: every run writes fresh keys, never over a committed file."""
    stem, dot, suffix = name.partition(".")
    return f"{prefix}/{stem}-{run_id}{dot}{suffix}"


def table_to_parquet(table: pa.Table) -> bytes:
    """Serialise a table to Parquet bytes (zstd); same table → same bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class Store:
    """One bucket of an S3-compatible store (SeaweedFS, MinIO, AWS S3)."""

    #: files of a partition that no manifest names are deleted once this old (seconds):
    #: leftovers of a writer killed before its commit
    orphan_after_s = 3600.0

    def __init__(self, config: StoreConfig):
        self.config = config
        self.bucket = config.bucket

    @cached_property
    def s3(self):
        """boto3 client, path-style addressing, bounded retries and timeouts."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.config.endpoint or None,
            aws_access_key_id=self.config.access_key,
            aws_secret_access_key=self.config.secret_key,
            region_name=self.config.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=120,
            ),
        )

    @cached_property
    def fs(self):
        """pyarrow's S3 filesystem over the same bucket, for streaming dataset scans."""
        from pyarrow import fs

        url = urlparse(self.config.endpoint) if self.config.endpoint else None
        return fs.S3FileSystem(
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
            region=self.config.region,
            endpoint_override=url.netloc if url else None,
            scheme=url.scheme if url else "https",
            connect_timeout=5,
            request_timeout=120,
        )

    def path(self, key: str) -> str:
        """``bucket/key``, the form pyarrow's filesystem wants."""
        return f"{self.bucket}/{key}"

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- plain objects ------------------------------------------------------------------

    def _call(self, what: str, fn, **kwargs):
        """Run one boto3 call; turn connection failures into a retryable ``StorageError``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"s3://{self.bucket}/{kwargs.get('Key', '')}") from exc
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise ConcurrentUpdate(f"s3://{self.bucket}/{kwargs.get('Key', '')} was changed by another "
                                       "writer meanwhile; retry.") from exc
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise StorageError(
                    f"{what} on s3://{self.bucket} was refused ({code}): check "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the Airflow connection)."
                ) from exc
            raise StorageError(f"{what} on s3://{self.bucket} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"{what} on s3://{self.bucket} failed: {exc}. Is the S3 endpoint "
                f"{self.config.endpoint or 'AWS'} up? (`make up` starts the embedded one.)"
            ) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""
        from botocore.exceptions import ClientError

        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call("create bucket", self.s3.create_bucket)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put", self.s3.put_object, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        return self._call("get", self.s3.get_object, Key=key)["Body"].read()

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_json_versioned(self, key: str) -> tuple[Any, str | None]:
        """(object, ETag) of a JSON object; (None, None) when it does not exist."""
        try:
            resp = self._call("get", self.s3.get_object, Key=key)
        except FileNotFoundError:
            return None, None
        return json.loads(resp["Body"].read()), resp["ETag"]

    def put_json_if(self, key: str, obj: Any, etag: str | None) -> None:
        """PUT ``obj`` only if ``key`` is still version ``etag`` (None: only if absent).

        A conditional write (S3 ``If-Match``/``If-None-Match``): raises
        :class:`ConcurrentUpdate` when another writer got there first.
        """
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        body = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        self._call("put", self.s3.put_object, Key=key, Body=body, **cond)

    def advance_pointer(self, key: str, obj: dict[str, Any], attempts: int = 20) -> bool:
        """Point ``key`` at ``obj`` unless it already names a later ``obj["dt"]``.

        Compare-and-swap, so concurrent runs (a backfill beside the daily run) can never
        move a pointer backwards. Returns whether ``key`` now holds ``obj``.
        """
        for _ in range(attempts):
            current, etag = self.get_json_versioned(key)
            if current is not None and current.get("dt", "") > obj["dt"]:
                return False
            try:
                self.put_json_if(key, obj, etag)
                return True
            except ConcurrentUpdate:
                log.info("s3://%s/%s changed meanwhile; re-reading it", self.bucket, key)
        raise ConcurrentUpdate(f"s3://{self.bucket}/{key} kept changing ({attempts} attempts); retry the task.")

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self.s3.head_object, Key=key)
            return True
        except FileNotFoundError:
            return False

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (all pages), sorted."""
        return sorted(obj["Key"] for obj in self._list(prefix))

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix`` (all pages): boto3's dicts with Key, Size, LastModified."""
        objects: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list", self.s3.list_objects_v2, Prefix=prefix, **token)
            objects += page.get("Contents", [])
            if not page.get("IsTruncated"):
                return objects
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("delete", self.s3.delete_objects, Delete={"Objects": chunk, "Quiet": True})

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
            for key in self.list_keys(f"{dataset}/dt=")
            if key.endswith(suffix) and key.count("/") == dataset.count("/") + 2
        ]
