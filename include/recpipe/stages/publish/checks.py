"""The checks a table passes before it is committed (TFX's InfraValidator idea, for a table).

Each shard measures its own rows (:func:`measure`); the commit adds the shards up
(:func:`combine`) and refuses the table (:func:`problems`) when it is broken or degenerate:

- hard: empty; an item twice for a user; an unavailable item; a user with more than K rows;
- degenerate: fewer than ``min_full_user_share`` of the users get min(K, their candidates)
  items (candidates: the available items, less what the user is excluded from), or the
  share of personalised users dropped by more than ``max_personalized_drop`` (relative)
  against the previous published date.

A refused table is not committed: the previous table stays and ``_latest`` does not move.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recpipe.config import RunParams

#: Counts that add up over shards; ``distinct_items`` is a lower bound over shards (their max).
ADDITIVE = ("users", "personalized_users", "rows", "full_users", "over_k_users", "duplicate_rows", "unavailable_rows")


def measure(row_users: np.ndarray, row_items: np.ndarray, users: np.ndarray, personalized: int,
            available: np.ndarray, exclude: tuple[np.ndarray, np.ndarray] | None, k: int) -> dict[str, int]:
    """What the checks need of one shard's rows.

    row_users, row_items: (rows,) the table's user and item indices; users: (n,) the shard's
    users; available: (n_items,) bool; exclude: (user_idx, item_idx) pairs never recommended.
    """
    users = np.sort(np.asarray(users))  # distinct: each user's position in this order is theirs
    rows = np.bincount(np.searchsorted(users, row_users), minlength=len(users))
    excluded = np.zeros(len(users), np.int64)
    if exclude is not None and len(exclude[0]) and len(users):
        ex_u, ex_i = (np.asarray(a) for a in exclude)
        at = np.minimum(np.searchsorted(users, ex_u), len(users) - 1)
        mine = (users[at] == ex_u) & available[ex_i]  # this shard's users, items they could have got
        excluded = np.bincount(at[mine], minlength=len(users))
    want = np.minimum(k, int(available.sum()) - excluded)
    pairs = np.unique(row_users.astype(np.int64) << 32 | row_items.astype(np.int64))
    return {
        "users": int(len(users)),
        "personalized_users": int(personalized),
        "rows": int(len(row_users)),
        "full_users": int((rows == want).sum()),
        "over_k_users": int((rows > k).sum()),
        "duplicate_rows": int(len(row_users) - len(pairs)),
        "unavailable_rows": int((~available[row_items]).sum()),
        "distinct_items": int(len(np.unique(row_items))),
        "available_items": int(available.sum()),
    }


def combine(shards: list[dict[str, int]]) -> dict[str, int]:
    """The whole table's measures from its shards'."""
    total = {name: sum(s[name] for s in shards) for name in ADDITIVE}
    total["distinct_items"] = max((s["distinct_items"] for s in shards), default=0)
    total["available_items"] = shards[0]["available_items"] if shards else 0
    return total


def problems(total: dict[str, int], previous: dict[str, Any] | None, params: RunParams) -> list[str]:
    """Why the table must not be committed (empty when it may)."""
    out = []
    if total["rows"] == 0:
        cause = ("no item is available: the catalog snapshot marks every one of the date's items unavailable; "
                 "check the catalog's `available` column (raw/items)" if total["available_items"] == 0
                 else f"no user got a single item ({total['users']} users)")
        out.append(f"the table is empty: {cause}.")
    if total["duplicate_rows"]:
        out.append(f"{total['duplicate_rows']} rows repeat an item for the same user.")
    if total["unavailable_rows"]:
        out.append(f"{total['unavailable_rows']} rows recommend an unavailable item.")
    if total["over_k_users"]:
        out.append(f"{total['over_k_users']} users got more than top_k={params.top_k} items.")
    full = total["full_users"] / total["users"] if total["users"] else 0.0
    if total["rows"] and full < params.min_full_user_share:
        out.append(f"only {full:.0%} of the {total['users']} users got min(top_k, their candidates) items, "
                   f"below min_full_user_share {params.min_full_user_share:.0%} (does the model score most items "
                   "-inf, or is most of the catalog unavailable?).")
    if previous and previous.get("users") and total["users"]:
        before = previous["personalized_users"] / previous["users"]
        now = total["personalized_users"] / total["users"]
        if now < before * (1 - params.max_personalized_drop):
            out.append(f"the share of personalised users fell from {before:.0%} (dt={previous['dt']}) to {now:.0%}, "
                       f"more than max_personalized_drop {params.max_personalized_drop:.0%} allows.")
    return out
