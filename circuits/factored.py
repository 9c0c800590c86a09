r"""Low-rank matrices kept as a product of two factors, alone or in batches.

A :class:`FactoredMatrix` stands for the product :math:`M = AB` with :math:`A \in R^{m\times k}`
and :math:`B \in R^{k\times n}`, where the inner dimension :math:`k` is small. Attention heads are
full of such matrices: :math:`W_{QK} = W_Q^T W_K` and :math:`W_{OV} = W_O W_V` are ``d × d`` of
rank at most ``d_head``, and the OV circuit :math:`W_U W_{OV} W_E` is ``V × V`` of the same rank.

The factors may carry leading (batch) axes, ``A``: ``[..., m, k]`` and ``B``: ``[..., k, n]``,
which broadcast against each other as in ``numpy.matmul``: ``FactoredMatrix(W_O[l], W_V[l])`` is
the ``[n_heads, d, d]`` stack of a layer's OV maps. Every operation then acts on each matrix of
the stack, and spectra, norms, traces and ranks come back as arrays over the leading axes.

Every operation here works on the factors and on small ``k × k`` cores:

* nonzero eigenvalues of :math:`AB` are those of :math:`BA` (``k × k``);
* with thin QR factorisations :math:`A = Q_A R_A`, :math:`B^T = Q_B R_B`, the singular values of
  :math:`AB` are those of the core :math:`R_A R_B^T`, and :math:`\|AB\|_F = \|R_A R_B^T\|_F`;
* :math:`\operatorname{tr}(AB) = \sum_{ij} A_{ij} B_{ji}`;
* a product :math:`(AB)(CD)` is refactored through the narrowest of its inner dimensions.

The dense ``m × n`` product is formed only when :attr:`FactoredMatrix.AB` is read (or an entry,
row or column is asked for). The factors are stored as read-only views (not copies) of the
arrays given, broadcast to the common leading shape.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._arrays import FloatArray, as_real_array, checked_product, common_dtype, frozen, to_numpy
from ._checks import is_int
from .errors import NumericalError, ShapeError, WeightError

__all__ = ["FactoredMatrix"]

ComplexArray = NDArray[np.complexfloating[Any, Any]]


class FactoredMatrix:
    r"""The product :math:`AB` of ``A`` (``[..., m, k]``) and ``B`` (``[..., k, n]``), kept factored.

    >>> import numpy as np
    >>> M = FactoredMatrix(np.ones((1000, 2)), np.ones((2, 1000)))
    >>> M.shape, M.rank, float(M.trace())
    ((1000, 1000), 1, 2000.0)
    >>> heads = FactoredMatrix(np.ones((3, 1000, 2)), np.ones((2, 1000)))  # three matrices
    >>> heads.shape, heads[1].shape, heads.rank.tolist()
    ((3, 1000, 1000), (1000, 1000), [1, 1, 1])
    """

    __array_ufunc__ = None  # numpy defers to our operators instead of broadcasting over us

    def __init__(self, A: Any, B: Any) -> None:
        a, b = to_numpy(A, "A"), to_numpy(B, "B")
        dtype = common_dtype(a, b)
        a = as_real_array(a, "A", dtype=dtype, copy=False)
        b = as_real_array(b, "B", dtype=dtype, copy=False)
        if a.ndim < 2:
            raise ShapeError(
                f"A: expected shape [*, *] (or [..., *, *] with leading axes), got {list(a.shape)}"
            )
        k = a.shape[-1]
        if b.ndim < 2 or b.shape[-2] != k:
            raise ShapeError(
                f"B: expected shape [{k}, *] (or [..., {k}, *] with leading axes) to follow A of "
                f"shape {list(a.shape)}, got {list(b.shape)}"
            )
        batch = _broadcast(a.shape[:-2], b.shape[:-2], "A and B")
        self.A: FloatArray = frozen(np.broadcast_to(a, batch + a.shape[-2:]))
        self.B: FloatArray = frozen(np.broadcast_to(b, batch + b.shape[-2:]))

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, ...]:
        """``(..., m, n)``: the leading axes, then the shape of each product."""
        return (*self.A.shape[:-1], int(self.B.shape[-1]))

    @property
    def ndim(self) -> int:
        """The number of axes, ``2`` for a single matrix."""
        return self.A.ndim

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The leading axes alone (``()`` for a single matrix)."""
        return tuple(self.A.shape[:-2])

    @property
    def mdim(self) -> int:
        """The inner dimension ``k`` of the factorisation (an upper bound on the rank)."""
        return int(self.A.shape[-1])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The floating dtype of both factors."""
        return self.A.dtype

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={self.shape}, inner={self.mdim}, dtype={self.dtype})"

    # ------------------------------------------------------------------ dense views
    @property
    def AB(self) -> FloatArray:
        """The dense product :math:`AB` (``[..., m, n]``): the only place it is ever formed."""
        return checked_product(self.A, self.B, "AB")

    @property
    def BA(self) -> FloatArray:
        """The small core :math:`BA` (``[..., k, k]``); needs ``m == n``."""
        self._require_square("BA")
        return checked_product(self.B, self.A, "BA")

    @property
    def T(self) -> FactoredMatrix:
        r"""The transpose of each matrix, :math:`(AB)^T = B^T A^T`, still factored."""
        return FactoredMatrix(np.swapaxes(self.B, -1, -2), np.swapaxes(self.A, -1, -2))

    def __getitem__(self, index: Any) -> FactoredMatrix | FloatArray:
        """``M[leading..., rows, cols]``, or ``M[leading...]`` alone to pick matrices of a stack.

        The leading indices come first, as in numpy; the last two select rows of ``A`` and
        columns of ``B`` independently (``M[[1, 2], [3, 4]]`` is a 2 × 2 block). An integer row
        or column gives a dense result (a row, a column or an entry), anything else a factored
        block; only the selected rows of ``A`` and columns of ``B`` are touched. Arrays and
        tensors are read as index arrays, so a one-element one keeps its axis; ``...`` stands for
        as many full slices as needed.
        """
        lead = self.ndim - 2
        items = [_index_item(item) for item in (index if isinstance(index, tuple) else (index,))]
        if any(item is Ellipsis for item in items):
            if sum(item is Ellipsis for item in items) > 1:
                raise ShapeError(
                    f"M[{_index_text(index)}]: an index can have only one ellipsis (...)"
                )
            at = items.index(Ellipsis)
            fill = lead + 3 - len(items)
            if fill < 0:
                raise ShapeError(
                    f"M[{_index_text(index)}]: too many indices for a {self.shape} matrix"
                )
            items[at : at + 1] = [slice(None)] * fill
        rows: Any
        cols: Any
        if len(items) <= lead:
            leading, rows, cols = (
                items + [slice(None)] * (lead - len(items)),
                slice(None),
                slice(None),
            )
        elif len(items) == lead + 2:
            leading, rows, cols = items[:lead], items[lead], items[lead + 1]
        else:
            where = (
                ""
                if lead == 0
                else f" after {lead} leading ones, M[{', '.join('i' * lead)}, rows, cols], or only leading ones"
            )
            raise ShapeError(
                f"index a FactoredMatrix with two indices, M[rows, cols]{where}; "
                f"got {len(items)} for shape {self.shape}"
            )
        row_int, col_int = is_int(rows), is_int(cols)
        rows = np.array([rows]) if row_int else rows
        cols = np.array([cols]) if col_int else cols
        whole = (slice(None), slice(None))
        try:
            a, b = self.A[tuple(leading) + whole], self.B[tuple(leading) + whole]
            a, b = a[..., rows, :], b[..., :, cols]
        except (IndexError, TypeError, ValueError) as error:
            raise ShapeError(f"M[{_index_text(index)}] of a {self.shape} matrix: {error}") from None
        if not (row_int or col_int):
            return FactoredMatrix(a, b)
        dense = a @ b
        if col_int:
            dense = dense[..., 0]
        if row_int:
            dense = dense[..., 0, :] if not col_int else dense[..., 0]
        return np.asarray(dense)

    # ------------------------------------------------------------------ algebra
    def __matmul__(self, other: Any) -> Any:
        r"""``(AB) @ X``: a matrix gives a FactoredMatrix, a vector a dense vector.

        ``(AB)(CD) = A (BC) D`` has three inner dimensions, ``k1``, the shared size ``n`` and
        ``k2``, and is refactored through the narrowest: ``A ((BC) D)`` (inner ``k1``),
        ``(A (BC)) D`` (inner ``k2``) or ``(AB)(CD)`` (inner ``n``), so a chain of products never
        grows beyond its narrowest link. A dense ``X`` (``[..., n, p]``) gives ``A (BX)``
        (inner ``k``), or ``(AB) X`` when ``n < k``; a vector ``x`` (``[n]``) gives ``A (Bx)``.
        Leading axes broadcast.
        """
        if isinstance(other, FactoredMatrix):
            self._require_chain(other.shape[-2], "@")
            _broadcast(self.batch_shape, other.batch_shape, "the leading axes of the operands")
            k1, n, k2 = self.mdim, self.shape[-1], other.mdim
            if n < min(k1, k2):
                return FactoredMatrix(
                    checked_product(self.A, self.B, "A·B"),
                    checked_product(other.A, other.B, "C·D"),
                )
            core = checked_product(self.B, other.A, "B·C")  # [..., k1, k2]
            if k1 <= k2:
                return FactoredMatrix(self.A, checked_product(core, other.B, "B·C·D"))
            return FactoredMatrix(checked_product(self.A, core, "A·B·C"), other.B)
        x = as_real_array(other, "right operand", copy=False)
        if x.ndim == 0:
            raise ShapeError("right operand: expected a vector or a matrix, got a scalar (use *)")
        if x.ndim == 1:
            self._require_chain(x.shape[0], "@")
            result: FloatArray = (self.A @ (self.B @ x)[..., None])[..., 0]
            return result
        self._require_chain(x.shape[-2], "@")
        _broadcast(self.batch_shape, x.shape[:-2], "the leading axes of the operands")
        if self.mdim <= x.shape[-2]:
            return FactoredMatrix(self.A, checked_product(self.B, x, "B·X"))  # inner k
        return FactoredMatrix(self.AB, x)  # inner n < k: AB is m × n, small

    def __rmatmul__(self, other: Any) -> Any:
        """``X @ (AB)``, the mirror image of :meth:`__matmul__`: ``(Bᵀ Aᵀ Xᵀ)ᵀ``."""
        x = as_real_array(other, "left operand", copy=False)
        if x.ndim == 0:
            raise ShapeError("left operand: expected a vector or a matrix, got a scalar (use *)")
        if x.ndim == 1:
            return self.T @ x
        product: FactoredMatrix = self.T @ np.swapaxes(x, -1, -2)
        return product.T

    def __add__(self, other: Any) -> FactoredMatrix:
        r""":math:`AB + CD = [A\ C] \begin{bmatrix} B \\ D \end{bmatrix}`: the factors are concatenated.

        This is how several heads' OV maps add into one map of inner dimension ``k1 + k2``.
        Leading axes broadcast; the matrices must have the same ``m × n``.
        """
        if not isinstance(other, FactoredMatrix):
            return NotImplemented
        if other.shape[-2:] != self.shape[-2:]:
            raise ShapeError(
                f"cannot add FactoredMatrix of shape {other.shape} to one of {self.shape}"
            )
        batch = _broadcast(self.batch_shape, other.batch_shape, "the leading axes of the terms")
        a = [np.broadcast_to(f.A, batch + f.A.shape[-2:]) for f in (self, other)]
        b = [np.broadcast_to(f.B, batch + f.B.shape[-2:]) for f in (self, other)]
        return FactoredMatrix(np.concatenate(a, axis=-1), np.concatenate(b, axis=-2))

    def __neg__(self) -> FactoredMatrix:
        """:math:`-(AB) = (-A) B`."""
        return FactoredMatrix(-self.A, self.B)

    def __sub__(self, other: Any) -> FactoredMatrix:
        r""":math:`AB - CD = [A\ {-C}] \begin{bmatrix} B \\ D \end{bmatrix}`."""
        if not isinstance(other, FactoredMatrix):
            return NotImplemented
        return self + (-other)

    def __mul__(self, scalar: Any) -> FactoredMatrix:
        """``c · AB = (cA) B`` for a real scalar ``c`` (a number, or a one-element array or tensor)."""
        return FactoredMatrix(self.A * _scalar(scalar, "*"), self.B)

    __rmul__ = __mul__

    def __truediv__(self, scalar: Any) -> FactoredMatrix:
        """``AB / c = (A / c) B`` for a real scalar ``c ≠ 0``."""
        value = _scalar(scalar, "/")
        if value == 0:
            raise WeightError("cannot divide a FactoredMatrix by zero")
        return FactoredMatrix(self.A / value, self.B)

    # ------------------------------------------------------------------ spectra
    @cached_property
    def _unit(self) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
        """The factors, with each matrix whose products could overflow (or underflow) the dtype
        scaled exactly by powers of two, ``(A / 2^a, B / 2^b, a + b)``, one exponent per matrix.

        With ``2^a``, ``2^b`` just above the largest entries of a matrix's ``A`` and ``B``, a sum
        of ``terms`` products of entries is below ``terms · 2^(a+b)``: when that fits the dtype,
        with its full precision, the matrix is left as it is (exponent 0). Spectra are computed
        from these and :meth:`_rescaled` at the end, in float64.
        """
        a, b = self.A, self.B
        terms = max(self.shape[-2:]) * self.mdim
        ea, eb = _peak_exponent(a), _peak_exponent(b)
        info = np.finfo(self.dtype)
        fits = (info.minexp + info.nmant < ea + eb) & (ea + eb < info.maxexp - terms.bit_length())
        ea, eb = np.where(fits, 0, ea), np.where(fits, 0, eb)
        if np.any(ea) or np.any(eb):
            a = np.ldexp(a, -ea[..., None, None].astype(np.int32))
            b = np.ldexp(b, -eb[..., None, None].astype(np.int32))
        return a, b, (ea + eb).astype(np.int64)

    def _rescaled(self, values: Any, what: str, trailing: int = 1) -> Any:
        """``values · 2^(a+b)`` per matrix (float64 or complex128): a spectrum of the unit-scaled
        product brought back to the scale of ``AB``; a NumericalError beyond the range of float64.

        ``values`` has the leading axes, then ``trailing`` more.
        """
        exponent = self._unit[2].reshape(self.batch_shape + (1,) * trailing)
        values = np.asarray(values)
        with np.errstate(over="ignore", invalid="ignore"):
            if np.iscomplexobj(values):
                result = np.ldexp(values.real, exponent) + 1j * np.ldexp(values.imag, exponent)
            else:
                result = np.ldexp(values.astype(np.float64), exponent)
        if not np.all(np.isfinite(result)):
            raise NumericalError(f"{what} of this product: beyond the range of float64")
        return result

    def _per_matrix(self, values: Any) -> Any:
        """A float (or int) for a single matrix, the array over the leading axes for a stack."""
        return values.item() if self.ndim == 2 else values

    def eigenvalues(self) -> ComplexArray:
        r"""The ``k`` eigenvalues of each core :math:`BA`, sorted by decreasing modulus.

        Since :math:`AB\,(Au) = A\,(BA\,u)`, every nonzero eigenvalue of :math:`AB` is one of these;
        :math:`AB` has ``m − k`` further zero eigenvalues. Needs ``m == n``; shape ``[..., k]``.
        """
        self._require_square("eigenvalues")
        a, b, _ = self._unit
        values = np.linalg.eigvals(b @ a).astype(complex)
        order = np.argsort(-np.abs(values), axis=-1, kind="stable")
        values = np.take_along_axis(values, order, axis=-1)
        result: ComplexArray = self._rescaled(values, "eigenvalues")
        return result

    def eig(self) -> tuple[ComplexArray, ComplexArray]:
        r"""Eigenvalues λ of :math:`BA` and matching eigenvectors :math:`Au` of :math:`AB` (columns).

        If :math:`BA\,u = λu` with :math:`λ ≠ 0` then :math:`AB\,(Au) = λ\,(Au)`; vectors for a zero
        eigenvalue of the core may vanish and are returned as they come. Sorted by decreasing |λ|;
        shapes ``[..., k]`` and ``[..., m, k]``.
        """
        self._require_square("eig")
        a, b, _ = self._unit
        values, vectors = np.linalg.eig(b @ a)
        order = np.argsort(-np.abs(values), axis=-1, kind="stable")
        values = np.take_along_axis(values.astype(complex), order, axis=-1)
        vectors = np.take_along_axis(vectors, order[..., None, :], axis=-1)
        eigenvalues: ComplexArray = self._rescaled(values, "eigenvalues")
        return eigenvalues, (self.A @ vectors).astype(complex)

    @cached_property
    def _svd(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``U``, the singular values of the unit-scaled product (see :attr:`_unit`), ``Vh``."""
        a, b, _ = self._unit
        q_a, r_a = np.linalg.qr(a)  # A  = Q_A R_A,  Q_A: m × r
        q_b, r_b = np.linalg.qr(np.swapaxes(b, -1, -2))  # Bᵀ = Q_B R_B,  Q_B: n × s
        u, s, vh = np.linalg.svd(r_a @ np.swapaxes(r_b, -1, -2), full_matrices=False)
        return q_a @ u, s, vh @ np.swapaxes(q_b, -1, -2)

    def svd(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        r"""Thin SVD :math:`AB = U \operatorname{diag}(S) V_h` from the small core :math:`R_A R_B^T`.

        Returns ``(U, S, Vh)`` with ``U``: ``[..., m, r]``, ``S``: ``[..., r]`` (decreasing),
        ``Vh``: ``[..., r, n]``, ``r = min(m, n, k)``.
        """
        u, _, vh = self._svd
        return u.copy(), self.singular_values, vh.copy()

    @property
    def singular_values(self) -> FloatArray:
        """The ``min(m, n, k)`` singular values of each :math:`AB`, decreasing (``[..., r]``).

        A :class:`~circuits.errors.NumericalError` if they exceed the range of the dtype.
        """
        values = self._rescaled(self._svd[1].astype(np.float64), "singular values")
        return _in_dtype(values, self.dtype, "singular values")

    def norm(self) -> float | NDArray[np.float64]:
        r"""The Frobenius norm :math:`\|AB\|_F = \|R_A R_B^T\|_F = \sqrt{\sum_i \sigma_i^2}` of each
        matrix: a float for a single matrix, an array over the leading axes for a stack.

        In float64, as :math:`\sigma_1 \sqrt{\sum_i (\sigma_i / \sigma_1)^2}` (no square overflows).
        """
        values = self._svd[1].astype(np.float64)
        top = values.max(axis=-1, initial=0.0)
        safe = np.where(top > 0, top, 1.0)
        unit = top * np.sqrt(np.sum(np.square(values / safe[..., None]), axis=-1))
        return self._per_matrix(self._rescaled(unit, "norm", trailing=0))  # type: ignore[no-any-return]

    def trace(self) -> float | NDArray[np.float64]:
        r"""The trace :math:`\operatorname{tr}(AB) = \sum_{ij} A_{ij} B_{ji}` of each matrix (a float,
        or an array over the leading axes); needs ``m == n``."""
        self._require_square("trace")
        a, b, _ = self._unit
        unit = np.einsum("...ij,...ji->...", a, b, dtype=np.float64)
        return self._per_matrix(self._rescaled(unit, "trace", trailing=0))  # type: ignore[no-any-return]

    @property
    def rank(self) -> int | NDArray[np.intp]:
        """Numerical rank of each matrix: singular values above ``σ_max · max(m, n) · eps``
        (numpy's rule); an int, or an array over the leading axes."""
        s = self._svd[1]
        tol = s[..., :1] * max(self.shape[-2:]) * np.finfo(self.dtype).eps
        return self._per_matrix(np.sum(s > tol, axis=-1))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ checks
    def _require_square(self, what: str) -> None:
        if self.shape[-2] != self.shape[-1]:
            raise ShapeError(f"{what} needs a square matrix, this one is {self.shape}")

    def _require_chain(self, rows: int, op: str) -> None:
        if rows != self.shape[-1]:
            raise ShapeError(
                f"cannot compute {self.shape} {op} operand with {rows} rows: "
                f"expected {self.shape[-1]} rows"
            )


def _broadcast(left: tuple[int, ...], right: tuple[int, ...], what: str) -> tuple[int, ...]:
    """The broadcast of two leading shapes, else a ShapeError naming ``what``."""
    try:
        return tuple(np.broadcast_shapes(left, right))
    except ValueError:
        raise ShapeError(f"{what}: leading shapes {left} and {right} do not broadcast") from None


def _peak_exponent(array: FloatArray) -> NDArray[np.int64]:
    """Per matrix of a stack, the exponent ``e`` of the power of two just above ``max |entry|``
    (0 for a zero matrix), without a temporary copy of the array."""
    peak = np.maximum(array.max(axis=(-2, -1), initial=0.0), -array.min(axis=(-2, -1), initial=0.0))
    exponent: NDArray[np.int64] = np.frexp(peak)[1].astype(np.int64)
    return exponent


def _index_item(item: Any) -> Any:
    """One index of ``M[...]``: slices, ``...`` and integers as they are, array-likes (lists,
    arrays, tensors) as numpy index arrays, so a one-element array keeps its axis."""
    if item is Ellipsis or isinstance(item, slice) or is_int(item):
        return item
    if item is None:
        raise ShapeError("M[...]: new axes (None) are not supported in a FactoredMatrix index")
    if isinstance(item, (bool, np.bool_)):
        raise ShapeError(f"M[...]: {item!r} is not an index (expected an integer, slice or array)")
    array = to_numpy(item, "index")
    if array.size == 0:
        return array.astype(np.intp)
    if array.dtype.kind not in "biu":
        raise ShapeError(
            f"M[...]: an index array must hold integers or booleans, got {array.dtype} ({item!r})"
        )
    if array.ndim == 0:
        if array.dtype.kind == "b":
            raise ShapeError(f"M[...]: {item!r} is not an index (expected an integer or an array)")
        return int(array)
    return array


def _scalar(value: Any, op: str) -> float:
    """A real scalar operand of ``*`` or ``/``: a number, or an array or tensor of one element."""
    if isinstance(value, FactoredMatrix):
        raise WeightError(
            f"FactoredMatrix {op} FactoredMatrix: expected a scalar (@ multiplies them)"
        )
    array = to_numpy(value, f"the operand of {op}")
    if array.size != 1:
        raise ShapeError(
            f"a FactoredMatrix {op} an array of shape {list(array.shape)}: expected a scalar "
            "(a number or a one-element array); use .AB for elementwise products"
        )
    if array.dtype.kind not in "iuf":
        raise WeightError(f"a FactoredMatrix {op} {value!r}: expected a real number")
    number = float(array.reshape(()))
    if not np.isfinite(number):
        raise WeightError(f"a FactoredMatrix {op} {value!r}: expected a finite number")
    return number


def _in_dtype(values: NDArray[Any], dtype: np.dtype[Any], what: str) -> FloatArray:
    """``values`` cast to ``dtype``; a NumericalError if they leave its finite range."""
    if np.abs(values).max(initial=0.0) > np.finfo(dtype).max:
        raise NumericalError(f"the {what} exceed the range of {dtype}: use float64 factors")
    result: FloatArray = values.astype(dtype)
    return result


def _index_text(index: object) -> str:
    """An index as it was written inside the brackets: ``M[5, 0]``, not ``M[(5, 0)]``."""
    items = index if isinstance(index, tuple) else (index,)
    return ", ".join("..." if item is Ellipsis else repr(item) for item in items)
