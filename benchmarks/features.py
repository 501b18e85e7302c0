"""The daily feature build on a 30-day window of N synthetic events, against DuckDB.

    python benchmarks/features.py --out benchmarks/results/features.json [--events 1000000,10000000]

For each N: 30 days of N/30 clean events (100k users, 20k Zipf items, a catalog and user
profiles) are committed to a throwaway SeaweedFS as the quality stage would, then, each in
its own process (so that peak RSS is that step's own):

1. ``prepare``: features of day 29 — builds the aggregates of days 1..29 (production state);
2. ``daily``:   features of day 30 — the measured daily run: aggregates day 30 only, derives
   the window tables from the 30 daily aggregates, commits ``features/dt=D``;
3. ``one_off``: features of day 30 with ``rebuild=True`` — recomputes all 30 aggregates;
4. ``duckdb``:  the same user/item/pair window aggregations and sequences, by DuckDB, from the
   30 days of events as local Parquet files (no S3), as the reference.

Needs DuckDB: ``uv pip install -r benchmarks/requirements.txt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _stack import machine, peak_rss_gib, temporary_store  # noqa: E402

from recpipe import contracts  # noqa: E402
from recpipe.io import landing  # noqa: E402
from recpipe.config import RunParams, StoreConfig  # noqa: E402
from recpipe.contracts import day_bounds  # noqa: E402
from recpipe.io.layout import partition  # noqa: E402
from recpipe.io.partitions import Store  # noqa: E402
from recpipe.stages.features import SEQUENCE_LENGTH  # noqa: E402  (the product's L, measured as it runs)

START = date(2024, 3, 1)
DAYS = 30
USERS, ITEMS, CATEGORIES = 100_000, 20_000, 50


def _require_duckdb() -> None:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/features.py needs DuckDB as the reference and it is not installed: "
                 "`.venv/bin/uv pip install --python .venv/bin/python -r benchmarks/requirements.txt`")


# -- data ---------------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> pa.Array:
    return pa.array(np.char.add(prefix, np.arange(n).astype(str)))


def day_events(n: int, dt: str, users: pa.Array, items: pa.Array, seed: int) -> pa.Table:
    """n events of day dt: uniform users, Zipf items, the funnel's four event types."""
    rng = np.random.default_rng(seed)
    start = int(day_bounds(dt)[0].timestamp() * 1e6)
    kinds = np.array(contracts.EVENT_TYPES[:4])[rng.choice(4, n, p=[0.7, 0.2, 0.06, 0.04])]
    ts = np.sort(start + rng.integers(0, 86_400_000_000, n))
    return pa.table({
        "user_id": users.take(pa.array(rng.integers(0, len(users), n))),
        "item_id": items.take(pa.array((rng.zipf(1.3, n) - 1).clip(0, len(items) - 1))),
        "event_type": pa.array(kinds),
        "event_ts": pa.array(ts, pa.int64()).cast(contracts.EVENTS.field("event_ts").type),
        "value": pa.array(np.where(kinds == "purchase", rng.gamma(2, 20, n).round(2), np.nan), from_pandas=True),
        "session_id": pa.nulls(n, pa.string()),
    }, schema=contracts.EVENTS)


def seed_store(store: Store, n_events: int, workdir: Path) -> list[str]:
    """Catalog and profiles on day 1, then 30 committed clean partitions (also kept as local Parquet)."""
    rng = np.random.default_rng(1)
    users, items = _ids("u", USERS), _ids("i", ITEMS)
    landing.write_raw(store, "items", START.isoformat(), pa.table({
        "item_id": items,
        "category": pa.array(np.char.add("c", rng.integers(0, CATEGORIES, ITEMS).astype(str))),
        "brand": pa.array(np.char.add("b", rng.integers(0, 500, ITEMS).astype(str))),
        "price": pa.array(np.exp(rng.normal(3, 1, ITEMS)).round(2)),
        "title": pa.nulls(ITEMS, pa.string()), "text": pa.nulls(ITEMS, pa.string()),
        "release_year": pa.nulls(ITEMS, pa.int32()),
        "available": pa.array(rng.random(ITEMS) > 0.03),
    }, schema=contracts.ITEMS))
    landing.write_raw(store, "users", START.isoformat(), pa.table({
        "user_id": users, "age": pa.array(rng.integers(16, 80, USERS).astype(np.int32)),
        "gender": pa.array(rng.choice(["f", "m", "x"], USERS)), "occupation": pa.nulls(USERS, pa.string()),
    }, schema=contracts.USERS))
    dates = []
    for d in range(DAYS):
        dt = (START + timedelta(days=d)).isoformat()
        n = n_events // DAYS + (1 if d < n_events % DAYS else 0)
        events = day_events(n, dt, users, items, seed=d)
        store.write_partition(partition("clean/events", dt), {"events": events}, {"source_rows": n})
        pq.write_table(events, workdir / f"events-{dt}.parquet", compression="zstd")
        dates.append(dt)
    pq.write_table(landing.read_raw(store, "items", START.isoformat(), contracts.ITEMS), workdir / "items.parquet")
    pq.write_table(landing.read_raw(store, "users", START.isoformat(), contracts.USERS), workdir / "users.parquet")
    return dates


# -- the steps, each in its own process ---------------------------------------------------


def step_features(cfg: dict, dt: str, rebuild: bool) -> dict:
    started = time.perf_counter()
    import pyarrow.dataset  # noqa: F401  (pq.read_table's first call imports it, and pandas)

    from recpipe.stages import features

    store = Store(StoreConfig(**cfg))
    store.s3  # noqa: B018  (boto3's import and client: once per worker process; reported apart)
    imports = time.perf_counter() - started
    started = time.perf_counter()
    result = features.build_features(store, dt, RunParams(), sequence_length=SEQUENCE_LENGTH, rebuild=rebuild)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "import_seconds": round(imports, 2),
            "peak_rss_gib": round(peak_rss_gib(), 3), "rows": result.rows,
            "aggregates_recomputed": len(result.rebuilt), "phases": result.seconds,
            "digests": {k: v["sha256"] for k, v in store.manifest(result.prefix)["files"].items()}}


def duckdb_sql(files: list[str], workdir: str, dt: str) -> dict[str, str]:
    """The reference queries: the window aggregations of features/dt=D, straight from the events."""
    start = day_bounds(dt)[0].isoformat()
    end = day_bounds(dt)[1].isoformat()
    first30 = (day_bounds(dt)[0] - timedelta(days=29)).isoformat()
    w = "CASE event_type " + " ".join(f"WHEN '{t}' THEN {v}" for t, v in contracts.EVENT_WEIGHTS.items()) + " END"
    windows = {1: start, 7: (day_bounds(dt)[0] - timedelta(days=6)).isoformat(), 30: first30}
    counts = ", ".join(f"count(*) FILTER (WHERE event_type = '{t}' AND event_ts >= TIMESTAMPTZ '{since}') AS n_{t}_{n}d"
                       for n, since in windows.items() for t in contracts.EVENT_TYPES)
    flist = ", ".join(f"'{f}'" for f in files)
    return {
        "events": f"""CREATE OR REPLACE TEMP TABLE ev AS SELECT user_id, item_id, event_type, event_ts, {w} AS w
                      FROM read_parquet([{flist}]) WHERE event_ts < TIMESTAMPTZ '{end}'""",
        "pairs": f"""CREATE OR REPLACE TEMP TABLE pairs AS SELECT user_id, item_id,
                       sum(w) FILTER (WHERE event_ts < TIMESTAMPTZ '{start}') AS weight,
                       count(*) FILTER (WHERE event_ts < TIMESTAMPTZ '{start}') AS n_events,
                       max(event_ts) FILTER (WHERE event_ts < TIMESTAMPTZ '{start}') AS last_ts,
                       max(event_ts) FILTER (WHERE event_type = 'purchase') AS last_purchase_ts,
                       bool_or(event_ts >= TIMESTAMPTZ '{first30}') AS recent,
                       bool_or(event_ts >= TIMESTAMPTZ '{start}') AS today
                     FROM ev GROUP BY user_id, item_id""",
        "interactions": "SELECT user_id, item_id, weight, n_events, last_ts FROM pairs WHERE n_events > 0",
        "purchased": "SELECT user_id, item_id, last_purchase_ts FROM pairs WHERE last_purchase_ts IS NOT NULL",
        "holdout": """SELECT p.user_id, p.item_id FROM pairs p
                      SEMI JOIN (SELECT DISTINCT user_id FROM pairs WHERE n_events > 0) h ON p.user_id = h.user_id
                      WHERE p.today""",
        "user_features": f"""SELECT u.*, d.n_items_30d, d.n_categories_30d, d.mean_price_30d,
                pr.age, pr.gender, pr.occupation
            FROM (SELECT user_id, count(*) AS n_events, max(event_ts) AS last_ts,
                         bool_or(event_ts < TIMESTAMPTZ '{start}') AS has_history, {counts}
                  FROM ev GROUP BY user_id) u
            LEFT JOIN (SELECT p.user_id, count(*) AS n_items_30d, count(DISTINCT c.category) AS n_categories_30d,
                              avg(c.price) AS mean_price_30d
                       FROM pairs p LEFT JOIN read_parquet('{workdir}/items.parquet') c USING (item_id)
                       WHERE p.recent GROUP BY p.user_id) d USING (user_id)
            LEFT JOIN read_parquet('{workdir}/users.parquet') pr USING (user_id)""",
        "item_features": f"""SELECT item_id, {counts},
                count(DISTINCT user_id) FILTER (WHERE event_ts >= TIMESTAMPTZ '{first30}') AS n_users_30d,
                sum(w * pow(0.5, (epoch(TIMESTAMPTZ '{start}') - epoch(event_ts)) / 86400.0 / 7.0))
                    FILTER (WHERE event_ts < TIMESTAMPTZ '{start}') AS popularity
            FROM ev GROUP BY item_id""",
        # the fastest of the formulations tried (window + 3 lists, max_by(…, 50), QUALIFY + struct list)
        "sequences": f"""SELECT user_id, list({{'item_id': item_id, 'event_type': event_type, 'event_ts': event_ts}}
                                          ORDER BY event_ts, event_type, item_id) AS events
            FROM (SELECT * FROM ev QUALIFY row_number() OVER (
                      PARTITION BY user_id ORDER BY event_ts DESC, event_type DESC, item_id DESC) <= {SEQUENCE_LENGTH})
            GROUP BY user_id""",
    }


def step_duckdb(workdir: str, dt: str) -> dict:
    import duckdb

    files = sorted(str(p) for p in Path(workdir).glob("events-*.parquet"))
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    started = time.perf_counter()
    seconds, rows, summary = {}, {}, {}
    for name, sql in duckdb_sql(files, workdir, dt).items():
        t = time.perf_counter()
        if sql.lstrip().upper().startswith("CREATE"):
            con.execute(sql)
        else:
            table = con.sql(sql).to_arrow_table()
            rows[name] = table.num_rows
            if name == "interactions":
                summary["interactions_weight"] = float(pc.sum(table["weight"]).as_py())
            if name == "item_features":
                summary["popularity"] = float(pc.sum(table["popularity"]).as_py())
        seconds[name] = round(time.perf_counter() - t, 2)
    total = time.perf_counter() - started
    return {"seconds": round(total, 2), "peak_rss_gib": round(peak_rss_gib(), 3), "breakdown": seconds,
            "rows": rows, "summary": summary}


def child(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    payload = json.loads(sys.stdin.read())
    if args.child == "duckdb":
        out = step_duckdb(payload["workdir"], payload["dt"])
    else:
        out = step_features(payload["store"], payload["dt"], rebuild=args.child == "one_off")
    print("RESULT " + json.dumps(out))


def run_child(step: str, payload: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", step], input=json.dumps(payload),
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"step {step} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1][len("RESULT "):])


def bench(n_events: int, repeat: int) -> dict:
    with temporary_store() as store, tempfile.TemporaryDirectory(prefix="recpipe-bench-") as workdir:
        dates = seed_store(store, n_events, Path(workdir))
        cfg = {"bucket": store.config.bucket, "access_key": store.config.access_key,
               "secret_key": store.config.secret_key, "endpoint": store.config.endpoint,
               "region": store.config.region}
        dt = dates[-1]
        prepare = run_child("prepare", {"store": cfg, "dt": dates[-2]})
        dailies = []
        for _ in range(repeat):  # each round: day D's aggregate is missing, as on the morning of D + 1
            store.delete_keys(store.list_keys(partition("aggregates", dt) + "/"))
            dailies.append(run_child("daily", {"store": cfg, "dt": dt}))
        one_off = run_child("one_off", {"store": cfg, "dt": dt})
        ducks = [run_child("duckdb", {"workdir": workdir, "dt": dt}) for _ in range(repeat)]
        daily, duck = min(dailies, key=lambda r: r["seconds"]), min(ducks, key=lambda r: r["seconds"])
        # the reference and recpipe agree on what they both compute
        fprefix = partition("features", dt)
        inter = store.read_table(fprefix, "interactions", columns=["weight"])
        pop = store.read_table(fprefix, "items", columns=["popularity"])
        check = {
            "interactions_rows": [inter.num_rows, duck["rows"]["interactions"]],
            "users_rows": [daily["rows"]["users"], duck["rows"]["user_features"]],
            "sequences_rows": [daily["rows"]["sequences"], duck["rows"]["sequences"]],
            "holdout_rows": [daily["rows"]["holdout"], duck["rows"]["holdout"]],
            "purchased_rows": [daily["rows"]["purchased"], duck["rows"]["purchased"]],
            "interactions_weight": [float(pc.sum(inter["weight"]).as_py()), duck["summary"]["interactions_weight"]],
            "popularity_sum": [float(pc.sum(pop["popularity"]).as_py()), duck["summary"]["popularity"]],
        }
        agree = all(math.isclose(a, b, rel_tol=1e-9) for a, b in check.values())
    return {
        "events": n_events, "days": DAYS, "users": USERS, "items": ITEMS,
        "seconds": daily["seconds"], "peak_rss_gib": daily["peak_rss_gib"],
        "duckdb_seconds": duck["seconds"], "ratio_to_duckdb": round(daily["seconds"] / duck["seconds"], 2),
        "duckdb_peak_rss_gib": duck["peak_rss_gib"], "duckdb_breakdown": duck["breakdown"],
        "import_seconds": daily["import_seconds"],
        "one_off_seconds": one_off["seconds"], "one_off_peak_rss_gib": one_off["peak_rss_gib"],
        "one_off_aggregates": one_off["aggregates_recomputed"],
        "one_off_identical_to_daily": one_off["digests"] == daily["digests"],
        "daily_phases_seconds": daily["phases"],
        "prepare_29_days_seconds": prepare["seconds"],
        "daily_rounds_seconds": [r["seconds"] for r in dailies], "duckdb_rounds_seconds": [r["seconds"] for r in ducks],
        "daily_aggregates_recomputed": daily["aggregates_recomputed"], "rows": daily["rows"],
        "check_agrees_with_duckdb": agree, "check": check,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="JSON file to write")
    ap.add_argument("--events", default="1000000,10000000", help="comma-separated event counts")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the daily run and of DuckDB (best is reported)")
    ap.add_argument("--child", choices=["prepare", "daily", "one_off", "duckdb"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not args.out:
        ap.error("--out is required")
    _require_duckdb()
    logging.basicConfig(level=logging.WARNING)
    runs = []
    for n in (int(x) for x in args.events.split(",")):
        runs.append(bench(n, args.repeat))
        print(json.dumps(runs[-1], indent=2), flush=True)
    out = {"benchmark": "features", "machine": machine(), "lookback_days": RunParams().lookback_days,
           "sequence_length": SEQUENCE_LENGTH,
           "targets": {"seconds": 60, "peak_rss_gib": 6, "ratio_to_duckdb": 2}, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
