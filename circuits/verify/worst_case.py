r"""The exact worst case of the one-hot induction circuits, by symmetry reduction.

A sequence of the family is ``BOS, t_1, …, t_i`` with ``t_i = a`` occurring once before, at
``p`` (``1 ≤ p < i``); the circuit must predict ``c = t_{p+1}``. Three facts reduce the whole
family to the ``(i, p)`` pairs, about :math:`n^2/2` of them:

1. **The last layer's pattern depends on (i, p) only.** With one-hot codes the induction head's
   score of key ``j`` is :math:`\beta_1` times the ``a`` coordinate of ``prev`` at ``j`` (K), or
   :math:`\beta_1` times the pointer's weight on ``j−1`` (Q); both are sums of layer-0 attention
   weights over the positions that hold ``a`` — and those are ``p`` and ``i`` whatever the other
   tokens are. Layer-0 weights depend on positions only (K) or on where ``a`` is (Q).
2. **The logits are masses.** The logit of token ``t`` is γ times the attention mass on the
   positions holding ``t``. Fillers (positions other than ``0, p, p+1, i``) carry a fixed total
   mass; giving some of it to ``c`` raises P(c), and for the rest
   :math:`e^{\gamma x} + e^{\gamma y} \le e^{\gamma(x+y)} + 1` (convexity) says one token
   ``f ∉ {a, c}`` carrying all of it is worst. That is the adversarial sequence: every other
   position the same token.
3. **Token symmetry.** Relabelling ordinary tokens permutes the model's logits, so which ids
   ``a, c, f`` are does not matter.

So :math:`\min_{\text{family}} P(c) = \min_{(i,p)} P_{i,p}` with :math:`P_{i,p}` a closed form of
the layer-1 pattern (computed below in log space, stable for scales up to 10⁶ and beyond). Tests
check :math:`P_{i,p}` against the model's forward pass on the representative sequences and the
minimum against brute force over every sequence of tiny families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from ..construct.induction import InductionParameters, Mechanism
from ..errors import VerificationError
from ..model import AttnOnlyTransformer
from ._params import resolve

__all__ = ["PairProbabilities", "WorstCase", "exact_worst_case", "pair_probabilities"]

IntArray = NDArray[np.intp]

#: ``n_ctx`` above which the n²/2 pairs are too many to enumerate.
MAX_EXACT_CTX = 20_000
_CHUNK = 1 << 21


@dataclass(frozen=True)
class PairProbabilities:
    """``P(correct)`` of the adversarial sequence of every feasible pair (query ``i``, earlier ``p``)."""

    query: IntArray
    earlier: IntArray
    probability: FloatArray
    error: FloatArray  # 1 − probability, computed without cancellation


@dataclass(frozen=True)
class WorstCase:
    """The least probability of the right token over the whole family, and a sequence attaining it."""

    probability: float
    error: float  # 1 − probability, computed without cancellation
    tokens: IntArray
    query: int
    earlier: int
    target: int
    n_pairs: int
    mechanism: Mechanism

    def __str__(self) -> str:
        return (
            f"exact worst case ({self.mechanism}-composition, {self.n_pairs} position pairs): "
            f"P(correct) = {self.probability:.12g} (P(wrong) = {self.error:.6g}) at query {self.query}, earlier occurrence "
            f"{self.earlier}, sequence {_short(self.tokens)}"
        )


def _short(tokens: IntArray) -> str:
    items = tokens.tolist()
    return (
        str(items)
        if len(items) <= 12
        else f"[{', '.join(map(str, items[:10]))}, …] ({len(items)} tokens)"
    )


def _lse(*terms: FloatArray) -> FloatArray:
    """``log Σ exp`` of arrays of log-weights (``−inf`` = absent), elementwise."""
    stacked = np.stack(np.broadcast_arrays(*terms))
    peak = stacked.max(axis=0)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        out: FloatArray = safe + np.log(np.exp(stacked - safe).sum(axis=0))
    return out


def _log_count(count: IntArray) -> FloatArray:
    with np.errstate(divide="ignore"):
        out: FloatArray = np.log(count.astype(np.float64))
    return out


def _layer1_logweights(
    params: InductionParameters, i: IntArray, p: IntArray, suffix: FloatArray
) -> dict[str, FloatArray]:
    """Log of the unnormalised layer-1 attention on each class of keys at query ``i``.

    Classes: ``bos`` (key 0), ``pre`` (fillers 1…p−1), ``a_p`` (key p), ``target`` (key p+1),
    ``post`` (fillers p+2…i−1), ``a_i`` (key i when it is not the target).
    """
    b0, b1 = float(params.beta0), float(params.beta1)
    u = np.exp(-b0)  # e^{−β₀}; underflows to 0 harmlessly

    def off(j: IntArray) -> FloatArray:  # one off-target layer-0 weight at query j: 1/(e^β₀ + j)
        result: FloatArray = u / (1.0 + j * u)
        return result

    def on(j: IntArray) -> FloatArray:  # the target layer-0 weight at query j: e^β₀/(e^β₀ + j)
        result: FloatArray = 1.0 / (1.0 + j * u)
        return result

    adjacent = p + 1 == i
    absent = np.full(i.shape, -np.inf)
    n_pre, n_post = p - 1, np.maximum(i - p - 2, 0)
    if params.mechanism == "K":
        a, b = np.minimum(p + 2, i), i  # post fillers p+2 … i−1 via suffix sums
        with np.errstate(divide="ignore", invalid="ignore"):
            post = suffix[a] + np.log1p(-np.exp(suffix[b] - suffix[a]))
        return {
            "bos": np.zeros(i.shape),
            "pre": _log_count(n_pre),
            "a_p": b1 * off(p),
            "target": np.where(adjacent, b1 * (on(i) + off(i)), b1 * on(p + 1)),
            "post": np.where(n_post > 0, post, absent),
            "a_i": np.where(adjacent, absent, 2.0 * b1 * off(i)),
        }
    filler = b1 * off(i)
    return {
        "bos": np.zeros(i.shape),
        "pre": _log_count(n_pre) + filler,
        "a_p": filler,
        "target": b1 * on(i),
        "post": _log_count(n_post) + filler,
        "a_i": np.where(adjacent, absent, filler),
    }


def _pair_log_odds(
    params: InductionParameters, i: IntArray, p: IntArray, suffix: FloatArray
) -> FloatArray:
    r"""``log(P(wrong)/P(c))`` for the adversarial sequence of each pair; ``nan`` where it cannot exist.

    :math:`\sum_{t \ne c} e^{\gamma (m_t - m_c)}` is summed in log space directly (not as
    ``1 − P``), so a tiny probability of error keeps its relative accuracy.
    """
    logw = _layer1_logweights(params, i, p, suffix)
    log_z = _lse(*logw.values())
    mass = {k: np.exp(v - log_z) for k, v in logw.items()}
    gamma = float(params.gamma)
    adjacent = p + 1 == i
    m_c = mass["target"] + np.where(adjacent, mass["a_p"], 0.0)
    m_a = np.where(adjacent, 0.0, mass["a_p"] + mass["a_i"])
    m_f = mass["pre"] + mass["post"]
    has_fillers = (p - 1) + np.maximum(i - p - 2, 0) > 0
    free = (params.vocab_size - 1) - np.where(adjacent, 1, 2)  # ordinary tokens other than a, c
    own_filler = has_fillers & (free >= 1)
    forced = has_fillers & (free < 1)  # the fillers can only be c
    m_c = np.where(forced, m_c + m_f, m_c)
    zeros = free - own_filler.astype(np.intp)
    absent = np.full(i.shape, -np.inf)
    out = _lse(
        np.where(adjacent, absent, gamma * (m_a - m_c)),
        gamma * (mass["bos"] - m_c),
        np.where(own_filler, gamma * (m_f - m_c), absent),
        _log_count(np.maximum(zeros, 0)) - gamma * m_c,
    )
    infeasible = (forced & adjacent) | (~adjacent & (params.vocab_size < 3))
    return np.where(infeasible, np.nan, out)


def _suffix_logsums(params: InductionParameters) -> FloatArray:
    r"""``S[j] = log Σ_{j' = j}^{n−1} exp(β₁ / (e^{β₀} + j'))``, ``S[n] = −inf`` (K fillers)."""
    n = params.n_ctx
    u = np.exp(-float(params.beta0))
    j = np.arange(n, dtype=np.float64)
    terms = float(params.beta1) * u / (1.0 + j * u)
    suffix = np.full(n + 1, -np.inf)
    suffix[:n] = np.logaddexp.accumulate(terms[::-1])[::-1]
    return suffix


def pair_probabilities(
    model: AttnOnlyTransformer | None = None, **parameters: Any
) -> PairProbabilities:
    """``P(correct)`` on the adversarial sequence of every feasible ``(i, p)``, ``1 ≤ p < i < n_ctx``.

    Takes a model from :func:`~circuits.induction_model` or its parameters (as
    :func:`exact_worst_case`); one-hot codes only.
    """
    return _pairs(_exact_parameters(model, parameters))


def _pairs(params: InductionParameters) -> PairProbabilities:
    n = params.n_ctx
    i_all, p_all = np.nonzero(np.tril(np.ones((n, n), dtype=bool), k=-1))  # p < i
    keep = p_all >= 1
    i_all, p_all = i_all[keep].astype(np.intp), p_all[keep].astype(np.intp)
    suffix = _suffix_logsums(params)
    log_odds = np.concatenate(
        [
            _pair_log_odds(params, i_all[s : s + _CHUNK], p_all[s : s + _CHUNK], suffix)
            for s in range(0, max(i_all.size, 1), _CHUNK)
        ]
    )
    feasible = ~np.isnan(log_odds)
    log_odds = log_odds[feasible]
    log_total = np.logaddexp(0.0, log_odds)  # log(1 + odds), no overflow
    return PairProbabilities(
        query=i_all[feasible],
        earlier=p_all[feasible],
        probability=np.exp(-log_total),
        error=np.exp(log_odds - log_total),
    )


def _exact_parameters(
    model: AttnOnlyTransformer | None, parameters: dict[str, Any]
) -> InductionParameters:
    params = resolve(model, parameters)
    if params.code != "one-hot":
        raise VerificationError(
            "the exact worst case needs one-hot codes (its token symmetry fails for compressed "
            "codes); use certify_induction for a bound and adversarial_search for a search"
        )
    if params.n_ctx > MAX_EXACT_CTX:
        raise VerificationError(
            f"n_ctx={params.n_ctx} has too many position pairs to enumerate (limit {MAX_EXACT_CTX})"
        )
    if params.n_ctx < 3:
        raise VerificationError(f"the family needs n_ctx ≥ 3 (BOS, a, a); got {params.n_ctx}")
    return params


def representative(params: InductionParameters, query: int, earlier: int) -> IntArray:
    """The adversarial sequence of a pair: ``BOS, f…f, a, c, f…f, a`` (``a, c, f`` the first ordinary ids)."""
    ordinary = [t for t in range(params.vocab_size) if t != params.bos_token][:3]
    a = ordinary[0]
    c = ordinary[1] if len(ordinary) > 1 else a
    f = ordinary[2] if len(ordinary) > 2 else c
    tokens = np.full(query + 1, f, dtype=np.intp)
    tokens[0], tokens[earlier], tokens[query] = params.bos_token, a, a
    if earlier + 1 < query:
        tokens[earlier + 1] = c
    return tokens


def exact_worst_case(
    model: AttnOnlyTransformer | None = None,
    *,
    vocab_size: int | None = None,
    n_ctx: int | None = None,
    mechanism: Mechanism | None = None,
    beta0: float | None = None,
    beta1: float | None = None,
    gamma: float | None = None,
    bos_token: int | None = None,
) -> WorstCase:
    r"""The least ``P(correct next token)`` over every sequence of the family up to ``n_ctx``.

    :math:`\min_{1 \le p < i < n} P_{i,p}` (module doc), with the sequence that attains it. Give
    a model from :func:`~circuits.induction_model` (its weights are checked against the
    construction) or the parameters; unspecified scales take their defaults.
    """
    params = _exact_parameters(
        model,
        {
            "vocab_size": vocab_size,
            "n_ctx": n_ctx,
            "mechanism": mechanism,
            "beta0": beta0,
            "beta1": beta1,
            "gamma": gamma,
            "bos_token": bos_token,
        },
    )
    pairs = _pairs(params)
    k = int(np.argmax(pairs.error))
    i, p = int(pairs.query[k]), int(pairs.earlier[k])
    tokens = representative(params, i, p)
    return WorstCase(
        probability=float(pairs.probability[k]),
        error=float(pairs.error[k]),
        tokens=tokens,
        query=i,
        earlier=p,
        target=int(tokens[p + 1]),
        n_pairs=int(pairs.query.size),
        mechanism=params.mechanism,
    )
