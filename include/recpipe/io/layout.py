"""Every storage key of recpipe, in one place (what Kedro's ``catalog.yml`` is for its projects).

One bucket; a date's data lives in a ``dt=YYYY-MM-DD`` partition of its dataset. Stages
never spell a key themselves: they ask this module. docs/storage.md shows the tree.

    raw/<table>/dt=D/                   landing zone (producers; ``_SUCCESS`` marks a day done)
    raw/events/dt=D/part-<n>.<ext>      one intraday drop of events, ``_READY-<n>`` marks it done
    clean/drops/dt=D/part-<n>/          a drop's validated rows (the intraday refresh's input)
    quarantine/drops/dt=D/part-<n>/     a drop's rejected rows with a reason
    clean/events/dt=D/                  validated events
    quarantine/events/dt=D/             rejected rows with a reason
    reports/quality/dt=D/               the quality gate's result.json, index.html, profile.parquet
    aggregates/dt=D/                    one day of events reduced (features' incremental state)
    vocab/<users|items>/                append-only id vocabularies
    features/dt=D/                      point-in-time feature tables
    models/<name>/<version>/            a trained model artifact
    models/<name>/champion.json         the serving version (compare-and-swap pointer)
    models/<name>/champions/dt=D.json   the champion as of each date
    reports/evaluation/dt=D/            the gate's metrics.json, decision.json and index.html
    reports/feedback/dt=D/              the realised quality of D's table on D + 1 (metrics.json)
    recommendations/_shards/dt=D/       publish shards staged before the commit
    recommendations/dt=D/               the published table
    recommendations/_latest             the newest published date (pointer)
"""

from __future__ import annotations

#: Written after the data files of a raw partition: the day is complete.
SUCCESS = "_SUCCESS"
#: Written after a drop's data file ``part-<n>.<ext>``: drop n of the day is complete.
DROP_READY = "_READY-"
#: The data file of drop n: ``part-<n>`` and a suffix of ``recpipe.io.landing.READERS``.
DROP_STEM = "part-"
#: Names a committed partition's files (see ``recpipe.io.partitions``).
MANIFEST = "_manifest.json"

RAW_TABLES = ("events", "items", "users")
CLEAN_EVENTS = "clean/events"
QUARANTINE_EVENTS = "quarantine/events"
CLEAN_DROPS = "clean/drops"
QUARANTINE_DROPS = "quarantine/drops"
AGGREGATES = "aggregates"
FEATURES = "features"
RECOMMENDATIONS = "recommendations"
LATEST = f"{RECOMMENDATIONS}/_latest"
STAGING = f"{RECOMMENDATIONS}/_shards"
QUALITY_REPORTS = "reports/quality"
EVALUATION_REPORTS = "reports/evaluation"
FEEDBACK_REPORTS = "reports/feedback"


def partition(dataset: str, dt: str) -> str:
    """The prefix of one date's partition: ``partition("clean/events", "2024-01-10")``."""
    return f"{dataset}/dt={dt}"


def dates_prefix(dataset: str) -> str:
    """The prefix every date partition of ``dataset`` starts with (for listing)."""
    return f"{dataset}/dt="


def date_of(key: str) -> str:
    """The date of a key inside a date partition: ``features/dt=2024-01-10/x`` → ``2024-01-10``."""
    return key.rsplit("dt=", 1)[1][:10]


# -- landing zone -------------------------------------------------------------------------


def raw(table: str, dt: str) -> str:
    return partition(f"raw/{table}", dt)


def raw_success(table: str, dt: str) -> str:
    return f"{raw(table, dt)}/{SUCCESS}"


def drop_ready(table: str, dt: str, n: int) -> str:
    """``raw/<table>/dt=D/_READY-<n>``: the marker of drop ``n`` (written after its data file)."""
    return f"{raw(table, dt)}/{DROP_READY}{n}"


def drop_file(table: str, dt: str, n: int, suffix: str = ".parquet") -> str:
    """``raw/<table>/dt=D/part-<n><suffix>``: the data file of drop ``n``."""
    return f"{raw(table, dt)}/{DROP_STEM}{n}{suffix}"


def clean_drop(dt: str, n: int) -> str:
    """``clean/drops/dt=D/part-<n>``: drop ``n``'s rows that passed the row rules."""
    return f"{partition(CLEAN_DROPS, dt)}/{DROP_STEM}{n}"


def quarantine_drop(dt: str, n: int) -> str:
    """``quarantine/drops/dt=D/part-<n>``: drop ``n``'s rejected rows with a ``reason``."""
    return f"{partition(QUARANTINE_DROPS, dt)}/{DROP_STEM}{n}"


# -- reports ------------------------------------------------------------------------------


def quality_report(dt: str, name: str = "index.html") -> str:
    """``reports/quality/dt=D/<name>``: ``result.json``, ``index.html`` or ``profile.parquet`` (drift's input)."""
    return f"{partition(QUALITY_REPORTS, dt)}/{name}"


def evaluation_report(dt: str, name: str = "index.html") -> str:
    """``reports/evaluation/dt=D/<name>``: ``metrics.json``, ``decision.json`` or ``index.html``."""
    return f"{partition(EVALUATION_REPORTS, dt)}/{name}"


def feedback_report(dt: str, name: str = "metrics.json") -> str:
    """``reports/feedback/dt=D/metrics.json``: how D's table did on D + 1."""
    return f"{partition(FEEDBACK_REPORTS, dt)}/{name}"


# -- vocabularies and models ------------------------------------------------------------


def vocab(name: str) -> str:
    return f"vocab/{name}"


def model(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def champion_pointer(name: str) -> str:
    return f"models/{name}/champion.json"


def champions_prefix(name: str) -> str:
    return f"models/{name}/champions/dt="


def champion_record(name: str, dt: str) -> str:
    return f"{champions_prefix(name)}{dt}.json"


# -- recommendations ----------------------------------------------------------------------


def shard(dt: str, shard: int, shards: int) -> str:
    """Where shard ``shard`` of ``shards`` is staged before the commit."""
    return f"{partition(STAGING, dt)}/{shard:03d}-of-{shards:03d}"
