"""The publish stage: the top-K table ``recommendations/dt=D/`` for downstream consumers.

    table   score users in shards, check, commit atomically, read back
    checks  what a table must pass before it is committed
"""

from recpipe.stages.publish.table import COLUMNS, check, commit, publish, publish_shard, read

__all__ = ["COLUMNS", "check", "commit", "publish", "publish_shard", "read"]
