"""Users' histories as item sequences: ordering, left padding, training windows.

Items are shifted by +1 so that 0 pads a sequence (on the left: the newest item is last).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recpipe.errors import DataError
from recpipe.events import EVENT_TYPES
from recpipe.models.base import TrainingData

#: Event type codes of a typed history: 0 pads, 1 … T the contract's EVENT_TYPES (code + 1),
#: T + 1 an interaction without a type (pairs ordered by ``last_ts``, e.g. ratings of a benchmark).
UNTYPED = len(EVENT_TYPES) + 1
TYPE_CODES = len(EVENT_TYPES) + 2


def histories(data: TrainingData) -> list[np.ndarray]:
    """Per user (n_users entries): their item indices + 1, oldest first (last_ts, then item)."""
    if data.last_ts is None:
        raise DataError("sequence models need TrainingData.last_ts (when each item was touched) to order histories.")
    order = np.lexsort((data.items, data.last_ts, data.users))
    items = data.items[order].astype(np.int32) + 1
    bounds = np.searchsorted(data.users[order], np.arange(data.n_users + 1))
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def typed_histories(data: TrainingData, collapse: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per user (n_users entries): (item indices + 1, type codes), oldest first.

    From ``data.events`` when present: every event in time order, repeats included (a re-view
    days later is a position of its own); ``collapse``: a run of consecutive events on one item
    (view, view, add_to_cart) becomes its last event. Else from the pairs (:func:`histories`),
    every one ``UNTYPED``.
    """
    if data.events is None:
        items = histories(data)
        return items, [np.full(len(h), UNTYPED, np.int32) for h in items]
    order = np.argsort(data.events.users, kind="stable")  # grouped by user, time order kept
    u = np.asarray(data.events.users)[order].astype(np.int64)
    i = np.asarray(data.events.items)[order].astype(np.int32) + 1
    t = np.asarray(data.events.types)[order].astype(np.int32) + 1
    if collapse and len(u):
        last = np.r_[(u[1:] != u[:-1]) | (i[1:] != i[:-1]), True]  # the last event of each run
        u, i, t = u[last], i[last], t[last]
    bounds = np.searchsorted(u, np.arange(data.n_users + 1))
    return [i[a:b] for a, b in zip(bounds[:-1], bounds[1:])], [t[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


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
    events = data.events
    if events is not None and not (events.items < n_items).all():
        ok = events.items < n_items
        events = replace(events, users=events.users[ok], items=events.items[ok], types=events.types[ok])
    if keep.all():
        return data if events is data.events else replace(data, events=events)
    return replace(data, users=data.users[keep], items=data.items[keep], weights=data.weights[keep],
                   last_ts=None if data.last_ts is None else data.last_ts[keep],
                   purchased=None if data.purchased is None else data.purchased[keep], events=events)


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
