"""The published table ``recommendations/dt=D/``, as consumers (and the feedback stage) read it.

Columns: user_id, item_id, rank, score, model_name, model_version, strategy
(``personalized``, ``fallback`` or ``repeat``), reason (one of ``REASONS``), reason_item_id
(the user's own item behind a history reason, null otherwise), generated_at (the end of day
D, from when the table is meant to serve).
"""

from __future__ import annotations

import pyarrow as pa

from recpipe.errors import PartitionNotFound
from recpipe.io import layout
from recpipe.io.partitions import Store

COLUMNS = ("user_id", "item_id", "rank", "score", "model_name", "model_version", "strategy", "reason",
           "reason_item_id", "generated_at")
#: Why a row was recommended; the first two cite an item of the user's own history (reason_item_id).
REASONS = ("recently_viewed", "history_similar", "new_item_content", "trending", "popular")
HISTORY_REASONS = REASONS[:2]


def read(store: Store, dt: str | None = None) -> pa.Table:
    """The committed recommendations of ``dt`` (default: the latest)."""
    dt = dt or store.get_json(layout.LATEST)["dt"]
    prefix = layout.partition(layout.RECOMMENDATIONS, dt)
    manifest = store.manifest(prefix)
    if manifest is None:
        raise PartitionNotFound(f"s3://{store.bucket}/{prefix} was never published: run publish for {dt}.")
    names = sorted(manifest["files"])  # part-000.parquet, part-001.parquet, … (one per shard)
    return pa.concat_tables([store.read_table(prefix, name.removesuffix(".parquet")) for name in names])
