"""Independent references for certificates: the family enumerated, and a 60-digit forward pass.

Nothing here calls the library's verification code; the forward pass is written from the model's
definition (column convention, causal softmax, shortformer positions, biases) in mpmath at 60
significant digits, in a private context, so it decides the real-number model's value where float
rounding could not.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any, NamedTuple

import mpmath
import numpy as np

from circuits import AttnOnlyTransformer

_CTX = mpmath.MPContext()
_CTX.dps = 60


def family(vocab: int, n_ctx: int, bos: int) -> Iterator[tuple[tuple[int, ...], int]]:
    """Every (sequence, right next token) of the induction family: BOS first and nowhere else,
    3 ≤ length ≤ n_ctx, the last token occurring exactly once before; the answer follows it."""
    ordinary = [t for t in range(vocab) if t != bos]
    for length in range(3, n_ctx + 1):
        for body in itertools.product(ordinary, repeat=length - 1):
            tokens = (bos, *body)
            earlier = [q for q in range(length - 1) if tokens[q] == tokens[-1]]
            if len(earlier) == 1:
                yield tokens, tokens[earlier[0] + 1]


def _matrix(array: np.ndarray) -> list[list[object]]:
    return [[_CTX.mpf(float(x)) for x in row] for row in np.atleast_2d(array)]


class ExactModel:
    """The real-number model of an ``AttnOnlyTransformer``: its weights as exact numbers."""

    def __init__(self, model: AttnOnlyTransformer) -> None:
        cfg = model.cfg
        self.cfg = cfg
        self.W_E = _matrix(model.W_E.T)  # [V][d]
        self.W_P = None if model.W_P is None else _matrix(model.W_P.T)  # [n][d]
        self.heads = [
            [
                tuple(
                    _matrix(np.asarray(w[layer, h], dtype=np.float64))
                    for w in (model.W_Q, model.W_K, model.W_V, model.W_O)
                )
                + tuple(
                    [_CTX.mpf(float(x)) for x in b[layer, h]]
                    for b in (model.b_Q, model.b_K, model.b_V)
                )
                for h in range(cfg.n_heads)
            ]
            for layer in range(cfg.n_layers)
        ]
        self.b_O = [[_CTX.mpf(float(x)) for x in row] for row in model.b_O]
        self.W_U = _matrix(model.W_U)
        self.b_U = [_CTX.mpf(float(x)) for x in model.b_U]
        self.scale = _CTX.mpf(float(cfg.attn_scale))

    @staticmethod
    def _apply(
        matrix: list[list[object]], vector: list[object], bias: list[object] | None
    ) -> list[object]:
        out = [_CTX.fsum(m * v for m, v in zip(row, vector, strict=True)) for row in matrix]
        return out if bias is None else [o + b for o, b in zip(out, bias, strict=True)]

    def probabilities(self, tokens: tuple[int, ...]) -> list[object]:
        """P(t) for every token t at the last position."""
        kind = self.cfg.positional_embedding_type
        n = len(tokens)
        x = [list(self.W_E[t]) for t in tokens]
        pos = [self.W_P[i] for i in range(n)] if self.W_P is not None else None
        if kind == "standard":
            assert pos is not None
            x = [[a + b for a, b in zip(x[i], pos[i], strict=True)] for i in range(n)]
        for layer, heads in enumerate(self.heads):
            qk_in = (
                x
                if kind != "shortformer"
                else [
                    [a + b for a, b in zip(x[i], pos[i], strict=True)]
                    for i in range(n)  # type: ignore[index]
                ]
            )
            new = [list(row) for row in x]
            for W_Q, W_K, W_V, W_O, b_Q, b_K, b_V in heads:
                q = [self._apply(W_Q, v, b_Q) for v in qk_in]
                k = [self._apply(W_K, v, b_K) for v in qk_in]
                v = [self._apply(W_V, r, b_V) for r in x]
                for i in range(n):
                    s = [
                        _CTX.fsum(a * b for a, b in zip(q[i], k[j], strict=True)) / self.scale
                        for j in range(i + 1)
                    ]
                    top = max(s)
                    w = [_CTX.exp(sj - top) for sj in s]
                    total = _CTX.fsum(w)
                    z = [
                        _CTX.fsum(w[j] * v[j][m] for j in range(i + 1)) / total
                        for m in range(len(b_V))
                    ]
                    out = self._apply(W_O, z, None)
                    new[i] = [a + b for a, b in zip(new[i], out, strict=True)]
            x = [[a + b for a, b in zip(row, self.b_O[layer], strict=True)] for row in new]
        logits = self._apply(self.W_U, x[-1], self.b_U)
        top = max(logits)
        w = [_CTX.exp(z - top) for z in logits]
        total = _CTX.fsum(w)
        return [wi / total for wi in w]


class Extremes(NamedTuple):
    """The family's least exact P(correct), a sequence attaining it, and argmax counts."""

    least: Any  # an mpf at 60 digits
    worst: tuple[int, ...]
    right: int  # sequences whose right token is the strict argmax
    size: int  # sequences in the family


def exact_family_extremes(model: AttnOnlyTransformer, n_ctx: int | None = None) -> Extremes:
    """Every sequence of the family run through the 60-digit forward pass."""
    exact = ExactModel(model)
    assert model.bos_token is not None
    least, worst, right, size = _CTX.mpf(2), (), 0, 0
    for tokens, answer in family(model.cfg.d_vocab, n_ctx or model.cfg.n_ctx, model.bos_token):
        probs = exact.probabilities(tokens)
        size += 1
        if probs[answer] < least:
            least, worst = probs[answer], tokens
        right += all(probs[answer] > p for t, p in enumerate(probs) if t != answer)
    return Extremes(least, worst, right, size)
