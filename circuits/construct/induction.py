r"""The canonical induction circuits, built by hand.

Sequences start with BOS (token ``bos_token``, position 0). At the last position ``i`` the current
token ``a`` occurred once before, at ``p``; the circuit must predict ``c = t_{p+1}``.

**K-composition** (``mechanism="K"``), layout ``tok ⊕ pos ⊕ prev ⊕ out``:

* head 0.0, previous token: QK :math:`\beta_0 \sum_i \text{pos}[i]\,\text{pos}[i-1]^T`
  (query ``i`` looks at key ``i−1``), OV ``tok[t] ↦ prev[t]``;
* head 1.0, induction: QK :math:`\beta_1 \sum_t \text{tok}[t]\,\text{prev}[t]^T` (the query's
  token matches keys whose *previous* token it is), OV ``tok[t] ↦ γ·out[t]``;
* the unembedding reads ``out``: the logit of ``t`` is γ times the attention on positions of ``t``.

**Q-composition, the pointer variant** (``mechanism="Q"``), layout ``tok ⊕ pos ⊕ ptr ⊕ out``:

* head 0.0, duplicate token: QK :math:`\beta_0 (\sum_t \text{tok}[t]\,\text{tok}[t]^T -
  \sum_i \text{pos}[i]\,\text{pos}[i]^T)` — same token, but never itself (without the second
  term the query's own position ties with the earlier occurrence); OV ``pos[j] ↦ ptr[j]``
  writes *where* the earlier occurrence is;
* head 1.0, induction: QK :math:`\beta_1 \sum_j \text{ptr}[j]\,\text{pos}[j+1]^T` (the query asks
  for the position after the pointer), OV ``tok[t] ↦ γ·out[t]``.

Token directions are one-hot (``code="one-hot"``) or compressed (``"random"``, ``"structured"``:
see :mod:`.codes`) in ``d_code`` dimensions; positions stay one-hot. The scales default to
β₀ = β₁ = γ = 20: each margin then exceeds :math:`\ln(10^8)`, and the certified probability of
the right token (:func:`circuits.verify.certify_induction`) is above 0.9999 up to a million
positions and a vocabulary of 1000. Scales may be sympy symbols (:func:`induction_circuit`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Literal, cast, get_args

import numpy as np

from .._arrays import FloatArray
from .._checks import checked_int, is_int, is_positive_finite
from ..errors import ConfigError, VerificationError
from ..model import AttnOnlyTransformer
from .assemble import CircuitSpec
from .codes import coherence, random_code, structured_code
from .heads import HeadSpec
from .layout import Block, ResidualLayout
from .maps import BilinearForm, LinearMap, Scalar, _sympy_expr

__all__ = [
    "DEFAULT_SCALES",
    "InductionParameters",
    "Mechanism",
    "induction_circuit",
    "induction_model",
    "induction_parameters",
]

Mechanism = Literal["K", "Q"]
CodeKind = Literal["one-hot", "random", "structured"]
MECHANISMS: tuple[str, ...] = get_args(Mechanism)
CODE_KINDS: tuple[str, ...] = get_args(CodeKind)

#: Default scales β₀ (layer 0), β₁ (layer 1 scores) and γ (output).
DEFAULT_SCALES: dict[str, float] = {"beta0": 20.0, "beta1": 20.0, "gamma": 20.0}

#: Key of the construction's parameters in a model's metadata.
METADATA_KEY = "construction"


@dataclass(frozen=True)
class InductionParameters:
    """Everything that determines an induction model of :func:`induction_circuit`."""

    vocab_size: int
    n_ctx: int
    mechanism: Mechanism = "K"
    beta0: Scalar = DEFAULT_SCALES["beta0"]
    beta1: Scalar = DEFAULT_SCALES["beta1"]
    gamma: Scalar = DEFAULT_SCALES["gamma"]
    code: CodeKind = "one-hot"
    d_code: int | None = None
    seed: int = 0
    bos_token: int = 0

    def __post_init__(self) -> None:
        if not (is_int(self.vocab_size) and self.vocab_size >= 2):
            raise ConfigError(
                f"vocab_size must be an integer ≥ 2 (BOS and a token), got {self.vocab_size!r}"
            )
        if not (is_int(self.n_ctx) and self.n_ctx >= 2):
            raise ConfigError(f"n_ctx must be an integer ≥ 2, got {self.n_ctx!r}")
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        for name in ("beta0", "beta1", "gamma"):
            value = getattr(self, name)
            symbolic = _sympy_expr(value) and (
                bool(value.free_symbols) or bool(value.is_positive and value.is_finite)
            )
            if not (symbolic or is_positive_finite(value)):
                raise ConfigError(
                    f"{name} must be a finite number > 0 or a sympy expression, got {value!r}"
                )
        if self.code not in CODE_KINDS:
            raise ConfigError(f"code must be one of {CODE_KINDS}, got {self.code!r}")
        if self.code == "one-hot" and self.d_code not in (None, self.vocab_size):
            raise ConfigError(
                f"one-hot codes have d_code = vocab_size = {self.vocab_size}, got {self.d_code}"
            )
        if self.code != "one-hot" and not (is_int(self.d_code) and (self.d_code or 0) >= 1):
            raise ConfigError(f"{self.code} codes need d_code, an integer ≥ 1; got {self.d_code!r}")
        checked_int(self.seed, "seed", 0)
        if not (is_int(self.bos_token) and 0 <= self.bos_token < self.vocab_size):
            raise ConfigError(
                f"bos_token {self.bos_token!r} is outside the vocabulary [0, {self.vocab_size})"
            )
        for name in ("vocab_size", "n_ctx", "d_code", "seed", "bos_token"):  # numpy ints → int
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else int(value))

    @property
    def scales(self) -> dict[str, Scalar]:
        """``{"beta0": β₀, "beta1": β₁, "gamma": γ}``."""
        return {"beta0": self.beta0, "beta1": self.beta1, "gamma": self.gamma}

    def token_code(self) -> FloatArray | None:
        """The ``[d_code, vocab_size]`` token code, or ``None`` for one-hot tokens."""
        if self.code == "random":
            assert self.d_code is not None
            return random_code(self.vocab_size, self.d_code, seed=self.seed)
        if self.code == "structured":
            assert self.d_code is not None
            return structured_code(self.vocab_size, self.d_code)
        return None

    @cached_property
    def coherence(self) -> float:
        r"""μ of the token code (0 for one-hot)."""
        code = self.token_code()
        return 0.0 if code is None else coherence(code)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-compatible record (sympy scales as strings), stored under ``"construction"``."""
        record = {k: (str(v) if _sympy_expr(v) else v) for k, v in asdict(self).items()}
        return {"name": "induction", **record, "coherence": self.coherence}


def _layout(params: InductionParameters) -> ResidualLayout:
    V, n, code = params.vocab_size, params.n_ctx, params.token_code()
    tokens = range(V)

    def token_block(name: str, description: str) -> Block:
        if code is None:
            return Block.one_hot(name, tokens, description)
        return Block.coded(name, tokens, code, description)

    second = (
        token_block("prev", "the token at the previous position")
        if params.mechanism == "K"
        else Block.one_hot("ptr", range(n), "the position of the earlier occurrence")
    )
    return ResidualLayout.of(
        token_block("tok", "the current token"),
        Block.one_hot("pos", range(n), "the current position"),
        second,
        token_block("out", "the predicted next token (read by the unembedding)"),
    )


def _shifted(offset: int, size: int) -> Callable[[Hashable], Hashable]:
    """The action ``i ↦ i + offset`` on positions, to nothing where that leaves ``0 … size−1``."""

    def image(label: Hashable) -> Hashable:
        j = cast(int, label) + offset
        return j if 0 <= j < size else None

    return image


def _heads(params: InductionParameters, L: ResidualLayout) -> tuple[HeadSpec, HeadSpec]:
    b0, b1, gamma, n = params.beta0, params.beta1, params.gamma, params.n_ctx
    induction_ov = LinearMap.from_action(L, "tok", "out", scale=gamma, label="tok[t] ↦ out[t]")
    if params.mechanism == "K":
        previous = HeadSpec(
            qk=BilinearForm.from_action(
                L, "pos", "pos", _shifted(-1, n), scale=b0, label="pos[i] · pos[i−1]"
            ),
            ov=LinearMap.from_action(L, "tok", "prev", label="tok[t] ↦ prev[t]"),
            role="previous-token",
        )
        induction_qk = BilinearForm.from_action(
            L, "tok", "prev", scale=b1, label="tok[t] · prev[t]"
        )
        return previous, HeadSpec(induction_qk, induction_ov, "induction")
    duplicate = HeadSpec(
        qk=BilinearForm.from_action(L, "tok", "tok", scale=b0, label="tok[t] · tok[t]")
        + BilinearForm.from_action(
            L, "pos", "pos", scale=-b0, label="pos[i] · pos[i] (not itself)"
        ),
        ov=LinearMap.from_action(L, "pos", "ptr", label="pos[j] ↦ ptr[j]"),
        role="duplicate-token",
    )
    pointer_qk = BilinearForm.from_action(
        L, "ptr", "pos", _shifted(1, n), scale=b1, label="ptr[j] · pos[j+1]"
    )
    return duplicate, HeadSpec(pointer_qk, induction_ov, "induction")


def induction_circuit(
    vocab_size: int,
    n_ctx: int,
    *,
    mechanism: Mechanism = "K",
    beta0: Scalar = DEFAULT_SCALES["beta0"],
    beta1: Scalar = DEFAULT_SCALES["beta1"],
    gamma: Scalar = DEFAULT_SCALES["gamma"],
    code: CodeKind = "one-hot",
    d_code: int | None = None,
    seed: int = 0,
    bos_token: int = 0,
) -> CircuitSpec:
    """The induction circuit as a :class:`~circuits.construct.CircuitSpec` (see module doc).

    ``vocab_size`` counts every token, BOS included; scales may be numbers or sympy expressions
    (then :meth:`~circuits.construct.CircuitSpec.symbolic` gives exact weights).
    """
    params = InductionParameters(
        vocab_size, n_ctx, mechanism, beta0, beta1, gamma, code, d_code, seed, bos_token
    )
    layout = _layout(params)
    first, second = _heads(params, layout)
    return CircuitSpec(
        layout,
        ((first,), (second,)),
        vocab_size,
        n_ctx,
        bos_token=bos_token,
        metadata={METADATA_KEY: params.to_metadata()},
    )


def induction_model(
    vocab_size: int,
    n_ctx: int,
    *,
    mechanism: Mechanism = "K",
    beta0: float = DEFAULT_SCALES["beta0"],
    beta1: float = DEFAULT_SCALES["beta1"],
    gamma: float = DEFAULT_SCALES["gamma"],
    code: CodeKind = "one-hot",
    d_code: int | None = None,
    seed: int = 0,
    bos_token: int = 0,
) -> AttnOnlyTransformer:
    """The numeric induction model: :func:`induction_circuit` assembled with the smallest ``d_head``.

    Its ``bos_token`` is set, and ``metadata`` holds ``head_roles`` (``"0.0"``:
    ``previous-token`` or ``duplicate-token``, ``"1.0"``: ``induction``), what every head reads
    and writes (``heads``), the ``layout`` and the ``construction`` parameters.
    """
    return induction_circuit(
        vocab_size,
        n_ctx,
        mechanism=mechanism,
        beta0=beta0,
        beta1=beta1,
        gamma=gamma,
        code=code,
        d_code=d_code,
        seed=seed,
        bos_token=bos_token,
    ).model()


def induction_parameters(
    model: AttnOnlyTransformer, *, check_weights: bool = True
) -> InductionParameters:
    """The parameters an induction model was built with, read from its metadata.

    With ``check_weights`` the model is rebuilt from them and every weight compared (they must be
    equal to the last bit; float32 weights that equal the float64 ones count as equal): a model whose weights were changed after construction is a
    :class:`~circuits.errors.VerificationError`, so nothing certified about the construction is
    claimed for a different model.
    """
    if not isinstance(model, AttnOnlyTransformer):
        raise VerificationError(f"expected an AttnOnlyTransformer, got {type(model).__name__}")
    record = model.metadata.get(METADATA_KEY)
    if not isinstance(record, dict) or record.get("name") != "induction":
        raise VerificationError("the model's metadata does not describe an induction construction")
    fields = {k: v for k, v in record.items() if k not in ("name", "coherence")}
    try:
        params = InductionParameters(**fields)
    except (TypeError, ConfigError) as error:
        raise VerificationError(f"the model's construction record is unusable: {error}") from None
    if check_weights:
        _compare_weights(model, induction_model(**asdict(params)))
    return params


def _compare_weights(model: AttnOnlyTransformer, rebuilt: AttnOnlyTransformer) -> None:
    if model.cfg != rebuilt.cfg or model.bos_token != rebuilt.bos_token:
        raise VerificationError(
            f"the model's config or BOS differs from the construction it records ({model.cfg} vs {rebuilt.cfg})"
        )
    ours, theirs = rebuilt.parameters(), model.parameters()
    for name, expected in ours.items():
        # exactly equal: a certificate is about the real-number model of these very weights
        if not np.array_equal(theirs[name], expected):
            raise VerificationError(
                f"the model's {name} differs from the construction its metadata records"
            )
