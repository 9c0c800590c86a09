"""The QK expansion of attention scores: exactness, kinds, token/positional parts, symbolic forms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from circuits import (
    AttnOnlyTransformer,
    FactoredMatrix,
    HeadError,
    PathError,
    path_expansion,
    qk_expansion,
)
from circuits import testing as ct
from circuits.qk_paths import QKTerm
from circuits.symbolic import pattern_values, weight_values


def model_of(positions: str = "none", *, layers: int = 2, heads: int = 2, biases: bool = False,
             seed: int = 0) -> AttnOnlyTransformer:  # fmt: skip
    cfg = {"n_layers": layers, "n_heads": heads, "d_model": 6, "d_head": 2, "d_vocab": 5,
           "n_ctx": 5, "positional_embedding_type": positions}  # fmt: skip
    return AttnOnlyTransformer.random(cfg, seed=seed, biases=biases)


def cache_of(model: AttnOnlyTransformer, seed: int = 1) -> Any:
    tokens = np.random.default_rng(seed).integers(0, model.cfg.d_vocab, (2, model.cfg.n_ctx))
    return model.run_with_cache(tokens)[1]


def dense(value: Any) -> np.ndarray:
    return value.AB if isinstance(value, FactoredMatrix) else np.asarray(value, dtype=float)


def side_inputs(W: np.ndarray, part: str, tokens: np.ndarray, axis: int) -> np.ndarray:
    """Columns (axis 1) or rows (axis 0) of W picked by the side's input: tokens, positions, bias."""
    index = {"token": tokens, "position": np.arange(len(tokens)), "bias": np.array([0])}[part]
    return np.take(W, index, axis=axis)


def symbolic_scores(term: QKTerm, model: AttnOnlyTransformer, cache: Any, batch: int) -> Any:
    """``P_q W[in_q, in_k] P_kᵀ`` from the term's symbolic form with the model's arrays."""
    values = {**weight_values(model.parameters(), model.cfg), **pattern_values(cache, batch)}
    P_q, P_k, W = term.symbolic.substitute(values)
    tokens = cache.tokens[batch]
    q_part, k_part = term.parts
    W = side_inputs(side_inputs(dense(W), q_part, tokens, 0), k_part, tokens, 1)
    return np.asarray(P_q) @ W @ np.asarray(P_k).T


# ---------------------------------------------------------------------------------- exactness
@given(
    ct.models(ct.configs(n_layers=(1, 3), n_heads=(1, 2), d_model=(1, 6), n_ctx=(1, 6))), st.data()
)
def test_terms_sum_to_the_scores(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """Σ_(query path, key path) term(cache) = cache.scores(h) for every head."""
    tokens = data.draw(ct.token_sequences(model, batch=2))
    _, cache = model.run_with_cache(tokens)
    for layer, head in model.cfg.heads():
        expansion = qk_expansion(model, layer, head)
        scores = cache.scores(layer, head)
        terms = [term.evaluate(cache) for term in expansion]
        np.testing.assert_allclose(np.sum(terms, axis=0), scores, rtol=1e-12, atol=1e-9)
        contributions = expansion.contributions(cache)
        assert contributions.values.shape == (len(expansion), *scores.shape)
        np.testing.assert_allclose(contributions.values, terms, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(expansion.evaluate(cache), scores, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("layers", range(1, 5))
@pytest.mark.parametrize("positions", ["standard", "shortformer", "none"])
def test_every_depth_and_positional_type_with_biases(layers: int, positions: str) -> None:
    model = model_of(positions, layers=layers, heads=3, biases=True, seed=layers)
    cache = cache_of(model)
    for layer, head in model.cfg.heads():
        expansion = qk_expansion(model, f"{layer}.{head}")
        np.testing.assert_allclose(
            expansion.evaluate(cache), cache.scores(layer, head), rtol=0, atol=1e-9
        )
        by_kind = sum(
            expansion.filter(kind=kind).evaluate(cache) for kind in ("direct", "Q", "K", "both")
        )
        np.testing.assert_allclose(by_kind, cache.scores(layer, head), rtol=0, atol=1e-9)
    last = qk_expansion(model, layers - 1, 2).contributions(cache)
    np.testing.assert_allclose(last.total(), cache.scores(layers - 1, 2), rtol=0, atol=1e-9)


def test_large_scores_stay_exact() -> None:
    base = model_of("standard", layers=2, heads=2, biases=True)
    model = base.replace(W_Q=base.W_Q * 1e6)
    cache = cache_of(model)
    scores = cache.scores(1, 1)
    assert np.abs(scores).max() > 1e4
    summed = qk_expansion(model, 1, 1).evaluate(cache)
    assert np.all(np.isfinite(summed))
    np.testing.assert_allclose(summed, scores, rtol=1e-12, atol=1e-6)


# ---------------------------------------------------------------------------------- structure
@pytest.mark.parametrize(("positions", "sources"), [("standard", 2), ("none", 1)])
def test_number_of_terms(positions: str, sources: int) -> None:
    model = model_of(positions, layers=3, heads=2)
    for layer in range(3):
        expansion = qk_expansion(model, layer, 1)
        sides = sources * 3**layer
        assert len(expansion) == sides**2 == len(list(expansion))
        assert len(expansion.filter(kind="direct")) == sources**2
        assert len(expansion.filter(kind="K")) == sources * (sides - sources)


def test_kinds_follow_the_orders_of_the_paths() -> None:
    expansion = qk_expansion(model_of("standard", layers=3, biases=True), 2, 0)
    counts = {}
    for kind in ("direct", "Q", "K", "both"):
        terms = list(expansion.filter(kind=kind))
        counts[kind] = len(terms)
        for term in terms:
            assert term.kind == kind
            assert (term.query_order > 0, term.key_order > 0) == {
                "direct": (False, False), "Q": (True, False), "K": (False, True), "both": (True, True)
            }[kind]  # fmt: skip
            assert term.query[-1] == term.key_path[-1] == term.head == "2.0"
    assert sum(counts.values()) == len(expansion)
    assert counts["Q"] == counts["K"] > 0


def test_shortformer_positions_appear_only_in_scores() -> None:
    model = model_of("shortformer", layers=2)
    assert all(term.part == "token" for term in path_expansion(model))
    expansion = qk_expansion(model, 1, 0)
    positional = expansion.filter(query_source="position")
    assert {t.query for t in positional} == {("pos_embed", "1.0")}
    assert len(positional) == 1 + 1 + 2  # key: the embeddings, and the token paths through 2 heads
    assert all(t.key_path[0] != "pos_embed" or t.key_order == 0 for t in expansion)
    cache = cache_of(model)
    assert np.abs(positional.evaluate(cache)).max() > 1e-3


@pytest.mark.parametrize("positions", ["standard", "shortformer"])
def test_token_and_positional_parts_of_the_first_layer(positions: str) -> None:
    """Layer 0 splits into W_E/W_P blocks of W_QK, written out here with dense numpy."""
    model = model_of(positions, layers=1)
    cache = cache_of(model)
    W_QK = model.W_Q[0, 1].T @ model.W_K[0, 1] / model.cfg.attn_scale
    n = model.cfg.n_ctx
    embeddings = {"token": model.W_E.T[cache.tokens], "position": model.W_P[:, :n].T[None]}
    expansion = qk_expansion(model, 0, 1)
    for q_part, q_rows in embeddings.items():
        for k_part, k_rows in embeddings.items():
            expected = q_rows @ W_QK @ np.swapaxes(k_rows, -1, -2)
            part = expansion.filter(query_source=q_part, key_source=k_part)
            assert len(part) == 1
            (term,) = part
            assert term.parts == (q_part, k_part)
            np.testing.assert_allclose(
                part.evaluate(cache), np.broadcast_to(expected, (2, n, n)), atol=1e-12
            )


def test_k_and_q_composition_terms_by_hand() -> None:
    """s_ij = (W_E t_i)ᵀ W_QK^{1.1} W_OV^{0.0} Σ_j' A^{0.0}_{jj'} W_E t_j' / α, and its mirror image."""
    model = model_of("none", layers=2)
    cache = cache_of(model)
    expansion = qk_expansion(model, 1, 1)
    tokens = model.W_E.T[cache.tokens]  # [batch, pos, d]
    A = cache.pattern(0, 0)
    moved = A @ tokens @ (model.W_O[0, 0] @ model.W_V[0, 0]).T  # what 0.0 writes from the tokens
    W_QK = model.W_Q[1, 1].T @ model.W_K[1, 1] / model.cfg.attn_scale
    k_term = expansion.term(["embed"], ["embed", "0.0"])
    q_term = expansion.term(["embed", "0.0"], ["embed"])
    assert (k_term.kind, q_term.kind) == ("K", "Q")
    np.testing.assert_allclose(
        k_term.evaluate(cache), tokens @ W_QK @ np.swapaxes(moved, 1, 2), atol=1e-12
    )
    np.testing.assert_allclose(
        q_term.evaluate(cache), moved @ W_QK @ np.swapaxes(tokens, 1, 2), atol=1e-12
    )
    only = expansion.filter(kind="K", key_through="0.0", key_source="token", query_source="token")
    assert [t.key for t in only] == [k_term.key]


def test_filters_and_lookup() -> None:
    model = model_of("standard", layers=3, biases=True)
    expansion = qk_expansion(model, "2.1")
    assert (expansion.layer, expansion.head, expansion.name) == (2, 1, "2.1")
    through = expansion.filter(query_through="0.1", key_order=[0, 2])
    assert len(through) == len(list(through)) > 0
    assert all("0.1" in t.query and t.key_order in (0, 2) for t in through)
    narrowed = through.filter(key_order=2).filter(where=lambda t: t.parts == ("token", "token"))
    # queries embed → 0.1 (→ 1.0, → 1.1 or not): 3; keys embed → 0.x → 1.y: 4
    assert len(narrowed) == len(list(narrowed)) == 3 * 4
    bias_pair = expansion.term(["b_Q[2.1]"], ["b_K[2.1]"])
    assert bias_pair.parts == ("bias", "bias") and bias_pair.kind == "direct"
    assert expansion.term(("embed", "2.1"), ("pos_embed", "0.0", "2.1")).kind == "K"
    for query, key in [
        (["embed", "2.1"], ["b_Q[2.1]"]),
        (["embed", "2.0"], ["embed"]),
        (["nowhere"], ["embed"]),
    ]:
        with pytest.raises(PathError, match="no term"):
            expansion.term(query, key)
    with pytest.raises(PathError, match="no term"):
        expansion.filter(kind="Q").term(["embed"], ["embed"])
    with pytest.raises(PathError, match="unknown"):
        expansion.filter(kind="V")  # type: ignore[arg-type]
    with pytest.raises(HeadError):
        qk_expansion(model, 3, 0)


def test_contributions_rank_causal_entries() -> None:
    model = model_of("standard", layers=2)
    cache = cache_of(model)
    contributions = qk_expansion(model, 1, 0).contributions(cache)
    mask = contributions.default_mask()
    assert mask.shape == (2, 5, 5) and mask[0, 1, 0] and not mask[0, 0, 1]
    (term, mean), *_ = contributions.ranked()
    assert mean == pytest.approx(contributions[term][mask].mean())
    assert np.array_equal(contributions[term.query, term.key_path], contributions[term])
    per_kind = contributions.group(lambda t: t.kind)
    np.testing.assert_allclose(sum(per_kind.values()), cache.scores(1, 0), atol=1e-12)


# ---------------------------------------------------------------------------------- symbolic
@given(
    ct.models(ct.configs(n_layers=(1, 2), n_heads=(1, 2), d_model=(1, 4), n_ctx=(1, 4))), st.data()
)
def test_symbolic_form_reproduces_every_term(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    tokens = data.draw(ct.token_sequences(model, batch=1))
    _, cache = model.run_with_cache(tokens)
    layer, head = data.draw(st.sampled_from(list(model.cfg.heads())))
    for term in qk_expansion(model, layer, head):
        expected = symbolic_scores(term, model, cache, 0)
        np.testing.assert_allclose(term.evaluate(cache)[0], expected, rtol=1e-11, atol=1e-11)


def test_latex_of_a_k_composition_group() -> None:
    expansion = qk_expansion(model_of("none", layers=2), 1, 0)
    assert expansion.filter(kind="K").latex() == (
        r"\sum_{h' \in \mathcal{H}_{0}} \mathrm{Id} \otimes A^{h'} \otimes "
        r"\left(\frac{1}{\alpha} W_{E}^{T} W_{QK}^{1.0} W_{OV}^{h'} W_{E}\right)"
    )
    assert expansion.filter(kind="direct").latex() == (
        r"\mathrm{Id} \otimes \mathrm{Id} \otimes \left(\frac{1}{\alpha} W_{E}^{T} W_{QK}^{1.0} W_{E}\right)"
    )
    both = expansion.filter(kind="both").latex()
    assert both.startswith(
        r"\sum_{h \in \mathcal{H}_{0}} \sum_{h' \in \mathcal{H}_{0}} A^{h} \otimes A^{h'}"
    )
    assert expansion.term(["embed"], ["embed", "0.1"]).latex(expand=True) == (
        r"\mathrm{Id} \otimes A^{0.1} \otimes \left(\frac{1}{\alpha} W_{E}^{T} {W_{Q}^{1.0}}^{T} "
        r"W_{K}^{1.0} W_{O}^{0.1} W_{V}^{0.1} W_{E}\right)"
    )
    assert (
        repr(expansion.term(["embed"], ["embed", "0.1"]))
        == "QKTerm(1.0: query embed | key embed → 0.1; K)"
    )


# ---------------------------------------------------------------------------------- a hand-built model
def induction_weights(beta0: Any, beta1: Any, convert: Any) -> dict[str, Any]:
    """A previous-token head 0.0 and an induction head 1.0 on the subspaces tok | prev | pos.

    W_QK^{0.0} = β₀ Σ_i pos[i] pos[i-1]ᵀ, W_OV^{0.0} = Σ_t prev[t] tok[t]ᵀ and
    W_QK^{1.0} = β₁ Σ_t tok[t] prev[t]ᵀ; ``convert`` makes numpy arrays or sympy matrices.
    """
    eye, zero = np.eye(3), np.zeros((3, 3))
    tok, prev, pos = (
        np.hstack([eye, zero, zero]),
        np.hstack([zero, eye, zero]),
        np.hstack([zero, zero, eye]),
    )
    shift = np.eye(3, k=-1)  # shift e_{i-1} = e_i
    c = convert
    return {
        "W_E": c(tok.T), "W_P": c(pos.T), "W_U": c(tok),
        "W_Q": [[c(pos) * beta0], [c(tok) * beta1]], "W_K": [[c(shift @ pos)], [c(prev)]],
        "W_V": [[c(tok)], [c(tok)]], "W_O": [[c(prev.T)], [c(tok.T)]],
    }  # fmt: skip


HAND_CFG = {"n_layers": 2, "n_heads": 1, "d_model": 9, "d_head": 3, "d_vocab": 3, "n_ctx": 3}


def test_a_symbolic_model_has_exactly_the_intended_terms() -> None:
    """With β₀, β₁ and α as sympy symbols, every score term simplifies in closed form.

    Head 1.0's only nonzero term is K-composition W_Eᵀ W_QK^{1.0} W_OV^{0.0} W_E = (β₁/α) Id; head
    0.0's only nonzero term is positional, W_Pᵀ W_QK^{0.0} W_P = (β₀/α) · shift.
    """
    numeric = induction_weights(2.0, 3.0, np.asarray)
    model = AttnOnlyTransformer(
        HAND_CFG, **{k: np.array(v) if isinstance(v, list) else v for k, v in numeric.items()}
    )
    beta0, beta1, alpha = sp.symbols("beta_0 beta_1 alpha", positive=True)
    values = weight_values(induction_weights(beta0, beta1, sp.Matrix), model.cfg)
    values["alpha"] = alpha
    expected = {
        "1.0": ((("embed",), ("embed", "0.0")), beta1 / alpha * sp.eye(3)),
        "0.0": ((("pos_embed",), ("pos_embed",)), beta0 / alpha * sp.Matrix(np.eye(3, k=-1))),
    }
    cache = cache_of(model)
    for head, ((query, key), value) in expected.items():
        expansion = qk_expansion(model, head)
        intended = expansion.term(query, key)
        assert sp.simplify(intended.weight_value(values) - value) == sp.zeros(3)
        for term in expansion:
            if term != intended:
                assert sp.simplify(term.weight_value(values)) == sp.zeros(*term.weights.shape)
                assert np.all(term.evaluate(cache) == 0)
        np.testing.assert_allclose(intended.evaluate(cache), cache.scores(head), atol=1e-12)
