"""Users' histories as item sequences: ordering, left padding, training windows.

Items are shifted by +1 so that 0 pads a sequence (on the left: the newest item is last).
"""

from __future__ import annotations

import numpy as np

from recpipe.errors import DataError
from recpipe.models.base import TrainingData


def histories(data: TrainingData) -> list[np.ndarray]:
    """Per user (n_users entries): their item indices + 1, oldest first (last_ts, then item)."""
    if data.last_ts is None:
        raise DataError("sequence models need TrainingData.last_ts (when each item was touched) to order histories.")
    order = np.lexsort((data.items, data.last_ts, data.users))
    items = data.items[order].astype(np.int32) + 1
    bounds = np.searchsorted(data.users[order], np.arange(data.n_users + 1))
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def pad_left(rows: list[np.ndarray], length: int) -> np.ndarray:
    """(len(rows), length) int32: the last ``length`` entries of each row, 0-padded on the left."""
    out = np.zeros((len(rows), length), dtype=np.int32)
    for i, row in enumerate(rows):
        row = row[-length:]
        out[i, length - len(row):] = row
    return out


def windows(hists: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs (x, y), each (n_windows, L): y[t] is the item that follows x[t] (0 = none)."""
    xs, ys = [], []
    for h in hists:
        for end in range(len(h) - 1, 0, -length):
            start = max(0, end - length)
            xs.append(h[start:end])
            ys.append(h[start + 1:end + 1])
    return pad_left(xs, length), pad_left(ys, length)
