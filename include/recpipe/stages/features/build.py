"""Point-in-time feature tables for one run date D, committed to ``features/dt=D/``.

Only clean events with ``event_ts`` < D + 1 day are read, so nothing after D leaks in, and
they are read as *daily aggregates* (``daily``): each run aggregates only the
days whose aggregate is missing or stale (normally just D) and derives the window tables
from the stored daily aggregates. docs/features.md describes every table.

The model learns from days before D and is judged on day D (the temporal hold-out):

- ``interactions``  (user_idx, item_idx, weight, n_events, last_ts): days < D, the training set
- ``holdout``       (user_idx, item_idx): day D, for users with history before D
- ``users``         (user_idx, n_events, last_ts, user_id, has_history): everyone active ≤ D
- ``items``         (item_idx, item_id, popularity, <catalog columns>, available)
- ``purchased``     (user_idx, item_idx, last_ts): purchases ≤ D, excluded from recommendations

and describes the state at the end of day D (events ≤ D) for models that use features:

- ``user_features``  counts per event type over 1/7/30 days, rates, recency, distinct items
  and categories, mean price, profile columns (one row per row of ``users``)
- ``item_features``  counts per event type over 1/7/30 days, rates, age, catalog columns
  (one row per row of ``items``)
- ``sequences``      each user's last L events (item_idx, event_type, event_ts lists)
- ``examples``       day D's labelled pairs: positives and sampled negatives, labels
  ``click`` and ``purchase`` (train on examples of day t with features of day t − 1)

Ids become dense indices through append-only vocabularies (``vocab``): an id keeps its
index forever, new ids get the next free ones, so yesterday's model still lines up. A date
only sees the ids first seen on or before it (``n_users``/``n_items`` of the manifest).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from recpipe import contracts, privacy
from recpipe.config import RunParams
from recpipe.errors import PartitionNotFound, UpstreamNotReady
from recpipe.io import landing, layout
from recpipe.io.partitions import Store
from recpipe.stages.features import daily, tables, window
from recpipe.stages.features.vocab import load_vocab, save_vocab

log = logging.getLogger(__name__)

#: Events per user in ``sequences`` (the L of the issue).
SEQUENCE_LENGTH = 50


class _Clock:
    """Seconds spent in each phase, for the log line."""

    def __init__(self):
        self.last, self.laps = time.perf_counter(), {}

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self.last, 2)
        self.last = now


@dataclass(frozen=True)
class FeatureResult:
    dt: str
    prefix: str
    rows: dict[str, int]
    rebuilt: list[str] = field(default_factory=list)  # the days whose aggregate this run (re)computed
    seconds: dict[str, float] = field(default_factory=dict)  # time per phase


def window_dates(dt: str, lookback_days: int) -> list[str]:
    """The dates D - lookback .. D, ascending."""
    end = date.fromisoformat(dt)
    return [(end - timedelta(days=n)).isoformat() for n in range(lookback_days, -1, -1)]


def read_clean_window(store: Store, dt: str, lookback_days: int) -> pa.Table:
    """Clean events of the window ending at D (the raw input of the aggregates; for checks)."""
    committed = set(store.committed_dates(layout.CLEAN_EVENTS))
    parts = [store.read_table(layout.partition(layout.CLEAN_EVENTS, d), "events")
             for d in window_dates(dt, lookback_days) if d in committed]
    return pa.concat_tables(parts)


def _awaits_validation(store: Store, dt: str) -> bool:
    """Raw events landed for ``dt`` but its quality gate has neither committed nor rejected them."""
    if not landing.is_ready(store, "events", dt):
        return False
    try:
        return store.get_json(layout.quality_report(dt, "result.json"))["summary"]["passed"]
    except FileNotFoundError:
        return True


def pending_days(store: Store, dt: str, lookback_days: int, committed: set[str] | None = None) -> list[str]:
    """The days of D's window whose raw events landed but are not validated yet (oldest first).

    Features built now would miss them and order the vocabularies wrongly: wait for these.
    """
    committed = set(store.committed_dates(layout.CLEAN_EVENTS)) if committed is None else committed
    return [d for d in window_dates(dt, lookback_days)[:-1] if d not in committed and _awaits_validation(store, d)]


def build_features(store: Store, dt: str, params: RunParams, *, sequence_length: int = SEQUENCE_LENGTH,
                   rebuild: bool = False) -> FeatureResult:
    """Build and commit ``features/dt=D``; ``rebuild`` recomputes every daily aggregate of the window."""
    committed = set(store.committed_dates(layout.CLEAN_EVENTS))
    if dt not in committed:
        raise PartitionNotFound(
            f"clean/events for {dt} is not committed: run `recpipe validate --date {dt}` first."
        )
    lookback = params.lookback_days
    span = max(lookback, max(window.FEATURE_WINDOWS) - 1)
    wanted = window_dates(dt, span)
    missing = [d for d in wanted[-lookback - 1:] if d not in committed]
    pending = pending_days(store, dt, lookback, committed)
    if pending:  # building now would miss them (and order the vocabularies wrongly)
        raise UpstreamNotReady(
            f"features for {dt} need the earlier days {', '.join(pending[:3])}{'…' if len(pending) > 3 else ''} "
            "validated first: they have raw events but no clean/events yet. In Airflow the task "
            f"wait_for_earlier_days waits for them; by hand run `recpipe validate --date {pending[0]}`.")
    if missing:
        log.info("window %s..%s: %d days have no clean events (%s..)", wanted[-lookback - 1], dt, len(missing),
                 missing[0])
    clock = _Clock()
    catalogs = daily.Catalogs(store)
    spec = daily.Spec(sequence_length, params.event_weights)
    states, users_vocab, items_vocab = daily.ensure(
        store, [d for d in wanted if d in committed], spec,
        load_vocab(store, "users"), load_vocab(store, "items"), catalogs, force=rebuild, keep=dt)
    snap, catalog = catalogs.on(dt)
    if catalog is not None:  # normally already added with D's aggregate; a late catalog is added now
        items_vocab.add(catalog["item_id"], snap)
        items_vocab = save_vocab(store, items_vocab)
    n_users, n_items = users_vocab.size_on(dt), items_vocab.size_on(dt)
    clock("aggregates")
    end = date.fromisoformat(dt)
    ages = np.array([(end - date.fromisoformat(s.dt)).days for s in states])  # descending: oldest first
    w = window.Window(store, states, ages, lookback, n_users, n_items)

    item_counts = window.counts(w, "items")
    out = {"items": tables.items(items_vocab, n_items, dt, catalog, item_counts["popularity"])}
    clock("items")
    pairs = window.pairs(w, out["items"]["category"], out["items"]["price"])
    out.update(interactions=pairs.interactions, purchased=pairs.purchased, holdout=pairs.holdout())
    clock("pairs")
    user_counts = window.counts(w, "users")
    out["users"] = tables.users(user_counts, pairs.has_history, users_vocab)
    out["user_features"] = tables.user_features(out["users"], user_counts, pairs, _profiles(store, dt), dt)
    clock("users")
    out["item_features"] = tables.item_features(out["items"], item_counts, items_vocab, dt, pairs)
    out["sequences"] = window.sequences(w, out["users"], sequence_length)
    clock("sequences")
    out["examples"] = window.examples(w, items_vocab.known_on(dt)[:n_items], params.negatives, params.seed, dt)
    clock("examples")
    out = {name: out[name] for name in tables.TABLES}
    prefix = layout.partition(layout.FEATURES, dt)
    meta = {"dt": dt, "window": wanted[-lookback - 1], "n_users": n_users, "n_items": n_items,
            "feature_windows": list(window.FEATURE_WINDOWS), "sequence_length": sequence_length,
            "inputs": {s.dt: s.clean_run_id for s in states}}
    daily.write(store, prefix, out, meta)
    clock("write")
    rows = {k: t.num_rows for k, t in out.items()}
    rebuilt = [s.dt for s in states if s.rebuilt]
    log.info("features %s: %s (vocab: %d users, %d items; aggregates recomputed: %s; seconds: %s)",
             dt, rows, n_users, n_items, rebuilt or "none", clock.laps)
    return FeatureResult(dt, prefix, rows, rebuilt, clock.laps)


def _profiles(store: Store, dt: str) -> pa.Table | None:
    """The newest user profiles snapshot delivered on or before D, if any."""
    dates = [d for d in landing.ready_dates(store, "users") if d <= dt]
    if not dates:
        return None
    return privacy.pseudonymise(landing.read_raw(store, "users", dates[-1], contracts.USERS), privacy.key_from_env())
