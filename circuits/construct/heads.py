r"""Heads from maps: the smallest ``W_Q, W_K, W_V, W_O`` that realise a QK form and an OV map.

A head with QK form :math:`M_{QK}` and OV map :math:`M_{OV}` needs factors with
:math:`W_Q^T W_K = \alpha M_{QK}` (α the score scale ``attn_scale``) and :math:`W_O W_V = M_{OV}`.
The smallest ``d_head`` that allows both is :math:`\max(\operatorname{rank} M_{QK},
\operatorname{rank} M_{OV})`; the factor with fewer columns is padded with zeros.

**Rank-revealing factorisation** (:func:`factorise`). The terms of a map are sparse in the stream
coordinates. Seen as a bipartite graph between the rows and the columns that carry nonzero
entries, the matrix is block diagonal, one block per connected component, so its SVD is the union
of the components' SVDs: :math:`M = \sum_c U_c S_c V_c^T`. A component that is a single entry
``w`` (every one-hot map of the canonical circuits is made of those) factors as ``w · 1`` with
no SVD at all; a coded block is one small dense component. Singular values at or below
:math:`\sigma_{\max} \cdot d \cdot \varepsilon` are dropped (numpy's rank rule). Terms whose scales
are sympy expressions are grouped by symbolic part (``2β`` and ``−β`` share ``β``); each group is
factored on its own and the scale multiplies its columns, so the factors stay exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from .._checks import is_int, is_positive_finite
from ..errors import ConstructionError
from .maps import BilinearForm, LinearMap, Scalar, Term, _BlockSum, _sympy_expr, scale_value

__all__ = ["Factors", "HeadSpec", "HeadWeights", "factorise", "head_weights"]

IntArray = NDArray[np.intp]

#: Relative tolerance of :func:`verify_factors` (probing with random vectors).
VERIFY_RTOL = 1e-10


@dataclass(frozen=True, eq=False)
class Factors:
    r"""A factorisation :math:`M = L\, \operatorname{diag}(s)\, R` with ``L [d, r]``, ``R [r, d]``.

    ``scales[j]`` (a number or a sympy expression) multiplies column ``j`` of ``L``; ``r`` is the
    rank of ``M`` (for numeric scales).
    """

    left: FloatArray
    right: FloatArray
    scales: tuple[Scalar, ...]

    @property
    def rank(self) -> int:
        """Number of columns ``r``."""
        return int(self.left.shape[1])

    def numeric(self) -> tuple[FloatArray, FloatArray]:
        """``(L diag(s), R)``; every scale must be a number."""
        s = np.array([scale_value(scale) for scale in self.scales])
        return self.left * s, self.right

    def symbolic(self) -> tuple[Any, Any]:
        """``(L diag(s), R)`` as exact sympy matrices."""
        import sympy

        from .maps import exact_number

        scales = [s if isinstance(s, sympy.Basic) else exact_number(s) for s in self.scales]
        left = sympy.Matrix(
            self.left.shape[0], self.rank, lambda i, j: exact_number(self.left[i, j]) * scales[j]
        )
        right = sympy.Matrix(*self.right.shape, lambda i, j: exact_number(self.right[i, j]))
        return left, right


@dataclass(frozen=True, eq=False)
class HeadSpec:
    """A head given by its QK form and OV map (on the same layout), and the role it plays."""

    qk: BilinearForm
    ov: LinearMap
    role: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.qk, BilinearForm) and isinstance(self.ov, LinearMap)):
            raise ConstructionError(
                "a head is a QK BilinearForm and an OV LinearMap, got "
                f"{type(self.qk).__name__} and {type(self.ov).__name__}"
            )
        if self.qk.layout is not self.ov.layout:
            raise ConstructionError("a head's QK form and OV map must live on the same layout")

    @cached_property
    def factors(self) -> tuple[Factors, Factors]:
        """Rank-revealing factors of the QK form and of the OV map (:func:`factorise`)."""
        return factorise(self.qk), factorise(self.ov)

    @property
    def rank(self) -> int:
        """The smallest ``d_head`` this head fits in: the larger of the two ranks."""
        return max(f.rank for f in self.factors)

    def substitute(self, values: Mapping[Any, Any]) -> HeadSpec:
        """The head with numeric scales from ``values``."""
        return HeadSpec(self.qk.substitute(values), self.ov.substitute(values), self.role)

    def summary(self) -> dict[str, Any]:
        """What the head reads and writes, for metadata and diagrams (JSON-compatible)."""
        q, k = self.qk.row_blocks, self.qk.col_blocks
        reads, writes = self.ov.col_blocks, self.ov.row_blocks
        return {
            "role": self.role,
            "qk": {
                "query": list(q),
                "key": list(k),
                "label": f"{'+'.join(q) or '0'} · {'+'.join(k) or '0'}",
                "terms": self.qk.describe(),
            },
            "ov": {
                "reads": list(reads),
                "writes": list(writes),
                "label": f"{'+'.join(reads) or '0'} → {'+'.join(writes) or '0'}",
                "terms": self.ov.describe(),
            },
        }


@dataclass(frozen=True, eq=False)
class HeadWeights:
    """``W_Q, W_K, W_V`` ``[d_head, d_model]`` and ``W_O`` ``[d_model, d_head]`` of one head."""

    W_Q: Any
    W_K: Any
    W_V: Any
    W_O: Any


# ---------------------------------------------------------------------- factorisation
def _split_scale(scale: Scalar) -> tuple[float, Any]:
    """``2β`` → ``(2.0, β)``; a number ``c`` → ``(c, None)``."""
    if _sympy_expr(scale) and scale.free_symbols:
        coeff, rest = scale.as_coeff_Mul()
        return float(coeff), rest
    return float(scale), None


def _global_entries(
    matrix: _BlockSum, terms: list[tuple[Term, float]]
) -> tuple[IntArray, IntArray, FloatArray]:
    """Stream coordinates and values of ``Σ c · term``, repeated pairs summed, zeros dropped."""
    d = matrix.layout.d_model
    rows = np.concatenate([matrix.layout.slice(t.row).start + t.rows for t, _ in terms])
    cols = np.concatenate([matrix.layout.slice(t.col).start + t.cols for t, _ in terms])
    vals = np.concatenate([c * t.values for t, c in terms])
    keys, inverse = np.unique(rows * d + cols, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=vals, minlength=keys.size)
    keep = summed != 0
    return (keys[keep] // d).astype(np.intp), (keys[keep] % d).astype(np.intp), summed[keep]


def _components(rows: IntArray, cols: IntArray) -> IntArray:
    """Connected component of each entry in the bipartite graph rows ↔ columns (label propagation)."""
    _, r = np.unique(rows, return_inverse=True)
    _, c = np.unique(cols, return_inverse=True)
    r, c = r.ravel(), c.ravel()
    row_label = np.arange(r.max() + 1)
    col_label = np.full(c.max() + 1, row_label.size)
    while True:
        new_col = col_label.copy()
        np.minimum.at(new_col, c, row_label[r])
        new_row = row_label.copy()
        np.minimum.at(new_row, r, new_col[c])
        if np.array_equal(new_row, row_label) and np.array_equal(new_col, col_label):
            return row_label[r]
        row_label, col_label = new_row, new_col


def _factor_entries(
    d: int, rows: IntArray, cols: IntArray, vals: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(L, R, σ)`` with ``L R`` the sparse matrix and ``σ`` each column's singular value."""
    if rows.size == 0:
        return np.zeros((d, 0)), np.zeros((0, d)), np.zeros(0)
    label = _components(rows, cols)
    _, inverse, counts = np.unique(label, return_inverse=True, return_counts=True)
    single = counts[inverse.ravel()] == 1
    # single-entry components: w = w · 1, singular value |w|
    n1 = int(single.sum())
    lefts, rights, sigmas = [np.zeros((d, n1))], [np.zeros((n1, d))], [np.abs(vals[single])]
    lefts[0][rows[single], np.arange(n1)] = vals[single]
    rights[0][np.arange(n1), cols[single]] = 1.0
    for comp in np.unique(label[~single]):
        mask = label == comp
        r_ids, r_loc = np.unique(rows[mask], return_inverse=True)
        c_ids, c_loc = np.unique(cols[mask], return_inverse=True)
        block = np.zeros((r_ids.size, c_ids.size))
        block[r_loc.ravel(), c_loc.ravel()] = vals[mask]
        u, s, vh = np.linalg.svd(block, full_matrices=False)
        left, right = np.zeros((d, s.size)), np.zeros((s.size, d))
        left[r_ids] = u * s
        right[:, c_ids] = vh
        lefts.append(left)
        rights.append(right)
        sigmas.append(s)
    return np.hstack(lefts), np.vstack(rights), np.concatenate(sigmas)


def factorise(matrix: BilinearForm | LinearMap) -> Factors:
    r"""Rank-revealing factors :math:`L \operatorname{diag}(s) R` of a form or map (see module doc).

    With numeric scales ``r`` is the rank of the matrix; with symbolic scales it is the sum of the
    ranks of the groups of terms that share a symbolic part.
    """
    if not isinstance(matrix, (BilinearForm, LinearMap)):
        raise ConstructionError(
            f"expected a BilinearForm or a LinearMap, got {type(matrix).__name__}"
        )
    d = matrix.layout.d_model
    groups: dict[Any, list[tuple[Term, float]]] = {}
    for term in matrix.terms:
        coeff, symbolic = _split_scale(term.scale)
        groups.setdefault(symbolic, []).append((term, coeff))
    lefts, rights, sigmas, scales = [], [], [], []
    for symbolic, terms in groups.items():
        left, right, sigma = _factor_entries(d, *_global_entries(matrix, terms))
        lefts.append(left)
        rights.append(right)
        sigmas.append(sigma)
        scales += [1.0 if symbolic is None else symbolic] * sigma.size
    if not lefts:
        return Factors(np.zeros((d, 0)), np.zeros((0, d)), ())
    sigma = np.concatenate(sigmas)
    keep = sigma > sigma.max(initial=0.0) * d * np.finfo(np.float64).eps
    return Factors(
        np.hstack(lefts)[:, keep],
        np.vstack(rights)[keep],
        tuple(s for s, k in zip(scales, keep, strict=True) if k),
    )


def verify_factors(
    matrix: BilinearForm | LinearMap,
    left: FloatArray,
    right: FloatArray,
    what: str,
) -> None:
    """Check ``left @ right == M`` on random probes; :class:`ConstructionError` if not.

    ``‖L(R X) − M X‖ ≤ 10⁻¹⁰ ‖M‖`` for four Gaussian columns ``X`` (seeded): two matrices that
    differ fail this with probability one.
    """
    probes = np.random.default_rng(0).standard_normal((matrix.layout.d_model, 4))
    expected = matrix.apply(probes)
    actual = left @ (right @ probes)
    scale = max(np.abs(expected).max(initial=0.0), np.abs(actual).max(initial=0.0), 1e-300)
    error = float(np.abs(actual - expected).max(initial=0.0))
    if error > VERIFY_RTOL * scale:
        raise ConstructionError(
            f"{what}: the factors do not reproduce the map (max error {error:.3g} on probes of "
            f"size {scale:.3g})"
        )


def head_weights(
    head: HeadSpec,
    d_head: int | None = None,
    *,
    attn_scale: float = 1.0,
    name: str = "head",
) -> HeadWeights:
    r"""Numeric ``W_Q, W_K, W_V, W_O`` of ``head`` with :math:`W_Q^T W_K = \alpha M_{QK}`, :math:`W_O W_V = M_{OV}`.

    ``d_head`` defaults to the smallest possible, :math:`\max(\operatorname{rank} M_{QK},
    \operatorname{rank} M_{OV})`; a smaller one is a :class:`ConstructionError`. Both products
    are verified against the maps (:func:`verify_factors`). Every scale must be a number
    (substitute symbols first, :meth:`HeadSpec.substitute`).
    """
    if not is_positive_finite(attn_scale):
        raise ConstructionError(f"attn_scale must be a finite number > 0, got {attn_scale!r}")
    qk, ov = head.factors
    k = _head_dim(qk, ov, d_head, name)
    q_left, k_right = qk.numeric()
    o_left, v_right = ov.numeric()
    verify_factors(head.qk, q_left, k_right, f"{name} QK")
    verify_factors(head.ov, o_left, v_right, f"{name} OV")
    return HeadWeights(
        W_Q=_pad_rows(attn_scale * q_left.T, k),
        W_K=_pad_rows(k_right, k),
        W_V=_pad_rows(v_right, k),
        W_O=_pad_rows(o_left.T, k).T,
    )


def _head_dim(qk: Factors, ov: Factors, d_head: int | None, name: str) -> int:
    needed = max(qk.rank, ov.rank)
    if d_head is None:
        return needed
    if not (is_int(d_head) and d_head >= 1):
        raise ConstructionError(f"{name}: d_head must be an integer ≥ 1 or None, got {d_head!r}")
    if needed > d_head:
        which = "QK form" if qk.rank >= ov.rank else "OV map"
        raise ConstructionError(
            f"{name}: its {which} has rank {needed}, more than d_head={d_head} can represent "
            f"(QK rank {qk.rank}, OV rank {ov.rank})"
        )
    return d_head


def _pad_rows(matrix: Any, k: int) -> Any:
    """``matrix`` ``[r, d]`` padded with zero rows to ``[k, d]`` (numpy or sympy)."""
    if isinstance(matrix, np.ndarray):
        return np.vstack([matrix, np.zeros((k - matrix.shape[0], matrix.shape[1]))])
    import sympy

    return matrix.col_join(sympy.zeros(k - matrix.shape[0], matrix.shape[1]))


def symbolic_head_weights(head: HeadSpec, d_head: int, name: str = "head") -> HeadWeights:
    """As :func:`head_weights` with exact sympy matrices (scales kept symbolic, ``α = 1``)."""
    qk, ov = head.factors
    k = _head_dim(qk, ov, d_head, name)
    q_left, k_right = qk.symbolic()
    o_left, v_right = ov.symbolic()
    return HeadWeights(
        W_Q=_pad_rows(q_left.T, k),
        W_K=_pad_rows(k_right, k),
        W_V=_pad_rows(v_right, k),
        W_O=_pad_rows(o_left.T, k).T,
    )
