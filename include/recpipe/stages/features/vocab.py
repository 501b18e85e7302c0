"""Id vocabularies (``vocab/users``, ``vocab/items``): raw ids → dense indices, append-only.

Columns ``id``, ``first_dt``. An id keeps its position forever, the unseen ids of a day are
appended sorted, and ``first_dt`` (the earliest date the id was seen, which a backfill may
lower) lets each date see only the ids it could have known. A vocabulary is committed
(compare-and-swap on its manifest) before any aggregate that uses its new indices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.errors import ConcurrentUpdate, StorageError
from recpipe.io import layout
from recpipe.io.partitions import Store

log = logging.getLogger(__name__)


@dataclass
class Vocab:
    """One append-only vocabulary: ``ids[i]`` has index i; ``first_dt[i]`` when it was first seen."""

    name: str
    ids: pa.Array
    first_dt: np.ndarray  # datetime64[D]
    run_id: str | None = None
    pending: list[tuple[pa.Array, np.datetime64]] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return layout.vocab(self.name)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: pa.Array | pa.ChunkedArray, seen: str | date) -> int:
        """Append the unseen ``ids`` (sorted) and lower ``first_dt`` of the known ones; returns #new."""
        day = np.datetime64(str(seen), "D")
        ids = pc.unique(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids).drop_null()
        if not len(ids):
            return 0
        new, changed = self._apply(ids, day)
        if changed:
            self.pending.append((ids, day))
        return new

    def _apply(self, ids: pa.Array, day: np.datetime64) -> tuple[int, bool]:
        """Apply one addition; returns (#new ids, whether anything changed)."""
        pos = pc.index_in(ids, value_set=self.ids)
        known = pc.is_valid(pos).to_numpy(zero_copy_only=False)
        lowered = False
        if known.any():
            at = pos.drop_null().to_numpy().astype(np.int64)
            later = self.first_dt[at] > day
            if later.any():
                self.first_dt[at[later]] = day
                lowered = True
        new = ids.filter(pa.array(~known))
        if len(new):
            new = pc.take(new, pc.array_sort_indices(new))
            self.ids = pa.concat_arrays([self.ids, new])
            self.first_dt = np.concatenate([self.first_dt, np.full(len(new), day)])
        return len(new), bool(len(new)) or lowered

    def index(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Dense indices of ``ids`` (all must be in the vocabulary)."""
        idx = pc.index_in(ids, value_set=self.ids)
        if idx.null_count:
            raise ValueError(f"vocab/{self.name}: {idx.null_count} ids are not in the vocabulary")
        return idx.to_numpy().astype(np.int32)

    def known_on(self, dt: str) -> np.ndarray:
        """Boolean mask of the ids seen on or before ``dt``."""
        return self.first_dt <= np.datetime64(dt, "D")

    def size_on(self, dt: str) -> int:
        """1 + the largest index seen on or before ``dt``: the index space of that date."""
        known = np.flatnonzero(self.known_on(dt))
        return int(known[-1]) + 1 if len(known) else 0

    def table(self) -> pa.Table:
        return pa.table({"id": self.ids, "first_dt": pa.array(self.first_dt.astype("datetime64[D]"), pa.date32())})


def load_vocab(store: Store, name: str) -> Vocab:
    """``vocab/<name>`` as committed (empty if never written)."""
    prefix = layout.vocab(name)
    manifest = store.manifest(prefix)
    if manifest is None:
        return Vocab(name, pa.array([], pa.string()), np.array([], "datetime64[D]"))
    table = store.read_table(prefix, "ids")
    ids = table["id"].combine_chunks()
    if "first_dt" in table.column_names:  # vocabularies written before first_dt: seen since always
        first = table["first_dt"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
    else:
        first = np.full(len(ids), np.datetime64("0001-01-01", "D"))
    return Vocab(name, ids, first, manifest["run_id"])


def save_vocab(store: Store, vocab: Vocab, attempts: int = 5) -> Vocab:
    """Commit the pending additions; if another run committed meanwhile, replay them on its version.

    Returns the committed vocabulary (indices computed before a replay may be stale: map ids
    with the returned one).
    """
    for _ in range(attempts):
        if not vocab.pending:
            return vocab
        current = store.manifest(vocab.prefix)
        if (current or {}).get("run_id") != vocab.run_id:
            log.warning("vocab/%s changed under this run; replaying %d additions", vocab.name, len(vocab.pending))
            fresh = load_vocab(store, vocab.name)
            for ids, day in vocab.pending:
                fresh._apply(ids, day)
            fresh.pending = vocab.pending
            vocab = fresh
            continue
        before = len(vocab)
        try:  # commits only if nobody committed since we loaded it
            manifest = store.write_partition(vocab.prefix, {"ids": vocab.table()}, {"n": len(vocab)},
                                             replaces=vocab.run_id)
        except ConcurrentUpdate:
            continue  # the next attempt sees the other run's commit and replays onto it
        vocab.run_id, vocab.pending = manifest["run_id"], []
        log.info("vocab/%s: %d ids committed", vocab.name, before)
        return vocab
    raise StorageError(f"vocab/{vocab.name} kept changing under this run ({attempts} attempts); retry the task.")
