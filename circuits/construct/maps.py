r"""OV maps and QK forms on a residual layout, defined by what they do to labelled directions.

A :class:`LinearMap` (what a head's OV circuit writes) and a :class:`BilinearForm` (what its QK
circuit compares) are ``d_model × d_model`` matrices kept as a sum of *block terms*: each term
lives in one block of rows and one block of columns, holds its entries sparsely in block
coordinates, and carries a *scale* — a number or a sympy expression such as ``β₁`` — that
multiplies it. Terms are built "from action" on labels:

* ``LinearMap.from_action(layout, "tok", "prev")``: ``tok[t] ↦ prev[t]`` for every label ``t``;
* ``BilinearForm.from_action(layout, "pos", "pos", lambda i: i - 1, scale=β₀)``: query
  ``pos[i]`` matches key ``pos[i−1]`` with weight β₀.

An action maps a source label to a target label, to ``{label: weight}``, or to ``None`` (the
label maps to zero); ``None`` as the action itself is the identity on labels. For one-hot blocks
the term is exactly the action's matrix :math:`A` (:math:`A_{st} = ` weight of target ``s`` in the
image of source ``t``). For coded blocks (codes :math:`C`, pseudo-inverse :math:`C^+`) the term is

* map: :math:`C_{\text{out}}\, A\, C_{\text{in}}^+` — the least-squares linear map sending each
  source direction to its image, so copying a block into a block with the same code is exactly
  the identity;
* form: :math:`(C_q^+)^T A\, C_k^T` — map the query to the key direction it asks for, then take
  the inner product with the key; for the identity action on a shared code, the form is the inner
  product itself, :math:`x_q^T x_k`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray, as_real_array, frozen
from .._checks import is_real
from ..errors import ConstructionError, LayoutError
from .layout import Block, ResidualLayout

__all__ = [
    "Action",
    "BilinearForm",
    "LinearMap",
    "Scalar",
    "Term",
    "is_symbolic",
    "scale_value",
]

IntArray = NDArray[np.intp]

#: A scale: a real number or a sympy expression (``β₁``, ``2·γ``, …).
Scalar = Any
#: What a label maps to: a label, ``{label: weight}``, or ``None`` (nothing).
Image = Hashable | Mapping[Hashable, float] | None
#: An action on labels: a function, a mapping, or ``None`` for the identity.
Action = Callable[[Hashable], Image] | Mapping[Hashable, Image] | None

#: Entries below this multiple of a term's largest entry are pseudo-inverse rounding noise.
_NOISE = 64 * np.finfo(np.float64).eps


def _sympy_expr(value: object) -> bool:
    """Whether ``value`` is a sympy object (sympy is only imported once a user has)."""
    sympy = sys.modules.get("sympy")
    return sympy is not None and isinstance(value, sympy.Basic)


def is_symbolic(scale: Scalar) -> bool:
    """Whether ``scale`` is a sympy expression with free symbols."""
    return _sympy_expr(scale) and bool(scale.free_symbols)


def scale_value(scale: Scalar, values: Mapping[Any, Any] | None = None) -> float:
    """``scale`` as a finite float, substituting ``values`` (symbol or symbol name → number) first."""
    if _sympy_expr(scale):
        if values:
            by_name = {str(k): v for k, v in values.items()}
            scale = scale.subs(
                {s: by_name[str(s)] for s in scale.free_symbols if str(s) in by_name}
            )
        if scale.free_symbols:
            names = sorted(str(s) for s in scale.free_symbols)
            raise ConstructionError(
                f"the scale {scale} still has free symbols {names}: give numbers for them"
            )
    try:
        number = float(scale)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ConstructionError(f"a scale must be a finite real number, got {scale}")
    return number


def _check_scale(scale: Scalar) -> Scalar:
    if _sympy_expr(scale):
        return scale
    if not (is_real(scale) and np.isfinite(float(scale))):
        raise ConstructionError(
            f"a scale must be a finite real number or a sympy expression, got {scale!r}"
        )
    return float(scale)


@dataclass(frozen=True, eq=False)
class Term:
    """One block term: ``scale · M`` in rows of block ``row`` and columns of block ``col``.

    ``M`` is held sparsely in block coordinates: ``M[rows[k], cols[k]] = values[k]``, no repeated
    coordinate pair. ``action`` says in words what the term does (``"tok[t] ↦ prev[t]"``).
    """

    row: str
    col: str
    rows: IntArray
    cols: IntArray
    values: FloatArray
    scale: Scalar
    action: str


_T = TypeVar("_T", bound="_BlockSum")


@dataclass(frozen=True, eq=False)
class _BlockSum:
    """A ``d_model × d_model`` matrix kept as a sum of scaled block :class:`Term` s."""

    layout: ResidualLayout
    terms: tuple[Term, ...]

    def __post_init__(self) -> None:
        for term in self.terms:
            n_rows, n_cols = self.layout.block(term.row).dim, self.layout.block(term.col).dim
            if term.rows.size and (term.rows.max() >= n_rows or term.cols.max() >= n_cols):
                raise LayoutError(
                    f"term {term.action!r} does not fit blocks {term.row}, {term.col}"
                )

    @classmethod
    def zero(cls: type[_T], layout: ResidualLayout) -> _T:
        """The zero matrix on ``layout``."""
        return cls(layout, ())

    def __add__(self: _T, other: _T) -> _T:
        """The sum, term by term (both must live on the same layout)."""
        if type(other) is not type(self):
            return NotImplemented
        if other.layout is not self.layout:
            raise LayoutError("cannot add maps defined on different layouts")
        return type(self)(self.layout, self.terms + other.terms)

    def __mul__(self: _T, scale: Scalar) -> _T:
        """Every term's scale multiplied by ``scale`` (a number or a sympy expression)."""
        factor = _check_scale(scale)
        return type(self)(
            self.layout, tuple(replace(t, scale=_check_scale(t.scale * factor)) for t in self.terms)
        )

    __rmul__ = __mul__

    # ------------------------------------------------------------------ inspection
    @property
    def row_blocks(self) -> tuple[str, ...]:
        """Blocks the terms write (maps) or read on the query side (forms), in layout order."""
        used = {t.row for t in self.terms}
        return tuple(name for name in self.layout.names if name in used)

    @property
    def col_blocks(self) -> tuple[str, ...]:
        """Blocks the terms read (maps) or read on the key side (forms), in layout order."""
        used = {t.col for t in self.terms}
        return tuple(name for name in self.layout.names if name in used)

    @property
    def is_symbolic(self) -> bool:
        """Whether some term's scale has free sympy symbols."""
        return any(is_symbolic(t.scale) for t in self.terms)

    def describe(self) -> list[str]:
        """Each term's action, prefixed by its scale when that is not 1."""
        return [t.action if _is_one(t.scale) else f"{t.scale} · {t.action}" for t in self.terms]

    def substitute(self: _T, values: Mapping[Any, Any]) -> _T:
        """Numeric scales from ``values`` (symbol or symbol name → number)."""
        terms = tuple(replace(t, scale=scale_value(t.scale, values)) for t in self.terms)
        return type(self)(self.layout, terms)

    # ------------------------------------------------------------------ numbers
    def matrix(self, values: Mapping[Any, Any] | None = None) -> FloatArray:
        """The dense ``d_model × d_model`` matrix (scales substituted from ``values``)."""
        d = self.layout.d_model
        out = np.zeros((d, d))
        for term in self.terms:
            rows, cols = self.layout.slice(term.row), self.layout.slice(term.col)
            out[rows.start + term.rows, cols.start + term.cols] += (
                scale_value(term.scale, values) * term.values
            )
        return out

    def apply(self, x: Any, values: Mapping[Any, Any] | None = None) -> FloatArray:
        """``M @ x`` for ``x`` ``[d_model]`` or ``[d_model, m]``, term by term (never dense)."""
        array = as_real_array(x, "x", dtype=np.dtype(np.float64), copy=False)
        if array.ndim not in (1, 2) or array.shape[0] != self.layout.d_model:
            raise LayoutError(f"expected {self.layout.d_model} rows, got shape {list(array.shape)}")
        out = np.zeros(array.shape)
        for term in self.terms:
            rows, cols = self.layout.slice(term.row), self.layout.slice(term.col)
            contribution = (
                term.values.reshape(-1, *([1] * (array.ndim - 1))) * array[cols.start + term.cols]
            )
            np.add.at(out, rows.start + term.rows, scale_value(term.scale, values) * contribution)
        return out

    def symbolic(self) -> Any:
        """The matrix as an exact sympy ``Matrix`` (integral entries as integers)."""
        import sympy

        d = self.layout.d_model
        out = sympy.zeros(d, d)
        for term in self.terms:
            r0, c0 = self.layout.slice(term.row).start, self.layout.slice(term.col).start
            for r, c, v in zip(
                term.rows.tolist(), term.cols.tolist(), term.values.tolist(), strict=True
            ):
                out[r0 + r, c0 + c] += term.scale * exact_number(v)
        return out


def exact_number(value: Any) -> Any:
    """A real number as a sympy number: an ``Integer`` when integral, else a ``Float``."""
    import sympy

    number = float(value)
    return sympy.Integer(int(number)) if number.is_integer() else sympy.Float(number)


def _is_one(scale: Scalar) -> bool:
    return not _sympy_expr(scale) and float(scale) == 1.0


# ---------------------------------------------------------------------- realising an action
def _action_entries(
    source: Block, target: Block, action: Action
) -> tuple[IntArray, IntArray, FloatArray]:
    """The action as label indices ``(target index, source index, weight)``."""
    if not (action is None or isinstance(action, Mapping) or callable(action)):
        raise ConstructionError(
            f"an action is a function, a mapping of labels or None, got {action!r}"
        )
    t_idx: list[int] = []
    s_idx: list[int] = []
    weights: list[float] = []
    for j, value in enumerate(source.values):
        if action is None:
            image: Image = value
        elif isinstance(action, Mapping):
            image = action.get(value)
        else:
            image = action(value)
        if image is None:
            continue
        items = image.items() if isinstance(image, Mapping) else [(image, 1.0)]
        for out_value, weight in items:
            if not target.contains(out_value):
                raise LayoutError(
                    f"the action sends {source.name}[{value}] to {target.name}[{out_value}], "
                    f"which block {target.name!r} does not have"
                )
            if not (is_real(weight) and math.isfinite(weight)):
                raise ConstructionError(
                    f"the action gives {source.name}[{value}] ↦ {target.name}[{out_value}] the "
                    f"weight {weight!r}; weights are finite real numbers"
                )
            t_idx.append(target.index(out_value))
            s_idx.append(j)
            weights.append(float(weight))
    return np.array(t_idx, dtype=np.intp), np.array(s_idx, dtype=np.intp), np.array(weights)


def _coo(dense: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
    """Nonzero entries of a realised block, rounding noise (``≤ 64 ε ‖M‖_max``) dropped."""
    peak = np.abs(dense).max(initial=0.0)
    rows, cols = np.nonzero(np.abs(dense) > _NOISE * peak)
    return rows.astype(np.intp), cols.astype(np.intp), dense[rows, cols]


def _merge(
    rows: IntArray, cols: IntArray, values: FloatArray, n_cols: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Sum repeated coordinate pairs and drop exact zeros."""
    keys, inverse = np.unique(rows * n_cols + cols, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=values, minlength=keys.size)
    keep = summed != 0
    return (
        (keys[keep] // n_cols).astype(np.intp),
        (keys[keep] % n_cols).astype(np.intp),
        summed[keep],
    )


def _realise(
    row: Block,
    col: Block,
    entries: tuple[IntArray, IntArray, FloatArray],
    left: FloatArray,
    right: FloatArray,
) -> tuple[IntArray, IntArray, FloatArray]:
    r"""Block entries of :math:`\sum_k w_k\, \ell_{r_k} \rho_{c_k}^T` (``left``/``right``: columns per label)."""
    r_idx, c_idx, weights = entries
    if row.is_one_hot and col.is_one_hot:
        return _merge(r_idx, c_idx, weights, col.dim)
    dense = (left[:, r_idx] * weights) @ right[:, c_idx].T
    return _coo(dense)


def _term(
    layout: ResidualLayout,
    row: str,
    col: str,
    action: Action,
    scale: Scalar,
    label: str,
    *,
    form: bool,
) -> Term:
    row_block, col_block = layout.block(row), layout.block(col)
    if form:  # query label q asks for key label k: T[q, k]
        k_idx, q_idx, w = _action_entries(row_block, col_block, action)
        entries = (q_idx, k_idx, w)
        left, right = row_block.pinv.T, col_block.code_matrix()
    else:  # source label s goes to target label t: A[t, s]
        entries = _action_entries(col_block, row_block, action)
        left, right = row_block.code_matrix(), col_block.pinv.T
    rows, cols, values = _realise(row_block, col_block, entries, left, right)
    return Term(
        row, col, _readonly(rows), _readonly(cols), frozen(values), _check_scale(scale), label
    )


def _readonly(indices: IntArray) -> IntArray:
    indices.setflags(write=False)
    return indices


class LinearMap(_BlockSum):
    r"""A linear map of the residual stream (an OV circuit), ``x ↦ M x``, as scaled block terms."""

    @classmethod
    def from_action(
        cls,
        layout: ResidualLayout,
        source: str,
        target: str,
        action: Action = None,
        *,
        scale: Scalar = 1.0,
        label: str | None = None,
    ) -> LinearMap:
        r"""The map sending each direction ``source[v]`` to ``scale ·`` its image in ``target``.

        One-hot blocks: :math:`M = \text{scale}\cdot\sum_v w\, e_{\text{target}[f(v)]} e_{\text{source}[v]}^T`;
        coded blocks: :math:`\text{scale}\cdot C_{\text{target}} A\, C_{\text{source}}^+` (least squares).
        """
        text = label or f"{source}[x] ↦ {target}[{'x' if action is None else 'f(x)'}]"
        return cls(layout, (_term(layout, target, source, action, scale, text, form=False),))

    def __call__(self, x: Any, values: Mapping[Any, Any] | None = None) -> FloatArray:
        """``M @ x``."""
        return self.apply(x, values)


class BilinearForm(_BlockSum):
    r"""A bilinear form on the residual stream (a QK circuit), :math:`(x_q, x_k) ↦ x_q^T M x_k`."""

    @classmethod
    def from_action(
        cls,
        layout: ResidualLayout,
        query: str,
        key: str,
        action: Action = None,
        *,
        scale: Scalar = 1.0,
        label: str | None = None,
    ) -> BilinearForm:
        r"""The form in which query ``query[v]`` matches key ``key[f(v)]`` with weight ``scale · w``.

        One-hot blocks: :math:`M = \text{scale}\cdot\sum_v w\, e_{\text{query}[v]} e_{\text{key}[f(v)]}^T`;
        coded blocks: :math:`\text{scale}\cdot (C_q^+)^T A\, C_k^T`.
        """
        text = label or f"{query}[x] · {key}[{'x' if action is None else 'f(x)'}]"
        return cls(layout, (_term(layout, query, key, action, scale, text, form=True),))

    def score(self, query: Any, key: Any, values: Mapping[Any, Any] | None = None) -> float:
        """:math:`x_q^T M x_k` for two stream vectors."""
        q = as_real_array(query, "query", (self.layout.d_model,), dtype=np.dtype(np.float64))
        return float(q @ self.apply(key, values))
