"""Pseudonymous user ids: keyed, stable, and off unless a key is set."""

import hashlib
import hmac

import pyarrow as pa
import pytest

from recpipe import privacy
from recpipe.errors import ConfigError

KEY = b"0123456789abcdef-test-key"


def test_replaces_every_user_id_by_its_keyed_hash():
    table = pa.table({"user_id": ["u1", "u2", "u1"], "item_id": ["a", "b", "c"]})
    out = privacy.pseudonymise(table, KEY)
    expected = ["p_" + hmac.new(KEY, u.encode(), hashlib.sha256).hexdigest()[:32] for u in ("u1", "u2", "u1")]
    assert out["user_id"].to_pylist() == expected
    assert out["item_id"] == table["item_id"] and out.schema == table.schema
    # another key, other pseudonyms; no key, no change
    assert privacy.pseudonymise(table, KEY + b"x")["user_id"].to_pylist()[0] != expected[0]
    assert privacy.pseudonymise(table, None) is table


def test_key_comes_from_the_environment_and_must_be_long_enough():
    assert privacy.key_from_env({}) is None
    assert privacy.key_from_env({privacy.ENV: KEY.decode()}) == KEY
    with pytest.raises(ConfigError, match="at least 16"):
        privacy.key_from_env({privacy.ENV: "short"})
