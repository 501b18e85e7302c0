"""Recommendation models behind one interface (``base.Recommender``), by name."""

from __future__ import annotations

from recpipe.errors import ConfigError
from recpipe.models.base import Recommender, TrainingData


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; TensorFlow is imported only for TF models."""
    if name == "popularity":
        from recpipe.models.popularity import Popularity

        return Popularity
    if name == "mf":
        from recpipe.models.mf import MatrixFactorization

        return MatrixFactorization
    if name == "sasrec":
        from recpipe.models.sasrec import SASRec

        return SASRec
    if name == "two_tower":
        from recpipe.models.two_tower import TwoTower

        return TwoTower
    raise ConfigError(f"unknown model {name!r}: choose one of mf, popularity, sasrec, two_tower.")


__all__ = ["Recommender", "TrainingData", "model_class"]
