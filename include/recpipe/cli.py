"""``recpipe``: every pipeline stage from the shell, on the same store the DAG uses.

    recpipe seed [--days 14]            synthetic shop → raw/ landing zone
    recpipe import movielens PATH       a MovieLens release → raw/ (one partition per day)
    recpipe import eventlog FILE        a shop's event log (CSV/TSV/Parquet; --user/--item/--type/--ts)
    recpipe validate --date D           quality gate → clean/ + quarantine/ + report
    recpipe features --date D           features/dt=D
    recpipe train --date D              models/<model>/<version>/
    recpipe evaluate --date D           reports/evaluation/dt=D, then promote or keep the champion
    recpipe publish --date D            recommendations/dt=D
    recpipe feedback --date D           how the table of D - 1 did on D (reports/feedback/)
    recpipe refresh --date D            apply D's new intraday drops to today's table (no training)
    recpipe run --date D                all of the above for D
    recpipe metrics --recs R --truth T  ranking metrics of any table vs any truth (JSON)

The store comes from the environment (``. .local/env`` for the embedded stack). Exit code
0 on success; 2 with a one-paragraph reason on stderr when recpipe refuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from datetime import date

from recpipe.config import DRIFT_MEASURES, RunParams, StoreConfig
from recpipe.errors import RecpipeError


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc}); e.g. '{{\"purchase\": 8}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


#: How a flag's text becomes a param's value, by the type of its default (others: the type itself).
_PARSERS = {bool: lambda v: v.lower() in ("1", "true", "yes"), dict: _json_object}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recpipe", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="write the synthetic shop into raw/")
    s.add_argument("--days", type=int, default=14)
    s.add_argument("--users", type=int, default=1500)
    s.add_argument("--items", type=int, default=600)
    s.add_argument("--start", type=_date, default="2024-01-01")
    s.add_argument("--seed", type=int, default=7)
    s = sub.add_parser("import", help="deliver a data set or a shop's event log into raw/ (one events partition per day)")
    s.add_argument("source", choices=["movielens", "eventlog"])
    s.add_argument("path", help="movielens: folder with the release's files (e.g. ../shared/data/ml-100k); "
                                "eventlog: the log file (CSV, TSV or Parquet)")
    add_log_arguments(s)
    s.add_argument("--validate", action="store_true", help="then run the quality gate on every imported day")
    s.add_argument("--max-volume-ratio", type=float, default=0.0,
                   help="volume tolerance for --validate; off (0) by default: MovieLens's daily volume "
                        "swings from 1 to 3,550 ratings, which is history, not an incident")
    s.add_argument("--drift-fail", action="store_true",
                   help="let --validate fail a day on drift; off by default: an import replays years of history "
                        "(days of 1 to 3,550 ratings, new releases), so drift is recorded and warned about only")
    defaults = RunParams()
    for name in ("validate", "feedback", "features", "train", "evaluate", "publish", "refresh", "run"):
        s = sub.add_parser(name, help=f"run the {name} stage for one date")
        s.add_argument("--date", type=_date, required=True)
        for field in dataclasses.fields(RunParams):
            default = getattr(defaults, field.name)
            s.add_argument(f"--{field.name.replace('_', '-')}", type=_PARSERS.get(type(default), type(default)),
                           default=default, choices=field.metadata["choices"],
                           help=f"{field.metadata['doc']} (default: {json.dumps(default)})")
    s = sub.add_parser("metrics", help="evaluate a recommendations table against a truth table")
    s.add_argument("--recs", required=True, help="Parquet file or s3://bucket/key (user_id, item_id, rank)")
    s.add_argument("--truth", required=True, help="Parquet file or s3://bucket/key (user_id, item_id)")
    s.add_argument("--k", type=int, default=10)
    return p


def _read_any(path: str):
    import pyarrow.parquet as pq

    if path.startswith("s3://"):
        from recpipe.io.partitions import Store

        store = Store(StoreConfig.from_env())
        return pq.read_table(path[len("s3://"):], filesystem=store.fs).to_pandas()
    return pq.read_table(path).to_pandas()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = _dispatch(args)
    except RecpipeError as exc:
        print(f"recpipe {args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that name an event log's columns (``import eventlog``, benchmarks/ecommerce.py)."""
    group = parser.add_argument_group("eventlog", "which of the log's columns holds what (default: the contract's names)")
    for flag, default in (("user", "user_id"), ("item", "item_id"), ("type", "event_type"), ("ts", "event_ts"),
                          ("value", None), ("session", None), ("category", None)):
        group.add_argument(f"--{flag}", default=default, help=f"the column of the {flag} (default {default})")
    group.add_argument("--ts-unit", default="auto", choices=["auto", "s", "ms", "us"],
                       help="unit of numeric timestamps (auto: by magnitude)")
    group.add_argument("--names", help="the column names, comma-separated, of a file without a header")
    group.add_argument("--items", help="a catalog file (item_id, category, available, …) to land with the log")
    group.add_argument("--event-type-map", type=_json_object, default={},
                       help='the log\'s event names as contract types (the run param), e.g. \'{"pv": "view", "buy": "purchase"}\'')


def replay_params(max_volume_ratio: float = 0.0, drift_fail: bool = False, **params) -> RunParams:
    """The params for validating an imported history day after day (``import --validate``,
    benchmarks/ecommerce.py --log): years of real traffic swing in volume and drift, so both are
    recorded and warned about, and gate only when asked (``--max-volume-ratio``, ``--drift-fail``)."""
    drift = {} if drift_fail else {f"drift_{m}_fail": 0.0 for m in DRIFT_MEASURES}
    return RunParams(max_volume_ratio=max_volume_ratio, **drift, **params)


def log_columns(args: argparse.Namespace):
    """The ``eventlog.LogColumns`` of the flags of :func:`add_log_arguments`."""
    from recpipe.sources.eventlog import LogColumns

    return LogColumns(args.user, args.item, args.type, args.ts, args.value, args.session, args.category,
                      args.ts_unit, tuple(args.names.split(",")) if args.names else ())


def _dispatch(args: argparse.Namespace):
    from recpipe import pipeline, sources
    from recpipe.io.partitions import Store

    if args.command == "metrics":
        from recpipe.evaluation import evaluate

        return evaluate(_read_any(args.truth), _read_any(args.recs), args.k)
    store = Store(StoreConfig.from_env())
    if args.command == "seed":
        start = date.fromisoformat(args.start)
        spec = sources.ShopSpec(users=args.users, items=args.items, days=args.days, start=start, seed=args.seed)
        dates = sources.seed(store, spec)
        return {"dates": [dates[0], dates[-1]], "days": len(dates)}
    if args.command == "import":
        dates = (sources.import_eventlog(store, args.path, log_columns(args), args.items) if args.source == "eventlog"
                 else sources.import_movielens(store, args.path))
        out = {"dates": [dates[0], dates[-1]], "days": len(dates)}
        if args.validate:
            params = replay_params(args.max_volume_ratio, args.drift_fail, event_type_map=args.event_type_map)
            results = [pipeline.validate(store, dt, params) for dt in dates]
            out.update(rows=sum(r["rows"] for r in results), clean_rows=sum(r["clean_rows"] for r in results))
        return out
    params = RunParams.from_mapping(vars(args))
    if args.command == "evaluate":
        decision = pipeline.evaluate(store, args.date, params)
        return {**pipeline.gate(store, args.date, params), "metrics": decision["metrics"]}
    if args.command == "run":
        return pipeline.run(store, args.date, params)
    return pipeline.STAGES[args.command](store, args.date, params)


if __name__ == "__main__":
    sys.exit(main())


