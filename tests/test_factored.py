"""FactoredMatrix against dense numpy, on random shapes and ranks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import FactoredMatrix, ShapeError, WeightError


@st.composite
def factored(
    draw: st.DrawFn, m: int | None = None, n: int | None = None, square: bool = False
) -> FactoredMatrix:
    m = draw(st.integers(1, 9)) if m is None else m
    n = m if square else (draw(st.integers(1, 9)) if n is None else n)
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    if draw(st.booleans()):  # a rank-deficient product: a repeated column of A
        A[:, -1] = A[:, 0]
    return FactoredMatrix(A, B)


def _sorted_nonzero(values: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    values = values[np.abs(values) > tol]
    return values[np.lexsort((values.imag.round(6), values.real.round(6)))]


@given(factored(square=True))
def test_eigenvalues_are_the_nonzero_spectrum(M: FactoredMatrix) -> None:
    """eig(AB) = eig(BA) ∪ {0}: the nonzero eigenvalues come from the k × k core."""
    np.testing.assert_allclose(
        _sorted_nonzero(M.eigenvalues()), _sorted_nonzero(np.linalg.eigvals(M.AB)), atol=1e-6
    )
    assert M.eigenvalues().shape == (M.mdim,)


@given(factored(square=True))
def test_eig_gives_eigenvectors_of_the_product(M: FactoredMatrix) -> None:
    values, vectors = M.eig()
    for value, vector in zip(values, vectors.T, strict=True):
        if abs(value) > 1e-6 and np.linalg.norm(vector) > 1e-6:
            np.testing.assert_allclose(M.AB @ vector, value * vector, atol=1e-7 * (1 + abs(value)))


@given(factored())
def test_svd_norm_rank_against_dense(M: FactoredMatrix) -> None:
    dense = M.AB
    U, S, Vh = M.svd()
    np.testing.assert_allclose(U @ np.diag(S) @ Vh, dense, atol=1e-10)
    np.testing.assert_allclose(U.T @ U, np.eye(len(S)), atol=1e-10)
    dense_s = np.linalg.svd(dense, compute_uv=False)
    np.testing.assert_allclose(S, dense_s[: len(S)], atol=1e-10)
    np.testing.assert_allclose(M.singular_values, S)
    assert M.norm() == pytest.approx(np.linalg.norm(dense), rel=1e-12, abs=1e-12)
    assert M.rank == np.linalg.matrix_rank(dense)


@given(factored(square=True))
def test_trace_and_core(M: FactoredMatrix) -> None:
    assert M.trace() == pytest.approx(np.trace(M.AB), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(M.BA, M.B @ M.A)


@given(st.data())
def test_products_sums_and_transpose(data: st.DataObject) -> None:
    M = data.draw(factored())
    m, n = M.shape
    N = data.draw(factored(m=n))
    X = np.random.default_rng(0).standard_normal((n, data.draw(st.integers(1, 8))))
    Y = np.random.default_rng(1).standard_normal((data.draw(st.integers(1, 8)), m))
    np.testing.assert_allclose((M @ N).AB, M.AB @ N.AB, atol=1e-10)
    assert (M @ N).mdim == min(M.mdim, n, N.mdim)  # the narrowest of k1, n, k2
    np.testing.assert_allclose((M @ X).AB, M.AB @ X, atol=1e-10)
    assert (M @ X).mdim == min(M.mdim, X.shape[0])
    assert (Y @ M).mdim == min(M.mdim, Y.shape[1])
    np.testing.assert_allclose((Y @ M).AB, Y @ M.AB, atol=1e-10)
    np.testing.assert_allclose(M @ X[:, 0], M.AB @ X[:, 0], atol=1e-10)
    np.testing.assert_allclose(Y[0] @ M, Y[0] @ M.AB, atol=1e-10)
    np.testing.assert_allclose(M.T.AB, M.AB.T)
    other = data.draw(factored(m=m, n=n))
    total = M + other
    np.testing.assert_allclose(total.AB, M.AB + other.AB, atol=1e-10)
    assert total.mdim == M.mdim + other.mdim
    np.testing.assert_allclose((M - other).AB, M.AB - other.AB, atol=1e-10)
    np.testing.assert_allclose((2.5 * M).AB, 2.5 * M.AB)
    np.testing.assert_allclose((M * np.float32(-2)).AB, -2 * M.AB, rtol=1e-6)
    np.testing.assert_allclose((M / 4).AB, M.AB / 4)


def test_indexing_touches_only_selected_rows() -> None:
    rng = np.random.default_rng(0)
    M = FactoredMatrix(rng.standard_normal((50, 3)), rng.standard_normal((3, 40)))
    block = M[[3, 7], 10:20]
    assert isinstance(block, FactoredMatrix)
    np.testing.assert_allclose(block.AB, M.AB[[3, 7], 10:20])
    np.testing.assert_allclose(M[5, :], M.AB[5])
    assert M[5, 6] == pytest.approx(M.AB[5, 6])


def test_large_product_is_never_formed() -> None:
    """A 50257 × 50257 matrix would take 20 GB: every operation here works from the factors."""
    rng = np.random.default_rng(0)
    V, k = 50257, 4
    M = FactoredMatrix(rng.standard_normal((V, k)), rng.standard_normal((k, V)))
    core = M.B @ M.A
    assert M.trace() == pytest.approx(np.trace(core))
    assert M.rank == k
    np.testing.assert_allclose(
        np.sort(np.abs(M.eigenvalues())), np.sort(np.abs(np.linalg.eigvals(core)))
    )
    assert M.norm() == pytest.approx(np.sqrt(np.trace((M.A.T @ M.A) @ (M.B @ M.B.T))))


def test_dtype_and_immutability() -> None:
    A32 = np.ones((3, 2), np.float32)
    assert FactoredMatrix(A32, np.ones((2, 3), np.float32)).dtype == np.float32
    assert FactoredMatrix(A32, np.ones((2, 3))).dtype == np.float64
    assert FactoredMatrix([[1, 2]], [[3], [4]]).AB[0, 0] == 11.0
    M = FactoredMatrix(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError):
        M.A[0, 0] = 5.0
    assert "shape=(3, 3), inner=2" in repr(M)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: FactoredMatrix(np.ones((3, 2)), np.ones((3, 3))), ShapeError, r"B: expected shape \[2, \*\]"),
        (lambda: FactoredMatrix(np.ones(3), np.ones((1, 3))), ShapeError, r"A: expected shape \[\*, \*\]"),
        (lambda: FactoredMatrix(np.full((2, 2), np.inf), np.ones((2, 2))), WeightError, "non-finite"),
        (lambda: FactoredMatrix(np.ones((2, 2)), "x"), WeightError, "B"),
        (lambda: FactoredMatrix(np.ones((2, 2)), np.ones((2, 3))).eigenvalues(), ShapeError, "square"),
        (lambda: FactoredMatrix(np.ones((2, 2)), np.ones((2, 3))).trace(), ShapeError, "square"),
        (lambda: FactoredMatrix(np.ones((2, 2)), np.ones((2, 3))) @ np.ones((2, 2)), ShapeError, "expected 3 rows"),
        (lambda: FactoredMatrix(np.ones((2, 2)), np.ones((2, 3))) + FactoredMatrix(np.ones((2, 1)), np.ones((1, 2))), ShapeError, "cannot add"),
        (lambda: FactoredMatrix(np.ones((2, 2)), np.ones((2, 2)))[0], ShapeError, "two indices"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_error(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_unsupported_operands_are_refused() -> None:
    M = FactoredMatrix(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError):
        M + np.ones((2, 2))  # numpy must not broadcast over a FactoredMatrix
    with pytest.raises(ShapeError, match=r"array of shape \[2\]: expected a scalar"):
        M * np.ones(2)
