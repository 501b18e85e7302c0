"""Configuration: where the object store is, and the parameters of one pipeline run.

Both are frozen dataclasses: the library never sees Airflow objects, the DAG layer turns
its connection and ``Param``s into these.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from recpipe.errors import ConfigError

MODELS = ("mf", "popularity", "sasrec", "two_tower")
#: train: train a candidate and gate it; republish: publish with the champion of that date.
MODES = ("train", "republish")


@dataclass(frozen=True)
class StoreConfig:
    """S3-compatible object store: endpoint ("" means AWS itself), bucket and keys."""

    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    endpoint: str = ""
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "StoreConfig":
        """Read ``RECPIPE_S3_ENDPOINT``, ``RECPIPE_BUCKET`` and the ``AWS_*`` variables."""
        env = os.environ if env is None else env
        missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: recpipe needs S3 credentials. "
                "For the embedded stack run `make up` and then `. .local/env`."
            )
        return cls(
            bucket=env.get("RECPIPE_BUCKET", "recpipe"),
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            endpoint=env.get("RECPIPE_S3_ENDPOINT", ""),
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )


@dataclass(frozen=True)
class RunParams:
    """The knobs of one run; the DAG's trigger form and the CLI flags map onto these."""

    model: str = "mf"
    mode: str = "train"
    top_k: int = 10
    lookback_days: int = 30
    epochs: int = 8
    embedding_dim: int = 32
    negatives: int = 4
    batch_size: int = 1024
    learning_rate: float = 0.01
    seed: int = 42
    max_reject_rate: float = 0.05
    max_volume_ratio: float = 5.0
    max_unknown_item_rate: float = 0.05
    min_lift_over_popularity: float = 0.05
    max_drop_vs_champion: float = 0.02
    exclude_purchased: bool = True
    #: continual training: start from the champion of the day before (grown for new ids)
    warm_start: bool = False
    #: publish scores users in this many shards (parallel mapped tasks in the DAG)
    publish_shards: int = 1
    #: a rejected candidate marks the DAG run failed (after the champion's table is published)
    fail_on_rejection: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}.")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}.")
        for name in ("top_k", "lookback_days", "epochs", "embedding_dim", "batch_size", "publish_shards"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("max_reject_rate", "max_unknown_item_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be within [0, 1], got {getattr(self, name)}.")
        if self.max_volume_ratio != 0 and self.max_volume_ratio < 1:
            raise ConfigError(f"max_volume_ratio must be 0 (off) or >= 1, got {self.max_volume_ratio}.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RunParams":
        """Build from a dict (DAG params, CLI), ignoring keys that are not run parameters."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
