"""Airflow glue for recpipe: the store from a connection, the trigger form's params, the
``recommendations`` Asset, and the mapping of recpipe's errors onto task failures.

Everything Airflow-specific lives here and in ``dags/``; ``recpipe`` itself never imports
Airflow. Airflow puts ``plugins/`` on ``sys.path``, so DAG files import this package. Only
light modules are imported at module level (DAG files parse in well under a second).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Iterator, Mapping

from airflow.sdk import Asset, Param

from recpipe.config import RunParams
from recpipe.io import layout

CONN_ID = os.environ.get("RECPIPE_CONN_ID", "recpipe_s3")
#: The bucket of the published tables, for the Asset's URI (the connection's ``extra.bucket``
#: must name the same one; the URI only identifies the Asset, nothing reads through it).
BUCKET = os.environ.get("RECPIPE_BUCKET", "recpipe")
#: Emitted by every publish; ``extra`` says which date. Consumers schedule on it.
RECOMMENDATIONS = Asset(name="recommendations", uri=f"s3://{BUCKET}/{layout.RECOMMENDATIONS}/")

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}


def params() -> dict[str, Param]:
    """The trigger form: one ``Param`` per field of ``RunParams``, with its default, type,
    bounds and description taken from the field (so the form and the library agree)."""
    form, defaults = {}, RunParams()
    for f in dataclasses.fields(RunParams):
        meta, default = f.metadata, getattr(defaults, f.name)
        schema: dict[str, Any] = {"type": _JSON_TYPES[type(default)], "description": meta["doc"]}
        if meta["choices"] is not None:
            schema["enum"] = list(meta["choices"])
        for bound in ("minimum", "maximum"):
            if meta[bound] is not None:
                schema[bound] = meta[bound]
        form[f.name] = Param(default, **schema)
    return form


def store():
    """The recpipe Store behind the ``recpipe_s3`` connection (type aws).

    login/password are the keys; ``extra`` holds ``endpoint_url`` (omit for AWS S3),
    ``region_name`` and ``bucket``. The connection usually comes from the environment
    (``AIRFLOW_CONN_RECPIPE_S3``), so no secret sits in the metadata DB or the code.
    """
    from airflow.sdk import BaseHook

    from recpipe.config import StoreConfig
    from recpipe.io.partitions import Store

    conn = BaseHook.get_connection(CONN_ID)
    extra = conn.extra_dejson
    return Store(StoreConfig(
        bucket=extra.get("bucket", "recpipe"),
        access_key=conn.login,
        secret_key=conn.password,
        endpoint=extra.get("endpoint_url", ""),
        region=extra.get("region_name", "us-east-1"),
    ))


def run_params(params: Mapping[str, Any]) -> RunParams:
    """The DAG run's params as recpipe's frozen ``RunParams``."""
    return RunParams.from_mapping(params)


@contextlib.contextmanager
def fail_fast_on_bad_data() -> Iterator[None]:
    """Data and configuration errors fail the task for good; store errors stay retryable."""
    from airflow.sdk.exceptions import AirflowFailException

    from recpipe.errors import ConfigError, DataError

    try:
        yield
    except (DataError, ConfigError) as exc:
        raise AirflowFailException(str(exc)) from exc


def run_stage(name: str, ds: str, params: Mapping[str, Any], **kwargs: Any) -> Any:
    """``recpipe.pipeline.STAGES[name](store, ds, RunParams, **kwargs)`` with data errors failing fast."""
    from recpipe import pipeline

    with fail_fast_on_bad_data():
        return pipeline.STAGES[name](store(), ds, run_params(params), **kwargs)


def flag_rejection(ds: str, params: Mapping[str, Any]) -> str | None:
    """Make a rejected candidate visible: fail the run (no retry) or log a warning.

    Airflow 3 gives tasks no way to write the DAG run's note, so a failed leaf task (after
    the champion's table is committed) is the mark a person sees in the grid and alerts on.
    """
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    why = run_stage("rejection", ds, params)
    if why and params["fail_on_rejection"]:
        raise AirflowFailException(why)
    if why:
        logging.getLogger("recpipe").warning(why)
    return why
