"""Users' histories as item sequences: ordering, left padding, training windows.

Items are shifted by +1 so that 0 pads a sequence (on the left: the newest item is last).
"""

from __future__ import annotations

from dataclasses import replace

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


def known_only(data: TrainingData, n_items: int) -> TrainingData:
    """``data`` without the interactions of items ≥ ``n_items`` (a model trained on fewer items
    has no embedding for them): what it scores a newer history from."""
    keep = data.items < n_items
    if keep.all():
        return data
    return replace(data, users=data.users[keep], items=data.items[keep], weights=data.weights[keep],
                   last_ts=None if data.last_ts is None else data.last_ts[keep],
                   purchased=None if data.purchased is None else data.purchased[keep])


def last_items(data: TrainingData, users: np.ndarray, n_items: int, length: int) -> np.ndarray:
    """(len(users), length) int64: each user's last ``length`` items < n_items by ``last_ts`` (newest
    last), −1 pads. users: sorted distinct user indices."""
    keep = np.isin(data.users, users) & (data.items < n_items)
    u, i = data.users[keep], data.items[keep]
    ts = data.last_ts[keep] if data.last_ts is not None else np.zeros(len(u), np.int64)
    order = np.lexsort((i, ts, u))
    u, i = u[order], i[order]
    row = np.searchsorted(users, u)
    end = np.searchsorted(u, users, side="right")
    pos = length - (end[row] - np.arange(len(u)))  # the last one at length − 1
    out = np.full((len(users), length), -1, np.int64)
    ok = pos >= 0
    out[row[ok], pos[ok]] = i[ok]
    return out
