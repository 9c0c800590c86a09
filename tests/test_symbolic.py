"""Symbols, tensor products, LaTeX and substitution (numeric, factored and exact sympy)."""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, FactoredMatrix, PathError, ShapeError, WeightError
from circuits.symbolic import (
    ALPHA,
    SEQ_LEN,
    Kron,
    ModelSymbols,
    latex,
    pattern_values,
    substitute,
    symbol_name,
    weight_values,
)

dims = st.integers(1, 4)


def random_values(names_shapes: dict[str, tuple[int, int]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, shape in names_shapes.items()}


def small_model(biases: bool = True) -> AttnOnlyTransformer:
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 5, "d_head": 2, "d_vocab": 4, "n_ctx": 3}
    return AttnOnlyTransformer.random(cfg, seed=2, biases=biases)


# ---------------------------------------------------------------------------------- symbols and LaTeX
def test_symbol_names_and_shapes() -> None:
    symbols = ModelSymbols(d_model=5, d_head=2, d_vocab=7, n_ctx=3)
    assert symbol_name("W_OV", "1.4") == "W_OV^{1.4}" and symbol_name("W_E") == "W_E"
    assert symbol_name("b_O", 2) == "b_O^{2}"
    expected = {"W_E": (5, 7), "W_P": (5, 3), "W_U": (7, 5), "W_Q": (2, 5), "W_O": (5, 2),
                "W_OV": (5, 5), "b_V": (2, 1), "b_O": (5, 1), "b_U": (7, 1)}  # fmt: skip
    for name, shape in expected.items():
        assert symbols.weight(name, "0.1").shape == shape
    assert symbols.pattern("0.1").shape == (SEQ_LEN, SEQ_LEN)
    with pytest.raises(WeightError, match="no weight symbol"):
        symbols.weight("W_X")


def test_latex_in_the_framework_notation() -> None:
    d = 3
    W_OV, W_Q = sp.MatrixSymbol("W_OV^{1.4}", d, d), sp.MatrixSymbol("W_Q^{1.4}", 2, d)
    W_E = sp.MatrixSymbol("W_E", d, 4)
    assert latex(W_OV) == "W_{OV}^{1.4}"
    assert latex(W_Q.T) == "{W_{Q}^{1.4}}^{T}"
    assert latex(W_E.T) == "W_{E}^{T}"
    assert latex(sp.Transpose(W_OV * W_E)) == r"\left(W_{OV}^{1.4} W_{E}\right)^{T}"
    assert latex(sp.Identity(SEQ_LEN)) == r"\mathrm{Id}"
    assert latex(sp.OneMatrix(SEQ_LEN, 1)) == r"\mathbb{1}"
    assert latex(sp.MatrixSymbol("A^{h_2}", 2, 2)) == "A^{h_2}"
    assert latex(W_E.T * W_OV * W_E / ALPHA) == r"\frac{1}{\alpha} W_{E}^{T} W_{OV}^{1.4} W_{E}"


def test_kron_latex_brackets_products_only() -> None:
    A, B = (
        sp.MatrixSymbol("A^{1.0}", SEQ_LEN, SEQ_LEN),
        sp.MatrixSymbol("A^{0.1}", SEQ_LEN, SEQ_LEN),
    )
    W, U = sp.MatrixSymbol("W_U", 3, 3), sp.MatrixSymbol("W_OV^{1.0}", 3, 3)
    assert Kron((A, W)).latex() == r"A^{1.0} \otimes W_{U}"
    assert Kron((A * B, W * U)).latex() == (
        r"\left(A^{1.0} A^{0.1}\right) \otimes \left(W_{U} W_{OV}^{1.0}\right)"
    )
    assert Kron((A, W))._repr_latex_() == rf"${Kron((A, W)).latex()}$"


# ---------------------------------------------------------------------------------- mixed products
@given(dims, dims, dims, dims, dims, dims, st.integers(0, 2**32 - 1))
def test_mixed_product_rule(a: int, b: int, c: int, p: int, q: int, r: int, seed: int) -> None:
    """(A⊗W)(B⊗U) = (AB)⊗(WU): Kron's @ agrees with the product of the dense Kronecker products."""
    shapes = {"A": (a, b), "B": (b, c), "W": (p, q), "U": (q, r)}
    symbols = {name: sp.MatrixSymbol(name, *shape) for name, shape in shapes.items()}
    values = random_values(shapes, seed)
    product = Kron((symbols["A"], symbols["W"])) @ Kron((symbols["B"], symbols["U"]))
    assert product == Kron((symbols["A"] * symbols["B"], symbols["W"] * symbols["U"]))
    dense = np.kron(values["A"], values["W"]) @ np.kron(values["B"], values["U"])
    np.testing.assert_allclose(product.to_dense(values), dense, rtol=1e-12, atol=1e-12)


@given(st.lists(dims, min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_mixed_product_rule_for_three_factors(sizes: list[int], seed: int) -> None:
    """(A⊗B⊗C)(D⊗E⊗F) = (AD)⊗(BE)⊗(CF), the form of attention-score terms."""
    n, m, k, j = sizes
    shapes = {"A": (n, m), "D": (m, k), "B": (m, j), "E": (j, n), "C": (k, k), "F": (k, m)}
    s = {name: sp.MatrixSymbol(name, *shape) for name, shape in shapes.items()}
    values = random_values(shapes, seed)
    left, right = Kron((s["A"], s["B"], s["C"])), Kron((s["D"], s["E"], s["F"]))
    dense = reduce(np.kron, [values[x] for x in "ABC"]) @ reduce(
        np.kron, [values[x] for x in "DEF"]
    )
    np.testing.assert_allclose((left @ right).to_dense(values), dense, rtol=1e-12, atol=1e-12)


def test_mixed_products_absorb_identities_and_check_shapes() -> None:
    A = sp.MatrixSymbol("A", SEQ_LEN, SEQ_LEN)
    W, U = sp.MatrixSymbol("W", 3, 2), sp.MatrixSymbol("U", 3, 3)
    assert Kron((sp.Identity(SEQ_LEN), U)) @ Kron((A, W)) == Kron((A, U * W))
    with pytest.raises(ShapeError, match="cannot multiply"):
        Kron((A, W)) @ Kron((A, W))
    with pytest.raises(ShapeError, match="tensor product"):
        Kron((A, W)) @ Kron((A,))


# ---------------------------------------------------------------------------------- substitution
@st.composite
def chains(draw: st.DrawFn) -> tuple[list[sp.MatrixSymbol], dict[str, Any], list[np.ndarray]]:
    """A chain of matrix symbols with values, some of them FactoredMatrix, and the dense factors."""
    length = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 6), min_size=length + 1, max_size=length + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    symbols, values, dense = [], {}, []
    for i in range(length):
        name = f"M_{i}"
        symbols.append(sp.MatrixSymbol(name, sizes[i], sizes[i + 1]))
        if draw(st.booleans()):
            inner = draw(st.integers(1, 3))
            value = FactoredMatrix(
                rng.standard_normal((sizes[i], inner)), rng.standard_normal((inner, sizes[i + 1]))
            )
            dense.append(value.AB)
        else:
            value = rng.standard_normal((sizes[i], sizes[i + 1]))
            dense.append(value)
        values[name] = value
    return symbols, values, dense


@given(chains())
def test_products_in_the_cheapest_order_are_the_products(chain: Any) -> None:
    """Any chain of arrays and factored matrices: the product, factored iff it narrows inside."""
    symbols, values, dense = chain
    result = substitute(sp.MatMul(*symbols) if len(symbols) > 1 else symbols[0], values)
    expected = reduce(np.matmul, dense)
    value = result.AB if isinstance(result, FactoredMatrix) else result
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-10)
    if len(symbols) == 1:  # a single symbol is its value, factored or not
        assert result is values[str(symbols[0])]
    elif isinstance(result, FactoredMatrix):
        assert result.mdim < min(expected.shape)


def test_low_rank_products_stay_factored() -> None:
    """W_U W_OV W_E (V × V, rank ≤ d_head) is never formed as a dense V × V array."""
    model = small_model()
    values = weight_values(model.parameters(), model.cfg)
    symbols = ModelSymbols.of(model.cfg)
    circuit = substitute(symbols.weight("W_U") * symbols.ov("1.0") * symbols.weight("W_E"), values)
    assert isinstance(circuit, FactoredMatrix) and circuit.mdim == model.cfg.d_head
    np.testing.assert_allclose(circuit.AB, model.W_U @ model.W_OV(1, 0).AB @ model.W_E, atol=1e-12)
    expanded = substitute(
        symbols.weight("W_U") * symbols.ov("1.0", expand=True) * symbols.weight("W_E"), values
    )
    np.testing.assert_allclose(expanded.AB, circuit.AB, atol=1e-12)


def test_sympy_values_give_exact_matrices() -> None:
    beta, gamma = sp.symbols("beta gamma")
    M, N = sp.MatrixSymbol("M", 2, 2), sp.MatrixSymbol("N", 2, 1)
    values = {"M": sp.Matrix([[beta, 0], [1, beta]]), "N": np.array([1.0, -1.0]), "alpha": gamma}
    result = substitute(M * N / ALPHA, values)
    assert isinstance(result, sp.ImmutableMatrix)
    assert sp.simplify(result - sp.Matrix([beta / gamma, (1 - beta) / gamma])) == sp.zeros(2, 1)
    assert substitute(M.T, values) == sp.Matrix([[beta, 1], [0, beta]])
    summed = substitute(M + M, values)
    assert summed == 2 * sp.Matrix([[beta, 0], [1, beta]])


def test_identities_ones_sums_and_scalars() -> None:
    A = sp.MatrixSymbol("A", SEQ_LEN, SEQ_LEN)
    pattern = np.array([[1.0, 0.0], [0.25, 0.75]])
    assert np.array_equal(substitute(A * sp.OneMatrix(SEQ_LEN, 1), {"A": pattern}), np.ones((2, 1)))
    assert np.array_equal(substitute(sp.Identity(SEQ_LEN), {"n": 3}), np.eye(3))
    assert np.array_equal(
        substitute(sp.MatMul(sp.Identity(SEQ_LEN), A).doit(), {"A": pattern}), pattern
    )
    F = FactoredMatrix(np.ones((2, 1)), np.ones((1, 2)))
    both = substitute(A + sp.MatrixSymbol("B", SEQ_LEN, SEQ_LEN), {"A": F, "B": pattern})
    np.testing.assert_array_equal(both, F.AB + pattern)
    factored = substitute(A + A, {"A": F})
    assert isinstance(factored, FactoredMatrix) and np.array_equal(factored.AB, 2 * F.AB)
    np.testing.assert_allclose(substitute(A / ALPHA, {"A": pattern, "alpha": 4.0}), pattern / 4)
    np.testing.assert_allclose(substitute(A * A * A, {"A": pattern}), pattern @ pattern @ pattern)


@pytest.mark.parametrize(
    ("expr", "values", "error", "message"),
    [
        (sp.MatrixSymbol("M", 2, 2), {}, WeightError, "no value given for the symbol 'M'"),
        (sp.Identity(SEQ_LEN), {}, WeightError, "size 'n'"),
        (sp.MatrixSymbol("M", 2, 2) / ALPHA, {"M": np.eye(2)}, WeightError, "scalar"),
        (sp.MatrixSymbol("M", 2, 2), {"M": np.zeros((2, 2, 2))}, ShapeError, "matrix or a vector"),
        (sp.MatrixSymbol("M", 2, 2), {"M": FactoredMatrix(np.ones((3, 2, 1)), np.ones((3, 1, 2)))},
         ShapeError, r"M: expected one matrix, got a stack of shape \[3, 2, 2\]"),
        (sp.MatrixSymbol("M", 2, 2) * sp.MatrixSymbol("N", 2, 2), {"M": np.eye(2), "N": np.eye(3)},
         ShapeError, r"N: expected shape \[2, 2\], got \[3, 3\]"),
        (sp.MatrixSymbol("M", 2, 2), {"M": np.array([[np.nan, 0], [0, 0]])}, WeightError, "non-finite"),
        (sp.Inverse(sp.MatrixSymbol("M", 2, 2)), {"M": np.eye(2)}, WeightError, "cannot substitute"),
    ],
)  # fmt: skip
def test_substitution_errors(expr: Any, values: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        substitute(expr, values)


# ---------------------------------------------------------------------------------- value maps
def test_weight_values_of_a_model() -> None:
    model = small_model()
    values = weight_values(model.parameters(), model.cfg)
    assert values["alpha"] == model.cfg.attn_scale
    for layer, head in model.cfg.heads():
        owner = f"{layer}.{head}"
        np.testing.assert_array_equal(values[f"W_OV^{{{owner}}}"].AB, model.W_OV(layer, head).AB)
        np.testing.assert_array_equal(values[f"W_QK^{{{owner}}}"].AB, model.W_QK(layer, head).AB)
        np.testing.assert_array_equal(values[f"b_V^{{{owner}}}"], model.b_V[layer, head])
    np.testing.assert_array_equal(values["b_O^{1}"], model.b_O[1])
    assert {"W_E", "W_P", "W_U", "b_U"} <= set(values)


def test_weight_values_of_sympy_weights() -> None:
    """Nested lists of sympy matrices (a hand-built model with a symbolic scale) give sympy circuits."""
    beta = sp.Symbol("beta")
    model = small_model(biases=False)
    weights: dict[str, Any] = {
        name: [[sp.Matrix(model.parameters()[name][layer, head]) for head in range(2)] for layer in range(2)]
        for name in ("W_Q", "W_K", "W_V", "W_O")
    }  # fmt: skip
    weights["W_Q"][1][0] = weights["W_Q"][1][0] * beta
    values = weight_values(weights, model.cfg)
    assert "W_E" not in values
    qk = values["W_QK^{1.0}"]
    assert isinstance(qk, sp.MatrixBase)
    numeric = sp.Matrix(model.W_QK(1, 0).AB)
    assert sp.simplify(qk - beta * numeric).norm().evalf(subs={beta: 1}) < 1e-12
    assert np.allclose(np.array(values["W_OV^{0.1}"], dtype=float), model.W_OV(0, 1).AB)


def test_pattern_values_of_a_cache() -> None:
    model = small_model()
    _, cache = model.run_with_cache(np.array([[0, 1, 2], [3, 2, 1]]))
    values = pattern_values(cache, 1)
    assert values["n"] == 3
    np.testing.assert_array_equal(values["A^{1.0}"], cache.pattern(1, 0)[1])
    with pytest.raises(ShapeError, match="batch"):
        pattern_values(cache, 2)


def test_terms_of_paths_that_are_not_terms() -> None:
    symbols = ModelSymbols(d_model=5, d_head=2, d_vocab=7, n_ctx=3)
    with pytest.raises(PathError, match="ends at 'unembed'"):
        symbols.ov_term(("embed", "0.0"))
    with pytest.raises(PathError, match="different heads"):
        symbols.qk_term(("embed", "1.0"), ("embed", "1.1"))
    with pytest.raises(PathError, match="not a source"):
        symbols.source_map("0.0")
