"""Behaviour check across a refactoring: the same seeded runs on two source trees commit the same bytes.

    python benchmarks/identity.py --before 7458085 --out benchmarks/results/identity.json

Checks out ``--before`` (a git revision) and ``--after`` (default: this working tree) side
by side, starts one SeaweedFS, and runs the same ``recpipe`` CLI commands with each tree's
library against its own bucket: a seeded shop, daily runs of mf over several dates (training,
the gate, promotions), one run each of sasrec, two_tower and popularity, and a republish.
Then every committed file is compared by its logical name (partition + file name; the
run-id in the stored key and the manifests, which hold run ids and commit times, are
ignored), and for model artifacts the Keras weights (``model.weights.h5`` inside
``model.keras``) instead of the zip, whose entries carry save times. JSON: each side's
file count, the files that differ, and the ones present on one side only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _stack import machine, report  # noqa: E402
from devstack import seaweedfs  # noqa: E402
from recpipe.io.partitions import Store  # noqa: E402

SEED = ["seed", "--days", "6", "--users", "300", "--items", "120", "--seed", "3"]
#: (command, date index into the seeded dates, extra flags), run in order on both trees
RUNS = [("run", 2, ["--model", "mf"]), ("run", 3, ["--model", "mf"]), ("run", 4, ["--model", "mf"]),
        ("run", 5, ["--model", "mf", "--min-lift-over-popularity", "9"]),  # rejected: the champion publishes
        ("run", 5, ["--model", "sasrec"]), ("run", 5, ["--model", "two_tower"]),
        ("run", 5, ["--model", "popularity"]), ("run", 3, ["--model", "mf", "--mode", "republish"])]
COMMON = ["--epochs", "2", "--top-k", "5", "--publish-shards", "2"]


def recpipe(tree: Path, env: dict[str, str], *args: str) -> dict:
    """``recpipe ARGS`` with the library of ``tree`` (first on sys.path); its JSON output."""
    code = (f"import sys; sys.path.insert(0, {str(tree / 'include')!r}); import recpipe.cli; "
            f"assert recpipe.cli.__file__.startswith({str(tree)!r}), recpipe.cli.__file__; "
            "sys.exit(recpipe.cli.main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{tree}: recpipe {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def fingerprint(store: Store) -> dict[str, str]:
    """sha256 of every committed file by logical name (Keras models: their weights file)."""
    out = {}
    for key in store.list_keys(""):
        if not key.endswith("/_manifest.json") or "/_shards/" in key:
            continue
        prefix = key[: -len("/_manifest.json")]
        for name, entry in store.manifest(prefix)["files"].items():
            if name.endswith(".keras"):
                with zipfile.ZipFile(io.BytesIO(store.read_file(prefix, name))) as z:
                    out[f"{prefix}/{name}!model.weights.h5"] = hashlib.sha256(z.read("model.weights.h5")).hexdigest()
            elif name != "metadata.json":  # holds the training time and library versions
                out[f"{prefix}/{name}"] = entry["sha256"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="git revision of the reference tree")
    p.add_argument("--after", default=str(ROOT), help="source tree to compare (default: this one)")
    p.add_argument("--out", help="write the JSON here as well")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recpipe-identity-"))
    before = tmp / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                   check=True, capture_output=True)
    started = time.monotonic()
    try:
        with seaweedfs.Server(tmp / "s3") as server:
            prints = {}
            for side, tree in (("before", before), ("after", Path(args.after))):
                cfg = server.store_config(bucket=side)
                env = {**os.environ, "AWS_ACCESS_KEY_ID": cfg.access_key, "AWS_SECRET_ACCESS_KEY": cfg.secret_key,
                       "RECPIPE_S3_ENDPOINT": cfg.endpoint, "RECPIPE_BUCKET": side}
                Store(cfg).ensure_bucket()
                first = date.fromisoformat(recpipe(tree, env, *SEED)["dates"][0])
                days = [(first + timedelta(days=i)).isoformat() for i in range(6)]
                for dt in days[:2]:
                    recpipe(tree, env, "validate", "--date", dt)
                for command, day, flags in RUNS:
                    recpipe(tree, env, command, "--date", days[day], *COMMON, *flags)
                prints[side] = fingerprint(Store(cfg))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    a, b = prints["before"], prints["after"]
    result = {
        "benchmark": "identity", "machine": machine(), "before": args.before, "after": args.after,
        "runs": [" ".join(["recpipe", c, f"day{d}", *COMMON, *f]) for c, d, f in RUNS],
        "files": {"before": len(a), "after": len(b)},
        "differ": sorted(k for k in a.keys() & b.keys() if a[k] != b[k]),
        "only_before": sorted(a.keys() - b.keys()), "only_after": sorted(b.keys() - a.keys()),
        "seconds": round(time.monotonic() - started, 1),
    }
    result["identical"] = not (result["differ"] or result["only_before"] or result["only_after"])
    report(result, args.out)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
