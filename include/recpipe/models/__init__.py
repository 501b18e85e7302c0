"""Recommendation models behind one contract (``base.Recommender``), by name.

    base        the contract: TrainingData, FitConfig, Recommender, shared helpers
    keras_fit   device, pointwise input pipeline, the compile/fit/early-stopping loop
    sequences   histories as padded item sequences
    popularity, recent, affinity, propensity, mf, sasrec, two_tower: one module per model
"""

from __future__ import annotations

import importlib

from recpipe.errors import ConfigError
from recpipe.models.base import FitConfig, Recommender, TrainingData

#: name → (module, class). Modules are imported on first use: TensorFlow only for TF models.
REGISTRY = {
    "affinity": ("recpipe.models.affinity", "Affinity"),
    "mf": ("recpipe.models.mf", "MatrixFactorization"),
    "popularity": ("recpipe.models.popularity", "Popularity"),
    "propensity": ("recpipe.models.propensity", "Propensity"),
    "recent": ("recpipe.models.recent", "Recent"),
    "sasrec": ("recpipe.models.sasrec", "SASRec"),
    "two_tower": ("recpipe.models.two_tower", "TwoTower"),
}


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(REGISTRY)}.")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


__all__ = ["REGISTRY", "FitConfig", "Recommender", "TrainingData", "model_class"]
