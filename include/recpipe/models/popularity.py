"""Time-decayed popularity: the baseline every model must beat, and the cold-start fallback.

No TensorFlow: the score of an item is its interaction weight before D, halved every
``POPULARITY_HALF_LIFE_DAYS`` (``recpipe.stages.features.daily``) days; every user gets the same ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recpipe.models.base import FitConfig, Recommender, TrainingData, pad_items


class Popularity(Recommender):
    name = "popularity"

    def __init__(self, popularity: np.ndarray | None = None):
        self.popularity = popularity

    def fit(self, data: TrainingData, config: FitConfig, initial: Recommender | None = None) -> dict[str, Any]:
        self.popularity = data.popularity.astype(np.float32)
        return {"epochs": 0, "items_with_signal": int((self.popularity > 0).sum())}

    def score(self, users: np.ndarray, n_items: int) -> np.ndarray:
        row = pad_items(self.popularity[None, :], n_items)
        return np.broadcast_to(row, (len(users), n_items))

    def knows(self, users: np.ndarray) -> np.ndarray:
        return np.ones(len(users), dtype=bool)

    def save(self, directory: Path) -> None:
        np.save(directory / "popularity.npy", self.popularity)

    @classmethod
    def load(cls, directory: Path) -> "Popularity":
        return cls(np.load(directory / "popularity.npy"))
