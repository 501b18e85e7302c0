"""SASRec on a toy sequential world: every user walks the catalogue i → i+1 (mod N)."""

from dataclasses import replace

import numpy as np
import pytest

from recpipe.events import EVENT_TYPES
from recpipe.models import FitConfig
from recpipe.models import TrainingData, model_class
from recpipe.models.base import Events
from recpipe.models.sasrec import SASRec
from recpipe.models.sequences import UNTYPED, histories, typed_histories, windows
from recpipe.models.keras_fit import setup_device

N_ITEMS, N_USERS, LENGTH = 12, 48, 8
PARAMS = FitConfig(embedding_dim=16, epochs=20, batch_size=16, learning_rate=0.01, seed=3)


def walks() -> TrainingData:
    """User u rated items s, s+1, ..., s+LENGTH-1 (mod N_ITEMS), s = u mod N_ITEMS, in that order.

    Timestamps run backwards in item index for half the users, so only last_ts (not the item
    index) gives the order. Hand-derived truth: user u's next item is (s + LENGTH) mod N_ITEMS.
    """
    users = np.repeat(np.arange(N_USERS), LENGTH)
    step = np.tile(np.arange(LENGTH), N_USERS)
    items = (users % N_ITEMS + step) % N_ITEMS
    ts = 1_700_000_000_000_000 + users * 10**9 + step * 10**6
    order = np.random.default_rng(0).permutation(len(users))  # input order must not matter
    return TrainingData(users[order], items[order], np.ones(len(users), np.float32), N_USERS, N_ITEMS,
                        np.bincount(items, minlength=N_ITEMS).astype(np.float32), ts[order])


def fitted(data: TrainingData) -> SASRec:
    setup_device(PARAMS.seed)
    model = SASRec(max_len=LENGTH, dropout=0.2)  # a toy world of 12 items: the default 0.5 is for real catalogs
    model.fit(data, PARAMS)
    return model


@pytest.fixture(scope="module")
def model():
    return fitted(walks())


def test_registered():
    assert model_class("sasrec") is SASRec


def test_histories_and_windows_follow_last_ts():
    data = walks()
    hist = histories(data)
    assert hist[5].tolist() == [(5 + t) % N_ITEMS + 1 for t in range(LENGTH)]  # items shifted by +1
    x, y = windows([np.array([1, 2, 3, 4, 5])], 3)
    assert x.tolist() == [[2, 3, 4], [0, 0, 1]] and y.tolist() == [[3, 4, 5], [0, 0, 2]]


def test_learns_the_next_item(model):
    users = np.arange(N_USERS)
    scores = model.score(users, N_ITEMS)
    assert scores.shape == (N_USERS, N_ITEMS) and scores.dtype == np.float32
    top3 = np.argsort(-scores, axis=1)[:, :3]
    truth = (users % N_ITEMS + LENGTH) % N_ITEMS
    assert (top3 == truth[:, None]).any(axis=1).mean() >= 0.9
    assert model.knows(np.array([0, N_USERS - 1, N_USERS])).tolist() == [True, True, False]


def test_save_load_scores_identically_and_new_items_are_minus_inf(model, tmp_path):
    users = np.array([0, 7, 30, N_USERS + 5])
    model.save(tmp_path)
    loaded = SASRec.load(tmp_path)
    before, after = model.score(users, N_ITEMS + 3), loaded.score(users, N_ITEMS + 3)
    np.testing.assert_array_equal(before, after)
    assert np.isneginf(after[:, N_ITEMS:]).all() and np.isfinite(after[:, :N_ITEMS]).all()


def test_with_history_scores_from_the_new_sequences(model):
    data = walks()
    longer = TrainingData(np.r_[data.users, 0], np.r_[data.items, LENGTH % N_ITEMS], np.r_[data.weights, 1],
                          N_USERS, N_ITEMS, data.popularity, np.r_[data.last_ts, 1_800_000_000_000_000])
    moved = model.with_history(longer).score(np.array([0]), N_ITEMS)
    assert np.argmax(moved[0]) == (LENGTH + 1) % N_ITEMS  # user 0 now sits on item LENGTH


def test_deterministic_for_a_seed(model):
    again = fitted(walks())
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(model.score(users, N_ITEMS), again.score(users, N_ITEMS))


def _events(rows: list[list[tuple[int, str]]]) -> Events:
    """Events of users 0, 1, … from their (item, type) lists, oldest first."""
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    flat = [e for r in rows for e in r]
    return Events(users, np.array([i for i, _ in flat]), np.array([EVENT_TYPES.index(t) for _, t in flat], np.int8))


def test_typed_histories_keep_repeats_and_collapse_only_consecutive_ones():
    rows = [[(3, "view"), (3, "view"), (3, "add_to_cart"), (5, "view"), (3, "view")], [(7, "purchase")], []]
    data = replace(walks(), n_users=3, events=_events(rows))
    code = {t: EVENT_TYPES.index(t) + 1 for t in EVENT_TYPES}
    items, types = typed_histories(data, collapse=True)
    assert [h.tolist() for h in items] == [[4, 6, 4], [8], []]  # the run 3, 3, 3 is one position: its last event
    assert [t.tolist() for t in types] == [[code["add_to_cart"], code["view"], code["view"]], [code["purchase"]], []]
    items, types = typed_histories(data, collapse=False)
    assert items[0].tolist() == [4, 4, 4, 6, 4] and types[0].tolist() == [code[t] for _, t in rows[0]]
    items, types = typed_histories(walks())  # no events: the pairs by last_ts, untyped
    assert items[5].tolist() == histories(walks())[5].tolist() and set(np.concatenate(types)) == {UNTYPED}


def test_the_event_type_is_an_input():
    """After item 0, a cart leads to item 1 and a view to item 2: only the type tells them apart.
    (Two-event histories: none is held out, so the fit is the same every run.)"""
    rng = np.random.default_rng(1)
    kinds = rng.choice(["add_to_cart", "view"], 240)
    events = _events([[(0, kind), (1 if kind == "add_to_cart" else 2, "view")] for kind in kinds])
    users = np.asarray(events.users)
    data = TrainingData(users, events.items, np.ones(len(users), np.float32), len(kinds), N_ITEMS,
                        np.bincount(events.items, minlength=N_ITEMS).astype(np.float32),
                        np.arange(len(users), dtype=np.int64), events=events)
    setup_device(PARAMS.seed)
    model = SASRec(max_len=4, dropout=0.1)
    model.fit(data, replace(PARAMS, epochs=30, batch_size=32))
    now = _events([[(5, "view"), (0, "add_to_cart")], [(5, "view"), (0, "view")]])
    fresh = model.with_history(replace(data, n_users=2, events=now))
    scores = fresh.score(np.arange(2), N_ITEMS)
    assert scores[0, 1] > 2 * scores[0, 2] and scores[1, 2] > 2 * scores[1, 1]
