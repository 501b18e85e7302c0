"""Daily aggregates and vocabularies without a store: the pure parts of the features stage."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recpipe.stages.features import arrays, daily
from recpipe import contracts
from recpipe.stages.features.daily import compute_daily
from recpipe.stages.features.vocab import Vocab, load_vocab, save_vocab
from recpipe.errors import ConcurrentUpdate
from recpipe.io.partitions import ANY

DT = "2024-05-02"
SPEC = daily.Spec(sequence_length=50, event_weights=dict(contracts.EVENT_WEIGHTS, purchase=7.5))  # one overridden
START_US = int(datetime(2024, 5, 2, tzinfo=timezone.utc).timestamp() * 1_000_000)


def _events(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 40, n).astype(np.int32), rng.integers(0, 25, n).astype(np.int32),
            rng.integers(0, len(contracts.EVENT_TYPES), n).astype(np.int8),
            START_US + rng.integers(0, 2_000, n) * 43_200_000)  # coarse: many ties


def test_daily_aggregates_match_a_naive_group_by():
    u, i, c, ts = _events(3_000)
    out = compute_daily(u, i, c, ts, DT, daily.Spec(5, SPEC.event_weights))
    w = np.array([SPEC.event_weights[t] for t in contracts.EVENT_TYPES])[c]
    t = pa.table({"u": u, "i": i, "c": c, "w": w, "ts": ts, "buy": np.where(c == daily.PURCHASE, ts, -1)})
    ref = t.group_by(["u", "i"]).aggregate([("w", "sum"), ("w", "count"), ("ts", "max"), ("buy", "max")]).sort_by(
        [("u", "ascending"), ("i", "ascending")])
    pairs = out["pairs"]
    assert pairs["user_idx"].to_pylist() == ref["u"].to_pylist()
    assert pairs["item_idx"].to_pylist() == ref["i"].to_pylist()
    assert pairs["weight"].to_pylist() == ref["w_sum"].to_pylist()
    assert pairs["n_events"].to_pylist() == ref["w_count"].to_pylist()
    assert pc.cast(pairs["last_ts"], pa.int64()).to_pylist() == ref["ts_max"].to_pylist()
    buy = [None if b < 0 else b for b in ref["buy_max"].to_pylist()]
    assert pc.cast(pairs["last_purchase_ts"], pa.int64()).to_pylist() == buy
    per_type = sum(pairs[col].to_numpy() for col in daily.TYPE_COLUMNS)
    assert per_type.tolist() == pairs["n_events"].to_pylist()

    users = out["users"]
    ref_u = t.group_by("u").aggregate([("w", "count"), ("w", "sum"), ("ts", "max")]).sort_by("u")
    assert users["user_idx"].to_pylist() == ref_u["u"].to_pylist()
    assert users["n_events"].to_pylist() == ref_u["w_count"].to_pylist()
    assert users["weight"].to_pylist() == ref_u["w_sum"].to_pylist()

    items = out["items"]
    ref_i = t.group_by("i").aggregate([("w", "count"), ("u", "count_distinct")]).sort_by("i")
    assert items["item_idx"].to_pylist() == ref_i["i"].to_pylist()
    assert items["n_events"].to_pylist() == ref_i["w_count"].to_pylist()
    assert items["n_users"].to_pylist() == ref_i["u_count_distinct"].to_pylist()
    decayed = np.bincount(i, w * np.exp2((ts - START_US) / (7 * daily.DAY_US)), minlength=25)
    np.testing.assert_allclose(items["decayed"].to_numpy(), decayed[items["item_idx"].to_numpy()], rtol=1e-12)

    # sequences: per user the last 5 events by (ts, event type, item)
    seq = out["sequences"]
    order = np.lexsort((i, c, ts, u))
    want = {}
    for k in order:
        want.setdefault(int(u[k]), []).append((int(i[k]), int(c[k]), int(ts[k])))
    got = {}
    for r in seq.to_pylist():
        got.setdefault(r["user_idx"], []).append(
            (r["item_idx"], r["event"], int(r["event_ts"].timestamp() * 1_000_000)))
    assert got == {k: v[-5:] for k, v in want.items()}


def test_daily_aggregates_are_deterministic_and_an_empty_day_keeps_the_schemas():
    args = _events(500, seed=3)
    a, b = compute_daily(*args, DT, SPEC), compute_daily(*args, DT, SPEC)
    assert all(a[k].equals(b[k]) for k in a)
    empty = compute_daily(*(x[:0] for x in args), DT, SPEC)
    assert all(empty[k].num_rows == 0 and empty[k].schema == a[k].schema for k in a)


def _vocab(ids=(), day="2024-05-01") -> Vocab:
    v = Vocab("users", pa.array([], pa.string()), np.array([], "datetime64[D]"))
    if ids:
        v.add(pa.array(list(ids)), day)
    return v


def test_a_vocabulary_appends_sorted_new_ids_and_never_moves_old_ones():
    v = _vocab(["b", "a", "b"], "2024-05-02")
    assert v.ids.to_pylist() == ["a", "b"]
    assert v.add(pa.array(["c", "a", None, "0"]), "2024-05-03") == 2
    assert v.ids.to_pylist() == ["a", "b", "0", "c"]  # the new ones go after, sorted among themselves
    assert v.index(pa.array(["c", "a"])).tolist() == [3, 0]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.index(pa.array(["zz"]))
    # a backfill of an older day lowers first_dt, never the position
    v.add(pa.array(["c"]), "2024-05-01")
    assert v.ids.to_pylist() == ["a", "b", "0", "c"]
    assert [str(d) for d in v.first_dt] == ["2024-05-02", "2024-05-02", "2024-05-03", "2024-05-01"]
    assert v.known_on("2024-05-01").tolist() == [False, False, False, True]
    assert v.size_on("2024-05-01") == 4 and v.size_on("2024-05-02") == 4 and v.size_on("2024-04-30") == 0
    # nothing new: nothing to commit
    v.pending.clear()
    assert v.add(pa.array(["a", "b"]), "2024-05-09") == 0 and v.pending == []


class _MemoryStore:
    """Just what the vocabularies use of a Store: manifests, tables, commits."""

    def __init__(self):
        self.parts: dict[str, tuple[dict, dict]] = {}

    def manifest(self, prefix):
        return self.parts[prefix][0] if prefix in self.parts else None

    def read_table(self, prefix, name, columns=None):
        return self.parts[prefix][1][name]

    def write_partition(self, prefix, tables, meta=None, replaces=ANY):
        if replaces is not ANY and (self.manifest(prefix) or {}).get("run_id") != replaces:
            raise ConcurrentUpdate(prefix)  # as the real Store's conditional commit
        manifest = {"run_id": uuid.uuid4().hex[:12], "meta": dict(meta or {})}
        self.parts[prefix] = (manifest, dict(tables))
        return manifest


def test_concurrent_vocabulary_commits_replay_instead_of_overwriting():
    store = _MemoryStore()
    base = _vocab(["a", "b"])
    save_vocab(store, base)
    mine, theirs = load_vocab(store, "users"), load_vocab(store, "users")
    mine.add(pa.array(["m1", "b"]), "2024-05-03")
    theirs.add(pa.array(["t1"]), "2024-05-02")
    save_vocab(store, theirs)  # commits first
    merged = save_vocab(store, mine)
    assert merged.ids.to_pylist() == ["a", "b", "t1", "m1"]  # their id kept its index; mine came after
    assert load_vocab(store, "users").ids.to_pylist() == ["a", "b", "t1", "m1"]
    assert merged.index(pa.array(["m1"])).tolist() == [3]


def test_a_vocabulary_written_before_first_dt_counts_as_known_since_always():
    store = _MemoryStore()
    store.write_partition("vocab/items", {"ids": pa.table({"id": ["x", "y"]})})
    v = load_vocab(store, "items")
    assert v.size_on("1990-01-01") == 2
    v.add(pa.array(["z"]), "2024-05-01")
    assert save_vocab(store, v).table()["first_dt"].to_pylist()[-1].isoformat() == "2024-05-01"


def test_unique_is_sorted_distinct():
    x = np.array([5, 1, 5, 3, 1], np.int64)
    assert arrays.unique(x).tolist() == [1, 3, 5]
    assert arrays.unique(x[:0]).tolist() == []
