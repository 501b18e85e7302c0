"""The feedback stage: how a published table did on what users did next (realised quality).

Once day D + 1 is validated, the table published for D is scored against D + 1's clean
events: HR, NDCG and recall @K for two truths, ``purchase`` (what each user bought) and
``click`` (anything beyond a view: click, favorite, add_to_cart, purchase), over the whole
table and per ``strategy`` and per ``model_name``. A slice keeps only its own rows (their
ranks unchanged) for the users that have such rows, so ``strategy=repeat`` says how often
the repeat slots were what the user came back for. Written to ``reports/feedback/dt=D/``
and charted over time on the evaluation page: the number a product owner watches,
measured on what users did rather than on an offline split.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.artifacts.recommendations import read
from recpipe.errors import PartitionNotFound
from recpipe.evaluation import evaluate
from recpipe.io import layout
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)

TRUTHS = {"purchase": ("purchase",), "click": ("click", "favorite", "add_to_cart", "purchase")}
REPORTED = ("hit_rate", "ndcg", "recall")


def realised(store: Store, dt: str) -> dict[str, Any] | None:
    """Score the table published for ``dt`` (at its own top_k) against ``dt`` + 1; None when
    nothing was published for ``dt``."""
    manifest = store.manifest(layout.partition(layout.RECOMMENDATIONS, dt))
    if manifest is None:
        log.info("no table was published for %s: no feedback to measure", dt)
        return None
    k = manifest["meta"]["top_k"]
    nxt = (date.fromisoformat(dt) + timedelta(days=1)).isoformat()
    clean = layout.partition(layout.CLEAN_EVENTS, nxt)
    if store.manifest(clean) is None:
        raise PartitionNotFound(f"clean/events for {nxt} is not committed: the feedback on {dt}'s table needs it; "
                                f"run `recpipe validate --date {nxt}` first.")
    table = read(store, dt).select(["user_id", "item_id", "rank", "strategy", "model_name"]).to_pandas()
    events = store.read_table(clean, "events", columns=["user_id", "item_id", "event_type"])
    out: dict[str, Any] = {"dt": dt, "next_day": nxt, "k": k, "users_with_a_list": int(table.user_id.nunique())}
    for truth_name, types in TRUTHS.items():
        truth = events.filter(pc.is_in(events["event_type"], value_set=pa.array(list(types))))
        truth = truth.select(["user_id", "item_id"]).to_pandas().drop_duplicates()
        truth = truth[truth.user_id.isin(table.user_id)]  # users the table served
        out[truth_name] = {"all": _scores(truth, table, k),
                           "strategy": {s: _scores(truth, rows, k) for s, rows in table.groupby("strategy")},
                           "model": {m: _scores(truth, rows, k) for m, rows in table.groupby("model_name")}}
        log.info("feedback on %s's table from %s: %s hit_rate@%d %.4f over %d users", dt, nxt, truth_name, k,
                 out[truth_name]["all"][f"hit_rate@{k}"], out[truth_name]["all"]["users"])
    store.put_json(layout.feedback_report(dt), out)
    return out


def _scores(truth: pd.DataFrame, rows: pd.DataFrame, k: int) -> dict[str, float]:
    """HR, NDCG, recall @k of ``rows`` for the users of ``truth`` that have rows."""
    truth = truth[truth.user_id.isin(rows.user_id)]
    if truth.empty:
        return {**{f"{m}@{k}": 0.0 for m in REPORTED}, "users": 0}
    metrics = evaluate(truth, rows[["user_id", "item_id", "rank"]], k)
    return {**{f"{m}@{k}": metrics[f"{m}@{k}"] for m in REPORTED}, "users": metrics["users"]}

