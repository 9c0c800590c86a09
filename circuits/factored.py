r"""Low-rank matrices kept as a product of two factors.

A :class:`FactoredMatrix` stands for the product :math:`M = AB` with :math:`A \in R^{m\times k}`
and :math:`B \in R^{k\times n}`, where the inner dimension :math:`k` is small. Attention heads are
full of such matrices: :math:`W_{QK} = W_Q^T W_K` and :math:`W_{OV} = W_O W_V` are ``d × d`` of
rank at most ``d_head``, and the OV circuit :math:`W_U W_{OV} W_E` is ``V × V`` of the same rank.

Every operation here works on the factors and on small ``k × k`` cores:

* nonzero eigenvalues of :math:`AB` are those of :math:`BA` (``k × k``);
* with thin QR factorisations :math:`A = Q_A R_A`, :math:`B^T = Q_B R_B`, the singular values of
  :math:`AB` are those of the core :math:`R_A R_B^T`, and :math:`\|AB\|_F = \|R_A R_B^T\|_F`;
* :math:`\operatorname{tr}(AB) = \sum_{ij} A_{ij} B_{ji}`.

The dense ``m × n`` product is formed only when :attr:`FactoredMatrix.AB` is read. The factors
are stored as read-only views (not copies) of the arrays given.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Union, overload

import numpy as np
from numpy.typing import NDArray

from ._arrays import (
    FloatArray,
    as_real_array,
    checked_product,
    common_dtype,
    frozen,
    scaled_pair,
    to_numpy,
)
from ._checks import is_int, is_real
from .errors import NumericalError, ShapeError, WeightError

__all__ = ["FactoredMatrix"]

Index = Union[slice, "list[int]", NDArray[np.integer[Any]]]


class FactoredMatrix:
    r"""The product :math:`AB` of ``A`` (``m × k``) and ``B`` (``k × n``), kept factored.

    >>> import numpy as np
    >>> M = FactoredMatrix(np.ones((1000, 2)), np.ones((2, 1000)))
    >>> M.shape, M.rank, float(M.trace())
    ((1000, 1000), 1, 2000.0)
    """

    __array_ufunc__ = None  # numpy defers to our operators instead of broadcasting over us

    def __init__(self, A: Any, B: Any) -> None:
        a, b = to_numpy(A, "A"), to_numpy(B, "B")
        dtype = common_dtype(a, b)
        a = as_real_array(a, "A", (None, None), dtype=dtype, copy=False)
        b = as_real_array(b, "B", (a.shape[1], None), dtype=dtype, copy=False)
        self.A: FloatArray = frozen(a)
        self.B: FloatArray = frozen(b)

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``, the shape of the product."""
        return (self.A.shape[0], self.B.shape[1])

    @property
    def mdim(self) -> int:
        """The inner dimension ``k`` of the factorisation (an upper bound on the rank)."""
        return int(self.A.shape[1])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The floating dtype of both factors."""
        return self.A.dtype

    def __repr__(self) -> str:
        m, n = self.shape
        return f"FactoredMatrix(shape=({m}, {n}), inner={self.mdim}, dtype={self.dtype})"

    # ------------------------------------------------------------------ dense views
    @property
    def AB(self) -> FloatArray:
        """The dense product :math:`AB` (``m × n``): the only place it is ever formed."""
        return checked_product(self.A, self.B, "AB")

    @property
    def BA(self) -> FloatArray:
        """The small core :math:`BA` (``k × k``); needs ``m == n``."""
        self._require_square("BA")
        return checked_product(self.B, self.A, "BA")

    @property
    def T(self) -> FactoredMatrix:
        r"""The transpose :math:`(AB)^T = B^T A^T`, still factored."""
        return FactoredMatrix(self.B.T, self.A.T)

    def __getitem__(self, index: tuple[Index | int, Index | int]) -> FactoredMatrix | FloatArray:
        """``M[rows, cols]``: a factored block, or a dense row, column or entry for integer indices.

        Only the selected rows of ``A`` and columns of ``B`` are touched.
        """
        if not (isinstance(index, tuple) and len(index) == 2):
            raise ShapeError("index a FactoredMatrix with two indices, M[rows, cols]")
        rows, cols = index
        try:
            a, b = self.A[rows], self.B[:, cols]
        except (IndexError, TypeError) as error:
            raise ShapeError(f"M[{rows!r}, {cols!r}] of a {self.shape} matrix: {error}") from None
        if is_int(rows) or is_int(cols):
            return np.asarray(a @ b)
        return FactoredMatrix(a, b)

    # ------------------------------------------------------------------ algebra
    @overload
    def __matmul__(self, other: FactoredMatrix) -> FactoredMatrix: ...
    @overload
    def __matmul__(self, other: Any) -> Any: ...

    def __matmul__(self, other: Any) -> Any:
        r"""``(AB) @ X``: a matrix gives a FactoredMatrix, a vector a dense vector.

        ``(AB)(CD) = A (BC) D`` is refactored through whichever of its two inner dimensions is
        smaller, so a chain of products never grows beyond its narrowest link. A dense ``X``
        (``n × p``) gives ``A (BX)`` (inner ``k``), or ``(AB) X`` when ``n < k``.
        """
        if isinstance(other, FactoredMatrix):
            self._require_chain(other.shape[0], "@")
            core = checked_product(self.B, other.A, "B·C")  # k1 × k2
            if self.mdim <= other.mdim:
                return FactoredMatrix(self.A, checked_product(core, other.B, "B·C·D"))
            return FactoredMatrix(checked_product(self.A, core, "A·B·C"), other.B)
        x = as_real_array(other, "right operand", copy=False)
        if x.ndim == 1:
            self._require_chain(x.shape[0], "@")
            return self.A @ (self.B @ x)
        if x.ndim != 2:
            raise ShapeError(f"right operand: expected a vector or a matrix, got shape {x.shape}")
        self._require_chain(x.shape[0], "@")
        if self.mdim <= x.shape[0]:
            return FactoredMatrix(self.A, self.B @ x)  # inner k
        return FactoredMatrix(self.A @ self.B, x)  # inner n < k: AB is m × n, small

    def __rmatmul__(self, other: Any) -> Any:
        """``X @ (AB)``, the mirror image of :meth:`__matmul__`."""
        x = as_real_array(other, "left operand", copy=False)
        if x.ndim == 1:
            return self.T @ x
        if x.ndim != 2:
            raise ShapeError(f"left operand: expected a vector or a matrix, got shape {x.shape}")
        return (self.T @ x.T).T

    def __add__(self, other: Any) -> FactoredMatrix:
        r""":math:`AB + CD = [A\ C] \begin{bmatrix} B \\ D \end{bmatrix}`: the factors are concatenated.

        This is how several heads' OV maps add into one map of inner dimension ``k1 + k2``.
        """
        if not isinstance(other, FactoredMatrix):
            return NotImplemented
        if other.shape != self.shape:
            raise ShapeError(
                f"cannot add FactoredMatrix of shape {other.shape} to one of {self.shape}"
            )
        return FactoredMatrix(np.hstack([self.A, other.A]), np.vstack([self.B, other.B]))

    def __neg__(self) -> FactoredMatrix:
        return FactoredMatrix(-self.A, self.B)

    def __sub__(self, other: Any) -> FactoredMatrix:
        if not isinstance(other, FactoredMatrix):
            return NotImplemented
        return self + (-other)

    def __mul__(self, scalar: Any) -> FactoredMatrix:
        """``c · AB = (cA) B`` for a real scalar ``c``."""
        if isinstance(scalar, np.ndarray) and scalar.ndim == 0:
            scalar = scalar.item()
        if not is_real(scalar):
            return NotImplemented
        return FactoredMatrix(self.A * float(scalar), self.B)

    __rmul__ = __mul__

    def __truediv__(self, scalar: Any) -> FactoredMatrix:
        if not is_real(scalar):
            return NotImplemented
        if scalar == 0:
            raise WeightError("cannot divide a FactoredMatrix by zero")
        return self * (1.0 / float(scalar))

    # ------------------------------------------------------------------ spectra
    @cached_property
    def _unit(self) -> tuple[FloatArray, FloatArray, int]:
        """The factors, or when their products could overflow (or underflow) the dtype the factors
        scaled exactly by powers of two, ``(A / 2^a, B / 2^b, a + b)`` (:func:`scaled_pair`).

        Spectra are computed from these and :meth:`_rescaled` at the end, in float64.
        """
        return scaled_pair(self.A, self.B, max(self.shape) * self.mdim)

    def _rescaled(self, values: Any, what: str) -> Any:
        """``values · 2^(a+b)`` (float64 or complex128): a spectrum of the unit-scaled product
        brought back to the scale of ``AB``; a NumericalError beyond the range of float64."""
        with np.errstate(over="ignore", invalid="ignore"):
            result = values * np.ldexp(1.0, self._unit[2])
        if not np.all(np.isfinite(result)):
            raise NumericalError(f"{what} of this product: beyond the range of float64")
        return result

    def eigenvalues(self) -> NDArray[np.complexfloating[Any, Any]]:
        r"""The ``k`` eigenvalues of the core :math:`BA`, sorted by decreasing modulus.

        Since :math:`AB\,(Au) = A\,(BA\,u)`, every nonzero eigenvalue of :math:`AB` is one of these;
        :math:`AB` has ``m − k`` further zero eigenvalues. Needs ``m == n``.
        """
        self._require_square("eigenvalues")
        a, b, _ = self._unit
        values = np.linalg.eigvals(b @ a).astype(complex)
        order = np.argsort(-np.abs(values), kind="stable")
        result: NDArray[np.complexfloating[Any, Any]] = self._rescaled(values[order], "eigenvalues")
        return result

    def eig(
        self,
    ) -> tuple[NDArray[np.complexfloating[Any, Any]], NDArray[np.complexfloating[Any, Any]]]:
        r"""Eigenvalues λ of :math:`BA` and matching eigenvectors :math:`Au` of :math:`AB` (columns).

        If :math:`BA\,u = λu` with :math:`λ ≠ 0` then :math:`AB\,(Au) = λ\,(Au)`; vectors for a zero
        eigenvalue of the core may vanish and are returned as they come. Sorted by decreasing |λ|.
        """
        self._require_square("eig")
        a, b, _ = self._unit
        values, vectors = np.linalg.eig(b @ a)
        order = np.argsort(-np.abs(values), kind="stable")
        eigenvalues = self._rescaled(values[order].astype(complex), "eigenvalues")
        return eigenvalues, (self.A @ vectors[:, order]).astype(complex)

    @cached_property
    def _svd(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``U``, the singular values of the unit-scaled product (see :attr:`_unit`), ``Vh``."""
        a, b, _ = self._unit
        q_a, r_a = np.linalg.qr(a)  # A  = Q_A R_A,  Q_A: m × r
        q_b, r_b = np.linalg.qr(b.T)  # Bᵀ = Q_B R_B,  Q_B: n × s
        u, s, vh = np.linalg.svd(r_a @ r_b.T, full_matrices=False)
        return q_a @ u, s, vh @ q_b.T

    def svd(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        r"""Thin SVD :math:`AB = U \operatorname{diag}(S) V_h` from the small core :math:`R_A R_B^T`.

        Returns ``(U, S, Vh)`` with ``U``: ``m × r``, ``S``: ``r`` (decreasing), ``Vh``: ``r × n``,
        ``r = min(m, n, k)``.
        """
        u, _, vh = self._svd
        return u.copy(), self.singular_values, vh.copy()

    @property
    def singular_values(self) -> FloatArray:
        """The ``min(m, n, k)`` singular values of :math:`AB`, decreasing.

        A :class:`~circuits.errors.NumericalError` if they exceed the range of the dtype.
        """
        values = self._rescaled(self._svd[1].astype(np.float64), "singular values")
        return _in_dtype(values, self.dtype, "singular values")

    def norm(self) -> float:
        r"""The Frobenius norm :math:`\|AB\|_F = \|R_A R_B^T\|_F = \sqrt{\sum_i \sigma_i^2}`.

        In float64, as :math:`\sigma_1 \sqrt{\sum_i (\sigma_i / \sigma_1)^2}` (no square overflows).
        """
        values = self._svd[1].astype(np.float64)
        top = values.max(initial=0.0)
        unit = top * np.sqrt(np.sum(np.square(values / top))) if top > 0 else 0.0
        return float(self._rescaled(unit, "norm"))

    def trace(self) -> float:
        r"""The trace :math:`\operatorname{tr}(AB) = \sum_{ij} A_{ij} B_{ji}`; needs ``m == n``."""
        self._require_square("trace")
        a, b, _ = self._unit
        return float(self._rescaled(np.einsum("ij,ji->", a, b, dtype=np.float64), "trace"))

    @property
    def rank(self) -> int:
        """Numerical rank: singular values above ``σ_max · max(m, n) · eps`` (numpy's rule)."""
        s = self._svd[1]
        if s.size == 0:
            return 0
        tol = s[0] * max(self.shape) * np.finfo(self.dtype).eps
        return int(np.sum(s > tol))

    # ------------------------------------------------------------------ checks
    def _require_square(self, what: str) -> None:
        if self.shape[0] != self.shape[1]:
            raise ShapeError(f"{what} needs a square matrix, this one is {self.shape}")

    def _require_chain(self, rows: int, op: str) -> None:
        if rows != self.shape[1]:
            raise ShapeError(
                f"cannot compute {self.shape} {op} operand with {rows} rows: "
                f"expected {self.shape[1]} rows"
            )


def _in_dtype(values: NDArray[Any], dtype: np.dtype[Any], what: str) -> FloatArray:
    """``values`` cast to ``dtype``; a NumericalError if they leave its finite range."""
    if np.abs(values).max(initial=0.0) > np.finfo(dtype).max:
        raise NumericalError(f"the {what} exceed the range of {dtype}: use float64 factors")
    result: FloatArray = values.astype(dtype)
    return result
