"""Small models with known heads, built weight by weight, for the analysis tests.

Residual layout (one-hot blocks): ``pos[i]`` (n), ``tok[t]`` (V), ``prev[t]`` (V), ``out[t]`` (V).
Token 0 is BOS. Heads:

* ``0.0`` previous-token: query ``pos[i]`` matches key ``pos[i-1]`` with weight β; OV
  ``tok[t] ↦ prev[t]``;
* ``0.1`` duplicate-token: query ``tok[t]`` matches key ``tok[t]`` with weight β, minus β on the
  query's own position; OV writes nothing;
* ``1.0`` induction: query ``tok[t]`` matches key ``prev[t]`` with weight β; OV
  ``tok[t] ↦ gains[t] · out[t]``;
* ``1.1`` a weak random head.

``W_U`` reads ``out``, so logit t is ``out[t]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from circuits import AttnOnlyTransformer
from circuits import testing as ct


def induction_model(
    *,
    d_vocab: int = 8,
    n_ctx: int = 16,
    beta: float = 30.0,
    gains: np.ndarray | None = None,
    bos: bool = True,
    seed: int = 0,
) -> AttnOnlyTransformer:
    V, n = d_vocab, n_ctx
    d, k, H = n + 3 * V, n + V, 2
    gains = np.full(V, 10.0) if gains is None else np.asarray(gains, dtype=float)

    def pos(i: int) -> int:
        return i

    def tok(t: int) -> int:
        return n + t

    def prev(t: int) -> int:
        return n + V + t

    def out(t: int) -> int:
        return n + 2 * V + t

    rng = np.random.default_rng(seed)
    W_Q, W_K, W_V = (np.zeros((2, H, k, d)) for _ in range(3))
    W_O = np.zeros((2, H, d, k))
    for i in range(1, n):  # 0.0: previous token
        W_Q[0, 0, i, pos(i)], W_K[0, 0, i, pos(i - 1)] = 1.0, beta
    for t in range(V):
        W_V[0, 0, t, tok(t)], W_O[0, 0, prev(t), t] = 1.0, 1.0
        W_Q[0, 1, t, tok(t)], W_K[0, 1, t, tok(t)] = 1.0, beta  # 0.1: same token …
        W_Q[1, 0, t, tok(t)], W_K[1, 0, t, prev(t)] = 1.0, beta  # 1.0: induction
        W_V[1, 0, t, tok(t)], W_O[1, 0, out(t), t] = 1.0, gains[t]
    for i in range(n):  # … but not the query's own position
        W_Q[0, 1, V + i, pos(i)], W_K[0, 1, V + i, pos(i)] = 1.0, -beta
    for weights in (W_Q, W_K, W_V):
        weights[1, 1] = 0.1 * rng.standard_normal((k, d))
    W_O[1, 1] = 0.1 * rng.standard_normal((d, k))
    W_E, W_P, W_U = np.zeros((d, V)), np.zeros((d, n)), np.zeros((V, d))
    for t in range(V):
        W_E[tok(t), t], W_U[t, out(t)] = 1.0, 1.0
    for i in range(n):
        W_P[pos(i), i] = 1.0
    cfg = {"n_layers": 2, "n_heads": H, "d_model": d, "d_head": k, "d_vocab": V, "n_ctx": n}
    return AttnOnlyTransformer(
        {**cfg, "attn_scale": 1.0},
        W_E=W_E, W_P=W_P, W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O, W_U=W_U,
        bos_token=0 if bos else None,
    )  # fmt: skip


def with_new_head_bases(model: AttnOnlyTransformer, data: Any) -> AttnOnlyTransformer:
    """The same W_QK and W_OV from other factors: every head's internal bases drawn at random."""
    c = model.cfg
    bases = ct.invertible_matrices(c.d_head, leading=(c.n_layers, c.n_heads))
    return ct.change_head_bases(model, data.draw(bases), data.draw(bases))
