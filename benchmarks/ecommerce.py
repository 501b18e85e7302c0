"""Next-day quality of the published tables on a shop log: purchases, and discovery of new items.

    python benchmarks/ecommerce.py --out benchmarks/results/ecommerce.json

Seeds the synthetic shop (``ShopSpec(users=USERS)``: views, re-views, carts and purchases
across days, about half of the purchases of items touched before; ``--seed`` and
``--p-revisit`` give other shops of the kind, ``--users`` another size), validates its
history, runs the daily pipeline (``--model``, default propensity: the shop model) for the
last ``--dates`` dates but one, and measures each published table for date D against what
users did on D + 1. A day has ~300 buyers per 1,500 users: the tests' shop of 1,500
(``ShopSpec()``) moves a date's purchase ratio by ±0.04, more than the margin the target
judges, so the benchmark's shop has 6,000 users (1,250 buyers a date, ~4 min).
``--log FILE`` measures a real shop's event log the same way instead (imported as
``recpipe import eventlog`` does, with the same column flags, and ``--event-type-map`` for
its event names; volume and drift recorded, not gated; no bayes list). The figures:

- ``purchase_hr@10``: share of the users who bought something on D + 1 (and have a list)
  with at least one of those items in their top 10;
- ``new_item_hr@10``: share of the users who touched, on D + 1, an item they had never
  touched before, with one of those items in their top 10.

The same two figures for the heuristics computed here from the clean events up to the
end of D, independently of the library: ``recent`` (the 10 items the user touched most
recently and has not bought) and ``popularity`` (the 10 items with most events over the
last 7 days, less what the user bought). Like the table (which publishes only available
items), every list here holds only the items the catalog of D has available: the synthetic
shop lets users buy unavailable items (2 % of its purchases), which no list should be
credited for. Targets: table purchase HR ≥ 1.1 × recent's, table new-item HR ≥ 1.1 ×
popularity's; ``purchase_vs_recent_ci95`` and ``new_item_vs_popularity_ci95`` are the two
ratios' 95 % bootstrap intervals over the users (:func:`ratio_interval`): how far this shop's
sampling alone moves them. ``repeat_ceiling.purchase_hr@10``: the purchase HR of every
touched, unbought item at once (:func:`repeat_ceiling`), what repeats alone can reach;
``split_oracle.purchase_hr@10``: the best per-user split between the heuristic's list and the
model's, chosen in hindsight (:func:`split_oracle`), what any rule for the repeat slots can
reach; ``bayes.purchase_hr@10``: each user's 10 unbought items with the highest chance of
being bought on D + 1 by the shop's own latent state (``synthetic.purchase_odds``,
``--bayes-samples`` simulations of D + 1), what no model learnt from the log can beat
(:func:`bayes_lists`).

Fresh history: the date's trained candidate (whatever the gate chose), without repeat
slots, as publish scores it from history through the end of D (``fresh``) and from the
histories saved with it at training time (``stale``: ``publish.table.recommend(fresh=False)``,
D's events ignored, users first seen on D on popularity). Besides the two figures above,
``any_hr@10`` (a hit if any item the user touches on D + 1 is in the top 10) over all users
and over the ``newcomer`` users first seen on D; ``fresh_gain`` = fresh / stale of each,
over the dates' means.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _stack import machine, report, peak_rss_gib, temporary_store  # noqa: E402

from recpipe import pipeline, sources  # noqa: E402
from recpipe.cli import add_log_arguments, log_columns, replay_params  # noqa: E402
from recpipe.config import RunParams  # noqa: E402
from recpipe.io.layout import partition  # noqa: E402
from recpipe.sources.synthetic import ShopSpec, purchase_odds  # noqa: E402
from recpipe.artifacts.features import Features  # noqa: E402
from recpipe.stages import publish  # noqa: E402
from recpipe.stages.publish.table import recommend  # noqa: E402
from recpipe.stages.train import candidate  # noqa: E402

K = 10
#: the benchmark shop's users: 4× the tests' shop, so the ratios' noise is half as wide
USERS = 6000


def events_until(store, dates: list[str]) -> pd.DataFrame:
    frames = [store.read_table(partition("clean/events", d), "events",
                               columns=["user_id", "item_id", "event_type", "event_ts"]).to_pandas() for d in dates]
    return pd.concat(frames, ignore_index=True)


def purchases(events: pd.DataFrame) -> pd.Series:
    """Each user's set of purchased items in ``events``."""
    return events[events.event_type == "purchase"].groupby("user_id")["item_id"].agg(set)


def heuristics(history: pd.DataFrame, users: list[str], available: set[str]) -> dict[str, dict[str, list[str]]]:
    """Each user's top 10 ``available`` items by the two heuristics, from the events up to the end of D."""
    history = history[history.item_id.isin(available) | (history.event_type == "purchase")]
    bought = purchases(history)
    last = history.sort_values("event_ts").drop_duplicates(["user_id", "item_id"], keep="last")
    last = last.sort_values(["user_id", "event_ts"], ascending=[True, False])
    start = history.event_ts.max().normalize() - pd.Timedelta(days=6)
    popular = [i for i in history[history.event_ts >= start].item_id.value_counts().index if i in available]
    recent, pop = {}, {}
    for user, rows in last.groupby("user_id", sort=False):
        own = bought.get(user, set())
        recent[user] = [i for i in rows.item_id if i not in own][:K]
    for user in users:
        own = bought.get(user, set())
        pop[user] = [i for i in popular[: K + len(own)] if i not in own][:K]
    return {"recent": recent, "popularity": pop}


def truths(history: pd.DataFrame, nextday: pd.DataFrame) -> dict[str, pd.Series]:
    """What each figure counts as a hit, per user of D + 1: the items bought (``purchase``),
    touched for the first time (``new_item``), touched (``any``, and ``newcomer_any`` for the
    users first seen on D)."""
    seen = history.groupby("user_id")["item_id"].agg(set)
    new = nextday[[i not in seen.get(u, set()) for u, i in zip(nextday.user_id, nextday.item_id)]]
    touched = nextday.groupby("user_id")["item_id"].agg(set)
    first_day = history.groupby("user_id")["event_ts"].min().dt.normalize()
    newcomers = set(first_day[first_day == history.event_ts.max().normalize()].index)
    return {"purchase": purchases(nextday), "new_item": new.groupby("user_id")["item_id"].agg(set),
            "any": touched, "newcomer_any": touched[touched.index.isin(newcomers)]}


def hits(lists: dict[str, list[str]], truth: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per user of ``truth``: (has a list, its top 10 holds one of the user's items)."""
    member = np.array([u in lists for u in truth.index], bool)
    hit = np.array([u in lists and bool(truth[u] & set(lists[u][:K])) for u in truth.index], bool)
    return member, hit


def hit_rates(lists: dict[str, list[str]], truth: dict[str, pd.Series]) -> dict[str, float]:
    out = {}
    for name, t in truth.items():
        member, hit = hits(lists, t)
        out[f"{name}_hr@{K}"] = float(hit.sum() / max(member.sum(), 1))
        out[f"{name}_users"] = int(member.sum())
    return out


def ratio_interval(dates: list[tuple[np.ndarray, ...]], samples: int = 1000, seed: int = 0) -> list[float]:
    """The 95 % bootstrap interval of (mean over dates of list a's HR) / (that of list b's):
    each date's users drawn again with replacement, the same draw for both lists (paired);
    ``dates`` holds (a's member, a's hit, b's member, b's hit) per date, over the same users."""
    rng, a, b = np.random.default_rng(seed), np.zeros(samples), np.zeros(samples)
    for ma, ha, mb, hb in dates:
        draw = rng.integers(0, len(ma), (samples, len(ma)))
        a += ha[draw].sum(axis=1) / np.maximum(ma[draw].sum(axis=1), 1)
        b += hb[draw].sum(axis=1) / np.maximum(mb[draw].sum(axis=1), 1)
    return [round(float(q), 4) for q in np.quantile(a / np.maximum(b, 1e-9), [0.025, 0.975])]


def repeat_ceiling(history: pd.DataFrame, nextday: pd.DataFrame, users: set[str], available: set[str]) -> float:
    """The purchase HR of a list holding every ``available`` item the user touched and had not
    bought by the end of D (any length): the share of D + 1's buyers among ``users`` who bought one of those.
    No list of repeats alone, however ranked, does better; the rest must come from new items."""
    own = history.groupby("user_id")["item_id"].agg(set)
    bought = purchases(history)
    buys = purchases(nextday)
    buyers = [u for u in buys.index if u in users]
    hit = sum(bool(buys[u] & (own.get(u, set()) - bought.get(u, set())) & available) for u in buyers)
    return hit / max(len(buyers), 1)


def split_oracle(repeats: dict[str, list[str]], model: dict[str, list[str]], nextday: pd.DataFrame) -> float:
    """The purchase HR of the best split of each user's 10 slots between ``repeats`` (first r)
    and ``model`` (its items not among those, 10 - r), the split chosen per user in hindsight:
    what no rule for the number of repeat slots can beat with these two lists."""
    buys = purchases(nextday)
    buyers = [u for u in buys.index if u in model]
    hit = 0
    for u in buyers:
        rep, own = repeats.get(u, []), model[u]
        hit += any(buys[u] & set(rep[:r] + [i for i in own if i not in rep[:r]][:K - r]) for r in range(K + 1))
    return hit / max(len(buyers), 1)


def bayes_lists(odds: dict[tuple[str, str], float], history: pd.DataFrame, users: list[str],
                available: set[str]) -> dict[str, list[str]]:
    """Each of ``users``' 10 ``available`` items by the shop's odds of their purchase, less what they bought by D."""
    bought = purchases(history)
    ranked = sorted(((u, -p, i) for (u, i), p in odds.items() if i not in bought.get(u, ()) and i in available))
    lists: dict[str, list[str]] = {u: [] for u in users}
    for u, _, i in ranked:
        if u in lists and len(lists[u]) < K:
            lists[u].append(i)
    return lists


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="propensity")
    p.add_argument("--dates", type=int, default=4, help="publish this many dates, the last seeded day judges the last")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--repeat-slots", type=int, default=-1, help="the run param (-1: the gate chooses)")
    p.add_argument("--seed", type=int, default=ShopSpec.seed, help="the shop's seed (another shop, same kind)")
    p.add_argument("--p-revisit", type=float, default=ShopSpec.p_revisit, help="the shop's re-engagement")
    p.add_argument("--users", type=int, default=USERS,
                   help="the shop's users (fewer: more noise; ~300 buyers a day per 1,500 users)")
    p.add_argument("--bayes-samples", type=int, default=1000, help="simulations of each next day (0: no bayes list)")
    p.add_argument("--log", help="a real shop's event log file instead of the synthetic shop (no bayes list)")
    add_log_arguments(p)
    p.add_argument("--out")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spec = ShopSpec(users=args.users, seed=args.seed, p_revisit=args.p_revisit)
    started = time.monotonic()
    results, paired = [], {"purchase": [], "new_item": []}
    with temporary_store() as store:
        dates = sources.import_eventlog(store, args.log, log_columns(args), args.items) if args.log else sources.seed(store, spec)
        knobs = {"model": args.model, "epochs": args.epochs, "top_k": K, "repeat_slots": args.repeat_slots,
                 "event_type_map": args.event_type_map, "fail_on_rejection": False}
        params = replay_params(**knobs) if args.log else RunParams(**knobs)  # a log replays its history
        for dt in dates:
            pipeline.validate(store, dt, params)
        for dt in dates[-args.dates - 1:-1]:
            t = time.monotonic()
            pipeline.run(store, dt, params)
            nxt = (date.fromisoformat(dt) + timedelta(days=1)).isoformat()
            history = events_until(store, [d for d in dates if d <= dt])
            nextday = events_until(store, [nxt])
            table = publish.read(store, dt).to_pandas().sort_values(["user_id", "rank"])
            lists = {"table": table.groupby("user_id")["item_id"].agg(list).to_dict()}
            features, model = Features(store, dt), {"publish": candidate(dt, params), "repeat_slots": 0}
            for name, fresh in (("fresh", True), ("stale", False)):
                rows, _ = recommend(features, params, model, features.users(), fresh=fresh)
                rows = rows.to_pandas().sort_values(["user_id", "rank"])
                lists[name] = rows.groupby("user_id")["item_id"].agg(list).to_dict()
            catalog = features.table("items", ["item_id", "available"]).to_pandas()
            available = set(catalog.item_id[catalog.available])
            lists.update(heuristics(history, list(lists["table"]), available))
            if args.bayes_samples and not args.log:
                odds = purchase_odds(spec, dates.index(nxt), args.bayes_samples)
                lists["bayes"] = bayes_lists(odds, history, list(lists["table"]), available)
            truth = truths(history, nextday)
            for name, baseline in (("purchase", "recent"), ("new_item", "popularity")):
                table_hits = hits(lists["table"], truth[name])
                if not table_hits[0].any():  # a ratio of two zeros would read as a figure
                    sys.exit(f"ecommerce: no user of the table for {dt} has a {name} on {nxt}, so there is nothing "
                             "to measure; with --log, is the purchase type mapped (--event-type-map) and does the "
                             "log hold that day?")
                paired[name].append((*table_hits, *hits(lists[baseline], truth[name])))
            decision = store.get_json(f"reports/evaluation/dt={dt}/decision.json")
            row = {"dt": dt, "seconds": round(time.monotonic() - t, 1), "published": decision["publish"]["name"],
                   "repeat_slots": decision["repeat_slots"],
                   "repeat_ceiling.purchase_hr@10": repeat_ceiling(history, nextday, set(lists["table"]), available),
                   "split_oracle.purchase_hr@10": split_oracle(lists["recent"], lists["fresh"], nextday),
                   **{f"{name}.{k}": v for name, ls in lists.items() for k, v in hit_rates(ls, truth).items()}}
            print(json.dumps(row), flush=True)
            results.append(row)
    mean = {k: sum(r[k] for r in results) / len(results) for k in results[0] if "hr@" in k}
    out = {
        "benchmark": "ecommerce", "machine": machine(),
        "data": {"log": args.log, "days": len(dates)} if args.log else {
            "shop": {"users": spec.users, "items": spec.items, "days": spec.days, "p_revisit": spec.p_revisit,
                     "seed": spec.seed}},
        "model": args.model, "repeat_slots_param": args.repeat_slots, "dates": results, "mean": mean,
        "purchase_vs_recent": mean[f"table.purchase_hr@{K}"] / max(mean[f"recent.purchase_hr@{K}"], 1e-9),
        "new_item_vs_popularity": mean[f"table.new_item_hr@{K}"] / max(mean[f"popularity.new_item_hr@{K}"], 1e-9),
        "purchase_vs_recent_ci95": ratio_interval(paired["purchase"]),
        "new_item_vs_popularity_ci95": ratio_interval(paired["new_item"]),
        "repeat_ceiling_vs_recent": mean[f"repeat_ceiling.purchase_hr@{K}"] / max(mean[f"recent.purchase_hr@{K}"], 1e-9),
        "split_oracle_vs_recent": mean[f"split_oracle.purchase_hr@{K}"] / max(mean[f"recent.purchase_hr@{K}"], 1e-9),
        "bayes_vs_recent": mean.get(f"bayes.purchase_hr@{K}", 0.0) / max(mean[f"recent.purchase_hr@{K}"], 1e-9),
        "peak_rss_gib": round(peak_rss_gib(), 2), "seconds": round(time.monotonic() - started, 1),
    }
    out["fresh_gain"] = {m: mean[f"fresh.{m}_hr@{K}"] / max(mean[f"stale.{m}_hr@{K}"], 1e-9)
                         for m in ("purchase", "new_item", "any", "newcomer_any")}
    out["targets_met"] = out["purchase_vs_recent"] >= 1.1 and out["new_item_vs_popularity"] >= 1.1
    report(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
