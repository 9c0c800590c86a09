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
import sympy as sp

import circuits as c
import circuits.analysis as ca
import circuits.testing as ct
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
    construct,
    plots,
    render,
    verify,
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


# ---------------------------------------------------------------------- analysis
_EXPANSION = c.path_expansion(MODEL)
_CONTRIBUTIONS = _EXPANSION.contributions(CACHE, TOKENS)
_OV = c.ov_circuit(MODEL, "0.0")

ANALYSIS: dict[str, Case] = {
    "composition kinds empty": (
        lambda: c.all_composition_scores(MODEL, kinds=()),
        c.AnalysisError,
        r"non-empty collection .* got \(\)",
    ),
    "composition kinds None": (
        lambda: c.all_composition_scores(MODEL, kinds=None),  # type: ignore[arg-type]
        c.AnalysisError,
        "got None",
    ),
    "baseline seed < 0": (
        lambda: c.composition_baseline(MODEL, n_samples=2, seed=-1),
        ConfigError,
        "seed must be an integer ≥ 0, got -1",
    ),
    "behaviour seed str": (lambda: c.behaviour_scores(MODEL, seed="x"), ConfigError, "'x'"),
    "positivity of strings": (
        lambda: ca.eigenvalue_positivity("abc"),
        c.AnalysisError,
        "numbers, got <U3",
    ),
    "positivity axis": (
        lambda: ca.eigenvalue_positivity(np.ones((2, 2)), axis=5),
        c.AnalysisError,
        "axis 5",
    ),
    "positivity of infinity": (
        lambda: ca.eigenvalue_positivity(np.array([np.inf, 1.0])),
        NumericalError,
        "infinite",
    ),
    "top_entries labels short": (
        lambda: ca.top_entries(_OV, 3, row_labels=["a"]),
        c.AnalysisError,
        "row_labels: expected 7 labels",
    ),
    "top_diagonal labels short": (
        lambda: ca.top_copied_tokens(MODEL, "0.0", labels=["a"]),
        c.AnalysisError,
        "labels: expected 7 labels",
    ),
    "column_top labels short": (
        lambda: ca.column_top(_OV, 6, col_labels=["a"]),
        c.AnalysisError,
        "col_labels: expected 7",
    ),
    "top_entries of a dense array": (
        lambda: ca.top_entries(np.ones((3, 3)), 2),  # type: ignore[arg-type]
        c.AnalysisError,
        "expected a FactoredMatrix .* got ndarray",
    ),
    "attribution without a cache": (
        lambda: c.head_attribution(MODEL, TOKENS),  # type: ignore[arg-type]
        ConfigError,
        "cache: expected an ActivationCache .* got AttnOnlyTransformer",
    ),
    "recovery mask keeps nothing": (
        lambda: c.circuit_recovery(_CONTRIBUTIONS, _EXPANSION, mask=np.zeros((2, 6), bool)),
        c.AnalysisError,
        "keeps no entry",
    ),
    "recovery mask of ints": (
        lambda: c.circuit_recovery(_CONTRIBUTIONS, _EXPANSION, mask=np.ones((2, 6), int)),
        c.AnalysisError,
        r"booleans of shape \[2, 6\], got int64",
    ),
    "recovery circuit None": (
        lambda: c.circuit_recovery(_CONTRIBUTIONS, None),  # type: ignore[arg-type]
        c.AnalysisError,
        "got NoneType",
    ),
    "recovery circuit of node tuples": (
        lambda: c.circuit_recovery(_CONTRIBUTIONS, [("embed", "unembed")]),  # type: ignore[list-item]
        c.AnalysisError,
        "items of type tuple",
    ),
    "recovery of head attributions": (
        lambda: c.circuit_recovery(c.head_attribution(CACHE, TOKENS), _EXPANSION),  # type: ignore[arg-type]
        c.AnalysisError,
        "got Contributions",
    ),
    "ranked mask keeps nothing": (
        lambda: _CONTRIBUTIONS.ranked(np.zeros((2, 6), bool)),
        c.PathError,
        "keeps no entry",
    ),
    "ablate_paths of None": (
        lambda: ca.ablate_paths(MODEL, CACHE, None),  # type: ignore[arg-type]
        c.AnalysisError,
        "got NoneType",
    ),
    "ablate_heads heads=5": (
        lambda: c.ablate_heads(MODEL, TOKENS, 5),  # type: ignore[arg-type]
        HeadError,
        "heads: expected names",
    ),
    "order_importance max_order < 0": (
        lambda: c.order_importance(MODEL, TOKENS, max_order=-1),
        c.AnalysisError,
        "max_order must be an integer ≥ 0 or None, got -1",
    ),
    "order_importance max_order float": (
        lambda: c.order_importance(MODEL, TOKENS, max_order=1.5),  # type: ignore[arg-type]
        c.AnalysisError,
        "got 1.5",
    ),
    "loss of negative tokens": (
        lambda: ca.next_token_loss(np.zeros((2, 6, 7)), -TOKENS),
        TokenError,
        "id -1 at index",
    ),
    "loss of tokens beyond the logits": (
        lambda: ca.next_token_loss(np.zeros((2, 6, 7)), TOKENS + 10),
        TokenError,
        r"outside the vocabulary \[0, 7\)",
    ),
    "loss of float tokens": (
        lambda: ca.next_token_loss(np.zeros((2, 6, 7)), TOKENS * 1.0),
        TokenError,
        "integer token ids",
    ),
    "loss of NaN logits": (
        lambda: ca.next_token_loss(np.full((2, 6, 7), np.nan), TOKENS),
        WeightError,
        "logits: contains a non-finite value",
    ),
    "loss of string logits": (
        lambda: ca.next_token_loss("a", TOKENS),
        WeightError,
        "logits: expected a real array",
    ),
}


@pytest.mark.parametrize("case", ANALYSIS.values(), ids=ANALYSIS.keys())
def test_analysis_bad_input(case: Case) -> None:
    _raises(*case)


def test_one_head_alone_may_be_ablated() -> None:
    """A single name or pair is one head, not a sequence of characters or integers."""
    expected = c.ablate_heads(MODEL, TOKENS, ["0.1"])
    np.testing.assert_array_equal(c.ablate_heads(MODEL, TOKENS, "0.1"), expected)
    np.testing.assert_array_equal(c.ablate_heads(MODEL, TOKENS, (0, 1)), expected)
    assert CFG.resolve_heads(["0.1", (0, 1), "1.0"]) == [(0, 1), (1, 0)]


def _scaled(model: AttnOnlyTransformer, scale: float, dtype: Any) -> AttnOnlyTransformer:
    return model.replace(
        **{
            k: (np.asarray(v, np.float64) * scale).astype(dtype)
            for k, v in model.parameters().items()
        }
    )


@pytest.mark.parametrize("scale", [1e6, 1e30, 1e-30])
def test_weight_analyses_of_float32_models_at_extreme_scales(scale: float) -> None:
    """Scores are invariant to scaling every weight; at 1e30 (products beyond float32) and 1e-30
    (products below its normal range) they must still match the unscaled model's, not overflow
    to NaN or an error, nor lose their precision to subnormal numbers."""
    base = AttnOnlyTransformer.random(CFG, seed=3)
    big = _scaled(base, scale, np.float32)
    reference = _scaled(base, 1.0, np.float32)
    for analysis in (c.copying_scores, ca.qk_positivity, c.prefix_matching_scores):
        np.testing.assert_allclose(analysis(big), analysis(reference), atol=1e-4)
    for kind, values in c.all_composition_scores(big).items():
        np.testing.assert_allclose(values, c.all_composition_scores(reference)[kind], atol=1e-5)
    ratio = np.exp(np.log(scale) * 4)  # W_U W_O W_V W_E: four scaled weights
    assert c.ov_circuit(_scaled(base, scale, np.float64), "1.1").norm() == pytest.approx(
        c.ov_circuit(base, "1.1").norm() * ratio, rel=1e-9
    )


def test_circuits_beyond_float32_raise_numerical_error() -> None:
    big = _scaled(MODEL, 1e30, np.float32)
    with pytest.raises(NumericalError, match="float32"):
        c.ov_circuit(big, "0.0")
    with pytest.raises(NumericalError, match="float32"):
        c.virtual_ov_circuit(big, "0.0", "1.0")


def test_circuit_norm_of_a_float32_model_at_scale_1e6() -> None:
    """‖W_U W_OV W_E‖ ≈ 1e24 is a float32 number, but the sum of squares is not."""
    base = AttnOnlyTransformer.random(CFG, seed=3)
    norm = c.ov_circuit(_scaled(base, 1e6, np.float32), "1.1").norm()
    assert norm == pytest.approx(c.ov_circuit(base, "1.1").norm() * 1e24, rel=1e-5)


# ---------------------------------------------------------------------- graph, paths, symbols
_GRAPH = c.computation_graph(MODEL)
_QK = c.qk_expansion(MODEL, "1.0")
_A = sp.MatrixSymbol("A", 2, 3)

PATHS: dict[str, Case] = {
    "graph of None": (lambda: c.computation_graph(None), ConfigError, "got NoneType"),  # type: ignore[arg-type]
    "paths of a model, not a graph": (
        lambda: list(c.iter_paths(MODEL)),  # type: ignore[arg-type]
        c.PathError,
        "computation_graph.* got AttnOnlyTransformer",
    ),
    "source of an int": (lambda: c.count_paths(_GRAPH, source=5), c.PathError, "source 5"),  # type: ignore[arg-type]
    "order of a float": (lambda: c.count_paths(_GRAPH, order=1.5), c.PathError, "got 1.5"),  # type: ignore[arg-type]
    "through an int": (lambda: c.count_paths(_GRAPH, through=5), c.PathError, "5 is not a head"),  # type: ignore[arg-type]
    "through a 1-tuple": (
        lambda: c.count_paths(_GRAPH, through=[(0,)]),  # type: ignore[list-item]
        c.PathError,
        r"\(0,\) is not a head",
    ),
    "through a pair of strings": (
        lambda: c.count_paths(_GRAPH, through=[("0", "1")]),  # type: ignore[list-item]
        c.PathError,
        r"\('0', '1'\) is not a head",
    ),
    "parse_node of a list": (lambda: c.graph.parse_node(["a"]), c.PathError, "strings"),  # type: ignore[arg-type]
    "filter kind of an int": (lambda: _EXPANSION.filter(kind=5), c.PathError, r"\['5'\]"),  # type: ignore[arg-type]
    "filter where not callable": (
        lambda: _EXPANSION.filter(where=5),  # type: ignore[arg-type]
        c.PathError,
        "where: expected a predicate",
    ),
    "qk filter where not callable": (
        lambda: _QK.filter(where="x"),  # type: ignore[arg-type]
        c.PathError,
        "where",
    ),
    "term of non-names": (lambda: _EXPANSION.term(5), c.PathError, "5 → unembed"),  # type: ignore[arg-type]
    "contribution of an int": (lambda: _CONTRIBUTIONS[5], c.PathError, "no term 5"),
    "qk term of None": (lambda: _QK.term(None, None), c.PathError, "no term"),  # type: ignore[arg-type]
    "pattern_value batch float": (
        lambda: next(iter(_EXPANSION)).pattern_value(CACHE, 1.5),  # type: ignore[arg-type]
        ShapeError,
        "batch 1.5",
    ),
    "pattern_values of None": (
        lambda: c.symbolic.pattern_values(None),  # type: ignore[arg-type]
        ConfigError,
        "got NoneType",
    ),
    "substitute a wrong shape": (
        lambda: c.symbolic.substitute(_A, {"A": np.ones((4, 4))}),
        ShapeError,
        r"A: expected shape \[2, 3\], got \[4, 4\]",
    ),
    "substitute a wrong sequence length": (
        lambda: c.symbolic.substitute(
            sp.MatrixSymbol("P", c.symbolic.SEQ_LEN, 1), {"P": np.ones((3, 1)), "n": 4}
        ),
        ShapeError,
        r"P: expected shape \[n, 1\], got \[3, 1\]",
    ),
    "substitute n=2.5": (
        lambda: c.symbolic.substitute(sp.Identity(c.symbolic.SEQ_LEN), {"n": 2.5}),
        WeightError,
        "integer ≥ 1, got 2.5",
    ),
    "substitute n=-1": (
        lambda: c.symbolic.substitute(sp.Identity(c.symbolic.SEQ_LEN), {"n": -1}),
        WeightError,
        "got -1",
    ),
    "substitute alpha=0": (
        lambda: c.symbolic.substitute(_A / c.symbolic.ALPHA, {"A": np.ones((2, 3)), "alpha": 0}),
        WeightError,
        "not finite",
    ),
    "substitute alpha of a string": (
        lambda: c.symbolic.substitute(_A / c.symbolic.ALPHA, {"A": np.ones((2, 3)), "alpha": "x"}),
        WeightError,
        "numbers or sympy expressions",
    ),
    "substitute values None": (
        lambda: c.symbolic.substitute(_A, None),  # type: ignore[arg-type]
        WeightError,
        "values: expected a mapping",
    ),
    "weight_values of too few layers": (
        lambda: c.symbolic.weight_values({"W_Q": np.ones((1, 2, 3, 6))}, CFG),
        ShapeError,
        r"W_Q\[1\]\[0\]",
    ),
}


@pytest.mark.parametrize("case", PATHS.values(), ids=PATHS.keys())
def test_paths_bad_input(case: Case) -> None:
    _raises(*case)


def test_single_nodes_index_contributions_and_qk_terms() -> None:
    """A node name alone is a one-node path, not a sequence of characters."""
    bias = c.path_expansion(MODEL.replace(b_U=np.ones(7))).contributions(CACHE, TOKENS)
    np.testing.assert_array_equal(bias["b_U"], np.ones((2, 6)))
    assert _QK.term("embed", "embed").key == (("embed", "1.0"), ("embed", "1.0"))


# ---------------------------------------------------------------------- construction
_LAYOUT = construct.ResidualLayout.of(
    construct.Block.one_hot("tok", range(3)), construct.Block.one_hot("pos", range(4))
)
_MAP = construct.LinearMap.from_action(_LAYOUT, "tok", "tok")
_FORM = construct.BilinearForm.from_action(_LAYOUT, "pos", "pos", lambda i: i - 1 if i else None)
_HEAD = construct.HeadSpec(_FORM, _MAP)
_SPEC = {
    "layout": _LAYOUT,
    "layers": ((_HEAD,),),
    "vocab_size": 3,
    "n_ctx": 4,
    "position_block": "pos",
    "readout_block": "tok",
}
_SYMBOLIC = c.induction_circuit(5, 5, beta0=sp.Symbol("b")).symbolic()

CONSTRUCT: dict[str, Case] = {
    "code seed < 0": (lambda: construct.random_code(3, 3, seed=-1), ConfigError, "got -1"),
    "induction seed str": (
        lambda: c.induction_model(5, 5, code="random", d_code=3, seed="x"),  # type: ignore[arg-type]
        ConfigError,
        "'x'",
    ),
    "induction d_code True": (
        lambda: c.induction_model(5, 5, code="random", d_code=True),  # type: ignore[arg-type]
        ConfigError,
        "d_code, an integer ≥ 1; got True",
    ),
    "induction negative sympy scale": (
        lambda: c.induction_circuit(5, 5, beta0=sp.Integer(-3)),
        ConfigError,
        "beta0 must be a finite number > 0 .* got -3",
    ),
    "induction infinite sympy scale": (
        lambda: c.induction_circuit(5, 5, gamma=sp.zoo),
        ConfigError,
        "gamma",
    ),
    "coherence chunk 0": (lambda: construct.coherence(np.eye(3), chunk=0), c.LayoutError, "got 0"),
    "coherence chunk < 0": (
        lambda: construct.coherence(np.eye(3), chunk=-1),
        c.LayoutError,
        "got -1",
    ),
    "block labels None": (lambda: construct.Block.one_hot("a", None), c.LayoutError, "got None"),  # type: ignore[arg-type]
    "block labels unhashable": (
        lambda: construct.Block.one_hot("a", [[1], [2]]),
        c.LayoutError,
        "hashable",
    ),
    "block code with a zero direction": (
        lambda: construct.Block.coded("a", ["x", "y"], [[1.0, 0.0], [0.0, 0.0]]),
        c.LayoutError,
        "label 'y' is zero",
    ),
    "action not callable": (
        lambda: construct.LinearMap.from_action(_LAYOUT, "tok", "pos", 5),  # type: ignore[arg-type]
        c.ConstructionError,
        "action is a function, a mapping .* got 5",
    ),
    "action weight NaN": (
        lambda: construct.LinearMap.from_action(_LAYOUT, "tok", "pos", lambda t: {t: float("nan")}),
        c.ConstructionError,
        "weight nan",
    ),
    "action weight str": (
        lambda: construct.LinearMap.from_action(_LAYOUT, "tok", "pos", lambda t: {t: "x"}),
        c.ConstructionError,
        "weight 'x'",
    ),
    "scale overflowing": (lambda: _MAP * 1e300 * 1e300, c.ConstructionError, "got inf"),
    "apply to a scalar": (
        lambda: _MAP.apply(1.0),
        c.LayoutError,
        r"expected 7 rows, got shape \[\]",
    ),
    "apply to NaN": (lambda: _MAP.apply(np.full(7, np.nan)), WeightError, "x: contains"),
    "score a short query": (
        lambda: _FORM.score(np.ones(3), np.ones(7)),
        ShapeError,
        r"query: expected shape \[7\]",
    ),
    "substitute NaN": (
        lambda: construct.LinearMap.from_action(_LAYOUT, "tok", "tok", scale=sp.Symbol("g")).matrix(
            {"g": float("nan")}
        ),
        c.ConstructionError,
        "finite real number, got nan",
    ),
    "substitute a pole": (
        lambda: construct.LinearMap.from_action(
            _LAYOUT, "tok", "tok", scale=1 / sp.Symbol("g")
        ).matrix({"g": 0}),
        c.ConstructionError,
        "finite real number",
    ),
    "head of swapped maps": (
        lambda: construct.HeadSpec(_MAP, _FORM),
        c.ConstructionError,
        "got LinearMap",
    ),  # type: ignore[arg-type]
    "factorise an array": (
        lambda: construct.factorise(np.eye(3)),
        c.ConstructionError,
        "got ndarray",
    ),  # type: ignore[arg-type]
    "head_weights d_head str": (
        lambda: construct.head_weights(_HEAD, "3"),  # type: ignore[arg-type]
        c.ConstructionError,
        "d_head must be an integer ≥ 1 or None, got '3'",
    ),
    "head_weights attn_scale 0": (
        lambda: construct.head_weights(_HEAD, attn_scale=0.0),
        c.ConstructionError,
        "attn_scale .* got 0.0",
    ),
    "spec layers not nested": (
        lambda: construct.CircuitSpec(**{**_SPEC, "layers": (_HEAD,)}),
        c.ConstructionError,
        "each a sequence of HeadSpec",
    ),
    "spec layers None": (
        lambda: construct.CircuitSpec(**{**_SPEC, "layers": None}),
        c.ConstructionError,
        "got NoneType",
    ),
    "spec vocab float": (
        lambda: construct.CircuitSpec(**{**_SPEC, "vocab_size": 2.0}),
        ConfigError,
        "vocab_size must be an integer ≥ 1, got 2.0",
    ),
    "assemble None": (lambda: construct.assemble(None), c.ConstructionError, "got NoneType"),  # type: ignore[arg-type]
    "symbolic substitute str": (
        lambda: _SYMBOLIC.substitute({"b": "x"}),
        c.ConstructionError,
        r"\['b'\] need real numbers",
    ),
    "symbolic substitute None": (
        lambda: _SYMBOLIC.substitute(None),  # type: ignore[arg-type]
        c.ConstructionError,
        "values: expected a mapping",
    ),
}


@pytest.mark.parametrize("case", CONSTRUCT.values(), ids=CONSTRUCT.keys())
def test_construct_bad_input(case: Case) -> None:
    _raises(*case)


@pytest.mark.parametrize(
    ("scale", "dtype"), [(1e200, np.float64), (1e-200, np.float64), (1e30, np.float32)]
)
def test_coherence_at_extreme_scales(scale: float, dtype: Any) -> None:
    """Coherence is scale-free: norms of huge or tiny columns neither overflow nor underflow."""
    code = construct.random_code(6, 4, seed=1)
    expected = construct.coherence(code)
    assert construct.coherence((code * scale).astype(dtype)) == pytest.approx(expected, rel=1e-5)


def test_numpy_integer_code_sizes_are_integers() -> None:
    model = c.induction_model(5, 5, code="random", d_code=np.int64(4))
    assert model.metadata["construction"]["d_code"] == 4


# ---------------------------------------------------------------------- verification
_INDUCTION = c.induction_model(5, 6)

VERIFY: dict[str, Case] = {
    "certify coherence str": (
        lambda: verify.certify_induction(vocab_size=5, n_ctx=6, coherence="x"),  # type: ignore[arg-type]
        c.VerificationError,
        "got 'x'",
    ),
    "certify a path": (
        lambda: verify.certify_induction("model.npz"),  # type: ignore[arg-type]
        c.VerificationError,
        "expected an AttnOnlyTransformer, got str",
    ),
    "unknown parameter": (
        lambda: verify.pair_probabilities(vocab_size=5, n_ctx=6, foo=1),
        c.VerificationError,
        r"unknown parameters \['foo'\]",
    ),
    "brute force batch 0": (
        lambda: verify.brute_force(_INDUCTION, max_length=4, batch=0, progress=False),
        c.VerificationError,
        "batch must be an integer ≥ 1, got 0",
    ),
    "brute force progress of a string": (
        lambda: verify.brute_force(_INDUCTION, max_length=4, progress="x"),  # type: ignore[arg-type]
        c.VerificationError,
        "progress: expected True, False or a text stream, got 'x'",
    ),
    "counterexample max_length str": (
        lambda: verify.find_counterexample(_INDUCTION, max_length="x"),  # type: ignore[arg-type]
        c.VerificationError,
        "max_length must be an integer ≥ 2, got 'x'",
    ),
    "search restarts 0": (
        lambda: verify.adversarial_search(_INDUCTION, restarts=0),
        c.VerificationError,
        "restarts must be an integer ≥ 1, got 0",
    ),
    "search steps < 0": (
        lambda: verify.adversarial_search(_INDUCTION, steps=-1),
        c.VerificationError,
        "steps .* got -1",
    ),
    "search population 0": (
        lambda: verify.adversarial_search(_INDUCTION, population=0),
        c.VerificationError,
        "population .* got 0",
    ),
    "search seed < 0": (
        lambda: verify.adversarial_search(_INDUCTION, seed=-1),
        ConfigError,
        "seed must be an integer ≥ 0, got -1",
    ),
    "family of floats": (
        lambda: verify.family_targets([[1.5, 2.5, 1.5]]),
        TokenError,
        "integer token ids",
    ),
    "target out of range": (
        lambda: verify.target_probabilities(_INDUCTION, [[0, 1, 2, 1]], [7]),
        TokenError,
        r"targets: id 7 .* outside the vocabulary \[0, 5\)",
    ),
    "target negative": (
        lambda: verify.target_probabilities(_INDUCTION, [[0, 1, 2, 1]], [-1]),
        TokenError,
        "id -1",
    ),
    "targets of the wrong shape": (
        lambda: verify.target_probabilities(_INDUCTION, [[0, 1, 2, 1]], [1, 2]),
        c.VerificationError,
        r"one per sequence, shape \[1\], got \[2\]",
    ),
    "target tokens of floats": (
        lambda: verify.target_probabilities(_INDUCTION, [[0, 1.5, 2, 1]], [1]),
        TokenError,
        "integer",
    ),
    "target tokens unbatched": (
        lambda: verify.target_probabilities(_INDUCTION, [0, 1, 2, 1], [1]),
        c.VerificationError,
        r"\[batch, length\], got \[4\]",
    ),
}


@pytest.mark.parametrize("case", VERIFY.values(), ids=VERIFY.keys())
def test_verify_bad_input(case: Case) -> None:
    _raises(*case)


def test_search_of_the_shortest_family_with_one_ordinary_token() -> None:
    """Vocabulary {BOS, a}: the only member of length 3 is BOS a a, and the search finds it."""
    result = verify.adversarial_search(c.induction_model(2, 4), length=3, restarts=1, steps=1)
    np.testing.assert_array_equal(result.tokens, [0, 1, 1])
    assert 0.0 < result.min_probability <= 1.0


# ---------------------------------------------------------------------- diagrams, plots, files
_NEXT = TOKENS[:1, :3]

OUTPUT: dict[str, Case] = {
    "composition of strings": (
        lambda: render.circuit_diagram(MODEL, composition={"Q": "abc"}),
        WeightError,
        "composition\\['Q'\\]",
    ),
    "edges at a NaN threshold": (
        lambda: render.composition_edges(MODEL, True, float("nan")),
        c.RenderError,
        "threshold must be a finite number, got nan",
    ),
    "roles not a mapping": (
        lambda: render.circuit_diagram(MODEL, roles=["0.0"]),  # type: ignore[arg-type]
        c.RenderError,
        "roles: expected a mapping",
    ),
    "role of an int": (
        lambda: render.circuit_diagram(MODEL, roles={"0.0": 5}),  # type: ignore[dict-item]
        c.RenderError,
        r"roles\['0.0'\]: .* got 5",
    ),
    "highlight an int": (
        lambda: render.circuit_diagram(MODEL, highlight=5),  # type: ignore[arg-type]
        c.PathError,
        "highlight: expected a collection",
    ),
    "highlight a path of an int": (
        lambda: render.circuit_diagram(MODEL, highlight=[5]),  # type: ignore[list-item]
        c.PathError,
        "got 5",
    ),
    "save a model as a diagram": (
        lambda: render.save_diagram(MODEL, "x.svg"),  # type: ignore[arg-type]
        c.RenderError,
        "got AttnOnlyTransformer",
    ),
    "attention plot batch float": (
        lambda: plots.attention_plot(CACHE, "0.0", batch=0.5),  # type: ignore[arg-type]
        c.RenderError,
        "batch 0.5",
    ),
    "attention plot labels int": (
        lambda: plots.attention_plot(CACHE, "0.0", labels=5),  # type: ignore[arg-type]
        c.RenderError,
        "labels: expected a collection, got 5",
    ),
    "attention plot of a model": (
        lambda: plots.attention_plot(MODEL, "0.0"),  # type: ignore[arg-type]
        ConfigError,
        "got AttnOnlyTransformer",
    ),
    "circuit plot rows of floats": (
        lambda: plots.circuit_plot(_OV, rows=[1.5]),
        c.RenderError,
        r"indices must be in \[0, 7\), as integers",
    ),
    "circuit plot rows of bools": (
        lambda: plots.circuit_plot(_OV, rows=[True]),
        c.RenderError,
        "as integers",
    ),
    "circuit plot rows an int": (
        lambda: plots.circuit_plot(_OV, rows=5),  # type: ignore[arg-type]
        c.RenderError,
        "rows: expected a collection, got 5",
    ),
    "circuit plot labels an int": (
        lambda: plots.circuit_plot(_OV, row_labels=5),  # type: ignore[arg-type]
        c.RenderError,
        "row_labels: expected a collection",
    ),
    "zoo dtype int": (
        lambda: c.zoo.load("attn2l-induction", dtype=np.int32),
        WeightError,
        "float32 or float64, got int32",
    ),
    "zoo dtype unknown": (
        lambda: c.zoo.load("attn2l-induction", dtype="banana"),
        WeightError,
        "'banana'",
    ),
    "save None": (lambda: c.save(None, "x.npz"), ConfigError, "got NoneType"),  # type: ignore[arg-type]
    "state dict None": (
        lambda: AttnOnlyTransformer.from_transformer_lens(None),  # type: ignore[arg-type]
        c.ModelFileError,
        "got NoneType",
    ),
    "state dict of int keys": (
        lambda: AttnOnlyTransformer.from_transformer_lens({1: np.ones(2)}),  # type: ignore[dict-item]
        c.ModelFileError,
        r"unexpected keys \['1'\]",
    ),
}


@pytest.mark.parametrize("case", OUTPUT.values(), ids=OUTPUT.keys())
def test_output_bad_input(case: Case) -> None:
    _raises(*case)


def test_odd_metadata_roles_do_not_break_a_diagram() -> None:
    """Metadata is free-form JSON: roles of the wrong type are ignored, not a crash."""
    odd = MODEL.replace(metadata={"roles": {"0.0": 5, "1.1": ["induction"]}, "head_roles": "x"})
    assert render.head_roles(odd) == {"1.1": ["induction"]}
    assert "induction" in render.circuit_diagram(odd, title=5).source  # type: ignore[arg-type]


def test_overrides_error_names_the_file_once(tmp_path: Any) -> None:
    path = c.save(MODEL, tmp_path / "m.npz")
    with pytest.raises(c.ModelFileError) as caught:
        c.load(path, n_ctx=4)
    assert str(caught.value).count(str(path)) == 1


# ---------------------------------------------------------------------- circuits.testing
TESTING: dict[str, Case] = {
    "strategy of a non-model": (
        lambda: ct.token_sequences(None),  # type: ignore[arg-type]
        ConfigError,
        "got NoneType",
    ),
    "models of int weights": (
        lambda: ct.models(CFG, dtype=np.int32),
        WeightError,
        "got int32",
    ),
    "positions of float tokens": (
        lambda: ct.previous_token_positions([1.5, 2.5]),
        TokenError,
        "integer token ids",
    ),
    "positions of a 3-d array": (
        lambda: ct.induction_positions(np.zeros((2, 2, 2), int)),
        TokenError,
        r"\[pos\] or \[batch, pos\]",
    ),
    "target of negative ids": (
        lambda: ct.induction_target([-1, 2, -1]),
        TokenError,
        "id -1 at index",
    ),
    "orthogonal n = 0": (lambda: ct.orthogonal_matrices(0), ConfigError, "n must be .* got 0"),
    "invertible n float": (lambda: ct.invertible_matrices(2.5), ConfigError, "got 2.5"),  # type: ignore[arg-type]
    "invertible condition inf": (
        lambda: ct.invertible_matrices(2, condition=float("inf")),
        ConfigError,
        "condition: expected a finite number ≥ 1, got inf",
    ),
    "invertible leading of a string": (
        lambda: ct.invertible_matrices(2, leading="ab"),  # type: ignore[arg-type]
        ConfigError,
        "leading",
    ),
    "factored scale NaN": (
        lambda: ct.factored_matrices(scale=float("nan")),
        ConfigError,
        "scale: expected a finite number > 0, got nan",
    ),
    "singular residual basis": (
        lambda: ct.change_residual_basis(MODEL, np.zeros((6, 6))),
        WeightError,
        "M: .* singular",
    ),
    "singular head bases": (
        lambda: ct.change_head_bases(MODEL, np.zeros((2, 2, 3, 3)), np.zeros((2, 2, 3, 3))),
        WeightError,
        "G: .* singular",
    ),
    "term of the wrong shape": (
        lambda: ct.assert_terms_sum_to([np.ones(3)], np.ones(4)),
        ShapeError,
        r"term 0: shape \[3\] does not fit the total's \[4\]",
    ),
    "terms None": (
        lambda: ct.assert_terms_sum_to(None, np.ones(3)),  # type: ignore[arg-type]
        ConfigError,
        "terms: expected a collection",
    ),
    "tolerance NaN": (
        lambda: ct.assert_terms_sum_to([np.ones(3)], 2 * np.ones(3), atol=float("nan")),
        ConfigError,
        "atol: expected a finite number ≥ 0, got nan",
    ),
    "tolerance < 0": (
        lambda: ct.assert_same_logits(MODEL, MODEL, TOKENS, rtol=-1.0),
        ConfigError,
        "rtol: .* got -1.0",
    ),
    "attention at_least NaN": (
        lambda: ct.assert_attends(CACHE, "0.0", ct.previous_token_positions, at_least=float("nan")),
        ConfigError,
        r"at_least: expected an attention weight in \[0, 1\], got nan",
    ),
    "attention at_least > 1": (
        lambda: ct.assert_attends(CACHE, "0.0", ct.previous_token_positions, at_least=2.0),
        ConfigError,
        "got 2.0",
    ),
}


@pytest.mark.parametrize("case", TESTING.values(), ids=TESTING.keys())
def test_testing_bad_input(case: Case) -> None:
    _raises(*case)


def test_qk_expansion_assertion_takes_one_head_by_name() -> None:
    """A head name is one head, not its characters."""
    ct.assert_qk_expansion_exact(MODEL, TOKENS, heads="1.1")
