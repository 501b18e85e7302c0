"""Configuration: where the object store is, and the parameters of one pipeline run.

Both are frozen dataclasses: the library never sees Airflow objects, the DAG layer turns
its connection and ``Param``s into these. Each run parameter carries its description and
bounds, from which the DAG's ``Param``s and the CLI's flags are generated.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from recpipe.events import EVENT_TYPES, EVENT_WEIGHTS
from recpipe.errors import ConfigError

MODELS = ("mf", "popularity", "recent", "affinity", "propensity", "sasrec", "two_tower")
#: train: train a candidate and gate it; republish: publish with the champion of that date.
MODES = ("train", "republish")
#: The drift measures with a drift_<measure>_warn / drift_<measure>_fail pair of params.
DRIFT_MEASURES = ("type_mix", "popularity", "active_ratio", "new_share")


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
                "Export them (for a local dev stack, source its env file: `. .local/env`)."
            )
        return cls(
            bucket=env.get("RECPIPE_BUCKET", "recpipe"),
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            endpoint=env.get("RECPIPE_S3_ENDPOINT", ""),
            region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        )


def _param(default: Any, doc: str, minimum: float | None = None, maximum: float | None = None,
           choices: tuple[str, ...] | None = None) -> Any:
    """A run parameter: its default, what it means, and its bounds (the DAG's trigger form,
    the CLI and :meth:`RunParams.__post_init__` all read these, so they cannot disagree).
    A dict default (a mapping param) is copied for every instance."""
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "choices": choices}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunParams:
    """The knobs of one run; the DAG's trigger form and the CLI flags are generated from these."""

    model: str = _param("mf", "Model to train: mf (matrix factorisation), sasrec (self-attention over recent "
                        "items), two_tower (id + content features, click/purchase heads; scores new items), "
                        "affinity (popular items of the user's categories), propensity (next-day purchase odds learnt from "
                        "the last days' purchases; for shop logs), popularity or recent (the user's recently "
                        "touched items; the two baselines).",
                        choices=MODELS)
    mode: str = _param("train", "train: train and gate a candidate. republish: skip training, publish with the "
                       "champion of that date (for backfills).", choices=MODES)
    top_k: int = _param(10, "Items per user in the table.", 1, 500)
    lookback_days: int = _param(30, "Days of events (before the run date) that features and training see.", 1, 365)
    epochs: int = _param(8, "Maximum training epochs (early stopping may end sooner).", 1, 200)
    embedding_dim: int = _param(32, "Embedding size of the model.", 4, 512)
    negatives: int = _param(4, "Sampled negative items per positive (pointwise models, training examples).", 0, 1000)
    loss: str = _param("auto", "sasrec's training loss: full (softmax over the whole catalog), sampled (softmax over "
                       "the target and shared_negatives items drawn uniformly per batch) or auto (full up to "
                       "4,096 items, sampled above).", choices=("auto", "full", "sampled"))
    shared_negatives: int = _param(256, "sasrec with the sampled loss: negative items drawn per batch and shared "
                                   "by all its positions (unlike negatives, which are per positive).", 1, 100_000)
    max_len: int = _param(0, "sasrec: most recent items per user it reads (0: the 95th percentile of the users' "
                          "history lengths, at most 50).", 0, 1000)
    collapse_repeats: bool = _param(True, "sasrec: consecutive events on one item (view, view, add_to_cart) count "
                                    "as one position, the last; false keeps each. Repeats further apart always count.")
    batch_size: int = _param(1024, "Training batch size.", 1, 1 << 20)
    learning_rate: float = _param(0.01, "Adam's learning rate.", 1e-6, 1.0)
    seed: int = _param(42, "Random seed: same seed and data, same model.", 0)
    max_reject_rate: float = _param(0.05, "Largest share of rejected raw rows before the whole batch fails.", 0, 1)
    max_volume_ratio: float = _param(5.0, "Fail the batch when its row count is off the median of the previous "
                                     "7 days by more than this factor (0: off; else at least 1).", 0, 1000)
    max_unknown_item_rate: float = _param(0.05, "Largest share of events about items the catalog does not list.", 0, 1)
    min_lift_over_popularity: float = _param(0.05, "Candidate NDCG@K must beat popularity by this relative margin.",
                                             0, 10)
    min_lift_over_recent: float = _param(0.0, "The candidate's balance@K (the worse of its hold-out purchase hit "
                                         "rate over the recent heuristic's and its new-item hit rate over "
                                         "popularity's) must reach the recent heuristic's times 1 + this.", 0, 10)
    max_drop_vs_champion: float = _param(0.02, "Candidate NDCG@K may be at most this much (relative) below the "
                                         "serving model's (the one that published the latest table).", 0, 1)
    confidence_level: float = _param(0.9, "The gate's thresholds apply to the lower bound of this two-sided "
                                     "paired-bootstrap interval of the candidate's NDCG@K gain (over users, 1,000 "
                                     "resamples) against popularity and the serving model; 0: the point estimate.",
                                     0, 0.999)
    max_slice_drop: float = _param(0.2, "No slice of the hold-out (new/returning users, activity terciles, "
                                   "head/torso/tail items, top categories; those of at least 50 users) may lose more "
                                   "than this share (relative) of the serving model's NDCG@K; with confidence_level "
                                   "> 0 only a loss the interval's upper bound confirms counts. 1: off.", 0, 1)
    diversity: float = _param(0.0, "MMR re-ranking at publish (and as the gate judges): λ in [0, 1] trades the "
                              "model's relevance for lists spanning more item categories; 0: off, the model's "
                              "order.", 0, 1)
    allow_worse_family_switch: bool = _param(False, "Let a candidate of another model family than the serving "
                                             "model replace it with a lower NDCG@K (by at most "
                                             "max_drop_vs_champion); off: a family switch must not be worse.")
    exclude_purchased: bool = _param(True, "Never recommend what the user already bought.")
    warm_start: bool = _param(False, "Continual training: start from the previous champion's weights, grown for "
                              "new users and items.")
    publish_shards: int = _param(1, "Score users in this many parallel publish tasks (one per user shard).", 1, 64)
    fail_on_rejection: bool = _param(True, "Mark the run failed when the gate rejects the candidate (the "
                                     "champion's table is still published).")
    repeat_slots: int = _param(-1, "Slots of each user's list given to their recently touched items (not bought), "
                               "ahead of the model's items, which are then items the user never touched: -1 lets "
                               "the gate choose 0..top_k by hold-out balance@K (purchases and new items).", -1, 500)
    event_weights: dict = _param(EVENT_WEIGHTS, "Weight of each event type as implicit feedback (popularity, "
                                 "interaction weights, the recent heuristic); give only the types to change, "
                                 "e.g. {\"purchase\": 8}.")
    event_type_map: dict = _param({}, "The producer's own event type names mapped to contract types, e.g. "
                                  "{\"pv\": \"view\", \"fav\": \"favorite\", \"cart\": \"add_to_cart\", "
                                  "\"buy\": \"purchase\"}; unmapped unknown types are quarantined.")
    max_unavailable_share: float = _param(0.5, "Flag the quality report when the catalog snapshot marks more than "
                                          "this share of the day's items unavailable (or does not list them).", 0, 1)
    # drift of a day against the previous 7 (recpipe.stages.validate.drift): warn flags the quality report,
    # fail fails the batch (a data error, no retry); 0 turns a threshold off
    drift_type_mix_warn: float = _param(0.1, "Warn when the event-type mix moves from the previous 7 days' mean by "
                                        "more than this total-variation distance (beyond the days' own variation).",
                                        0, 1)
    drift_type_mix_fail: float = _param(0.3, "Fail the batch at this event-type mix drift (as drift_type_mix_warn).",
                                        0, 1)
    drift_popularity_warn: float = _param(0.1, "Warn when the item-popularity distribution's Jensen-Shannon "
                                          "divergence (base 2) to the previous 7 days' mean exceeds the days' own "
                                          "by more than this.", 0, 1)
    drift_popularity_fail: float = _param(0.3, "Fail the batch at this popularity drift (as drift_popularity_warn).",
                                          0, 1)
    drift_active_ratio_warn: float = _param(2.0, "Warn when the distinct users or items are off the previous 7 "
                                            "days' mean by more than this factor (0: off; else at least 1).", 0, 1000)
    drift_active_ratio_fail: float = _param(5.0, "Fail the batch at this factor (as drift_active_ratio_warn).",
                                            0, 1000)
    drift_new_share_warn: float = _param(0.2, "Warn when the share of users or items not seen on the previous 7 "
                                         "days moves by more than this (absolute) from the previous days' share.",
                                         0, 1)
    drift_new_share_fail: float = _param(0.5, "Fail the batch at this change (as drift_new_share_warn).", 0, 1)
    min_full_user_share: float = _param(0.5, "Publish refuses a table in which fewer than this share of the "
                                        "users get min(top_k, their candidates) items.", 0, 1)
    max_personalized_drop: float = _param(0.5, "Publish refuses a table whose share of personalised users "
                                          "dropped by more than this (relative) against the previous "
                                          "published date.", 0, 1)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta["choices"] is not None and value not in meta["choices"]:
                raise ConfigError(f"unknown {f.name} {value!r}: choose one of {', '.join(meta['choices'])}.")
            low, high = meta["minimum"], meta["maximum"]
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f">= {low}" if high is None else f"within [{low}, {high}]"
                raise ConfigError(f"{f.name} must be {bounds}, got {value}.")
        if self.max_volume_ratio != 0 and self.max_volume_ratio < 1:
            raise ConfigError(f"max_volume_ratio must be 0 (off) or >= 1, got {self.max_volume_ratio}.")
        for name in ("drift_active_ratio_warn", "drift_active_ratio_fail"):
            if 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be 0 (off) or >= 1 (a factor either way), got {getattr(self, name)}.")
        for measure in DRIFT_MEASURES:
            warn, fail = getattr(self, f"drift_{measure}_warn"), getattr(self, f"drift_{measure}_fail")
            if warn and fail and warn > fail:
                raise ConfigError(f"drift_{measure}_warn ({warn}) is above drift_{measure}_fail ({fail}): the warning "
                                  "must come first; lower it, or set it to 0 (off).")
        object.__setattr__(self, "event_weights", _weights(self.event_weights))
        unknown = sorted(set(self.event_type_map.values()) - set(EVENT_TYPES))
        if unknown:
            raise ConfigError(f"event_type_map maps to {unknown}, which are not contract event types: map each "
                              f"name to one of {', '.join(EVENT_TYPES)}.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RunParams":
        """Build from a dict (DAG params, CLI), ignoring keys that are not run parameters."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _weights(given: Mapping[str, Any]) -> dict[str, float]:
    """The default event weights with ``given`` overriding some; every type, in contract order."""
    unknown = sorted(set(given) - set(EVENT_TYPES))
    if unknown:
        raise ConfigError(f"event_weights names {unknown}, which are not contract event types "
                          f"({', '.join(EVENT_TYPES)}).")
    merged = {t: float(given.get(t, EVENT_WEIGHTS[t])) for t in EVENT_TYPES}
    if any(w < 0 for w in merged.values()):
        raise ConfigError(f"event_weights must be >= 0, got {merged}.")
    return merged
