"""The embedded stack keeps to itself: loopback sockets only, logins required, private secrets."""

from __future__ import annotations

import stat
import urllib.error
import urllib.request

import psutil
import pytest

pytestmark = pytest.mark.slow  # `pytest -m "not slow"` skips it in the inner loop


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def test_every_listening_socket_is_on_loopback(live_stack):
    paths, env, dt = live_stack
    listening = []
    for pid_file in paths.pids.glob("*.pid"):
        for proc in _tree(int(pid_file.read_text())):
            try:
                sockets = proc.net_connections(kind="inet")
            except psutil.NoSuchProcess:  # a task's process that ended since the tree was listed: no sockets
                continue
            listening += [(pid_file.stem, c.laddr) for c in sockets if c.status == psutil.CONN_LISTEN]
    assert {name for name, _ in listening} >= {"seaweedfs", "airflow-api-server"}
    assert all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening


@pytest.mark.parametrize("path", ["/api/v2/dags", "/api/v2/dags/recommendations_daily/dagRuns", "/api/v2/connections",
                                  "/recpipe/reports/evaluation/2024-01-10", "/recpipe/runs/recommendations_daily/x"])
def test_the_api_refuses_calls_without_a_login(live_stack, path):
    paths, env, dt = live_stack
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(env["AIRFLOW__API__BASE_URL"] + path, timeout=30)
    assert err.value.code in (401, 403)


def test_s3_refuses_anonymous_requests(live_stack):
    paths, env, dt = live_stack
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{env['RECPIPE_S3_ENDPOINT']}/{env['RECPIPE_BUCKET']}/", timeout=30)
    assert err.value.code == 403


def test_generated_secrets_are_private(live_stack):
    paths, env, dt = live_stack
    for f in (paths.env, paths.local / "airflow-passwords.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert "export AWS_SECRET_ACCESS_KEY=" in paths.env.read_text()
