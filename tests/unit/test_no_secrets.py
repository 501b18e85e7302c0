"""A secret scanner (detect-secrets) over every file of the repo: nothing may look like a credential."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNER = str(Path(sys.executable).with_name("detect-secrets"))


def _scan(files: list[str], cwd: Path) -> dict:
    out = subprocess.run([SCANNER, "scan", *files], cwd=cwd, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)["results"]


def test_the_repo_holds_no_secrets():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in files if (ROOT / f).is_file()]
    assert len(files) > 50
    findings = _scan(files, ROOT)
    assert findings == {}, {f: [(x["type"], x["line_number"]) for x in v] for f, v in findings.items()}


def test_the_scanner_would_catch_one(tmp_path):
    # a key of the kind `make up` writes to .local/env, had it been committed (made here, not in the source)
    key = secrets.token_urlsafe(30)
    (tmp_path / "leak.env").write_text(f"export AWS_SECRET_ACCESS_KEY='{key}'\n")
    assert "leak.env" in _scan(["leak.env"], tmp_path)
