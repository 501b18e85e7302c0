"""The publish stage: the top-K table ``recommendations/dt=D/`` for downstream consumers.

    table   score users in shards, check, commit atomically, read back
    checks  what a table must pass before it is committed
    refresh today's table re-scored for the users of each intraday drop (no training)
"""

from recpipe.stages.publish.refresh import pending_drops, refresh
from recpipe.stages.publish.table import COLUMNS, check, commit, publish, publish_shard, read

__all__ = ["COLUMNS", "check", "commit", "pending_drops", "publish", "publish_shard", "read", "refresh"]
