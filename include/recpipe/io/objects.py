"""The S3 client of recpipe: plain objects, conditional writes, and errors a person can act on.

Every boto3 call goes through :meth:`ObjectStore._call`, which maps S3's answers onto
recpipe's exceptions: a missing key is ``FileNotFoundError``, a failed condition
``ConcurrentUpdate``, a refused or failed request a retryable ``StorageError`` naming the fix.
Committed partitions (``recpipe.io.partitions``) and pointers (``recpipe.io.pointers``) are
built on it.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from recpipe.config import StoreConfig
from recpipe.errors import ConcurrentUpdate, StorageError


class ObjectStore:
    """One bucket of an S3-compatible store (SeaweedFS, MinIO, AWS S3): plain objects."""

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
                f"{self.config.endpoint or 'AWS'} up and reachable (RECPIPE_S3_ENDPOINT, or the connection's endpoint_url)?"
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
        """Every object under ``prefix``: boto3's dicts with Key, Size, LastModified.

        A listing returns at most 1,000 keys per call; boto3's paginator follows the
        continuation tokens, so a partition or a date range of any size is listed whole.
        """
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return self._call("list", lambda **_: [obj for page in pages for obj in page.get("Contents", [])])

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[start : start + 1000]]
            self._call("delete", self.s3.delete_objects, Delete={"Objects": chunk, "Quiet": True})
