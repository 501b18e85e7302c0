"""docker-compose.yaml is valid (as `docker-compose config` reads it) and has the stack the README names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "redis", "seaweedfs", "create-bucket", "airflow-init", "airflow-api-server",
            "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
            "airflow-worker-cpu", "airflow-worker-gpu"}


def _config(tmp_path: Path) -> dict:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose not installed: `apt-get install docker-compose` (.ci/run does it)"
    example = (ROOT / ".env.example").read_text()
    filled = re.sub(r"^([A-Z0-9_]+)=$", lambda m: f"{m.group(1)}=test-{m.group(1).lower()}", example, flags=re.M)
    (tmp_path / ".env").write_text(filled)
    shutil.copy(ROOT / "docker-compose.yaml", tmp_path)
    out = subprocess.run([compose, "--project-directory", str(tmp_path), "-f", str(tmp_path / "docker-compose.yaml"),
                          "config"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_config_is_valid_and_complete(tmp_path):
    services = _config(tmp_path)["services"]
    assert SERVICES <= set(services)
    readme = (ROOT / "README.md").read_text()
    for name in ("PostgreSQL", "Celery", "Redis", "GPU worker", "SeaweedFS"):
        assert name in readme
    for name, svc in services.items():
        if name.startswith("airflow-"):
            assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    gpu = services["airflow-worker-gpu"]
    assert gpu["command"][-3:] == ["gpu", "--concurrency", "1"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    # the .env values reach the services: no secret is written in the compose file itself
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == "test-airflow_fernet_key"
    assert "test-aws_secret_access_key" in env["AIRFLOW_CONN_RECPIPE_S3"]


def test_every_required_variable_is_in_env_example():
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (ROOT / "docker-compose.yaml").read_text()))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert required and required <= listed, required - listed
    assert not re.search(r"^[A-Z0-9_]*(PASSWORD|SECRET|KEY)[A-Z0-9_]*=\S", (ROOT / ".env.example").read_text(), re.M)
