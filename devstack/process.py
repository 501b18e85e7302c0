"""Process supervision for the dev stack: the one place that starts, watches and stops services.

Every service runs in its own session (process group) with its output appended to a log
file; ``stop`` signals the whole group, so a service's children go with it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def spawn(cmd: list[str], log_path: Path, *, cwd: Path, env: dict[str, str] | None = None,
          pid_file: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` in a new session, stdout and stderr appended to ``log_path``; record its pid
    in ``pid_file`` when given."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    if pid_file is not None:
        pid_file.write_text(str(proc.pid))
    return proc


def alive(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process still runs, else None."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


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


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 right now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    """A loopback port the kernel considers free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = 6, start: int = 20000, stop: int = 45000) -> int:
    """A base port such that base..base+size-1 and their gRPC twins (+10000) are free."""
    for _ in range(200):
        base = secrets.randbelow((stop - start) // 10) * 10 + start
        ports = [base + i for i in range(size)] + [base + 10000 + i for i in range(size)]
        if all(port_is_free(p) for p in ports):
            return base
    raise RuntimeError("no free block of loopback ports found")
