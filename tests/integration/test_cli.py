"""The ``recpipe`` console script, run as a user runs it, against the real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recpipe.stages import publish

RECPIPE = str(Path(sys.executable).with_name("recpipe"))


def _cli(store, *args: str) -> subprocess.CompletedProcess:
    cfg = store.config
    env = {**os.environ, "RECPIPE_S3_ENDPOINT": cfg.endpoint, "RECPIPE_BUCKET": cfg.bucket,
           "AWS_ACCESS_KEY_ID": cfg.access_key, "AWS_SECRET_ACCESS_KEY": cfg.secret_key}
    return subprocess.run([RECPIPE, *args], env=env, capture_output=True, text=True, timeout=600)


def test_seed_then_run_publishes_top_k_for_every_user_with_history(store):
    seeded = _cli(store, "seed", "--users", "200", "--items", "80", "--days", "4", "--start", "2024-03-01")
    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout)["dates"] == ["2024-03-01", "2024-03-04"]
    for dt in ("2024-03-01", "2024-03-02", "2024-03-03"):
        assert _cli(store, "validate", "--date", dt).returncode == 0

    ran = _cli(store, "run", "--date", "2024-03-04", "--top-k", "4", "--epochs", "2")
    assert ran.returncode == 0, ran.stderr
    table = publish.read(store, "2024-03-04").to_pandas()
    active = {u for dt in ("2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04")
              for u in store.read_table(f"clean/events/dt={dt}", "events")["user_id"].to_pylist()}
    assert set(table.user_id) == active  # every user active in the window up to the date gets a list
    assert (table.groupby("user_id").size() == 4).all()
    for stage in ("validate", "features", "train", "evaluate", "publish"):  # stage progress is logged
        assert f"recpipe: {stage} 2024-03-04: start" in ran.stderr and f"recpipe: {stage} 2024-03-04: done in" in ran.stderr
    assert "epoch 1/2" in ran.stderr


def test_a_missing_partition_exits_2_with_a_reason(store):
    result = _cli(store, "validate", "--date", "2031-05-05")
    assert result.returncode == 2
    assert "2031-05-05" in result.stderr and "raw/events" in result.stderr
    assert "Traceback" not in result.stderr


def test_metrics_compares_any_two_tables(tmp_path):
    # u1: relevant {a, c}; list a, b, c → hits at ranks 1 and 3.
    # u2: relevant {z};    list x, y   → no hit.
    recs = pa.table({"user_id": ["u1"] * 3 + ["u2"] * 2, "item_id": ["a", "b", "c", "x", "y"],
                     "rank": [1, 2, 3, 1, 2]})
    truth = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "c", "z"]})
    pq.write_table(recs, tmp_path / "recs.parquet")
    pq.write_table(truth, tmp_path / "truth.parquet")
    out = subprocess.run([RECPIPE, "metrics", "--recs", str(tmp_path / "recs.parquet"),
                          "--truth", str(tmp_path / "truth.parquet"), "--k", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert abs(m["precision@3"] - (2 / 3 + 0) / 2) < 1e-9
    assert abs(m["recall@3"] - (1.0 + 0) / 2) < 1e-9
    assert abs(m["hit_rate@3"] - 0.5) < 1e-9
    assert abs(m["mrr@3"] - 0.5) < 1e-9


def test_movielens_100k_imports_and_passes_the_gate(store):
    from tests.conftest import SHARED_DATA

    ml100k = SHARED_DATA / "ml-100k"
    result = _cli(store, "import", "movielens", str(ml100k), "--validate")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["days"] == 213 and out["dates"] == ["1997-09-20", "1998-04-22"]
    assert out["rows"] == out["clean_rows"] == 100_000  # every rating passes, nothing quarantined
    assert len(store.committed_dates("clean/events")) == 213
