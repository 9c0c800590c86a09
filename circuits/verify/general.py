r"""A certifier for any 2-layer attention-only model, from its weights alone.

The family is the induction family of :mod:`circuits.verify.certificate`: sequences
``t_0 … t_i`` (``2 ≤ i < n_ctx``) with ``t_0 = b`` (BOS) and ``b`` nowhere else, whose last
token ``a = t_i`` occurred exactly once before, at ``p``; the right next token is ``c = t_{p+1}``.
A **case** is ``(i, p, a, c)``; the other tokens (fillers) are any ordinary tokens but ``a``.
Every bound below holds for every filler choice, so a case proved is proved for all its sequences.

**States.** The layer-1 stream at position ``j`` is
:math:`x^1_j = r_j + b_O^0 + \sum_h \sum_{k \le j} A^h_{jk} v^h_k` with
:math:`r_j = W_E[:, t_j] (+ W_P[:, j])` and :math:`v^h_k = W_O^h (W_V^h r_k + b_V^h)`. Its
*state* is ``(j, t_j, t_{j-1})``; the tokens at ``1 … j−2`` are left free (any ordinary token).

1. **Layer 0.** Scores :math:`s^h(j, t_j; k, t_k)` are enclosed for every pair. For a state and
   each key, :math:`A_{jk} \ge ℓ_k = e^{\underline s_k - M} / \sum_{k'} e^{\overline s_{k'} - M}`
   (softmax is increasing in its own score and decreasing in the others'), the free keys taking
   their extreme scores over the ordinary tokens.
2. **Any linear functional** :math:`φ` of :math:`x^1_j` then lies in
   :math:`φ(r_j + b_O^0) + \sum_h \big[\sum_k ℓ_k \underline w_k + σ \min_k \underline w_k\big]`
   (and the mirror image above), with :math:`\underline w_k` the least :math:`φ(v^h_k)` over the
   tokens position ``k`` may hold and :math:`σ = 1 - \sum_k ℓ_k` the mass the ℓ's leave free:
   writing :math:`A_k = ℓ_k + δ_k` with :math:`δ_k \ge 0,\ \sum δ_k = σ` gives it at once. The
   functionals are the layer-1 queries and keys (per coordinate of each head) and the logits read
   directly and through each layer-1 head's OV circuit.
3. **Layer 1.** At query ``i`` the target key is ``p+1`` (state ``(p+1, c, a)``); every other key is
   ``0``, ``p``, ``i`` or a filler. Score enclosures (products of the query and key enclosures,
   coordinate by coordinate) give the off-target mass
   :math:`ε \le X/(1+X)`, :math:`X = \sum_{o} e^{\overline s_o - \underline s_{p+1}}`. An other
   key's upper score :math:`\overline s_o` is bounded for each previous token ``u`` its state may
   hold, and the largest kept: the union over ``u`` of keys that each point one way (a
   previous-token head's output) is a box far larger than any one of them.
4. **Output.** Each head adds a convex combination of its value logits: at least
   :math:`\underline V_T - ε \max(0, \underline V_T - \underline V_O)` with :math:`V_T` the
   target's and :math:`V_O` the others' enclosure. With every logit ℓ_t enclosed,
   :math:`P(c) \ge 1 / (1 + \sum_{t \ne c} e^{\overline ℓ_t - \underline ℓ_c})`, and the argmax is
   right when :math:`\underline ℓ_c > \max_{t \ne c} \overline ℓ_t`.

Every number is an enclosure computed with outward rounding (:mod:`circuits.verify._intervals`),
so the certificate is a proof about the **real-number model** of the weights as stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import numpy as np

from .._progress import Progress, progress_stream
from ..errors import VerificationError
from ..model import AttnOnlyTransformer, as_model
from ._intervals import Array, Box, dot, down, exp_bound, matmul, matmul_boxes, sum_down, sum_up, up
from ._rounding import float_down
from .certificate import REAL_NUMBER_MODEL

__all__ = ["ModelCertificate", "certify"]


@dataclass(frozen=True)
class ModelCertificate:
    """Proved bounds on a model's induction family (module doc), with where they hold.

    ``bound ≤`` min P(correct) and ``error_bound ≥`` max P(wrong) over every sequence;
    ``accuracy_bound ≤`` the fraction of sequences (all lengths, each counted once) whose argmax is
    the right token, from ``proved`` of ``family_size`` sequences. ``by_position[i, p]`` is the
    bound over cases with query ``i`` and earlier occurrence ``p`` (NaN where there is none),
    ``proved_by_position[i, p]`` the fraction of them proved right; ``by_token[a]`` the bound over
    cases whose repeated token is ``a``. ``worst_case`` is ``(i, p, a, c)`` where ``bound`` is met.
    """

    bound: float
    error_bound: float
    accuracy_bound: float
    proved: int
    family_size: int
    n_ctx: int
    bos_token: int
    by_position: Array
    proved_by_position: Array
    by_token: Array
    worst_case: tuple[int, int, int, int]
    steps: tuple[str, ...]
    cases: int  # the (i, p, a, c) the family splits into
    about: str = REAL_NUMBER_MODEL

    @property
    def family(self) -> str:
        """The set of sequences the bounds cover, in words."""
        return (
            f"every sequence of 3 to {self.n_ctx} tokens that starts with BOS (token "
            f"{self.bos_token}), holds it nowhere else, and whose last token occurred exactly once "
            "before; the right next token is the one that followed it"
        )

    def __str__(self) -> str:
        i, p, a, c = self.worst_case
        lines = [
            "Certificate (weights of a 2-layer attention-only model)",
            f"  family: {self.family} ({self.family_size} sequences, {self.cases} cases (i, p, a, c))",
            f"  about: {self.about}",
            *(f"  {step}" for step in self.steps),
            f"P(correct next token) ≥ {self.bound:.10g}   (P(wrong) ≤ {self.error_bound:.6g}); "
            f"least at query i = {i}, earlier p = {p}, token a = {a}, answer c = {c}",
            f"right argmax proved on {self.proved} of {self.family_size} sequences: "
            f"accuracy ≥ {self.accuracy_bound:.6g}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- checks
def _checked(model: object, n_ctx: int | None) -> tuple[AttnOnlyTransformer, int, int]:
    model = as_model(model, VerificationError)
    cfg = model.cfg
    if cfg.n_layers != 2:
        raise VerificationError(f"certify needs a model with 2 layers, got {cfg.n_layers}")
    if cfg.normalized:
        raise VerificationError(
            f"certify does not bound a normalisation yet (normalization_type="
            f"{cfg.normalization_type!r}); fold_layer_norm does not remove its scale either"
        )
    bos = model.bos_token
    if bos is None:
        raise VerificationError(
            "the model has no BOS token: the family starts with one (set bos_token)"
        )
    length = cfg.n_ctx if n_ctx is None else n_ctx
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise VerificationError(f"n_ctx must be an integer, got {n_ctx!r}")
    if not 3 <= length <= cfg.n_ctx:
        raise VerificationError(
            f"n_ctx must be in [3, {cfg.n_ctx}] (the family's sequences have ≥ 3 tokens), got {length}"
        )
    if cfg.d_vocab < 3:
        raise VerificationError(
            f"certify needs ≥ 2 ordinary tokens besides BOS, got vocabulary {cfg.d_vocab}"
        )
    for name, weight in model.parameters().items():
        if not np.all(np.isfinite(weight)):
            raise VerificationError(f"the model's {name} holds NaN or infinite entries")
    return model, int(length), int(bos)


# ---------------------------------------------------------------------------------- helpers
def _masked(x: Array, keep: Any, fill: float) -> Array:
    return np.where(keep, x, fill)


def _box_min(box: Box, keep: Any, axis: int) -> Box:
    """The union of the enclosures along ``axis`` over the entries ``keep`` selects."""
    return Box(
        _masked(box.lo, keep, np.inf).min(axis=axis),
        _masked(box.hi, keep, -np.inf).max(axis=axis),
    )


def _lower_weights(score_lo: Array, score_hi: Array, present: Any) -> Array:
    """ℓ_k ≤ A_k for every key of the last axis: ``e^{s̲_k − M} / Σ_{k'} e^{s̄_{k'} − M}``."""
    hi = _masked(score_hi, present, -np.inf)
    top = hi.max(axis=-1, keepdims=True)
    total = sum_up(_masked(exp_bound(up(hi - top), lower=False), present, 0.0), axis=-1)
    numerator = exp_bound(down(score_lo - top), lower=True)
    return _masked(down(numerator / total[..., None]), present, 0.0)


def _ordinary(vocab: int, bos: int) -> Array:
    keep = np.ones(vocab, dtype=bool)
    keep[bos] = False
    return keep


# ---------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class _Weights:
    """The model's weights in float64, row convention (vectors as rows)."""

    E: Array  # [V, d]
    P_stream: Array  # [n, d]: positions in the residual stream (standard)
    P_attn: Array  # [n, d]: positions added to query/key inputs only (shortformer)
    W_Q: Array  # [L, H, k, d]
    W_K: Array
    W_V: Array
    W_O: Array  # [L, H, d, k]
    b_Q: Array  # [L, H, k]
    b_K: Array
    b_V: Array
    b_O: Array  # [L, d]
    W_U: Array  # [V, d]
    b_U: Array  # [V]
    scale: float

    @staticmethod
    def of(model: AttnOnlyTransformer, n: int) -> _Weights:
        cfg = model.cfg
        f64 = {name: np.asarray(w, dtype=np.float64) for name, w in model.parameters().items()}
        positions = np.zeros((n, cfg.d_model)) if model.W_P is None else f64["W_P"][:, :n].T.copy()
        zeros = np.zeros_like(positions)
        kind = cfg.positional_embedding_type
        return _Weights(
            E=f64["W_E"].T.copy(),
            P_stream=positions if kind == "standard" else zeros,
            P_attn=positions if kind == "shortformer" else zeros,
            W_Q=f64["W_Q"],
            W_K=f64["W_K"],
            W_V=f64["W_V"],
            W_O=f64["W_O"],
            b_Q=f64["b_Q"],
            b_K=f64["b_K"],
            b_V=f64["b_V"],
            b_O=f64["b_O"],
            W_U=f64["W_U"],
            b_U=f64["b_U"],
            scale=float(cfg.attn_scale),
        )


@dataclass(frozen=True)
class _Functionals:
    """The linear functionals of the layer-1 stream the proof needs, as columns of one matrix.

    Per layer-1 head ``g``: its query and key coordinates, and its value logits
    ``W_U W_O^g W_V^g``; then the logits read directly. ``attention`` marks the columns that read
    the attention input (which holds the shortformer positions); ``offset`` their constants.
    """

    matrix: Box  # [d, m]
    offset: Box  # [m]: biases b_Q, b_K, and nothing for the value and direct logits
    attention: Array  # [m] bool
    query: list[slice]
    key: list[slice]
    value: list[slice]
    direct: slice

    @property
    def query_columns(self) -> Array:
        """The columns a query state needs: every head's query coordinates, then the logits."""
        return np.concatenate([np.arange(sl.start, sl.stop) for sl in [*self.query, self.direct]])

    def in_query_columns(self, columns: slice) -> slice:
        """Where ``columns`` (a query slice or ``direct``) sit within :attr:`query_columns`."""
        start = 0
        for sl in [*self.query, self.direct]:
            if sl == columns:
                return slice(start, start + sl.stop - sl.start)
            start += sl.stop - sl.start
        raise ValueError(columns)

    @staticmethod
    def of(w: _Weights) -> _Functionals:
        H, V = w.W_Q.shape[1], w.W_U.shape[0]
        columns: list[Box] = []
        offsets: list[Box] = []
        attention: list[Array] = []
        query, key, value = [], [], []
        start = 0

        def add(matrix: Box, offset: Box, reads_attention: bool) -> slice:
            nonlocal start
            columns.append(matrix)
            offsets.append(offset)
            attention.append(np.full(matrix.lo.shape[1], reads_attention))
            start += matrix.lo.shape[1]
            return slice(start - matrix.lo.shape[1], start)

        for g in range(H):
            query.append(add(Box.exact(w.W_Q[1, g].T), Box.exact(w.b_Q[1, g]), True))
            key.append(add(Box.exact(w.W_K[1, g].T), Box.exact(w.b_K[1, g]), True))
            ou = matmul(Box.exact(w.W_O[1, g].T), w.W_U.T)  # [k, V]
            value.append(
                add(matmul_boxes(Box.exact(w.W_V[1, g].T), ou), Box.exact(np.zeros(V)), False)
            )
        direct = add(Box.exact(w.W_U.T), Box.exact(np.zeros(V)), False)
        return _Functionals(
            matrix=Box(
                np.concatenate([c.lo for c in columns], 1),
                np.concatenate([c.hi for c in columns], 1),
            ),
            offset=Box(
                np.concatenate([o.lo for o in offsets]), np.concatenate([o.hi for o in offsets])
            ),
            attention=np.concatenate(attention),
            query=query,
            key=key,
            value=value,
            direct=direct,
        )


# ---------------------------------------------------------------------------------- layer 0
def _layer0_scores(w: _Weights, h: int, a0: Box) -> Box:
    """``s[j, f, k, t]``: the layer-0 score of head ``h`` of query (j, f) on key (k, t)."""
    q = matmul_boxes(a0, Box.exact(w.W_Q[0, h].T)) + Box.exact(w.b_Q[0, h])  # [n, V, k]
    key = matmul_boxes(a0, Box.exact(w.W_K[0, h].T)) + Box.exact(w.b_K[0, h])
    n, V, dk = q.lo.shape
    qf = Box(q.lo.reshape(n * V, dk), q.hi.reshape(n * V, dk))
    kf = Box(key.lo.reshape(n * V, dk).T.copy(), key.hi.reshape(n * V, dk).T.copy())
    s = matmul_boxes(qf, kf).scaled(w.scale)
    return Box(s.lo.reshape(n, V, n, V), s.hi.reshape(n, V, n, V))


@dataclass(frozen=True)
class _StateWeights:
    """Lower bounds ℓ on one layer-0 head's attention, for every state (j, f, u), by key kind."""

    self_: Array  # [n, V(f), V(u)]: key j (token f)
    prev: Array  # key j−1 (token u; BOS when j = 1)
    bos: Array  # key 0, when j ≥ 2
    free: Array  # [n, V, V, n(k)]: keys 1 … j−2
    slack: Box  # σ = 1 − Σ ℓ


def _state_weights(s: Box, bos: int, ordinary: Array) -> _StateWeights:
    n, V = s.lo.shape[:2]
    j = np.arange(n)
    diag_lo, diag_hi = s.lo[j, :, j, :], s.hi[j, :, j, :]  # [n, V(f), V(t)]
    self_lo = np.einsum("jff->jf", diag_lo)[:, :, None] * np.ones((1, 1, V))
    self_hi = np.einsum("jff->jf", diag_hi)[:, :, None] * np.ones((1, 1, V))
    prev_idx = np.maximum(j - 1, 0)
    prev_lo, prev_hi = s.lo[j, :, prev_idx, :], s.hi[j, :, prev_idx, :]  # [n, V(f), V(u)]
    bos_lo = np.broadcast_to(s.lo[:, :, 0, bos][:, :, None], (n, V, V))
    bos_hi = np.broadcast_to(s.hi[:, :, 0, bos][:, :, None], (n, V, V))
    free_lo = _masked(s.lo, ordinary[None, None, None, :], np.inf).min(axis=3)  # [n, V, n(k)]
    free_hi = _masked(s.hi, ordinary[None, None, None, :], -np.inf).max(axis=3)
    k = np.arange(n)
    free_present = (k[None, :] >= 1) & (k[None, :] <= j[:, None] - 2)  # [n(j), n(k)]
    # keys of a state, last axis: self, prev, bos, free 0 … n−1
    present = np.concatenate(
        [
            np.ones((n, 1), dtype=bool),
            (j >= 1)[:, None],
            (j >= 2)[:, None],
            free_present,
        ],
        axis=1,
    )[:, None, None, :]
    lo = np.concatenate(
        [
            self_lo[..., None],
            prev_lo[..., None],
            bos_lo[..., None],
            np.broadcast_to(free_lo[:, :, None, :], (n, V, V, n)),
        ],
        axis=-1,
    )
    hi = np.concatenate(
        [
            self_hi[..., None],
            prev_hi[..., None],
            bos_hi[..., None],
            np.broadcast_to(free_hi[:, :, None, :], (n, V, V, n)),
        ],
        axis=-1,
    )
    weights = _lower_weights(lo, hi, present)
    weights[0] = 0.0
    weights[0, :, :, 0] = 1.0  # BOS attends to itself alone
    total_lo, total_hi = sum_down(weights, axis=-1), sum_up(weights, axis=-1)
    slack = Box(np.maximum(down(1.0 - total_hi), 0.0), np.maximum(up(1.0 - total_lo), 0.0))
    return _StateWeights(weights[..., 0], weights[..., 1], weights[..., 2], weights[..., 3:], slack)


def _mixture(sw: _StateWeights, values: Box, bos: int, ordinary: Array, rows: slice) -> Box:
    """Enclosure of ``Σ_k A_jk φ(v_k)`` for the key states of positions ``rows`` and every
    functional: ``[rows, V(f), V(u), m]``. ``values[k, t, m]`` encloses φ(v) of key (k, t)."""
    n, V, m = values.lo.shape
    j = np.arange(n)[rows]
    w_prev = values[np.maximum(j - 1, 0)]  # [rows, V(u), m]
    w_bos = values[0, bos]  # [m]
    free = _box_min(values, ordinary[None, :, None], axis=1)  # [n(k), m]: any ordinary token
    weights = Box.exact(sw.free[rows].reshape(-1, n))
    shape = (j.size, V, V)
    weighted = Box(
        matmul(weights, free.lo).lo.reshape(*shape, m),
        matmul(weights, free.hi).hi.reshape(*shape, m),
    )
    k = np.arange(n)
    present_free = (k[None, :] >= 1) & (k[None, :] <= j[:, None] - 2)  # [rows, n(k)]
    least = _masked(free.lo[None], present_free[..., None], np.inf).min(axis=1)  # [rows, m]
    most = _masked(free.hi[None], present_free[..., None], -np.inf).max(axis=1)
    singles = [
        (
            sw.self_[rows],
            Box(values.lo[rows, :, None], values.hi[rows, :, None]),
            np.ones(shape, dtype=bool),
        ),
        (
            sw.prev[rows],
            Box(w_prev.lo[:, None], w_prev.hi[:, None]),
            np.broadcast_to((j >= 1)[:, None, None], shape),
        ),
        (sw.bos[rows], w_bos, np.broadcast_to((j >= 2)[:, None, None], shape)),
    ]
    extreme = (
        np.broadcast_to(least[:, None, None], (*shape, m)),
        np.broadcast_to(most[:, None, None], (*shape, m)),
    )
    return _combine(singles, (weighted, *extreme), sw.slack[rows])


#: Entries of the largest temporary arrays: the key states are computed in chunks of positions.
_CHUNK_ENTRIES = 2**23


def _combine(
    singles: list[tuple[Array, Box, Array]],
    free: tuple[Box, Array, Array],
    slack: Box,
) -> Box:
    """``Σ_k ℓ_k w_k + σ·extreme(w)`` enclosed, from below and above (module doc, step 2).

    ``singles``: per key, its weights ℓ ``[S]`` (broadcastable), its functional enclosure
    ``[S, m]`` and whether it is present ``[S, 1]``. ``free``: the free keys' weighted sum
    (already a box ``[S, m]``), and their least and largest functional ``[S, m]`` (±inf when none).
    """
    weighted, least, most = free
    lo, hi = weighted.lo, weighted.hi
    mag = np.zeros_like(lo)
    for weight, value, present in singles:
        wt = np.where(present, weight, 0.0)[..., None]
        lo = lo + wt * value.lo
        hi = hi + wt * value.hi
        mag = mag + wt * np.maximum(np.abs(value.lo), np.abs(value.hi))
        least = np.minimum(least, np.where(present[..., None], value.lo, np.inf))
        most = np.maximum(most, np.where(present[..., None], value.hi, -np.inf))
    # each product and sum is within half an ulp of its magnitude: 2^-49 of the total covers them
    widen = up(mag * 2.0**-49 + 16 * 2.0**-1074 + (np.abs(lo) + np.abs(hi)) * 2.0**-49)
    sl = Box(slack.lo[..., None], slack.hi[..., None])
    return Box(
        down(down(lo - widen) + (sl * Box(least, least)).lo),
        up(up(hi + widen) + (sl * Box(most, most)).hi),
    )


def _extreme_excluding(x: Box, keep: Array) -> tuple[Box, Box]:
    """Over tokens ``t ∈ keep, t ≠ a`` of axis −2 of ``x [..., T, m]``: the least lower end and
    the largest upper end, for every ``a``: two boxes ``[..., V(a), m]`` (lo and hi used)."""
    V = x.lo.shape[-2]
    tokens = np.arange(V)
    out = []
    for data, sign in ((x.lo, 1.0), (x.hi, -1.0)):
        masked = np.where(keep[:, None], sign * data, np.inf)
        first = masked.argmin(axis=-2)
        m1 = np.take_along_axis(masked, first[..., None, :], axis=-2)[..., 0, :]
        second = masked.copy()
        np.put_along_axis(second, first[..., None, :], np.inf, axis=-2)
        m2 = second.min(axis=-2)
        # result[..., a, m]: m2 where the minimum sits at a itself
        hit = first[..., None, :] == tokens[:, None]
        out.append(sign * np.where(hit, m2[..., None, :], m1[..., None, :]))
    return Box(out[0], out[0]), Box(out[1], out[1])


def _layer1_states(w: _Weights, fun: _Functionals, bos: int, ordinary: Array) -> tuple[Box, Box]:
    """Every functional of the layer-1 stream (attention input where it reads one), per key state
    ``[n(j), V(f), V(u), m]``, and the query functionals per query state ``[n(i), V(a), n(p), m_q]``
    (the columns ``fun.query_columns``)."""
    r0 = Box.exact(w.E)[None] + Box.exact(w.P_stream)[:, None]  # [n, V, d]
    a0 = r0 + Box.exact(w.P_attn)[:, None]
    n, V, _ = r0.lo.shape
    own = matmul_boxes(r0 + Box.exact(w.b_O[0]), fun.matrix)  # [n, V, m]
    extra = matmul_boxes(Box.exact(w.P_attn), fun.matrix)  # [n, m]
    extra = Box(np.where(fun.attention, extra.lo, 0.0), np.where(fun.attention, extra.hi, 0.0))
    base = own + Box(extra.lo[:, None], extra.hi[:, None]) + Box(fun.offset.lo, fun.offset.hi)
    m = base.lo.shape[-1]
    keys = Box(
        np.broadcast_to(base.lo[:, :, None, :], (n, V, V, m)).copy(),
        np.broadcast_to(base.hi[:, :, None, :], (n, V, V, m)).copy(),
    )
    cols = fun.query_columns
    queries = Box(
        np.broadcast_to(base.lo[:, :, None, cols], (n, V, n, cols.size)),
        np.broadcast_to(base.hi[:, :, None, cols], (n, V, n, cols.size)),
    )
    for h in range(w.W_Q.shape[1]):
        scores = _layer0_scores(w, h, a0)
        v = matmul_boxes(
            matmul_boxes(r0, Box.exact(w.W_V[0, h].T)) + Box.exact(w.b_V[0, h]),
            Box.exact(w.W_O[0, h].T),
        )
        values = matmul_boxes(v, fun.matrix)  # [n(k), V(t), m]
        weights = _state_weights(scores, bos, ordinary)
        step = max(1, _CHUNK_ENTRIES // (V * V * m))
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            part = _mixture(weights, values, bos, ordinary, rows)
            keys.lo[rows] = down(keys.lo[rows] + part.lo)
            keys.hi[rows] = up(keys.hi[rows] + part.hi)
        queries = queries + _query_mixture(scores, values[..., cols], bos, ordinary)
    return keys, queries


def _query_mixture(scores: Box, values: Box, bos: int, ordinary: Array) -> Box:
    """One layer-0 head's part of the query functionals, per query state (i, a, p).

    The query ``i`` holds ``a``, so does ``p``; position 0 holds BOS; every other position holds a
    token other than ``a`` (any, so also ``c`` at ``p+1`` and the filler before ``i``).
    """
    n, V = scores.lo.shape[:2]
    i3, a3, p3 = (
        np.arange(n)[:, None, None],
        np.arange(V)[None, :, None],
        np.arange(n)[None, None, :],
    )
    shape = (n, V, n)
    tokens = np.arange(V)
    other = ordinary[None, None, None, :] & (
        tokens[None, :, None, None] != tokens[None, None, None, :]
    )
    free_lo = _masked(scores.lo, other, np.inf).min(axis=3)  # [n(i), V(a), n(k)]
    free_hi = _masked(scores.hi, other, -np.inf).max(axis=3)
    k = np.arange(n)
    free_present = (
        (k[None, None, :] >= 1)
        & (k[None, None, :] <= np.arange(n)[:, None, None] - 1)
        & (k[None, None, :] != np.arange(n)[None, :, None])
    )  # [n(i), n(p), n(k)]
    singles_lo = [
        np.broadcast_to(scores.lo[i3, a3, i3, a3], shape),
        scores.lo[i3, a3, p3, a3],
        np.broadcast_to(scores.lo[i3, a3, 0, bos], shape),
    ]
    singles_hi = [
        np.broadcast_to(scores.hi[i3, a3, i3, a3], shape),
        scores.hi[i3, a3, p3, a3],
        np.broadcast_to(scores.hi[i3, a3, 0, bos], shape),
    ]
    p_present = np.broadcast_to((p3 >= 1) & (p3 <= i3 - 1), shape)
    present = np.concatenate(
        [
            np.ones((*shape, 1), dtype=bool),
            p_present[..., None],
            np.broadcast_to((i3 >= 1)[..., None], (*shape, 1)),
            np.broadcast_to(free_present[:, None], (n, V, n, n)),
        ],
        axis=-1,
    )
    lo = np.concatenate(
        [x[..., None] for x in singles_lo]
        + [np.broadcast_to(free_lo[:, :, None, :], (n, V, n, n))],
        axis=-1,
    )
    hi = np.concatenate(
        [x[..., None] for x in singles_hi]
        + [np.broadcast_to(free_hi[:, :, None, :], (n, V, n, n))],
        axis=-1,
    )
    weights = _lower_weights(lo, hi, present)  # [n(i), V(a), n(p), 3 + n]
    total_lo, total_hi = sum_down(weights, axis=-1), sum_up(weights, axis=-1)
    slack = Box(np.maximum(down(1.0 - total_hi), 0.0), np.maximum(up(1.0 - total_lo), 0.0))
    # the functionals of each key
    pos, tok = np.arange(n), np.arange(V)
    w_self = values[pos[:, None], tok[None, :]]  # [n(i), V(a), m]
    w_p = values[pos[None, :], tok[:, None]]  # [V(a), n(p), m]
    least, most = _extreme_excluding(values, ordinary)  # [n(k), V(a), m]
    # Σ over free keys k of ℓ_k · (least or largest functional of k), batched over a
    free_w = np.transpose(weights[..., 3:], (1, 0, 2, 3)).reshape(V, n * n, n)  # [a, (i, p), k]
    free_sum = []
    for bound, side in ((least.lo, "lo"), (most.hi, "hi")):
        f = np.transpose(bound, (1, 0, 2))  # [a, k, m]
        f = np.where(np.isfinite(f), f, 0.0)
        centre = free_w @ f
        err = up(up((free_w @ np.abs(f)) * (2.5 * n * 2.0**-53)) + n * 2.0**-1074)
        out = down(centre - err) if side == "lo" else up(centre + err)
        free_sum.append(np.transpose(out.reshape(V, n, n, -1), (1, 0, 2, 3)))
    # the least and largest functional over the free keys 1 … i−1 (a superset of them)
    cum_lo = np.minimum.accumulate(np.where(np.isfinite(least.lo), least.lo, np.inf), axis=0)
    cum_hi = np.maximum.accumulate(np.where(np.isfinite(most.hi), most.hi, -np.inf), axis=0)
    prev = np.maximum(np.arange(n) - 1, 0)
    any_free = (np.arange(n) >= 2)[:, None, None, None]
    least_free = np.where(
        any_free, np.broadcast_to(cum_lo[prev][:, :, None, :], (n, V, n, cum_lo.shape[-1])), np.inf
    )
    most_free = np.where(
        any_free, np.broadcast_to(cum_hi[prev][:, :, None, :], (n, V, n, cum_hi.shape[-1])), -np.inf
    )
    w_bos = values[0, bos]
    singles = [
        (
            weights[..., 0],
            Box(w_self.lo[:, :, None], w_self.hi[:, :, None]),
            np.ones(shape, dtype=bool),
        ),
        (weights[..., 1], Box(w_p.lo[None], w_p.hi[None]), p_present),
        (
            weights[..., 2],
            Box(
                np.broadcast_to(w_bos.lo, shape + w_bos.lo.shape),
                np.broadcast_to(w_bos.hi, shape + w_bos.hi.shape),
            ),
            np.broadcast_to(i3 >= 1, shape),
        ),
    ]
    return _combine(
        singles,
        (Box(free_sum[0], free_sum[1]), least_free, most_free),
        slack,
    )


# ---------------------------------------------------------------------------------- unions
@dataclass(frozen=True)
class _Unions:
    """Enclosures of the functionals over the states a key or query can be in, given ``a``."""

    other: Box  # [n(i), V(a), m]: (i, a, u) for any u ∉ {a, b}; (1, a, b) at i = 1
    filler: Box  # [n(j), V(a), m]: (j, f, u) for f, u ∉ {a, b} (u = b at j = 1)
    start: Box  # [m]: the BOS position's state
    by_previous: Box  # [n(j), V(u), m]: (j, f, u) for any ordinary f, per previous token u


def _unions(states: Box, bos: int, ordinary: Array) -> _Unions:
    _n, V = states.lo.shape[:2]
    tokens = np.arange(V)
    # over u ∉ {a, b}, for every (j, f, a): [n, V(f), V(a), m]
    least, most = _extreme_excluding(states, ordinary)
    row = Box(least.lo, most.hi)
    other = Box(row.lo[:, tokens, tokens].copy(), row.hi[:, tokens, tokens].copy())  # f = a
    other.lo[1], other.hi[1] = states.lo[1, :, bos], states.hi[1, :, bos]  # i = 1: u is BOS
    row.lo[1] = states.lo[1, :, None, bos]
    row.hi[1] = states.hi[1, :, None, bos]
    # fillers: then over f ∉ {a, b}
    keep_f = ordinary[:, None] & (tokens[:, None] != tokens[None, :])  # [V(f), V(a)]
    filler = _box_min(row, keep_f[None, :, :, None], axis=1)
    by_previous = _box_min(states, ordinary[None, :, None, None], axis=1)
    return _Unions(other, filler, states[0, bos, bos], by_previous)


def _scores(query: Box, key: Box, sl: slice, kl: slice, scale: float) -> Box:
    return dot(query[..., sl], key[..., kl]).scaled(scale)


def _scores_by_previous(
    i: int,
    query: Box,
    states: Box,
    by_previous: Box,
    sq: slice,
    sk: slice,
    scale: float,
    ordinary: Array,
) -> list[Array]:
    """Upper bounds on the scores of the keys other than the target, in the order of ``_query``'s
    ``others_hi`` (key ``p``, BOS, key ``i``, fillers at ``1 … i−1``), each ``[p, a, 1]``.

    A key's state holds its previous token ``u``, which the enclosures of ``_Unions`` leave free;
    here the score is bounded for each ``u`` and the largest kept. A union over ``u`` of keys that
    each point one way (a previous-token head's output) is a box much larger than any of them, so
    bounding the score before taking the union is much tighter. At ``j = 1`` the previous token is
    BOS; elsewhere it is ordinary and not ``a`` (which occurs only at ``p`` and ``i``). The
    fillers' scores, every filler state ``(j, u)`` against every query ``(p, a)``, are one interval
    matrix product (midpoint-radius, :func:`~circuits.verify._intervals.matmul_boxes`).
    """
    V = states.lo.shape[1]
    bos = int(np.flatnonzero(~ordinary)[0])
    ps = np.arange(1, i)
    tokens = np.arange(V)
    q = Box(query.lo[:, :, None, sq], query.hi[:, :, None, sq])  # [p, a, 1(u), k]

    def allowed(j: Array) -> Array:  # [len(j), V(a), V(u)]: the previous tokens a key j may have
        first = (j == 1)[:, None, None]
        ordinary_not_a = ordinary[None, None, :] & (tokens[None, :, None] != tokens[None, None, :])
        keep: Array = np.where(first, tokens[None, None, :] == bos, ordinary_not_a)
        return keep

    def best(scores: Array, keep: Array) -> Array:  # max over u of the allowed ones
        top: Array = _masked(scores, keep, -np.inf).max(axis=-1)
        return top

    at_p = Box(states.lo[ps, :, :, sk], states.hi[ps, :, :, sk])  # [p, a(f = a), u, k]
    s_p = best(dot(q, at_p).scaled(scale).hi, allowed(ps))[:, :, None]
    s_start = _scores(
        query,
        Box(states.lo[0, bos, bos][None, None], states.hi[0, bos, bos][None, None]),
        sq,
        sk,
        scale,
    ).hi[:, :, None]
    at_i = Box(states.lo[i][None, :, :, sk], states.hi[i][None, :, :, sk])  # [1, a, u, k]
    s_i = best(dot(q, at_i).scaled(scale).hi, allowed(np.array([i])))
    s_i = np.where((ps == i - 1)[:, None], -np.inf, s_i)[:, :, None]
    # fillers at 1 … i−1, every (j, u) against every (p, a) at once: one interval matrix product
    n_p, m_q = query.lo.shape[0], sk.stop - sk.start
    flat_q = Box(query.lo[..., sq].reshape(n_p * V, m_q), query.hi[..., sq].reshape(n_p * V, m_q))
    keys = Box(
        by_previous.lo[1:i, :, sk].reshape(-1, m_q).T.copy(),
        by_previous.hi[1:i, :, sk].reshape(-1, m_q).T.copy(),
    )
    s_fill = matmul_boxes(flat_q, keys).scaled(scale).hi.reshape(n_p, V, i - 1, V)  # [p, a, j, u]
    keep = np.transpose(allowed(np.arange(1, i)), (1, 0, 2))[None]  # [1, a, j, u]
    s_fill = best(s_fill, keep)  # [p, a, j]
    fillers = []
    for j in range(1, i):  # a filler key j is neither p nor p + 1
        not_case = (ps != j) & (ps + 1 != j)
        fillers.append(np.where(not_case[:, None], s_fill[:, :, j - 1], -np.inf)[:, :, None])
    return [s_p, s_start, s_i, *fillers]


def _off_target(target_lo: Array, others_hi: list[Array]) -> Array:
    """ε ≥ the attention off the target: ``X/(1+X)``, ``X = Σ_o e^{s̄_o − s̲_T}``.

    The others' scores do not depend on the answer ``c`` (the last axis of the target's), so
    ``X = e^{M − s̲_T} Σ_o e^{s̄_o − M}`` with ``M`` their largest score: one exponential per case.
    """
    top = functools.reduce(np.maximum, others_hi)  # [p, a, 1]
    finite_top = np.where(np.isfinite(top), top, 0.0)
    total = functools.reduce(
        lambda acc, hi: up(acc + exp_bound(up(hi - finite_top), lower=False)),
        others_hi,
        np.zeros_like(finite_top),
    )
    with np.errstate(invalid="ignore", over="ignore"):
        x = up(total * exp_bound(up(finite_top - target_lo), lower=False))
        x = np.where(np.isneginf(top), 0.0, x)  # no other key at all
        eps = up(x / down(1.0 + x))
    return np.where(np.isfinite(x), np.minimum(eps, 1.0), 1.0)


def _convex(target: Box, others: Box, eps: Array) -> Box:
    """A combination with weight ≥ 1 − ε on ``target`` and the rest on ``others``, enclosed."""
    lo_gap = np.maximum(down(target.lo - others.lo), 0.0)
    hi_gap = np.maximum(up(others.hi - target.hi), 0.0)
    eps = eps[..., None]
    return Box(down(target.lo - up(eps * lo_gap)), up(target.hi + up(eps * hi_gap)))


# ---------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class _QueryBounds:
    """For one query position i: per (p, a, c), the P(correct) bound and whether argmax is proved."""

    probability: Array  # [p, a, c], rounded down
    error: Array  # rounded up
    proved: Array  # bool
    valid: Array  # bool: the case exists
    eps: list[Array]  # per layer-1 head, off-target attention bound


def _query(
    i: int,
    states: Box,
    query_states: Box,
    u: _Unions,
    fun: _Functionals,
    const: Box,
    w: _Weights,
    ordinary: Array,
) -> _QueryBounds:
    V = states.lo.shape[1]
    ps = np.arange(1, i)  # earlier occurrence p, 1 … i−1
    a_idx = np.arange(V)
    # query state: (i, a, a) when p = i − 1, else (i, a, u ∉ {a, b})
    last = ps == i - 1
    query = Box(
        np.transpose(query_states.lo[i][:, ps], (1, 0, 2)),
        np.transpose(query_states.hi[i][:, ps], (1, 0, 2)),
    )  # [p, a, m_q]

    # target key state (p+1, c, a): [p, a, c, columns], built per head for the columns it reads
    def target(columns: slice) -> Box:
        return Box(
            np.transpose(states.lo[ps + 1][..., columns], (0, 2, 1, 3)),
            np.transpose(states.hi[ps + 1][..., columns], (0, 2, 1, 3)),
        )

    # the key at p: (p, a, u): u = BOS at p = 1, else u ∉ {a, b}
    at_p = u.other[ps]  # [p, a, m]
    start = u.start
    q4 = Box(query.lo[:, :, None, :], query.hi[:, :, None, :])
    direct = fun.in_query_columns(fun.direct)
    logits = Box(
        np.broadcast_to(query.lo[..., direct][:, :, None, :], (ps.size, V, V, V)),
        np.broadcast_to(query.hi[..., direct][:, :, None, :], (ps.size, V, V, V)),
    )
    logits = logits + Box(const.lo, const.hi)
    eps_all = []
    fill_prefix_lo = np.minimum.accumulate(u.filler.lo[1:i], axis=0)  # fillers at 1 … i−1
    fill_prefix_hi = np.maximum.accumulate(u.filler.hi[1:i], axis=0)
    fill_all = Box(fill_prefix_lo[-1], fill_prefix_hi[-1])  # [a, m]
    for g in range(len(fun.query)):
        sq, sk, sv = fun.in_query_columns(fun.query[g]), fun.key[g], fun.value[g]
        s_target = _scores(q4, target(sk), sq, slice(None), w.scale)  # [p, a, c]
        others_hi = [
            _scores(query, at_p, sq, sk, w.scale).hi[:, :, None],  # key p
            _scores(query, Box(start.lo[None, None], start.hi[None, None]), sq, sk, w.scale).hi[
                :, :, None
            ],
        ]
        # key i (when it is not the target): state (i, a, u ∉ {a, b})
        s_i = _scores(query, Box(u.other.lo[i][None], u.other.hi[i][None]), sq, sk, w.scale).hi
        others_hi.append(np.where(last[:, None], -np.inf, s_i)[:, :, None])
        # fillers at 1 … i−1 but p and p + 1
        fill_scores = _scores(
            Box(query.lo[:, None], query.hi[:, None]),
            Box(u.filler.lo[1:i][None], u.filler.hi[1:i][None]),
            sq,
            sk,
            w.scale,
        ).hi  # [p, j, a]
        for j in range(1, i):  # a filler key j is neither p nor p + 1
            not_case = (ps != j) & (ps + 1 != j)
            others_hi.append(
                np.where(not_case[:, None], fill_scores[:, j - 1, :], -np.inf)[:, :, None]
            )
        resolved = _scores_by_previous(i, query, states, u.by_previous, sq, sk, w.scale, ordinary)
        others_hi = [np.minimum(old, new) for old, new in zip(others_hi, resolved, strict=True)]
        eps = _off_target(s_target.lo, others_hi)
        eps_all.append(eps)
        # value logits: the target's, and the union over every other key
        vt = target(sv)
        vo = (
            fill_all[..., sv][None]
            .union(at_p[..., sv])
            .union(
                Box(
                    np.broadcast_to(start.lo[sv], at_p.lo[..., sv].shape),
                    np.broadcast_to(start.hi[sv], at_p.hi[..., sv].shape),
                )
            )
        )
        vi = Box(
            np.broadcast_to(u.other.lo[i][..., sv][None], vo.lo.shape),
            np.broadcast_to(u.other.hi[i][..., sv][None], vo.hi.shape),
        )
        vo = Box(
            np.where(last[:, None, None], vo.lo, np.minimum(vo.lo, vi.lo)),
            np.where(last[:, None, None], vo.hi, np.maximum(vo.hi, vi.hi)),
        )
        logits = logits + _convex(vt, Box(vo.lo[:, :, None], vo.hi[:, :, None]), eps)
    c_idx = np.arange(V)
    right_lo = np.take_along_axis(
        logits.lo, np.broadcast_to(c_idx[None, None, :, None], (*logits.lo.shape[:3], 1)), axis=3
    )[..., 0]
    gaps = up(logits.hi - right_lo[..., None])  # ℓ̄_t − ℓ̲_c
    not_c = c_idx[None, None, :, None] != c_idx[None, None, None, :]
    wrong = _masked(exp_bound(gaps, lower=False), not_c, 0.0)
    total = sum_up(wrong, axis=3)
    with np.errstate(invalid="ignore", over="ignore"):
        probability = np.where(np.isfinite(total), down(1.0 / up(1.0 + total)), 0.0)
        error = np.where(np.isfinite(total), np.minimum(up(total / down(1.0 + total)), 1.0), 1.0)
    proved = (_masked(gaps, not_c, -np.inf).max(axis=3) < 0) & np.isfinite(total)
    a_ok = ordinary[a_idx]
    valid = (
        a_ok[None, :, None]
        & ordinary[None, None, :]
        & np.where(
            last[:, None, None],
            a_idx[None, :, None] == c_idx[None, None, :],
            a_idx[None, :, None] != c_idx[None, None, :],
        )
    )
    return _QueryBounds(probability, error, proved, valid, eps_all)


def _case_count(i: int, p: int, vocab: int) -> int:
    """Sequences in one case (i, p, a, c): ``(V−2)`` choices at each filler position."""
    fixed = 3 if p == i - 1 else 4  # positions 0, p, (p+1,) i
    return int((vocab - 2) ** (i + 1 - fixed))


def certify(
    model: AttnOnlyTransformer, n_ctx: int | None = None, *, progress: bool | IO[str] = True
) -> ModelCertificate:
    """Proved bounds on P(correct next token) over the induction family, for any 2-layer model.

    ``n_ctx`` limits the family's length (default: the model's). The method is in the module
    doc: per case ``(i, p, a, c)``, every filler at once, in interval arithmetic rounded outward.
    ``progress`` draws a bar of the query positions done (tqdm) on stderr when it is a terminal,
    or on the stream given; ``False`` draws none.
    """
    stream = progress_stream(progress, VerificationError)
    model, length, bos = _checked(model, n_ctx)
    w = _Weights.of(model, length)
    V = model.cfg.d_vocab
    ordinary = _ordinary(V, bos)
    fun = _Functionals.of(w)
    states, query_states = _layer1_states(w, fun, bos, ordinary)
    unions = _unions(states, bos, ordinary)
    const = Box.exact(w.b_U) + matmul(Box.exact(w.b_O[1]), w.W_U.T)
    for g in range(w.W_Q.shape[1]):
        const = const + matmul(matmul(Box.exact(w.b_V[1, g]), w.W_O[1, g].T), w.W_U.T)
    n = length
    by_position = np.full((n, n), np.nan)
    proved_by_position = np.full((n, n), np.nan)
    by_token = np.full(V, np.inf)
    least, worst, error = np.inf, (0, 0, 0, 0), 0.0
    proved_total, family_size, cases = 0, 0, 0
    max_eps = [0.0] * w.W_Q.shape[1]
    bar = Progress(sum(i * i for i in range(2, n)), stream, "certify", "pair")
    for i in range(2, n):
        qb = _query(i, states, query_states, unions, fun, const, w, ordinary)
        bar.update(i * i)  # the work of a query position grows with its (p, key) pairs
        prob = np.where(qb.valid, qb.probability, np.inf)
        for row, p in enumerate(range(1, i)):
            valid = qb.valid[row]
            count = _case_count(i, p, V)
            n_cases = int(valid.sum())
            n_proved = int((qb.proved[row] & valid).sum())
            cases += n_cases
            family_size += count * n_cases
            proved_total += count * n_proved
            by_position[i, p] = prob[row].min()
            proved_by_position[i, p] = n_proved / n_cases
            if prob[row].min() < least:
                a, c = np.unravel_index(np.argmin(prob[row]), prob[row].shape)
                least, worst = float(prob[row].min()), (i, p, int(a), int(c))
        error = max(error, float(np.where(qb.valid, qb.error, 0.0).max()))
        by_token = np.minimum(by_token, prob.min(axis=(0, 2)))
        for g, eps in enumerate(qb.eps):
            max_eps[g] = max(max_eps[g], float(np.where(qb.valid, eps, 0.0).max()))
    bar.close()
    by_token[~ordinary] = np.nan
    accuracy = float_down(Fraction(proved_total, family_size))
    steps = (
        f"layer 0: attention of {w.W_Q.shape[1]} head(s) bounded per state (position, token, previous token)",
        "layer 1: off-target attention ε per head, largest over cases: "
        + ", ".join(f"1.{g}: {e:.3g}" for g, e in enumerate(max_eps)),
        f"output: P(correct) ≥ 1/(1 + Σ_t e^(ℓ̄_t − ℓ̲_c)) per case; least {least:.10g}",
    )
    return ModelCertificate(
        bound=max(float(least), 0.0),
        error_bound=min(error, 1.0),
        accuracy_bound=accuracy,
        proved=proved_total,
        family_size=family_size,
        n_ctx=n,
        bos_token=bos,
        by_position=by_position,
        proved_by_position=proved_by_position,
        by_token=by_token,
        worst_case=worst,
        steps=steps,
        cases=cases,
    )
