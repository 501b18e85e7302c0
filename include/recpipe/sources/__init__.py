"""Data sources that deliver into the landing zone as a producer would: a synthetic shop
(``synthetic``), public data sets (``movielens``: MovieLens and RecBole atomic files) and a
shop's own event log (``eventlog``: one CSV, TSV or Parquet file, its columns named)."""

from __future__ import annotations

import logging

from recpipe.io import landing
from recpipe.io.partitions import Store
from recpipe.sources.synthetic import ShopSpec, generate

log = logging.getLogger(__name__)


def seed(store: Store, spec: ShopSpec = ShopSpec()) -> list[str]:
    """Write the synthetic shop's days into the landing zone; returns the dates."""
    store.ensure_bucket()
    dates = []
    for day in generate(spec):
        landing.write_raw(store, "items", day.dt, day.items)
        landing.write_raw(store, "users", day.dt, day.users)
        landing.write_raw(store, "events", day.dt, day.events)
        log.info("seeded raw/*/dt=%s: %d events, %d items, %d users", day.dt,
                 day.events.num_rows, day.items.num_rows, day.users.num_rows)
        dates.append(day.dt)
    return dates


def import_movielens(store: Store, path: str) -> list[str]:
    """Deliver a MovieLens release into the landing zone; returns the dates of its days."""
    from recpipe.sources import movielens

    store.ensure_bucket()
    return movielens.import_to_store(store, path)


def import_eventlog(store: Store, path: str, columns=None, items: str | None = None) -> list[str]:
    """Deliver a shop's event log file into the landing zone; returns the dates of its days.
    ``columns``: an ``eventlog.LogColumns`` (default: the contract's column names)."""
    from recpipe.sources import eventlog

    store.ensure_bucket()
    return eventlog.import_to_store(store, path, columns or eventlog.LogColumns(), items)


__all__ = ["ShopSpec", "generate", "import_eventlog", "import_movielens", "seed"]
