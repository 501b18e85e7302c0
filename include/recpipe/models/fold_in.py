"""Fold-in: a user vector for a factorisation model from a history it was not trained on.

With the item embeddings V (n, d) and biases b frozen, the user vector u minimises the
squared-logit surrogate of the pointwise loss the model was trained with (each of the
user's items a positive, ``NEGATIVES`` uniform negatives per positive):

    Σ_{h ∈ H} (u·v_h + b_h − z⁺)²  +  w₀ Σ_j (u·v_j + b_j − z⁻)²  +  λ ‖u − u₀‖²

z± = ±logit(``TARGET``), w₀ = NEGATIVES·|H| / n (the negatives spread over the catalog), u₀
the vector the model already has (0 for a user it never trained). Closed form, one d × d
system per user: (V_Hᵀ V_H + w₀ VᵀV + λI) u = V_Hᵀ (z⁺ − b_H) + w₀ Vᵀ(z⁻ − b) + λ u₀,
with VᵀV and Vᵀ(z⁻ − b) computed once. H: the user's last ``HISTORY`` items. Deterministic.
"""

from __future__ import annotations

import numpy as np

from recpipe.models.base import TrainingData
from recpipe.models.sequences import last_items

NEGATIVES = 4  # as FitConfig.negatives' default
TARGET = 0.9  # the probability a positive's logit is fitted to (1 − it for the negatives)
REG = 1.0  # λ: pulls the vector towards the trained one (or 0)
HISTORY = 50  # most recent items per user folded in
CHUNK = 4096  # users solved at once


def active_users(data: TrainingData, since: int | None) -> np.ndarray:
    """Sorted users with an interaction at or after ``since`` (µs); every user with one if None."""
    if since is None or data.last_ts is None:
        return np.unique(data.users)
    return np.unique(data.users[data.last_ts >= since])


def user_vectors(item_emb: np.ndarray, bias: np.ndarray, hist: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(len(hist), d) float32 fold-in vectors. hist (m, L) item indices, −1 pads; prior (m, d) u₀."""
    V = item_emb.astype(np.float64)
    b = bias.astype(np.float64)
    n, d = V.shape
    z = float(np.log(TARGET / (1 - TARGET)))
    gram, neg = V.T @ V, V.T @ (-z - b)
    out = np.empty((len(hist), d), np.float32)
    eye = REG * np.eye(d)
    for lo in range(0, len(hist), CHUNK):
        h = hist[lo:lo + CHUNK]
        real = h >= 0
        Vh = V[np.where(real, h, 0)] * real[..., None]  # (c, L, d), zero rows for padding
        w0 = NEGATIVES * real.sum(1) / n  # (c,)
        A = np.einsum("cld,cle->cde", Vh, Vh) + w0[:, None, None] * gram + eye
        rhs = (np.einsum("cld,cl->cd", Vh, (z - b[np.where(real, h, 0)]) * real) + w0[:, None] * neg
               + REG * prior[lo:lo + CHUNK].astype(np.float64))
        out[lo:lo + CHUNK] = np.linalg.solve(A, rhs[..., None])[..., 0]
    return out
