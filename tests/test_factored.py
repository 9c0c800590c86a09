"""FactoredMatrix against dense numpy, on random shapes and ranks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import find, given
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


# ---------------------------------------------------------------------- leading (batch) axes
Shape = tuple[int, ...]


@st.composite
def leading_shapes(draw: st.DrawFn, count: int = 2) -> list[Shape]:
    """``count`` leading shapes that broadcast together: from one shape of 0–2 axes, each drops
    some outer axes and turns some others into 1s."""
    full = draw(st.lists(st.integers(1, 3), max_size=2))

    def part() -> Shape:
        kept = full[draw(st.integers(0, len(full))) :]
        return tuple(1 if draw(st.booleans()) else size for size in kept)

    return [part() for _ in range(count)]


@st.composite
def batched_factors(
    draw: st.DrawFn, square: bool = False, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``A``: ``[..., m, k]``, ``B``: ``[..., k, n]`` with broadcasting leading axes."""
    lead_a, lead_b = draw(leading_shapes())
    m = draw(st.integers(1, 6))
    n = m if square else (draw(st.integers(1, 6)) if n is None else n)
    k = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A, B = rng.standard_normal((*lead_a, m, k)), rng.standard_normal((*lead_b, k, n))
    if k > 1 and draw(st.booleans()):  # rank-deficient products: a repeated column of A
        A[..., -1] = A[..., 0]
    return A, B


def _batch(A: np.ndarray, B: np.ndarray) -> Shape:
    return tuple(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]))


def _each(A: np.ndarray, B: np.ndarray) -> list[tuple[Shape, np.ndarray]]:
    """Every leading index with the dense product ``A[i] @ B[i]`` there (numpy's broadcasting)."""
    batch = _batch(A, B)
    A_full = np.broadcast_to(A, batch + A.shape[-2:])
    B_full = np.broadcast_to(B, batch + B.shape[-2:])
    return [(i, A_full[i] @ B_full[i]) for i in np.ndindex(*batch)]


@given(batched_factors())
def test_batched_shape_dense_views_and_transpose(factors: tuple[np.ndarray, np.ndarray]) -> None:
    A, B = factors
    M = FactoredMatrix(A, B)
    batch, (m, k), n = _batch(A, B), A.shape[-2:], B.shape[-1]
    assert M.shape == (*batch, m, n)
    assert M.batch_shape == batch and M.ndim == len(batch) + 2 and M.mdim == k
    assert M.A.shape == (*batch, m, k) and M.B.shape == (*batch, k, n)
    for i, dense in _each(A, B):
        np.testing.assert_allclose(M.AB[i], dense, atol=1e-12)
        np.testing.assert_allclose(M.T.AB[i], dense.T, atol=1e-12)
        np.testing.assert_allclose(M[i].AB, dense, atol=1e-12)  # leading indices alone


@given(batched_factors(square=True))
def test_batched_eigenvalues_trace_and_core(factors: tuple[np.ndarray, np.ndarray]) -> None:
    A, B = factors
    M = FactoredMatrix(A, B)
    values, vectors = M.eig()
    assert M.eigenvalues().shape == values.shape == (*M.batch_shape, M.mdim)
    assert vectors.shape == (*M.batch_shape, M.shape[-1], M.mdim)
    traces = M.trace()
    for i, dense in _each(A, B):
        np.testing.assert_allclose(
            _sorted_nonzero(M.eigenvalues()[i]),
            _sorted_nonzero(np.linalg.eigvals(dense)),
            atol=1e-6,
        )
        for value, vector in zip(values[i], vectors[i].T, strict=True):
            if abs(value) > 1e-6 and np.linalg.norm(vector) > 1e-6:
                np.testing.assert_allclose(
                    dense @ vector, value * vector, atol=1e-7 * (1 + abs(value))
                )
        assert np.asarray(traces)[i] == pytest.approx(np.trace(dense), rel=1e-10, abs=1e-10)
        A_i, B_i = (np.broadcast_to(f, M.batch_shape + f.shape[-2:])[i] for f in (A, B))
        np.testing.assert_allclose(M.BA[i], B_i @ A_i, atol=1e-12)
    if M.ndim == 2:
        assert isinstance(traces, float)
    else:
        assert np.shape(traces) == M.batch_shape


@given(batched_factors())
def test_batched_svd_norm_rank(factors: tuple[np.ndarray, np.ndarray]) -> None:
    A, B = factors
    M = FactoredMatrix(A, B)
    U, S, Vh = M.svd()
    r = min(M.shape[-2], M.shape[-1], M.mdim)
    assert U.shape == (*M.batch_shape, M.shape[-2], r) and Vh.shape == (
        *M.batch_shape,
        r,
        M.shape[-1],
    )
    norms, ranks = M.norm(), M.rank
    for i, dense in _each(A, B):
        np.testing.assert_allclose(U[i] @ np.diag(S[i]) @ Vh[i], dense, atol=1e-10)
        np.testing.assert_allclose(S[i], np.linalg.svd(dense, compute_uv=False)[:r], atol=1e-10)
        np.testing.assert_allclose(M.singular_values[i], S[i])
        assert np.asarray(norms)[i] == pytest.approx(np.linalg.norm(dense), rel=1e-12, abs=1e-12)
        assert np.asarray(ranks)[i] == np.linalg.matrix_rank(dense)
    if M.ndim == 2:  # a single matrix keeps its plain return types
        assert isinstance(norms, float) and isinstance(ranks, int)
    else:
        assert np.shape(norms) == np.shape(ranks) == M.batch_shape


@st.composite
def chained_factors(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """``A, B, C, D, X, Y`` for ``(AB)(CD)``, ``(AB) X`` and ``Y (AB)``: shapes ``[..., m, k1]``,
    ``[..., k1, n]``, ``[..., n, k2]``, ``[..., k2, p]``, ``[..., n, q]``, ``[..., q, m]``, with
    leading axes that broadcast together."""
    leads = draw(leading_shapes(6))
    m, n, p, q = (draw(st.integers(1, 6)) for _ in range(4))
    k1, k2 = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shapes = [(m, k1), (k1, n), (n, k2), (k2, p), (n, q), (q, m)]
    return tuple(
        rng.standard_normal((*lead, *shape)) for lead, shape in zip(leads, shapes, strict=True)
    )


@given(chained_factors())
def test_batched_products_keep_the_narrowest_inner_dimension(
    factors: tuple[np.ndarray, ...],
) -> None:
    A, B, C, D, X, Y = factors
    M, N = FactoredMatrix(A, B), FactoredMatrix(C, D)
    (k1, n), k2 = B.shape[-2:], D.shape[-2]
    product = M @ N
    np.testing.assert_allclose(product.AB, (A @ B) @ (C @ D), atol=1e-10)
    assert product.mdim == min(k1, n, k2)
    np.testing.assert_allclose((M @ X).AB, (A @ B) @ X, atol=1e-10)
    assert (M @ X).mdim == min(k1, n)
    np.testing.assert_allclose((Y @ M).AB, Y @ (A @ B), atol=1e-10)
    assert (Y @ M).mdim == min(k1, A.shape[-2])
    x, y = X[(0,) * (X.ndim - 2)][:, 0], Y[(0,) * (Y.ndim - 2)][0]  # vectors
    np.testing.assert_allclose(M @ x, (A @ B) @ x, atol=1e-10)
    np.testing.assert_allclose(y @ M, y @ (A @ B), atol=1e-10)


@given(leading_shapes(4), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**16))
def test_batched_sums_and_scalars(leads: list[Shape], m: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    A, B, C, D = (
        rng.standard_normal((*lead, *shape))
        for lead, shape in zip(leads, [(m, 3), (3, n), (m, 2), (2, n)], strict=True)
    )
    M, other = FactoredMatrix(A, B), FactoredMatrix(C, D)
    total = M + other
    np.testing.assert_allclose(total.AB, A @ B + C @ D, atol=1e-10)
    assert total.mdim == 5 and total.batch_shape == np.broadcast_shapes(*leads)
    np.testing.assert_allclose((M - other).AB, A @ B - C @ D, atol=1e-10)
    np.testing.assert_allclose((-M).AB, -(A @ B), atol=1e-12)
    np.testing.assert_allclose((2.5 * M).AB, 2.5 * (A @ B), atol=1e-12)
    np.testing.assert_allclose((M * np.array([-2.0])).AB, -2 * (A @ B), atol=1e-12)
    np.testing.assert_allclose((np.float32(3) * M).AB, 3 * (A @ B), atol=1e-12)
    np.testing.assert_allclose((M / np.array(4)).AB, (A @ B) / 4, atol=1e-12)


@given(batched_factors(), st.data())
def test_batched_indexing(factors: tuple[np.ndarray, np.ndarray], data: st.DataObject) -> None:
    """Leading indices first, then rows and columns of each matrix, selected independently."""
    A, B = factors
    M = FactoredMatrix(A, B)
    dense = np.broadcast_to(A @ B, M.shape)
    m, n = M.shape[-2:]
    lead = tuple(data.draw(st.integers(-size, size - 1)) for size in M.batch_shape)
    rows = data.draw(st.lists(st.integers(-m, m - 1), min_size=1, max_size=4))
    cols = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=4))
    row, col = rows[0], cols[0]
    block = M[(*lead, rows, cols)]
    assert isinstance(block, FactoredMatrix)
    np.testing.assert_allclose(block.AB, dense[lead][np.ix_(rows, cols)], atol=1e-12)
    np.testing.assert_allclose(M[..., rows, cols].AB, dense[..., rows, :][..., cols], atol=1e-12)
    np.testing.assert_allclose(M[..., row, :], dense[..., row, :], atol=1e-12)
    np.testing.assert_allclose(M[..., :, col], dense[..., :, col], atol=1e-12)
    np.testing.assert_allclose(M[..., row, col], dense[..., row, col], atol=1e-12)
    one_row = M[..., np.array([row]), :]  # a one-element array keeps the axis
    assert isinstance(one_row, FactoredMatrix) and one_row.shape == (*M.batch_shape, 1, n)
    if M.batch_shape:
        first = M[lead[0]]  # leading indices alone give a smaller stack
        assert isinstance(first, FactoredMatrix)
        np.testing.assert_allclose(first.AB, dense[lead[0]], atol=1e-12)
        kept = M[[lead[0]]]
        assert isinstance(kept, FactoredMatrix) and kept.shape == (1, *M.shape[1:])


@st.composite
def float32_stack(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Two float32 matrices in one stack, factors scaled by ``2^big`` and ``2^-small``: the first
    one's products near or beyond the top of float32's range, the second one's below its normal
    range."""
    big, small = draw(st.integers(58, 70)), draw(st.integers(66, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    A = rng.standard_normal((2, 4, 3))
    B = rng.standard_normal((2, 3, 4))
    A[0], B[0] = np.ldexp(A[0], big), np.ldexp(B[0], big)
    A[1], B[1] = np.ldexp(A[1], -small), np.ldexp(B[1], -small)
    return A.astype(np.float32), B.astype(np.float32), big, small


@given(float32_stack())
def test_each_matrix_of_a_stack_is_scaled_on_its_own(
    stack: tuple[np.ndarray, np.ndarray, int, int],
) -> None:
    """One huge and one tiny matrix in a float32 stack: each spectrum exact to float32 precision."""
    A, B, _, _ = stack
    M = FactoredMatrix(A, B)
    wide = A.astype(np.float64) @ B.astype(np.float64)
    norms, traces, values = M.norm(), M.trace(), M.eigenvalues()
    for i in range(2):
        assert norms[i] == pytest.approx(np.linalg.norm(wide[i]), rel=1e-5)
        scale = np.linalg.norm(wide[i])
        assert abs(traces[i] - np.trace(wide[i])) <= 1e-5 * scale
        np.testing.assert_allclose(
            np.sort(np.abs(values[i])),
            np.sort(np.abs(np.linalg.eigvals(wide[i])))[-3:],
            rtol=1e-4,
            atol=1e-5 * scale,
        )


def test_strategies_draw_what_they_claim() -> None:
    def broadcasts_a_one(f: tuple[np.ndarray, np.ndarray]) -> bool:
        lead_a, lead_b = f[0].shape[:-2], f[1].shape[:-2]
        return len(lead_a) == len(lead_b) == 2 and any(
            {x, y} == {1, z} and z > 1 for x, y, z in zip(lead_a, lead_b, _batch(*f), strict=True)
        )

    find(batched_factors(), broadcasts_a_one)
    find(batched_factors(), lambda f: f[0].ndim != f[1].ndim)  # one factor without leading axes
    find(batched_factors(), lambda f: f[0].ndim == f[1].ndim == 2)  # a single matrix
    find(  # a rank-deficient product
        batched_factors(),
        lambda f: any(
            np.linalg.matrix_rank(d) < min(*d.shape, f[0].shape[-1]) for _, d in _each(*f)
        ),
    )
    find(  # (AB)(CD) narrowest in the middle, with leading axes
        chained_factors(),
        lambda f: f[1].shape[-1] < min(f[1].shape[-2], f[3].shape[-2]) and f[0].ndim > 2,
    )
    find(chained_factors(), lambda f: f[1].shape[-2] < min(f[1].shape[-1], f[3].shape[-2]))
    find(chained_factors(), lambda f: f[3].shape[-2] < min(f[1].shape[-2], f[1].shape[-1]))
    with np.errstate(over="ignore", under="ignore"):
        find(float32_stack(), lambda s: bool(np.isinf(s[0][0] @ s[1][0]).any()))
        find(float32_stack(), lambda s: bool(np.any(np.abs(s[0][1] @ s[1][1]) < 2.0**-126)))


def test_a_layer_of_heads_is_one_object() -> None:
    """``FactoredMatrix(W_O[l], W_V[l])``: the OV maps of all heads of a layer, ``[H, d, d]``."""
    rng = np.random.default_rng(0)
    W_O, W_V = rng.standard_normal((3, 8, 2)), rng.standard_normal((3, 2, 8))
    OV = FactoredMatrix(W_O, W_V)
    assert OV.shape == (3, 8, 8) and OV.mdim == 2
    for h in range(3):
        head = OV[h]
        assert isinstance(head, FactoredMatrix)
        np.testing.assert_allclose(head.AB, W_O[h] @ W_V[h])
        assert OV.norm()[h] == pytest.approx(np.linalg.norm(W_O[h] @ W_V[h]))
    assert OV.rank.tolist() == [2, 2, 2]
    W_U = rng.standard_normal((5, 8))
    circuits = W_U @ OV @ W_U.T  # the leading axis carries through dense products
    assert circuits.shape == (3, 5, 5) and circuits.mdim == 2
    np.testing.assert_allclose(circuits.AB[1], W_U @ W_O[1] @ W_V[1] @ W_U.T, atol=1e-12)


def test_torch_tensors_as_factors_indices_and_scalars(torch: Any) -> None:
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    B = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    M = FactoredMatrix(A, B)
    dense = (A @ B).numpy()
    row = M[0, torch.tensor([3]), :]  # not read as the integer 3
    assert isinstance(row, FactoredMatrix) and row.shape == (1, 5)
    np.testing.assert_allclose(row.AB, dense[0, [3], :])
    np.testing.assert_allclose(M[torch.tensor(1)].AB, dense[1])  # a 0-d tensor is an integer
    np.testing.assert_allclose((M * torch.tensor(2.0)).AB, 2 * dense)
    np.testing.assert_allclose((torch.tensor([0.5]) * M).AB, dense / 2)
    np.testing.assert_allclose((M / torch.tensor(4.0)).AB, dense / 4)
    with pytest.raises(ShapeError, match="expected a scalar"):
        M * torch.ones(2)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: FactoredMatrix(np.ones((2, 3, 2)), np.ones((3, 2, 2))), ShapeError, r"leading shapes \(2,\) and \(3,\) do not broadcast"),
        (lambda: _stack() @ FactoredMatrix(np.ones((2, 4, 1)), np.ones((1, 4))), ShapeError, "do not broadcast"),
        (lambda: _stack() @ np.ones((2, 4, 4)), ShapeError, "do not broadcast"),
        (lambda: _stack() @ np.ones((3, 5, 4)), ShapeError, "expected 4 rows"),
        (lambda: _stack() + FactoredMatrix(np.ones((2, 4, 1)), np.ones((1, 4))), ShapeError, "do not broadcast"),
        (lambda: _stack() + FactoredMatrix(np.ones((4, 1)), np.ones((1, 3))), ShapeError, "cannot add"),
        (lambda: _stack() * "x", WeightError, "expected a real number"),
        (lambda: _stack() * 1j, WeightError, "expected a real number"),
        (lambda: _stack() * np.nan, WeightError, "finite"),
        (lambda: _stack() * _stack(), WeightError, "@ multiplies them"),
        (lambda: _stack() * np.ones((3, 1, 1)), ShapeError, r"shape \[3, 1, 1\]: expected a scalar"),
        (lambda: _stack() / np.array([0.0]), WeightError, "by zero"),
        (lambda: _stack() @ 2.0, ShapeError, "got a scalar"),
        (lambda: _stack()[0, 1], ShapeError, "two indices"),
        (lambda: _stack()[..., ...], ShapeError, "one ellipsis"),
        (lambda: _stack()[None], ShapeError, "None"),
        (lambda: _stack()[0, 1.5, :], ShapeError, "integers or booleans"),
        (lambda: _stack()[0, [1.5], :], ShapeError, "integers or booleans"),
        (lambda: _stack()[3], ShapeError, r"of a \(3, 4, 4\) matrix"),
        (lambda: _stack()[0, 9, :], ShapeError, r"of a \(3, 4, 4\) matrix"),
        (lambda: _stack()[True], ShapeError, "not an index"),
    ],
)  # fmt: skip
def test_bad_batched_input_gets_a_clear_error(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def _stack() -> FactoredMatrix:
    return FactoredMatrix(np.ones((3, 4, 2)), np.ones((2, 4)))
