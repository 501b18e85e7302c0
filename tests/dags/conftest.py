"""DAG-tier fixtures: an initialised Airflow metadata DB and the S3 connection in the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins"))  # Airflow does this for its own processes


@pytest.fixture(scope="session")
def airflow_db():
    """``airflow db migrate`` into the private AIRFLOW_HOME the top conftest chose."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)


@pytest.fixture
def s3_connection(store, monkeypatch):
    """``AIRFLOW_CONN_RECPIPE_S3`` pointing at the test bucket; returns the store."""
    cfg = store.config
    monkeypatch.setenv("AIRFLOW_CONN_RECPIPE_S3", json.dumps({
        "conn_type": "aws", "login": cfg.access_key, "password": cfg.secret_key,
        "extra": {"endpoint_url": cfg.endpoint, "bucket": cfg.bucket, "region_name": cfg.region},
    }))
    return store
