"""The path expansion of the logits: exactness, counts, filters, contributions, symbolic forms."""

from __future__ import annotations

from functools import reduce
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import (
    AttnOnlyTransformer,
    ConfigError,
    FactoredMatrix,
    PathError,
    ShapeError,
    TokenError,
    computation_graph,
    path_expansion,
)
from circuits import testing as ct
from circuits.paths import PathTerm
from circuits.symbolic import ModelSymbols, pattern_values, weight_values

EXPANSION_CONFIGS = ct.configs(n_layers=(0, 4), n_heads=(1, 3), d_model=(1, 6), n_ctx=(1, 6))


def model_of(positions: str = "none", *, layers: int = 2, heads: int = 2, biases: bool = False,
             seed: int = 0, **sizes: int) -> AttnOnlyTransformer:  # fmt: skip
    cfg = {"n_layers": layers, "n_heads": heads, "d_model": 6, "d_head": 2, "d_vocab": 5,
           "n_ctx": 5, "positional_embedding_type": positions, **sizes}  # fmt: skip
    return AttnOnlyTransformer.random(cfg, seed=seed, biases=biases)


def run(model: AttnOnlyTransformer, seed: int = 1, batch: int = 2) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    shape = (batch, model.cfg.n_ctx)
    tokens = rng.integers(0, model.cfg.d_vocab, shape)
    logits, cache = model.run_with_cache(tokens)
    return logits, cache, rng.integers(0, model.cfg.d_vocab, shape)


def at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def frozen_pattern_logits(model: AttnOnlyTransformer, cache: Any) -> np.ndarray:
    """The forward pass of ``model`` with the patterns of ``cache`` (an independent reference)."""
    x = model.embed(cache.tokens)
    for layer in range(model.cfg.n_layers):
        update = model.b_O[layer]
        for head in range(model.cfg.n_heads):
            values = x @ model.W_V[layer, head].T + model.b_V[layer, head]
            update = update + (cache.pattern(layer, head) @ values) @ model.W_O[layer, head].T
        x = x + update
    result: np.ndarray = x @ model.W_U.T + model.b_U
    return result


def symbolic_contribution(
    term: PathTerm, model: AttnOnlyTransformer, cache: Any, batch: int
) -> Any:
    """``P @ W[:, inputs].T`` from the term's symbolic form with the model's arrays substituted."""
    values = {**weight_values(model.parameters(), model.cfg), **pattern_values(cache, batch)}
    patterns, weights = term.symbolic.substitute(values)
    W = weights.AB if isinstance(weights, FactoredMatrix) else np.asarray(weights)
    n = cache.tokens.shape[1]
    if term.part == "token":
        inputs = W[:, cache.tokens[batch]]
    elif term.part == "position":
        inputs = W[:, :n]
    else:
        inputs = W
    return np.asarray(patterns) @ inputs.T


# ---------------------------------------------------------------------------------- exactness
@given(ct.models(EXPANSION_CONFIGS), st.data())
def test_terms_sum_to_the_logits(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """Σ_paths term(cache) = forward(tokens) for 0–4 layers, every positional type, with biases."""
    tokens = data.draw(ct.token_sequences(model, batch=2))
    logits, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model)
    terms = [term.evaluate(cache) for term in expansion]
    assert all(t.shape == logits.shape for t in terms)
    np.testing.assert_allclose(np.sum(terms, axis=0), logits, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(expansion.evaluate(cache), logits, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("layers", range(5))
@pytest.mark.parametrize("positions", ["standard", "shortformer", "none"])
def test_every_depth_and_positional_type_with_biases(layers: int, positions: str) -> None:
    """The same exactness on fixed models of 0–4 layers of 3 heads, all biases nonzero."""
    model = model_of(positions, layers=layers, heads=3, biases=True, seed=layers)
    logits, cache, targets = run(model)
    expansion = path_expansion(model)
    assert len(expansion.filter(kind="bias")) > 0
    np.testing.assert_allclose(sum(t.evaluate(cache) for t in expansion), logits, rtol=0, atol=1e-9)
    np.testing.assert_allclose(expansion.evaluate(cache), logits, rtol=0, atol=1e-9)
    contributions = expansion.contributions(cache, targets)
    np.testing.assert_allclose(contributions.total(), at(logits, targets), rtol=0, atol=1e-9)


@given(ct.models(EXPANSION_CONFIGS), st.data())
def test_target_contributions_are_the_target_logits(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Each term's target contribution is its full contribution at the targets; they sum exactly."""
    tokens = data.draw(ct.token_sequences(model, batch=2))
    targets = data.draw(ct.token_sequences(model, length=tokens.shape[1], batch=2))
    logits, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model)
    contributions = expansion.contributions(cache, targets)
    assert contributions.values.shape == (len(expansion), *tokens.shape)
    for term, value in contributions:
        np.testing.assert_allclose(value, at(term.evaluate(cache), targets), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(value, term.evaluate(cache, targets=targets))
    np.testing.assert_allclose(contributions.total(), at(logits, targets), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(expansion.evaluate(cache, targets), at(logits, targets), atol=1e-9)


@given(ct.models(ct.configs(n_layers=(1, 3), n_heads=(1, 3)), biases=True), st.data())
def test_terms_through_a_head_add_up_to_its_output(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Paths ending at head h, plus its value bias, are W_U applied to what h writes."""
    tokens = data.draw(ct.token_sequences(model, batch=1))
    _, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model)
    for layer, head in model.cfg.heads():
        name = f"{layer}.{head}"
        ending = expansion.filter(where=lambda t, name=name: t.heads[-1:] == (name,))
        total = ending.evaluate(cache) + expansion.term(f"b_V[{name}]").evaluate(cache)
        expected = cache.head_output(layer, head) @ model.W_U.T
        np.testing.assert_allclose(total, expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("positions", ["standard", "shortformer", "none"])
def test_patterns_frozen_from_another_run(positions: str) -> None:
    """With a cache of another model, the terms give that run's patterns with these weights."""
    model = model_of(positions, layers=3, biases=True)
    other = model_of(positions, layers=3, biases=True, seed=7)
    _, cache, _ = run(other)
    expansion = path_expansion(model)
    reference = frozen_pattern_logits(model, cache)
    np.testing.assert_allclose(expansion.evaluate(cache), reference, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(sum(t.evaluate(cache) for t in expansion), reference, atol=1e-10)


def test_large_scores_stay_exact_and_finite() -> None:
    """Scores of order 1e6 make patterns one-hot; the expansion stays finite and exact."""
    base = model_of("standard", layers=2, heads=3, biases=True)
    model = base.replace(W_Q=base.W_Q * 1e6)
    logits, cache, targets = run(model)
    assert np.abs(cache.scores(1, 0)).max() > 1e4
    expansion = path_expansion(model)
    summed = expansion.evaluate(cache)
    assert np.all(np.isfinite(summed))
    np.testing.assert_allclose(summed, logits, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(
        expansion.contributions(cache, targets).total(), at(logits, targets), atol=1e-9
    )


def test_float32_models_expand_in_float32() -> None:
    cfg = model_of("standard", biases=True).cfg
    model = AttnOnlyTransformer.random(cfg, seed=3, biases=True, dtype=np.float32)
    logits, cache, targets = run(model)
    expansion = path_expansion(model)
    assert expansion.evaluate(cache).dtype == np.float32
    assert expansion.contributions(cache, targets).values.dtype == np.float32
    np.testing.assert_allclose(expansion.evaluate(cache), logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------- structure
@given(ct.models(EXPANSION_CONFIGS))
def test_number_and_kinds_of_terms(model: AttnOnlyTransformer) -> None:
    """(1+H)^L terms per embedding, (1+H)^(L-l-1) per bias of layer l, one for b_U."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    expansion = path_expansion(model, biases="all")
    embeddings = 2 if model.cfg.positional_embedding_type == "standard" else 1
    per_layer = sum((H + 1) * (1 + H) ** (L - layer - 1) for layer in range(L))
    assert len(expansion) == embeddings * (1 + H) ** L + per_layer + 1
    assert len(expansion.filter(source="embed")) == (1 + H) ** L
    kinds = {
        kind: len(expansion.filter(kind=kind)) for kind in ("direct", "head", "virtual", "bias")
    }
    assert kinds["direct"] == embeddings
    assert kinds["head"] == embeddings * L * H
    assert kinds["bias"] == per_layer + 1
    assert sum(kinds.values()) == len(expansion)
    for term in expansion:
        assert term.order == len(term.heads) == len(term.path) - 2
        assert term.path == (term.source, *term.heads, "unembed")
        assert (
            term.kind == "bias"
            if term.part == "bias"
            else ("direct", "head")[term.order]
            if term.order < 2
            else term.kind == "virtual"
        )


def test_shortformer_positions_never_reach_the_logits() -> None:
    expansion = path_expansion(model_of("shortformer"))
    assert {term.part for term in expansion} == {"token"}
    assert len(expansion.filter(source="position")) == 0


def test_filters_compose() -> None:
    expansion = path_expansion(model_of("standard", layers=3, biases=True))
    through = expansion.filter(through="1.0")
    assert len(through) > 0 and all("1.0" in t.heads for t in through)
    both = through.filter(through=[(2, 1)], order=[2, 3])
    assert [t.path for t in both] == [
        t.path for t in expansion if {"1.0", "2.1"} <= set(t.heads) and t.order in (2, 3)
    ]
    assert len(expansion.filter(order=1).filter(order=[1, 2])) == len(expansion.filter(order=1))
    assert len(expansion.filter(order=1).filter(order=2)) == 0
    tokens_only = expansion.filter(source="token").filter(source=["embed", "b_U"])
    assert {t.source for t in tokens_only} == {"embed"}
    virtual = expansion.filter(kind=["virtual", "head"]).filter(kind="virtual")
    assert len(virtual) == len([t for t in expansion if t.kind == "virtual"]) > 0
    chosen = expansion.filter(where=lambda t: t.order == 2).filter(
        where=lambda t: t.part == "token"
    )
    assert len(chosen) == len(list(chosen)) == 3 * 2 * 2


def test_terms_are_found_by_path() -> None:
    expansion = path_expansion(model_of("standard"))
    term = expansion.term("embed", "0.1", "1.0")
    assert term.path == ("embed", "0.1", "1.0", "unembed") and term.kind == "virtual"
    assert expansion.term("pos_embed", "unembed").kind == "direct"
    assert term == expansion.term("embed", "0.1", "1.0", "unembed") and hash(term) == hash(
        expansion.term("embed", "0.1", "1.0")
    )
    assert term in set(expansion)
    for bad in [
        ("embed", "1.0", "0.1"),
        ("0.1", "1.0"),
        ("embed", "0.0", "0.1"),
        ("b_U", "0.0"),
        ("nowhere",),
    ]:
        with pytest.raises(PathError, match="not a path"):
            expansion.term(*bad)
    with pytest.raises(PathError, match="not a path"):
        expansion.filter(order=0).term("embed", "0.1")
    with pytest.raises(PathError, match="unknown"):
        expansion.filter(kind="virtual-head")  # type: ignore[arg-type]


def test_an_expansion_of_a_graph_shares_it() -> None:
    model = model_of("standard", biases=True)
    graph = computation_graph(model, biases="all")
    expansion = path_expansion(graph)
    assert expansion.graph is graph and expansion.model is model
    with pytest.raises(ConfigError):
        path_expansion(nx.DiGraph())
    with pytest.raises(ConfigError):
        path_expansion("model")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- contributions
def test_contributions_index_group_and_rank() -> None:
    model = model_of("standard", layers=2, heads=3, biases=True)
    _, cache, targets = run(model)
    expansion = path_expansion(model)
    contributions = expansion.contributions(cache, targets)
    term = expansion.term("embed", "0.2", "1.1")
    np.testing.assert_array_equal(contributions[term], contributions["embed", "0.2", "1.1"])
    np.testing.assert_allclose(contributions[term], term.evaluate(cache, targets), atol=1e-13)
    by_kind = contributions.group(lambda t: t.kind)
    for kind, value in by_kind.items():
        np.testing.assert_allclose(
            value, expansion.filter(kind=kind).evaluate(cache, targets), atol=1e-12
        )
    ranking = contributions.ranked()
    means = [abs(mean) for _, mean in ranking]
    assert means == sorted(means, reverse=True) and len(ranking) == len(expansion)
    first, mean = ranking[0]
    assert mean == pytest.approx(contributions[first].mean())
    last_position = np.zeros(targets.shape, dtype=bool)
    last_position[:, -1] = True
    _, last_mean = contributions.ranked(last_position)[0]
    assert abs(last_mean) == max(abs(v[:, -1].mean()) for v in contributions.values)
    with pytest.raises(PathError, match="no term"):
        contributions["embed", "1.0", "0.0"]
    with pytest.raises(PathError, match="mask"):
        contributions.ranked(np.ones(3, dtype=bool))


def test_bad_targets_and_caches() -> None:
    model = model_of("standard")
    _, cache, targets = run(model)
    expansion = path_expansion(model)
    with pytest.raises(ShapeError, match="targets"):
        expansion.contributions(cache, targets[:, :-1])
    with pytest.raises(TokenError, match="vocabulary"):
        expansion.contributions(cache, targets + model.cfg.d_vocab)
    with pytest.raises(TokenError, match="integer"):
        expansion.term("embed").evaluate(cache, targets.astype(float))
    _, other_cache, _ = run(model_of("standard", heads=3))
    with pytest.raises(ConfigError, match="configuration"):
        expansion.evaluate(other_cache)
    with pytest.raises(ConfigError):
        expansion.evaluate(np.zeros(3))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- symbolic
@given(
    ct.models(ct.configs(n_layers=(0, 3), n_heads=(1, 2), d_model=(1, 5), n_ctx=(1, 5))), st.data()
)
def test_symbolic_form_reproduces_every_term(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Substituting the model's arrays and the cache's patterns into P ⊗ W gives the term."""
    tokens = data.draw(ct.token_sequences(model, batch=2))
    _, cache = model.run_with_cache(tokens)
    for term in path_expansion(model):
        numeric = term.evaluate(cache)
        for batch in range(2):
            expected = symbolic_contribution(term, model, cache, batch)
            np.testing.assert_allclose(numeric[batch], expected, rtol=1e-11, atol=1e-11)


@given(
    ct.models(
        ct.configs(n_layers=(1, 3), n_heads=(1, 2), d_model=(1, 3), d_vocab=(1, 3), n_ctx=(1, 3)),
        biases=True,
    ),
    st.data(),
)
def test_mixed_product_rule_on_the_library_terms(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """(Id ⊗ W_U)(A ⊗ W_OV)⋯(P_0 ⊗ W_0), multiplied as dense Kronecker products, is the term's P ⊗ W."""
    tokens = data.draw(ct.token_sequences(model, batch=1))
    _, cache = model.run_with_cache(tokens)
    values = {**weight_values(model.parameters(), model.cfg), **pattern_values(cache, 0)}
    symbols = ModelSymbols.of(model.cfg)
    for term in path_expansion(model).filter(source=["embed", "bias"]):
        if term.source == "b_U":
            continue
        maps = [symbols.unembed_map(), *(symbols.head_map(h) for h in reversed(term.heads)),
                symbols.source_map(term.source)]  # fmt: skip
        dense = reduce(np.matmul, [m.to_dense(values) for m in maps])
        np.testing.assert_allclose(dense, term.symbolic.to_dense(values), rtol=1e-12, atol=1e-12)


def test_weight_and_pattern_values() -> None:
    model = model_of("standard", layers=2, heads=2, biases=True, d_vocab=9)
    _, cache, _ = run(model)
    expansion = path_expansion(model)
    ov = {h: model.W_O[h] @ model.W_V[h] for h in [(0, 1), (1, 0)]}
    virtual = expansion.term("embed", "0.1", "1.0")
    value = virtual.weight_value()
    assert (
        isinstance(value, FactoredMatrix)
        and value.shape == (9, 9)
        and value.mdim <= model.cfg.d_head
    )
    np.testing.assert_allclose(value.AB, model.W_U @ ov[1, 0] @ ov[0, 1] @ model.W_E, atol=1e-12)
    np.testing.assert_allclose(virtual.weight_value(expand=True).AB, value.AB, atol=1e-12)
    np.testing.assert_allclose(
        virtual.pattern_value(cache, 1), cache.pattern(1, 0)[1] @ cache.pattern(0, 1)[1], atol=1e-14
    )
    np.testing.assert_array_equal(
        expansion.term("embed").pattern_value(cache), np.eye(model.cfg.n_ctx)
    )
    bias = expansion.term("b_V[0.1]", "1.0")
    np.testing.assert_allclose(
        bias.pattern_value(cache, 0), np.ones((model.cfg.n_ctx, 1)), atol=1e-14
    )
    np.testing.assert_allclose(
        np.ravel(bias.weight_value()),
        model.W_U @ ov[1, 0] @ model.W_O[0, 1] @ model.b_V[0, 1],
        atol=1e-12,
    )


# ---------------------------------------------------------------------------------- LaTeX
TOKEN_DIRECT = r"\mathrm{Id} \otimes \left(W_{U} W_{E}\right)"
HEADS_0 = r"\sum_{h \in \mathcal{H}_{0}} A^{h} \otimes \left(W_{U} W_{OV}^{h} W_{E}\right)"
HEADS_1 = r"\sum_{h \in \mathcal{H}_{1}} A^{h} \otimes \left(W_{U} W_{OV}^{h} W_{E}\right)"
VIRTUAL = (
    r"\sum_{h_1 \in \mathcal{H}_{0}} \sum_{h_2 \in \mathcal{H}_{1}} \left(A^{h_2} A^{h_1}\right)"
    r" \otimes \left(W_{U} W_{OV}^{h_2} W_{OV}^{h_1} W_{E}\right)"
)


def test_latex_reads_like_the_framework() -> None:
    """The Framework's expansions for 0, 1 and 2 layers, written out by hand."""
    assert path_expansion(model_of(layers=0)).latex() == TOKEN_DIRECT
    assert path_expansion(model_of(layers=1)).latex() == f"{TOKEN_DIRECT} + {HEADS_0}"
    two = path_expansion(model_of(layers=2)).latex()
    assert two == f"{TOKEN_DIRECT} + {HEADS_0} + {HEADS_1} + {VIRTUAL}"


def test_latex_of_terms_and_ungrouped_expansions() -> None:
    one = path_expansion(model_of(layers=1))
    assert one.latex(grouped=False) == (
        rf"{TOKEN_DIRECT} + A^{{0.0}} \otimes \left(W_{{U}} W_{{OV}}^{{0.0}} W_{{E}}\right)"
        rf" + A^{{0.1}} \otimes \left(W_{{U}} W_{{OV}}^{{0.1}} W_{{E}}\right)"
    )
    two = path_expansion(model_of("standard", layers=2, biases=True))
    partial = two.filter(through="0.0", source="embed", order=2).latex()
    assert partial.count(r"\otimes") == 2 and r"\sum" not in partial
    assert two.term("embed", "0.1", "1.0").latex(expand=True) == (
        r"\left(A^{1.0} A^{0.1}\right) \otimes \left(W_{U} W_{O}^{1.0} W_{V}^{1.0} W_{O}^{0.1}"
        r" W_{V}^{0.1} W_{E}\right)"
    )
    assert two.term("b_V[0.1]", "1.0").latex() == (
        r"\left(A^{1.0} \mathbb{1}\right) \otimes \left(W_{U} W_{OV}^{1.0} W_{O}^{0.1} b_{V}^{0.1}\right)"
    )
    assert two.term("b_U").latex() == r"\mathbb{1} \otimes b_{U}"
    grouped = two.latex()
    assert (
        r"\sum_{h \in \mathcal{H}_{0}} \mathbb{1} \otimes \left(W_{U} W_{O}^{h} b_{V}^{h}\right)"
        in grouped
    )
    assert r"\mathrm{Id} \otimes \left(W_{U} W_{P}\right)" in grouped
    assert path_expansion(model_of(layers=2)).filter(order=5).latex() == "0"
    assert repr(two.term("embed")) == "PathTerm(embed → unembed; direct)"


def test_single_head_layers_are_written_out() -> None:
    assert path_expansion(model_of(layers=1, heads=1)).latex() == (
        rf"{TOKEN_DIRECT} + A^{{0.0}} \otimes \left(W_{{U}} W_{{OV}}^{{0.0}} W_{{E}}\right)"
    )


def test_four_layers_of_twelve_heads() -> None:
    """13⁴ token paths per source: lazily iterated, counted without listing, kinds as expected."""
    model = model_of("standard", layers=4, heads=12)
    expansion = path_expansion(model)
    assert len(expansion) == 2 * 13**4
    counts: dict[str, int] = {}
    for term in expansion:
        counts[term.kind] = counts.get(term.kind, 0) + 1
    assert counts == {"direct": 2, "head": 2 * 48, "virtual": 2 * (13**4 - 1 - 48)}
