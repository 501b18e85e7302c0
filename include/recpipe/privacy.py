"""Pseudonymous user ids: a keyed hash applied before anything downstream sees a user id.

Set ``RECPIPE_PSEUDONYM_KEY`` (16+ characters; from a secret store, never the repo) and the
quality gate writes ``clean/events`` with ``user_id`` replaced by
``HMAC-SHA256(key, user_id)`` (first 32 hex digits, prefixed ``p_``); the features stage
maps user profiles the same way, so they still join. Features, models and the published
table then only ever hold pseudonyms; whoever holds the key can map a known id to its
pseudonym (not back). ``quarantine/`` keeps the raw rows for debugging: restrict access
to it. Turning the option on or off, or changing the key, starts new user histories:
decide it before the first run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.errors import ConfigError

ENV = "RECPIPE_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 16


def key_from_env(env: Mapping[str, str] | None = None) -> bytes | None:
    """The pseudonymisation key, or None when the option is off."""
    value = (os.environ if env is None else env).get(ENV, "")
    if not value:
        return None
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigError(f"{ENV} is set but has {len(value)} characters: use at least {MIN_KEY_LENGTH} "
                          "random ones (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), or unset it.")
    return value.encode()


def pseudonym(user_id: str, key: bytes) -> str:
    return "p_" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymise(table: pa.Table, key: bytes | None, column: str = "user_id") -> pa.Table:
    """``table`` with ``column`` replaced by pseudonyms (unchanged when ``key`` is None)."""
    if key is None or table.num_rows == 0:
        return table
    encoded = pc.dictionary_encode(table[column].combine_chunks())
    mapped = np.array([pseudonym(v, key) for v in encoded.dictionary.to_pylist()], dtype=object)
    values = pa.array(mapped[encoded.indices.to_numpy()], pa.string())
    return table.set_column(table.schema.get_field_index(column), table.schema.field(column), values)
