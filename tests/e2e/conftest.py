"""A whole embedded stack (SeaweedFS + Airflow services) in a temporary folder on free ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack import process, stack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright downloads no browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    """(paths, env, dt): services running, history seeded and validated, ``dt`` left for a DAG run."""
    paths = stack.Paths(ROOT, local=tmp_path_factory.mktemp("stack") / ".local",
                        s3_base=process.free_port_block(), api_port=_free_port())
    try:
        env, dt = stack.start(paths)
        yield paths, env, dt
    finally:
        stack.down(paths)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium missing: `apt-get install chromium` (.ci/run does it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()
