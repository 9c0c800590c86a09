r"""Symbolic path terms: sympy matrix symbols, tensor products, LaTeX and substitution.

With the attention patterns held fixed, a head is the linear map :math:`A^h \otimes W_{OV}^h` on
:math:`\mathbb{R}^n \otimes \mathbb{R}^{d}` (positions ⊗ residual stream), and a path is a
product of such maps. By the mixed-product rule :math:`(A \otimes W)(B \otimes U) = (AB) \otimes
(WU)` every path term is again one tensor product,

.. math::

    (A^{h_m} \cdots A^{h_1}) \otimes (W_U W_{OV}^{h_m} \cdots W_{OV}^{h_1} W_E),

a *pattern product* over positions and a *weight product* over the residual stream. This module
builds those products from sympy ``MatrixSymbol`` objects and keeps the tensor product in its own
:class:`Kron` object: sympy's ``KroneckerProduct`` simplification is not relied upon (sympy 1.14's
``combine_kronecker`` merges ``KP(a, b) + KP(c, d)`` into ``KP(a + c, b + d)``, sympy issue #30272).

Symbols
-------
Every symbol is named after its weight, with the head ``"l.h"`` (or layer) as superscript; these
names are the keys of the mappings :func:`substitute` takes:

``W_E`` (``d_model × d_vocab``), ``W_P`` (``d_model × n_ctx``), ``W_U`` (``d_vocab × d_model``),
``W_Q^{l.h}``, ``W_K^{l.h}``, ``W_V^{l.h}`` (``d_head × d_model``), ``W_O^{l.h}``
(``d_model × d_head``), ``W_QK^{l.h}``, ``W_OV^{l.h}`` (``d_model × d_model``), the biases
``b_Q^{l.h}``, ``b_K^{l.h}``, ``b_V^{l.h}`` (``d_head × 1``), ``b_O^{l}`` (``d_model × 1``), ``b_U``
(``d_vocab × 1``), the patterns ``A^{l.h}`` (``n × n``, with ``n`` the sequence length, a sympy
symbol named ``n``), and the scalar ``alpha`` (α, the score scale ``attn_scale``). ``Id`` is the
``n × n`` identity and :math:`\mathbb{1}` the ``n × 1`` vector of ones.

Terms of the logits (:meth:`ModelSymbols.ov_term`): a source contributes :math:`\mathrm{Id}
\otimes W_E` (token embedding), :math:`\mathrm{Id} \otimes W_P` (positions), or
:math:`\mathbb{1} \otimes b` for a constant ``b`` (``W_O^{l.h} b_V^{l.h}``, ``b_O^{l}``,
``b_U``); each head on the path multiplies by :math:`A^h \otimes W_{OV}^h` and the unembedding by
:math:`\mathrm{Id} \otimes W_U`. Read as numbers, a term with pattern product ``P`` and weight
product ``W`` contributes ``P @ W[:, t].T`` to the logits ``[pos, d_vocab]`` of tokens ``t``
(``P @ W[:, :n].T`` for positions, ``P @ W.T`` for constants). Terms of attention scores
(:meth:`ModelSymbols.qk_term`) are triple products :math:`P_q \otimes P_k \otimes W`, the
Framework's :math:`A_q \otimes A_k \otimes W`, with
:math:`W = \alpha^{-1} W_q^T W_{QK} W_k`; they contribute ``P_q @ W[t, t'] @ P_k.T``.

Substitution
------------
:func:`substitute` evaluates an expression from a mapping of symbol names to values: numpy arrays,
:class:`~circuits.FactoredMatrix` objects or *sympy matrices* (whose entries may themselves be
symbols, e.g. a scale β of a hand-built head). Products are multiplied in the cheapest order, and a
numeric product that passes through a dimension narrower than both its ends comes back as a
:class:`~circuits.FactoredMatrix` (``W_U W_OV W_E`` is never formed as a ``d_vocab × d_vocab``
array). With sympy values the result is an exact sympy matrix, ready for ``sympy.simplify``.
:func:`weight_values` builds the mapping from weights laid out like
:meth:`AttnOnlyTransformer.parameters <circuits.AttnOnlyTransformer.parameters>` (numpy arrays, or
nested lists ``W_Q[l][h]`` of sympy matrices); :func:`pattern_values` adds a cache's patterns.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter

from ._arrays import as_real_array
from ._checks import is_int, is_real
from .config import TransformerConfig, head_name, parse_head
from .errors import PathError, ShapeError, WeightError
from .factored import FactoredMatrix
from .graph import UNEMBED, parse_node
from .model import ActivationCache, as_cache

__all__ = [
    "ALPHA",
    "SEQ_LEN",
    "Kron",
    "ModelSymbols",
    "latex",
    "pattern_values",
    "substitute",
    "symbol_name",
    "weight_values",
]

#: The score scale ``attn_scale`` (scores are divided by it).
ALPHA = sp.Symbol("alpha", positive=True)
#: The owner label of the normalisation read by the unembedding (``LN^{final}``, ``S^{final}``).
FINAL = "final"
#: The sequence length, the size of every pattern ``A^{l.h}``.
SEQ_LEN = sp.Symbol("n", integer=True, positive=True)

_HEAD_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")
#: Sources whose signal a head or the unembedding reads without the normalisation.
_PAST_NORM = ("b_LN", "b_LN_final", "b_Q", "b_K")


def symbol_name(weight: str, owner: str | int | None = None) -> str:
    """The name of a symbol: ``symbol_name("W_OV", "1.4") == "W_OV^{1.4}"``, ``symbol_name("W_E") == "W_E"``."""
    return weight if owner is None else f"{weight}^{{{owner}}}"


# ---------------------------------------------------------------------------------- printing
class _Printer(LatexPrinter):  # type: ignore[misc]
    """sympy's LaTeX printer with the Framework's notation for our symbols."""

    def _print_MatrixSymbol(self, expr: sp.MatrixSymbol) -> str:
        return _name_latex(str(expr.name))

    def _print_Identity(self, expr: sp.Identity) -> str:
        return r"\mathrm{Id}"

    def _print_OneMatrix(self, expr: sp.OneMatrix) -> str:
        return r"\mathbb{1}"

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        inner = self._print(expr.arg)
        if isinstance(expr.arg, sp.MatrixSymbol) and "^" not in inner:
            return f"{inner}^{{T}}"
        return rf"\left({inner}\right)^{{T}}" if " " in inner else f"{{{inner}}}^{{T}}"


def _name_latex(name: str) -> str:
    """``"W_OV^{1.4}"`` → ``"W_{OV}^{1.4}"``."""
    base, caret, sup = name.partition("^")
    stem, underscore, sub = base.partition("_")
    text = f"{stem}_{{{sub}}}" if underscore else rf"\mathrm{{{stem}}}" if stem == "LN" else stem
    return text + (f"^{sup}" if caret else "")


def latex(expr: sp.Basic) -> str:
    r"""LaTeX of a symbolic expression in the Framework's notation (``W_{OV}^{1.4}``, ``\mathrm{Id}``)."""
    text: str = _Printer().doprint(expr)
    return text


# ---------------------------------------------------------------------------------- tensor products
@dataclass(frozen=True)
class Kron:
    r"""A tensor product :math:`F_1 \otimes F_2 \otimes \cdots` of sympy matrix expressions.

    Path terms are ``Kron(patterns, weights)``; attention-score terms are
    ``Kron(query_patterns, key_patterns, weights)``. ``@`` applies the mixed-product rule
    :math:`(A \otimes W)(B \otimes U) = (AB) \otimes (WU)` factor by factor.
    """

    factors: tuple[sp.MatrixExpr, ...]

    def __matmul__(self, other: Kron) -> Kron:
        """The mixed product, factor by factor (both sides need the same number of factors)."""
        if not isinstance(other, Kron):
            return NotImplemented
        if len(other.factors) != len(self.factors):
            raise ShapeError(
                f"cannot multiply a {len(self.factors)}-fold tensor product by a "
                f"{len(other.factors)}-fold one"
            )
        for left, right in zip(self.factors, other.factors, strict=True):
            if _known(left.shape[1]) and _known(right.shape[0]) and left.shape[1] != right.shape[0]:
                raise ShapeError(
                    f"cannot multiply {left} ({left.shape}) by {right} ({right.shape})"
                )
        return Kron(
            tuple(sp.MatMul(a, b).doit() for a, b in zip(self.factors, other.factors, strict=True))
        )

    def latex(self) -> str:
        r"""``(A^{1.4} A^{0.7}) \otimes (W_U W_{OV}^{1.4} W_{OV}^{0.7} W_E)``; lone symbols unbracketed."""
        return r" \otimes ".join(_bracketed(factor) for factor in self.factors)

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    def substitute(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Every factor evaluated by :func:`substitute`."""
        return tuple(substitute(factor, values) for factor in self.factors)

    def to_dense(self, values: Mapping[str, Any]) -> np.ndarray[Any, Any]:
        """The Kronecker product of the evaluated factors as one dense array (small sizes only)."""
        dense = [_dense(value) for value in self.substitute(values)]
        result: np.ndarray[Any, Any] = reduce(np.kron, dense)
        return result


def _known(dim: Any) -> bool:
    return isinstance(dim, (int, sp.Integer))


def _bracketed(expr: sp.MatrixExpr) -> str:
    text = latex(expr)
    return rf"\left({text}\right)" if isinstance(expr, sp.MatMul) else text


def _dense(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, FactoredMatrix):
        return value.AB
    if isinstance(value, sp.MatrixBase):
        return np.array(value.evalf(), dtype=float)
    return np.asarray(value)


# ---------------------------------------------------------------------------------- model symbols
@dataclass(frozen=True)
class ModelSymbols:
    """The symbols of a model's weights and patterns, and the tensor products of its paths.

    Head labels are head names ``"l.h"``, or any label a caller substitutes for them through
    ``labels`` (e.g. ``{"1.4": "h_2"}`` prints :math:`W_{OV}^{h_2}`, as in a sum over heads).
    With ``expand=True`` the circuits are written out: :math:`W_{OV} \\to W_O W_V`,
    :math:`W_{QK} \\to W_Q^T W_K`.
    """

    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    normalized: bool = False
    shortformer: bool = False

    @classmethod
    def of(cls, cfg: TransformerConfig) -> ModelSymbols:
        """The symbols for a model of configuration ``cfg``."""
        shortformer = cfg.positional_embedding_type == "shortformer"
        return cls(cfg.d_model, cfg.d_head, cfg.d_vocab, cfg.n_ctx, cfg.normalized, shortformer)

    def weight(self, name: str, owner: str | int | None = None) -> sp.MatrixSymbol:
        """The symbol of weight ``name`` (``"W_OV"``, ``"b_O"``, …) of head or layer ``owner``."""
        d, k, V = self.d_model, self.d_head, self.d_vocab
        shapes = {
            "W_E": (d, V), "W_P": (d, self.n_ctx), "W_U": (V, d), "b_U": (V, 1), "b_O": (d, 1),
            "W_Q": (k, d), "W_K": (k, d), "W_V": (k, d), "W_O": (d, k), "W_QK": (d, d),
            "W_OV": (d, d), "b_Q": (k, 1), "b_K": (k, 1), "b_V": (k, 1), "LN": (d, d),
            "b_LN": (d, 1),
        }  # fmt: skip
        if name not in shapes:
            raise WeightError(f"no weight symbol {name!r}; expected one of {sorted(shapes)}")
        return sp.MatrixSymbol(symbol_name(name, owner), *shapes[name])

    def pattern(self, owner: str) -> sp.MatrixSymbol:
        """The attention pattern :math:`A^{h}` (``n × n``) of head ``owner``."""
        return sp.MatrixSymbol(symbol_name("A", owner), SEQ_LEN, SEQ_LEN)

    def scales(self, layer: int | str) -> sp.MatrixSymbol:
        r""":math:`S^l = \mathrm{diag}(1/\sigma^l_i)` (``n × n``): the frozen normalisation scales of
        the stream read by layer ``layer`` (``"final"``: by the unembedding)."""
        return sp.MatrixSymbol(symbol_name("S", layer), SEQ_LEN, SEQ_LEN)

    def norm_map(self, layer: int | str) -> Kron:
        r"""What the normalisation read by ``layer`` does to a stream, scales frozen:
        :math:`S^l \otimes \mathrm{LN}^l`, with :math:`\mathrm{LN}^l = \mathrm{diag}(w^l) C` and
        :math:`C = I - \tfrac{1}{d}\mathbb{1}\mathbb{1}^T` (no :math:`C` for RMS, no ``w`` for the
        ``Pre`` variants); its bias :math:`b_{LN}^l` is a source of its own."""
        return Kron((self.scales(layer), self.weight("LN", layer)))

    def ov(self, owner: str, *, expand: bool = False) -> sp.MatrixExpr:
        r""":math:`W_{OV}^h`, or :math:`W_O^h W_V^h` with ``expand``."""
        if expand:
            return sp.MatMul(self.weight("W_O", owner), self.weight("W_V", owner))
        return self.weight("W_OV", owner)

    def qk(self, owner: str, *, expand: bool = False) -> sp.MatrixExpr:
        r""":math:`W_{QK}^h`, or :math:`W_Q^{hT} W_K^h` with ``expand``."""
        if expand:
            return sp.MatMul(self.weight("W_Q", owner).T, self.weight("W_K", owner))
        return self.weight("W_QK", owner)

    def head_map(self, owner: str, *, expand: bool = False) -> Kron:
        r"""What head ``owner`` does to the stream, patterns fixed: :math:`A^h \otimes W_{OV}^h`."""
        return Kron((self.pattern(owner), self.ov(owner, expand=expand)))

    def unembed_map(self) -> Kron:
        r"""The unembedding :math:`\mathrm{Id} \otimes W_U`; with a normalisation
        :math:`S^{\mathrm{final}} \otimes W_U \mathrm{LN}^{\mathrm{final}}`."""
        unembed = Kron((sp.Identity(SEQ_LEN), self.weight("W_U")))
        return unembed @ self.norm_map(FINAL) if self.normalized else unembed

    def source_map(self, node: str, labels: Mapping[str, str] | None = None) -> Kron:
        r"""What source ``node`` writes: :math:`\mathrm{Id} \otimes W_E`, :math:`\mathbb{1} \otimes b`, …

        The value bias enters as :math:`\mathbb{1} \otimes W_O^h b_V^h`; query and key biases,
        which live in a head's query/key space, as :math:`\mathbb{1} \otimes b_Q^h`.
        """
        info = parse_node(node)
        if info.role != "source" or info.weight is None:
            raise PathError(f"{node!r} is not a source node")
        owner = _label(info.owner, labels)
        if info.weight in ("W_E", "W_P"):
            return Kron((sp.Identity(SEQ_LEN), self.weight(info.weight)))
        ones = sp.OneMatrix(SEQ_LEN, 1)
        if info.weight == "b_V":
            return Kron((ones, sp.MatMul(self.weight("W_O", owner), self.weight("b_V", owner))))
        if info.weight in ("b_O", "b_LN"):
            return Kron((ones, self.weight(info.weight, info.layer)))
        if info.weight == "b_LN_final":
            return Kron((ones, self.weight("b_LN", FINAL)))
        return Kron((ones, self.weight(info.weight, owner)))

    def skips_norm(self, source: str) -> bool:
        """Whether what ``source`` writes is read without the normalisation: the normalisation's
        own biases, query and key biases, and shortformer positions (added after it)."""
        weight = parse_node(source).weight
        return weight in _PAST_NORM or (weight == "W_P" and self.shortformer)

    def head_input(
        self,
        nodes: Sequence[str],
        layer: int,
        labels: Mapping[str, str] | None = None,
        *,
        expand: bool = False,
    ) -> Kron:
        """What heads of ``layer`` read of the path ``nodes``: its stream, through the
        normalisation :meth:`norm_map` unless the source is past it already."""
        term = self.stream(nodes, labels, expand=expand)
        if self.normalized and (len(nodes) > 1 or not self.skips_norm(nodes[0])):
            term = self.norm_map(layer) @ term
        return term

    def stream(
        self, nodes: Sequence[str], labels: Mapping[str, str] | None = None, *, expand: bool = False
    ) -> Kron:
        r"""A path's contribution to the stream: the head maps applied to the source map.

        ``nodes`` is ``(source, h_1, …, h_m)``; the result is
        :math:`(A^{h_m} \cdots A^{h_1} P_0) \otimes (W_{OV}^{h_m} \cdots W_{OV}^{h_1} W_0)` for the
        source's :math:`P_0 \otimes W_0`.
        """
        if len(nodes) == 1:
            return self.source_map(nodes[0], labels)
        *before, head = nodes
        read = self.head_input(before, parse_head(head)[0], labels, expand=expand)
        return self.head_map(_relabel(head, labels), expand=expand) @ read

    def ov_term(
        self, path: Sequence[str], labels: Mapping[str, str] | None = None, *, expand: bool = False
    ) -> Kron:
        r"""The term of a path ``(source, h_1, …, h_m, "unembed")`` of the logits:
        :math:`(\mathrm{Id} \otimes W_U)(A^{h_m} \otimes W_{OV}^{h_m}) \cdots (P_0 \otimes W_0)`;
        the unembedding bias path ``("b_U", "unembed")`` is :math:`\mathbb{1} \otimes b_U`.
        """
        if path[-1] != UNEMBED:
            raise PathError(f"a path of the logits ends at {UNEMBED!r}, got {tuple(path)}")
        stream = self.stream(path[:-1], labels, expand=expand)
        if path[0] == "b_U":
            return stream
        if path[0] == "b_LN_final":
            return Kron((stream.factors[0], sp.MatMul(self.weight("W_U"), stream.factors[1])))
        return self.unembed_map() @ stream

    def qk_term(
        self,
        query: Sequence[str],
        key: Sequence[str],
        labels: Mapping[str, str] | None = None,
        *,
        key_labels: Mapping[str, str] | None = None,
        expand: bool = False,
    ) -> Kron:
        r"""The term of a head's scores for a query path and a key path (both ending at the head).

        :math:`P_q \otimes P_k \otimes \alpha^{-1} W_q^T W_{QK} W_k` for stream paths with patterns
        and weights :math:`P_q \otimes W_q`, :math:`P_k \otimes W_k`; a query bias replaces
        :math:`W_q^T W_Q^T` by :math:`b_Q^T`, a key bias :math:`W_K W_k` by :math:`b_K`. ``labels``
        relabel the heads of the query path and the head itself, ``key_labels`` (default:
        ``labels``) those of the key path, so that the two paths can range over heads separately.
        """
        if query[-1] != key[-1]:
            raise PathError(f"query and key paths end at different heads: {query}, {key}")
        owner, layer = _relabel(query[-1], labels), parse_head(query[-1])[0]
        k_labels = labels if key_labels is None else key_labels
        q = self.head_input(query[:-1], layer, labels, expand=expand)
        k = self.head_input(key[:-1], layer, k_labels, expand=expand)
        q_bias, k_bias = parse_node(query[0]).weight == "b_Q", parse_node(key[0]).weight == "b_K"
        if not (q_bias or k_bias or expand):
            form = sp.MatMul(q.factors[1].T, self.qk(owner), k.factors[1])
        else:
            q_vec = q.factors[1] if q_bias else sp.MatMul(self.weight("W_Q", owner), q.factors[1])
            k_vec = k.factors[1] if k_bias else sp.MatMul(self.weight("W_K", owner), k.factors[1])
            form = sp.MatMul(q_vec.T, k_vec)
        return Kron((q.factors[0], k.factors[0], sp.MatMul(1 / ALPHA, form).doit()))


def _label(owner: str | None, labels: Mapping[str, str] | None) -> str | None:
    return None if owner is None else _relabel(owner, labels)


def _relabel(name: str, labels: Mapping[str, str] | None) -> str:
    return labels.get(name, name) if labels else name


# ---------------------------------------------------------------------------------- substitution
def substitute(expr: sp.Basic, values: Mapping[str, Any]) -> Any:
    """Evaluate a matrix expression of our symbols from ``values`` (symbol name → value).

    Values are numpy arrays (1-D arrays are columns), :class:`~circuits.FactoredMatrix` objects,
    sympy matrices, or scalars for ``alpha``. Symbolic sizes (the sequence length ``n`` of ``Id``
    and :math:`\\mathbb{1}`) are read off the values of the symbols that have them, or given in
    ``values`` (``"n": 5``). Products are multiplied in the cheapest order; a numeric product that
    passes through a dimension narrower than both its ends is returned factored
    (:class:`~circuits.FactoredMatrix`), otherwise as an array. Any sympy value makes the result
    an exact sympy ``ImmutableMatrix`` (scalars included: ``2 M`` stays ``2 M``, not ``2.0 M``).
    """
    if not isinstance(values, Mapping):
        raise WeightError(f"values: expected a mapping of symbol names to values, got {values!r}")
    bound = dict(values)
    for symbol in expr.atoms(sp.MatrixSymbol):
        if str(symbol.name) in values:
            shape = _shape_of(values[str(symbol.name)])
            for dim, size in zip(symbol.shape, shape, strict=False):
                if not _known(dim):
                    bound.setdefault(str(dim), size)
    return _evaluate(expr, bound)


def _evaluate(expr: sp.Basic, values: Mapping[str, Any]) -> Any:
    if isinstance(expr, sp.MatrixSymbol):
        return _value(expr, values)
    if isinstance(expr, sp.Transpose):
        return _evaluate(expr.arg, values).T
    if isinstance(expr, (sp.Identity, sp.OneMatrix, sp.ZeroMatrix)):
        rows, cols = (_size(dim, values) for dim in expr.shape)
        if isinstance(expr, sp.Identity):
            return np.eye(rows)
        return np.full((rows, cols), 1.0 if isinstance(expr, sp.OneMatrix) else 0.0)
    if isinstance(expr, sp.MatPow) and expr.exp.is_Integer and expr.exp > 0:
        return _chain([_evaluate(expr.base, values)] * int(expr.exp))
    if isinstance(expr, sp.MatMul):
        coeff, matrices = expr.as_coeff_matrices()
        kept = [m for m in matrices if not isinstance(m, sp.Identity)] or matrices[:1]
        product = _chain([_evaluate(m, values) for m in kept])
        return _scale(product, _scalar(coeff, values))
    if isinstance(expr, sp.MatAdd):
        terms = [_evaluate(arg, values) for arg in expr.args]
        if all(isinstance(t, FactoredMatrix) for t in terms):
            return reduce(lambda a, b: a + b, terms)
        if any(isinstance(t, sp.MatrixBase) for t in terms):
            return reduce(lambda a, b: a + b, [_sympy(t) for t in terms])
        return reduce(np.add, [_dense(t) for t in terms])
    raise WeightError(f"cannot substitute into {expr!r} ({type(expr).__name__})")


def _shape_of(value: Any) -> tuple[int, ...]:
    if isinstance(value, (FactoredMatrix, sp.MatrixBase)):
        return tuple(value.shape)
    shape = np.shape(value)
    return (shape[0], 1) if len(shape) == 1 else tuple(shape)


def _value(symbol: sp.MatrixSymbol, values: Mapping[str, Any]) -> Any:
    name = str(symbol.name)
    if name not in values:
        raise WeightError(f"no value given for the symbol {name!r}")
    value = values[name]
    if isinstance(value, FactoredMatrix):
        if value.ndim != 2:
            raise ShapeError(
                f"{name}: expected one matrix, got a stack of shape {list(value.shape)}"
            )
        result: Any = value
    elif isinstance(value, sp.MatrixBase):
        result = sp.ImmutableMatrix(value)
    else:
        result = as_real_array(value, name, copy=False)
        result = result[:, None] if result.ndim == 1 else result
        if result.ndim != 2:
            raise ShapeError(
                f"{name}: expected a matrix or a vector, got shape {list(result.shape)}"
            )
    declared = [dim if _known(dim) else values.get(str(dim)) for dim in symbol.shape]
    pairs = zip(declared, result.shape, strict=True)
    if any(size is not None and int(size) != actual for size, actual in pairs):
        raise ShapeError(f"{name}: expected shape {list(symbol.shape)}, got {list(result.shape)}")
    return result


def _size(dim: Any, values: Mapping[str, Any]) -> int:
    if _known(dim):
        return int(dim)
    name = str(dim)
    if name not in values:
        raise WeightError(f"no value given for the size {name!r} (e.g. the sequence length n)")
    size = values[name]
    if not (is_int(size) and size >= 1):
        raise WeightError(f"the size {name} must be an integer ≥ 1, got {size!r}")
    return int(size)


def _scalar(coeff: sp.Expr, values: Mapping[str, Any]) -> sp.Expr:
    missing = sorted(str(s) for s in coeff.free_symbols if str(s) not in values)
    if missing:
        raise WeightError(f"no value given for the scalar(s) {missing}")
    given = {s: values[str(s)] for s in coeff.free_symbols}
    wrong = {str(s): v for s, v in given.items() if not (is_real(v) or isinstance(v, sp.Expr))}
    if wrong:
        raise WeightError(f"scalars are numbers or sympy expressions, got {wrong}")
    result: sp.Expr = coeff.subs(given)
    if result.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise WeightError(f"the scalar {coeff} is not finite at {given}")
    return result


def _scale(product: Any, coeff: sp.Expr) -> Any:
    """``coeff · product``: exact for sympy products, a float factor for numeric ones."""
    if coeff == 1:
        return product
    if isinstance(product, sp.MatrixBase):
        return product * coeff
    if coeff.is_Number:
        return product * float(coeff)
    return _sympy(product) * coeff


def _sympy(value: Any) -> sp.ImmutableMatrix:
    if isinstance(value, sp.MatrixBase):
        return sp.ImmutableMatrix(value)
    return sp.ImmutableMatrix(_dense(value))


def _chain(factors: list[Any]) -> Any:
    """The product of a chain of matrices, in the cheapest order; factored if it narrows."""
    symbolic = any(isinstance(f, sp.MatrixBase) for f in factors)
    parts: list[Any] = []
    for factor in factors:
        if isinstance(factor, FactoredMatrix):
            parts += [factor.A, factor.B]
        else:
            parts.append(factor)
    if symbolic:
        parts = [_sympy(p) for p in parts]
    for left, right in itertools.pairwise(parts):
        if left.shape[1] != right.shape[0]:
            raise ShapeError(f"cannot multiply a {left.shape} matrix by a {right.shape} one")
    dims = [parts[0].shape[0]] + [p.shape[1] for p in parts]
    if not symbolic and len(parts) > 1:
        cut = int(np.argmin(dims[1:-1])) + 1
        if dims[cut] < min(dims[0], dims[-1]):
            return FactoredMatrix(_ordered(parts[:cut]), _ordered(parts[cut:]))
    return _ordered(parts)


def _ordered(parts: list[Any]) -> Any:
    """Multiply a chain by the classic dynamic programme for the cheapest parenthesisation."""
    dims = [parts[0].shape[0]] + [p.shape[1] for p in parts]
    count = len(parts)
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for span in range(1, count):
        for i in range(count - span):
            j = i + span
            cost[i][j], split[i][j] = min(
                (cost[i][s] + cost[s + 1][j] + dims[i] * dims[s + 1] * dims[j + 1], s)
                for s in range(i, j)
            )

    def build(i: int, j: int) -> Any:
        if i == j:
            return parts[i]
        s = split[i][j]
        return build(i, s) @ build(s + 1, j)

    return build(0, count - 1)


# ---------------------------------------------------------------------------------- value maps
def weight_values(weights: Mapping[str, Any], cfg: TransformerConfig) -> dict[str, Any]:
    """Symbol name → value for every weight given, laid out like ``AttnOnlyTransformer.parameters()``.

    ``weights["W_Q"][l][h]`` etc. may be numpy arrays or sympy matrices (so a hand-built model
    with symbolic entries is a mapping of nested lists of sympy matrices). ``W_QK^{l.h}`` and
    ``W_OV^{l.h}`` are added as :math:`W_Q^T W_K` and :math:`W_O W_V` (factored when numeric);
    ``alpha`` is ``cfg.attn_scale`` (an exact sympy integer when the weights are symbolic and the
    scale is integral, so that exact terms print as ``β₁`` rather than ``1.0·β₁``). Entries may
    be overridden afterwards, e.g. with a symbolic β.
    """
    values: dict[str, Any] = {"alpha": cfg.attn_scale}
    for name in ("W_E", "W_P", "W_U", "b_U"):
        if weights.get(name) is not None:
            values[name] = weights[name]
    for layer in range(cfg.n_layers):
        if weights.get("b_O") is not None:
            values[symbol_name("b_O", layer)] = _entry(weights, "b_O", layer)
        for head in range(cfg.n_heads):
            owner = head_name(layer, head)
            for name in _HEAD_WEIGHTS:
                if weights.get(name) is not None:
                    values[symbol_name(name, owner)] = _entry(weights, name, layer, head)
            pairs = {"W_QK": ("W_Q", "W_K"), "W_OV": ("W_O", "W_V")}
            for name, (left, right) in pairs.items():
                a, b = values.get(symbol_name(left, owner)), values.get(symbol_name(right, owner))
                if a is not None and b is not None:
                    values[symbol_name(name, owner)] = _pair(a.T if name == "W_QK" else a, b)
    if cfg.normalized:
        values.update(_norm_values(weights, cfg))
    symbolic = any(isinstance(value, sp.MatrixBase) for value in values.values())
    if symbolic and float(cfg.attn_scale).is_integer():
        values["alpha"] = sp.Integer(int(cfg.attn_scale))
    return values


def _norm_values(weights: Mapping[str, Any], cfg: TransformerConfig) -> dict[str, Any]:
    r""":math:`\mathrm{LN}^l = \mathrm{diag}(w^l) C` (``d × d``) and :math:`b_{LN}^l` for every layer
    and ``"final"``; :math:`C = I - \mathbb{1}\mathbb{1}^T/d` for LN, :math:`I` for RMS; ``w = 1``
    and ``b = 0`` where the normalisation has none."""
    d = cfg.d_model
    centring = np.eye(d) - (1.0 / d if cfg.centred else 0.0)
    values: dict[str, Any] = {}
    for layer in (*range(cfg.n_layers), FINAL):
        final = layer == FINAL
        w, b = (weights.get(f"{name}_LN_final" if final else f"{name}_LN") for name in ("w", "b"))
        w_l = np.ones(d) if w is None else np.asarray(w if final else w[layer])
        values[symbol_name("LN", layer)] = w_l[:, None] * centring
        values[symbol_name("b_LN", layer)] = (
            np.zeros(d) if b is None else np.asarray(b if final else b[layer])
        )
    return values


def _entry(weights: Mapping[str, Any], name: str, *index: int) -> Any:
    """``weights[name][l]`` or ``weights[name][l][h]``; a ShapeError if the stack is too small."""
    entry = weights[name]
    try:
        for i in index:
            entry = entry[i]
    except (IndexError, KeyError, TypeError):
        where = "".join(f"[{i}]" for i in index)
        raise ShapeError(f"{name}: no entry {name}{where} (one per layer and head)") from None
    return entry


def _pair(left: Any, right: Any) -> Any:
    if isinstance(left, sp.MatrixBase) or isinstance(right, sp.MatrixBase):
        return _sympy(left) * _sympy(right)
    return FactoredMatrix(left, right)


def pattern_values(cache: ActivationCache, batch: int = 0) -> dict[str, Any]:
    r"""``A^{l.h}`` → the pattern of every head for sequence ``batch`` of ``cache``, and ``n``; with a
    normalisation also :math:`S^l = \mathrm{diag}(1/\sigma^l)` of every layer and ``"final"``."""
    tokens = as_cache(cache).tokens
    if not (is_int(batch) and 0 <= batch < tokens.shape[0]):
        raise ShapeError(
            f"batch {batch!r} out of range: the cache holds {tokens.shape[0]} sequences"
        )
    values: dict[str, Any] = {"n": int(tokens.shape[1])}
    cfg = cache.model.cfg
    for layer, head in cfg.heads():
        values[symbol_name("A", head_name(layer, head))] = cache.pattern(layer, head)[batch]
    if cfg.normalized:
        for layer in range(cfg.n_layers + 1):
            owner = FINAL if layer == cfg.n_layers else layer
            values[symbol_name("S", owner)] = np.diag(1.0 / cache.scale(layer)[batch])
    return values
