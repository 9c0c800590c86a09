"""Bad and extreme input across the public API: a clear CircuitsError, never a bare traceback from
numpy, sympy or networkx, never a silently wrong answer; finite results at extreme scales.

Each table row is ``(call, error type, message fragment)``; the message must name the offending
value or the expected shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import circuits as c
from circuits import (
    AttnOnlyTransformer,
    CircuitsError,
    ConfigError,
    FactoredMatrix,
    HeadError,
    NumericalError,
    ShapeError,
    TokenError,
    TransformerConfig,
    WeightError,
)

CFG = TransformerConfig(n_layers=2, n_heads=2, d_model=6, d_head=3, d_vocab=7, n_ctx=8)
MODEL = AttnOnlyTransformer.random(CFG, seed=0, biases=True)
TOKENS = np.array([[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]])
_, CACHE = MODEL.run_with_cache(TOKENS)
FACTORED = FactoredMatrix(np.ones((3, 2)), np.ones((2, 3)))

Case = tuple[Callable[[], Any], type[CircuitsError], str]


def _raises(call: Callable[[], Any], error: type[CircuitsError], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


# ---------------------------------------------------------------------- config, model, tokens
CORE: dict[str, Case] = {
    "config from None": (lambda: TransformerConfig.from_dict(None), ConfigError, "mapping"),
    "config from a string": (lambda: AttnOnlyTransformer.random("cfg"), ConfigError, "'cfg'"),
    "parse_head(None)": (lambda: c.parse_head(None), HeadError, "not a head name: None"),
    "parse_head(1.2)": (lambda: c.parse_head(1.2), HeadError, "not a head name: 1.2"),
    "head_name of non-integers": (lambda: c.head_name("a", None), HeadError, "'a', None"),
    "random seed str": (lambda: AttnOnlyTransformer.random(CFG, seed="a"), ConfigError, "'a'"),
    "random seed < 0": (lambda: AttnOnlyTransformer.random(CFG, seed=-1), ConfigError, "-1"),
    "random seed float": (lambda: AttnOnlyTransformer.random(CFG, seed=1.5), ConfigError, "1.5"),
    "random dtype int": (
        lambda: AttnOnlyTransformer.random(CFG, dtype=np.int32),
        WeightError,
        "float32 or float64, got int32",
    ),
    "random dtype float16": (
        lambda: AttnOnlyTransformer.random(CFG, dtype=np.float16),
        WeightError,
        "got float16",
    ),
    "random dtype unknown": (
        lambda: AttnOnlyTransformer.random(CFG, dtype="banana"),
        WeightError,
        "'banana' is not a numpy dtype",
    ),
    "causal_softmax of a vector": (lambda: c.causal_softmax(np.zeros(3)), ShapeError, r"\[3\]"),
    "causal_softmax of strings": (lambda: c.causal_softmax("ab"), WeightError, "dtype <U2"),
    "causal_softmax empty": (lambda: c.causal_softmax(np.zeros((0, 0))), ShapeError, "q ≤ k"),
    "causal_softmax query without key": (
        lambda: c.causal_softmax(np.zeros((3, 2))),
        ShapeError,
        r"\[3, 2\]",
    ),
    "FactoredMatrix / 0": (lambda: FACTORED / 0, WeightError, "by zero"),
    "FactoredMatrix row out of range": (lambda: FACTORED[5, 0], ShapeError, r"M\[5, 0\]"),
    "FactoredMatrix index of strings": (lambda: FACTORED[0, "a"], ShapeError, "'a'"),
}


@pytest.mark.parametrize("case", CORE.values(), ids=CORE.keys())
def test_core_bad_input(case: Case) -> None:
    _raises(*case)


def test_causal_softmax_takes_lists_and_extreme_gaps_without_warnings() -> None:
    with np.errstate(all="raise"):
        pattern = c.causal_softmax([[1e308, 0.0], [-1e308, 1e308]])
    np.testing.assert_array_equal(pattern, [[1.0, 0.0], [0.0, 1.0]])


def test_token_ids_report_the_first_bad_id_of_any_shape() -> None:
    with pytest.raises(TokenError, match=r"targets: id -2 at index \(1, 0\) is negative"):
        c.model.token_ids([[0, 1], [-2, 3]], "targets")
    with pytest.raises(
        TokenError, match=r"id 9 at index \(0,\) is outside the vocabulary \[0, 7\)"
    ):
        c.model.token_ids([9], "x", 7)
    np.testing.assert_array_equal(c.model.token_ids(np.array([1, 2], np.uint8), "x", 7), [1, 2])


# ---------------------------------------------------------------------- FactoredMatrix at scale
@pytest.mark.parametrize(
    ("scale", "dtype"),
    [(1e6, np.float32), (1e12, np.float32), (1e30, np.float32), (1e150, np.float64)],
)
def test_factored_spectra_beyond_the_range_of_the_product(scale: float, dtype: Any) -> None:
    """Norm, trace and eigenvalues of a product whose entries overflow its dtype are finite and
    agree with the exact float64 computation on exactly rescaled factors."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((5, 2)), rng.standard_normal((2, 5))
    M = FactoredMatrix((A * scale).astype(dtype), (B * scale).astype(dtype))
    a, b = M.A.astype(np.float64) / scale, M.B.astype(np.float64) / scale  # exact to rounding
    product = a @ b  # the product at unit scale, in float64
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert M.norm() == pytest.approx(np.linalg.norm(product) * scale**2, rel=tol)
    assert M.trace() == pytest.approx(np.trace(product) * scale**2, rel=tol)
    expected = np.sort_complex(np.linalg.eigvals(b @ a) * scale**2)
    np.testing.assert_allclose(np.sort_complex(M.eigenvalues()), expected, rtol=tol)
    assert M.rank == 2


def test_factored_products_beyond_the_dtype_raise() -> None:
    M = FactoredMatrix(np.full((3, 2), 1e30, np.float32), np.full((2, 3), 1e30, np.float32))
    with pytest.raises(NumericalError, match="float32"):
        M.AB  # noqa: B018
    with pytest.raises(NumericalError, match="float32"):
        M.singular_values  # noqa: B018
    huge = FactoredMatrix(np.full((3, 2), 1e200), np.full((2, 3), 1e200))
    with pytest.raises(NumericalError, match="float64"):
        huge.norm()


def test_metadata_must_be_strict_json() -> None:
    """NaN is not JSON: a model file would carry it as a non-standard token."""
    with pytest.raises(ConfigError, match="JSON"):
        MODEL.replace(metadata={"score": float("nan")})
