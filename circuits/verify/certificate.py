r"""Certificates: a proved lower bound on P(correct next token) over a whole family of sequences.

The family: sequences of length ≤ ``n_ctx`` that start with BOS (and hold it nowhere else) and
whose last token ``a`` occurred exactly once before, at ``p``; the right answer is ``c = t_{p+1}``.
The bound chains the **margin lemma** — if a target key's score beats each of the other at most
``m`` keys by Δ, the attention off the target is at most :math:`m e^{-Δ} / (1 + m e^{-Δ})` and
any single other key gets at most :math:`e^{-Δ}/(1 + e^{-Δ})` — through both layers:

1. **Layer 0.** Margin :math:`Δ_0 = β_0` (K: key ``j−1`` scores β₀, others 0; Q: the earlier
   occurrence scores β₀, others at most β₀μ, itself 0, so :math:`Δ_0 = β_0(1-μ)`). Hence
   :math:`ε_0 = (n-1)e^{-Δ_0}/(1+(n-1)e^{-Δ_0})` off target in total and at most
   :math:`η_0 = e^{-Δ_0}/(1+e^{-Δ_0})` on any one other key.
2. **Layer 1.** K: the target key ``p+1`` scores at least :math:`β_1(1-(1+μ)ε_0)`; any other key
   at most :math:`β_1(μ + 2η_0)` — its ``prev`` direction holds ``a`` only through the two
   positions of ``a`` (``p`` and ``i``), each weighted at most η₀. Q: the pointer gives the target
   at least :math:`β_1(1-ε_0)` and any other key at most :math:`β_1 η_0`. The margin lemma with
   ``n−1`` other keys gives :math:`ε_1`.
3. **Output.** The logit of ``t`` is γ⟨c_t, Σ_j A_j c_{t_j}⟩: the right token's is at least
   :math:`γ(1-(1+μ)ε_1)`, a wrong token ``t`` with mass :math:`m_t` has at most
   :math:`γ(μ + (1-μ)m_t)`, and :math:`\sum_{t\ne c} m_t \le ε_1`. By convexity the sum of
   :math:`e^{\text{logit}}` over wrong tokens is largest with all that mass on one token:

   .. math:: P(c) \ge \Big(1 + e^{-γ(1-μ-2ε_1)} + (V-2)\, e^{-γ(1-μ-(1+μ)ε_1)}\Big)^{-1}.

μ is the coherence of the token code (0 for one-hot). The bound is evaluated in interval
arithmetic (mpmath) and rounded down, so ``bound`` is a proved lower bound, not an approximation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import mpmath  # type: ignore[import-untyped]
import sympy as sp
from mpmath.ctx_iv import MPIntervalContext  # type: ignore[import-untyped]

from .._checks import is_real
from ..construct.induction import Mechanism
from ..errors import VerificationError
from ..model import AttnOnlyTransformer
from ._params import resolve
from ._rounding import float_down, float_up, interval_high, interval_low

__all__ = [
    "REAL_NUMBER_MODEL",
    "STEP_SYMBOLS",
    "SYMBOLS",
    "Certificate",
    "DerivationStep",
    "certify_induction",
]

#: The parameters of a certificate's expressions.
SYMBOLS: dict[str, sp.Symbol] = {
    "vocab_size": sp.Symbol("V", positive=True),
    "n_ctx": sp.Symbol("n_ctx", positive=True),
    "beta0": sp.Symbol("beta_0", positive=True),
    "beta1": sp.Symbol("beta_1", positive=True),
    "gamma": sp.Symbol("gamma", positive=True),
    "coherence": sp.Symbol("mu", nonnegative=True),
}
_ORDER = tuple(SYMBOLS)

#: A private interval-arithmetic context (64-bit mantissas), so no global mpmath state changes.
_INTERVALS = MPIntervalContext()
_INTERVALS.prec = 64


#: What every certificate is about: exact arithmetic on the model's weights as stored.
REAL_NUMBER_MODEL = (
    "the real-number model: exact arithmetic on the weights as stored (float32 and float64 "
    "weights are exact real numbers); a forward pass in floating point rounds, and in float32 "
    "its probabilities can differ from the real model's by about 1e-7"
)


@dataclass(frozen=True)
class DerivationStep:
    """One step of a derivation: what is claimed, why, and the quantities it defines."""

    title: str
    reason: str
    quantities: tuple[tuple[str, Any, float], ...]  # (name, formula in earlier ones, value)

    def __str__(self) -> str:
        lines = [f"{self.title}: {self.reason}"]
        for name, expr, value in self.quantities:
            meaning = f"   ({MEANINGS[name]})" if name in MEANINGS else ""
            lines.append(f"    {name} = {formula_text(expr)} = {value:.10g}{meaning}")
        return "\n".join(lines)


#: What each quantity of a derivation is, printed beside it.
MEANINGS: dict[str, str] = {
    "Δ₀": "layer-0 margin: the target key's score minus any other key's",
    "ε₀": "at most this much layer-0 attention off the target key, by the margin lemma",
    "η₀": "at most this much layer-0 attention on any one other key",
    "Δ₁": "layer-1 margin of key p+1 over any other key",
    "ε₁": "at most this much layer-1 attention off key p+1, by the margin lemma",
    "bound": "the lower bound on P(c)",
}

#: How the symbols of the formulas are printed in text: the same letters as the reasons use.
_TEXT_NAMES = {
    "beta_0": "β₀", "beta_1": "β₁", "gamma": "γ", "mu": "μ", "Delta_0": "Δ₀", "epsilon_0": "ε₀",
    "eta_0": "η₀", "Delta_1": "Δ₁", "epsilon_1": "ε₁",
}  # fmt: skip
_TEXT_NAME = re.compile(r"\b(" + "|".join(_TEXT_NAMES) + r")\b")


def formula_text(expr: Any) -> str:
    """``expr`` as one line of text, its symbols written as the derivation writes them (β₀, ε₁, μ)."""
    return _TEXT_NAME.sub(lambda match: _TEXT_NAMES[match.group(1)], sp.sstr(expr))


@dataclass(frozen=True)
class Certificate:
    """A proved lower bound on P(correct next token) over every sequence of the family.

    ``bound`` is a float rounded down from an interval enclosure; ``error_bound`` (rounded up)
    bounds P(wrong) = 1 − P(correct) directly, accurate where ``bound`` rounds to 1.
    ``expression`` is the bound as a sympy expression of :data:`SYMBOLS`; ``values`` are the
    parameters it was evaluated at; ``steps`` are the derivation; ``about`` says which model the
    bound is true of (:data:`REAL_NUMBER_MODEL`).
    """

    mechanism: Mechanism
    bound: float
    error_bound: float
    expression: Any
    values: dict[str, float]
    steps: tuple[DerivationStep, ...]
    about: str = REAL_NUMBER_MODEL

    @property
    def family(self) -> str:
        """The set of sequences the bound covers, in words."""
        return (
            f"every sequence of at most {int(self.values['n_ctx'])} tokens that starts with BOS, "
            "holds it nowhere else, and whose last token occurred exactly once before"
        )

    def __str__(self) -> str:
        head = [
            f"Certificate ({self.mechanism}-composition induction circuit)",
            f"  family: {self.family}",
            f"  about: {self.about}",
            f"  notation: {NOTATION}",
            "  parameters: "
            + "; ".join(
                f"{_PARAMETERS[k][0]} = {_number(v)} ({_PARAMETERS[k][1]})"
                for k, v in self.values.items()
            ),
        ]
        body = [str(step) for step in self.steps]
        tail = f"P(correct next token) ≥ {self.bound:.12g}   (P(wrong) ≤ {self.error_bound:.6g})"
        return "\n".join(head + body + [tail])

    def latex(self) -> str:
        r"""``$P(\text{correct}) \ge <expression> \ge <bound>$``, the bound as a formula."""
        formula = sp.latex(self.expression)
        return rf"$P(\text{{correct}}) \ge {formula} \ge {self.bound:.12g}$"

    _repr_latex_ = latex  # Jupyter shows the formula


#: The positions and tokens the derivation speaks of.
NOTATION = (
    "t_j is the token at position j; i is the last position and a = t_i; p < i is the position "
    "of a's earlier occurrence and c = t_{p+1} the right answer"
)
#: How each parameter is written in the derivation, and what it is (its argument name first).
_PARAMETERS = {
    "vocab_size": ("V", "vocab_size: tokens, BOS included"),
    "n_ctx": ("n_ctx", "the longest sequence"),
    "beta0": ("β₀", "beta0: score scale of the layer-0 head"),
    "beta1": ("β₁", "beta1: score scale of the layer-1 head"),
    "gamma": ("γ", "gamma: output logit scale"),
    "coherence": ("μ", "coherence: of the token code, 0 for one-hot"),
}


def _number(value: float) -> str:
    """``1000000`` rather than ``1e+06`` for integral parameters."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


# ---------------------------------------------------------------------- the derivation, symbolically
def _margin_error(count: Any, margin: Any) -> Any:
    """The margin lemma: at most ``count e^{−Δ} / (1 + count e^{−Δ})`` off the target."""
    return count * sp.exp(-margin) / (1 + count * sp.exp(-margin))


#: The derivation's intermediate quantities; each step's formula uses the earlier ones.
STEP_SYMBOLS: dict[str, sp.Symbol] = {
    "Δ₀": sp.Symbol("Delta_0"),
    "ε₀": sp.Symbol("epsilon_0"),
    "η₀": sp.Symbol("eta_0"),
    "Δ₁": sp.Symbol("Delta_1"),
    "ε₁": sp.Symbol("epsilon_1"),
}


@cache
def _derivation(mechanism: str) -> tuple[Any, dict[str, Any], Any, Any]:
    """Steps (title, reason, quantities as local formulas), every quantity in the parameters, the
    bound and the error bound (both in the parameters)."""
    V, n, b0, b1, g, mu = (SYMBOLS[k] for k in _ORDER)
    D0, E0, H0, D1, E1 = STEP_SYMBOLS.values()
    if mechanism == "K":
        d0, d1 = b0, b1 * (1 - (1 + mu) * E0 - mu - 2 * H0)
        layer0 = (
            "layer 0 (previous-token head)",
            "query j ≥ 1 scores key j−1 at β₀ and its other ≤ n_ctx−1 keys at 0",
        )
        layer1 = (
            "layer 1 (induction head)",
            "key p+1 scores ≥ β₁(1−(1+μ)ε₀); any other key ≤ β₁(μ+2η₀), since a sits only at p and i",
        )
    else:
        d0, d1 = b0 * (1 - mu), b1 * (1 - E0 - H0)
        layer0 = (
            "layer 0 (duplicate-token head)",
            "the earlier occurrence p scores β₀, itself 0, every other key ≤ β₀μ",
        )
        layer1 = (
            "layer 1 (induction head, pointer)",
            "key p+1 scores ≥ β₁(1−ε₀) through the pointer to p that layer 0 wrote; any other key ≤ β₁η₀",
        )
    x = sp.exp(-g * (1 - mu - 2 * E1)) + (V - 2) * sp.exp(-g * (1 - mu - (1 + mu) * E1))
    steps = (
        (*layer0, (("Δ₀", d0), ("ε₀", _margin_error(n - 1, D0)), ("η₀", _margin_error(1, D0)))),
        (*layer1, (("Δ₁", d1), ("ε₁", _margin_error(n - 1, D1)))),
        (
            "output",
            "right logit ≥ γ(1−(1+μ)ε₁), wrong mass ≤ ε₁; worst when it all sits on one token",
            (("bound", 1 / (1 + x)),),
        ),
    )
    full: dict[str, Any] = {}
    for _, _, named in steps:
        for name, local in named:
            full[name] = _in_parameters(local, full)
    x_full = _in_parameters(x, full)
    return steps, full, full["bound"], x_full / (1 + x_full)


def _in_parameters(local: Any, full: dict[str, Any]) -> Any:
    """A step's formula with the earlier quantities replaced by their formulas in the parameters."""
    return local.subs({STEP_SYMBOLS[k]: v for k, v in full.items() if k in STEP_SYMBOLS})


@cache
def _evaluator(mechanism: str) -> Callable[..., Any]:
    """All quantities of the derivation, and P(wrong), in interval arithmetic."""
    _, full, _, error = _derivation(mechanism)
    return sp.lambdify(  # type: ignore[no-any-return]
        [SYMBOLS[k] for k in _ORDER],
        [*full.values(), error],
        modules=[{"exp": _INTERVALS.exp}, "mpmath"],
    )


#: Sizes up to 2^53 are exact as floats; a longer context or a larger vocabulary is no real model.
_MAX_SIZE = 2**53


def _size(value: int, name: str, least: int) -> float:
    """A vocabulary size or context length as an exact float, or a clear refusal."""
    if value < least:
        family = "the family is empty (its sequences have ≥ 3 tokens)" if name == "n_ctx" else ""
        raise VerificationError(f"{name} must be ≥ {least}, got {value}: {family}".rstrip(": "))
    if value > _MAX_SIZE:
        raise VerificationError(f"{name} must be ≤ 2^53 to be certified, got {value}")
    return float(value)


def _scale(value: object, name: str) -> float:
    """A scale β₀, β₁ or γ as a finite float; symbols and overflowing numbers are refused."""
    if isinstance(value, sp.Basic) and value.free_symbols:
        raise VerificationError(
            f"{name} = {value} is symbolic: substitute numbers for {sorted(map(str, value.free_symbols))} "
            "first (the closed form itself is Certificate.expression)"
        )
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise VerificationError(f"{name} must be a finite number > 0 as a float, got {value!r}")
    return number


def certify_induction(
    model: AttnOnlyTransformer | None = None,
    *,
    vocab_size: int | None = None,
    n_ctx: int | None = None,
    mechanism: Mechanism | None = None,
    beta0: float | None = None,
    beta1: float | None = None,
    gamma: float | None = None,
    coherence: float | None = None,
) -> Certificate:
    r"""A proved lower bound on P(correct next token) over all sequences of the family (module doc).

    Give a model from :func:`~circuits.induction_model` — its weights are checked against the
    construction its metadata records, and μ is its token code's coherence (a larger ``coherence``
    may be given, which only weakens the bound; a smaller one is refused) — or the parameters
    (``vocab_size``, ``n_ctx``, ``mechanism``, scales, and ``coherence`` μ for compressed codes;
    unspecified scales take the defaults of ``induction_model``).
    """
    params = resolve(
        model,
        {
            "vocab_size": vocab_size,
            "n_ctx": n_ctx,
            "mechanism": mechanism,
            "beta0": beta0,
            "beta1": beta1,
            "gamma": gamma,
        },
    )
    given: object = params.coherence if coherence is None else coherence
    if not (is_real(given) and 0.0 <= float(given) <= 1.0):  # type: ignore[arg-type]
        raise VerificationError(f"coherence μ must lie in [0, 1], got {coherence!r}")
    mu = float(given)  # type: ignore[arg-type]
    if model is not None and mu < params.coherence:
        raise VerificationError(
            f"the model's token code has coherence {params.coherence:.6g}; a certificate with the "
            f"smaller μ = {mu:.6g} would not hold for it"
        )
    values = {
        "vocab_size": _size(params.vocab_size, "vocab_size", 2),
        "n_ctx": _size(params.n_ctx, "n_ctx", 3),
        **{name: _scale(value, name) for name, value in params.scales.items()},
        "coherence": mu,
    }
    results = _evaluator(params.mechanism)(*(_INTERVALS.mpf(values[k]) for k in _ORDER))
    steps_spec, _, bound_expr, _ = _derivation(params.mechanism)
    steps, k = [], 0
    for title, reason, named in steps_spec:
        quantities = []
        for name, expr in named:
            quantities.append((name, expr, float(mpmath.mpf(results[k].mid))))
            k += 1
        steps.append(DerivationStep(title, reason, tuple(quantities)))
    return Certificate(
        mechanism=params.mechanism,
        bound=max(float_down(interval_low(results[k - 1])), 0.0),
        error_bound=min(float_up(interval_high(results[k])), 1.0),
        expression=bound_expr,
        values=values,
        steps=tuple(steps),
    )
