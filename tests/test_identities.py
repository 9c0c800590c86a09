"""The algebraic identities of the Framework that the library relies on, as Hypothesis properties.

Each test names the identity it checks; docs/testing.md lists them all with their Framework
references (some live beside the code they test: tests/test_model.py, tests/test_factored.py,
tests/test_io.py).
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, FactoredMatrix, causal_softmax
from circuits import testing as ct
from circuits.paths import path_expansion

SMALL = ct.configs(n_layers=(1, 2), n_heads=(1, 2), d_model=(2, 5), d_vocab=(2, 6), n_ctx=(2, 5))
TWO_LAYERS = ct.configs(n_layers=2, n_heads=(1, 2), d_model=(2, 5), d_vocab=(2, 6), n_ctx=(2, 5))


def gaussian(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


# ---------------------------------------------------------------------- tensor products
@given(st.integers(1, 4), st.integers(1, 4), ct.seeds())
def test_mixed_product_rule(n: int, d: int, seed: int) -> None:
    """(A ⊗ W)(B ⊗ U) = (AB) ⊗ (WU): chaining heads multiplies patterns and weights separately."""
    rng = np.random.default_rng(seed)
    A, B, W, U = gaussian(rng, n, n), gaussian(rng, n, n), gaussian(rng, d, d), gaussian(rng, d, d)
    np.testing.assert_allclose(np.kron(A, W) @ np.kron(B, U), np.kron(A @ B, W @ U), atol=1e-10)


@given(ct.models(SMALL), st.data())
def test_layer_is_identity_plus_sum_of_head_tensor_products(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """With patterns frozen, x^{l+1} = (Id ⊗ Id + Σ_h A^h ⊗ W_OV^h) x^l + 1 ⊗ (b_O + Σ_h W_O^h b_V^h).

    x^l is the stream [pos, d] flattened position-major; the constant term shows that b_V passes
    through A unchanged, since every row of A sums to one.
    """
    tokens = data.draw(ct.token_sequences(model))
    _, cache = model.run_with_cache(tokens)
    n, d = len(tokens), model.cfg.d_model
    for layer in range(model.cfg.n_layers):
        heads = [(layer, h) for h in range(model.cfg.n_heads)]
        operator = np.eye(n * d) + sum(
            np.kron(cache.pattern(*head)[0], model.W_OV(*head).AB) for head in heads
        )
        constant = model.b_O[layer] + sum(model.W_O[head] @ model.b_V[head] for head in heads)
        after = (operator @ cache.resid(layer)[0].reshape(-1)).reshape(n, d) + constant
        np.testing.assert_allclose(after, cache.resid(layer + 1)[0], atol=1e-10)


def reference_path_terms(
    model: AttnOnlyTransformer, tokens: np.ndarray
) -> dict[tuple[str, ...], np.ndarray]:
    """Every term of the path expansion of the logits [pos, V], patterns frozen, written out here.

    A path visits heads h_1, …, h_m in increasing layers; from a source S ([pos, d]) it contributes
    (A^{h_m} ⋯ A^{h_1}) S (W_U W_OV^{h_m} ⋯ W_OV^{h_1})ᵀ. Sources: tokens (``embed``), standard
    positions (``pos_embed``), each head's value bias W_O b_V and each layer's b_O (entering after
    their layer), and b_U, directly at the logits. Keys are the paths as node names.
    """
    _, cache = model.run_with_cache(tokens)
    cfg, n = model.cfg, len(tokens)
    sources = {"embed": (-1, model.W_E[:, tokens].T)}
    if cfg.positional_embedding_type == "standard":
        sources["pos_embed"] = (-1, model.W_P[:, :n].T)
    for layer in range(cfg.n_layers):
        sources[f"b_O[{layer}]"] = (layer, np.tile(model.b_O[layer], (n, 1)))
        for h in range(cfg.n_heads):
            constant = model.W_O[layer, h] @ model.b_V[layer, h]
            sources[f"b_V[{layer}.{h}]"] = (layer, np.tile(constant, (n, 1)))
    terms = {("b_U", "unembed"): np.tile(model.b_U, (n, 1))}
    for name, (start, source) in sources.items():
        later = range(start + 1, cfg.n_layers)
        for m in range(len(later) + 1):
            for layers in itertools.combinations(later, m):
                for heads in itertools.product(range(cfg.n_heads), repeat=m):
                    stream, weight = source, np.eye(cfg.d_model)
                    for layer, head in zip(layers, heads, strict=True):
                        stream = cache.pattern(layer, head)[0] @ stream
                        weight = model.W_OV(layer, head).AB @ weight
                    path = (name, *(f"{a}.{b}" for a, b in zip(layers, heads, strict=True)))
                    terms[(*path, "unembed")] = stream @ (model.W_U @ weight).T
    return terms


@given(ct.models(TWO_LAYERS), st.data())
def test_path_terms_sum_to_the_logits(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """logits = Σ_paths (A^{h_m} ⋯ A^{h_1}) ⊗ (W_U W_OV^{h_m} ⋯ W_OV^{h_1} W_src) + bias paths."""
    tokens = data.draw(ct.token_sequences(model))
    terms = reference_path_terms(model, tokens)
    H, L = model.cfg.n_heads, model.cfg.n_layers
    n_embeddings = 2 if model.cfg.positional_embedding_type == "standard" else 1
    n_biases = (1 + H) * (1 + H) + 1 + H  # b_O[0], b_V[0.h] then layer 1; b_O[1], b_V[1.h]
    assert len(terms) == 1 + n_embeddings * (1 + H) ** L + n_biases
    ct.assert_terms_sum_to(terms.values(), model.forward(tokens))


@given(ct.models(SMALL, biases=True), st.data())
def test_library_path_terms_are_the_frameworks_terms(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Each term of circuits.path_expansion equals the same path's term written out above."""
    tokens = data.draw(ct.token_sequences(model))
    expected = reference_path_terms(model, tokens)
    _, cache = model.run_with_cache(tokens)
    terms = {term.path: term for term in path_expansion(model, biases="all")}
    assert set(terms) == set(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(terms[path].evaluate(cache)[0], value, atol=1e-10, err_msg=path)


# ---------------------------------------------------------------------- attention scores
@given(ct.models(SMALL, biases=True), st.data())
def test_scores_are_a_bilinear_form_in_homogeneous_coordinates(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """s_ij = [x_i; 1]ᵀ [[W_QK, W_Qᵀ b_K], [b_Qᵀ W_K, b_Qᵀ b_K]] [x_j; 1] / attn_scale."""
    tokens = data.draw(ct.token_sequences(model))
    _, cache = model.run_with_cache(tokens)
    for layer, head in model.cfg.heads():
        x = cache.resid(layer)[0]
        if model.cfg.positional_embedding_type == "shortformer":
            x = x + model.W_P[:, : len(tokens)].T
        W_Q, W_K = model.W_Q[layer, head], model.W_K[layer, head]
        b_Q, b_K = model.b_Q[layer, head], model.b_K[layer, head]
        form = np.block([[model.W_QK(layer, head).AB, (W_Q.T @ b_K)[:, None]],
                         [(b_Q @ W_K)[None, :], np.array([[b_Q @ b_K]])]])  # fmt: skip
        lifted = np.hstack([x, np.ones((len(tokens), 1))])
        expected = lifted @ form @ lifted.T / model.cfg.attn_scale
        np.testing.assert_allclose(cache.scores(layer, head)[0], expected, atol=1e-10)


@given(ct.models(SMALL, biases=True), st.data())
def test_key_bias_never_changes_attention(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """b_K adds (W_Q x_i + b_Q)ᵀ b_K to every score of query i alike; softmax ignores such shifts."""
    tokens = data.draw(ct.token_sequences(model, batch=2))
    rng = np.random.default_rng(data.draw(ct.seeds()))
    changed = model.replace(b_K=10 * rng.standard_normal(model.b_K.shape))
    _, cache = model.run_with_cache(tokens)
    _, changed_cache = changed.run_with_cache(tokens)
    for head in model.cfg.heads():
        np.testing.assert_allclose(changed_cache.pattern(*head), cache.pattern(*head), atol=1e-9)
    ct.assert_same_logits(model, changed, tokens, atol=1e-8)


@given(st.integers(1, 6), st.sampled_from([1.0, 1e3, 1e6]), ct.seeds())
def test_softmax_ignores_row_shifts_and_masked_entries(n: int, beta: float, seed: int) -> None:
    """softmax_j(s_ij + c_i) = softmax_j(s_ij), and entries j > i never matter, up to β = 1e6."""
    rng = np.random.default_rng(seed)
    scores = beta * rng.standard_normal((n, n))
    shifted = scores + beta * rng.standard_normal((n, 1)) + np.triu(rng.standard_normal((n, n)), 1)
    pattern = causal_softmax(scores)
    assert np.all(np.isfinite(pattern))
    np.testing.assert_allclose(causal_softmax(shifted), pattern, atol=1e-9)


# ---------------------------------------------------------------------- basis changes
def power_traces(matrix: FactoredMatrix) -> np.ndarray:
    """tr(M^p) for p = 1 … k from the k × k core: they determine the nonzero spectrum."""
    core = matrix.BA
    return np.array([np.trace(np.linalg.matrix_power(core, p)) for p in range(1, len(core) + 1)])


@given(ct.models(SMALL), st.data())
def test_circuits_under_a_residual_basis_change(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """x → Mx: W_QK → M⁻ᵀ W_QK M⁻¹, W_OV → M W_OV M⁻¹; the token circuits W_Eᵀ W_QK W_E and
    W_U W_OV W_E and the spectrum of W_OV are unchanged (the Framework's privileged-basis remark)."""
    M = data.draw(ct.invertible_matrices(model.cfg.d_model))
    M_inv = np.linalg.inv(M)
    moved = ct.change_residual_basis(model, M)
    for head in model.cfg.heads():
        qk, moved_qk = model.W_QK(*head), moved.W_QK(*head)
        ov, moved_ov = model.W_OV(*head), moved.W_OV(*head)
        np.testing.assert_allclose(moved_qk.AB, M_inv.T @ qk.AB @ M_inv, atol=1e-9)
        np.testing.assert_allclose(moved_ov.AB, M @ ov.AB @ M_inv, atol=1e-9)
        for circuit in (
            lambda m, h: m.W_E.T @ m.W_QK(*h) @ m.W_E,
            lambda m, h: m.W_U @ m.W_OV(*h) @ m.W_E,
        ):
            np.testing.assert_allclose(circuit(moved, head).AB, circuit(model, head).AB, atol=1e-9)
        scale = max(1.0, ov.norm()) ** np.arange(1, ov.mdim + 1)
        np.testing.assert_allclose(
            power_traces(moved_ov) / scale, power_traces(ov) / scale, atol=1e-9
        )


@given(ct.models(SMALL), st.data())
def test_norms_and_singular_values_under_a_residual_rotation(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """x → Rx with R orthogonal: W_QK, W_OV change by orthogonal similarity, so their Frobenius
    norms and singular values — the ingredients of composition scores — are unchanged."""
    R = data.draw(ct.orthogonal_matrices(model.cfg.d_model))
    rotated = ct.change_residual_basis(model, R)
    for head in model.cfg.heads():
        for name in ("W_QK", "W_OV"):
            before, after = getattr(model, name)(*head), getattr(rotated, name)(*head)
            np.testing.assert_allclose(after.singular_values, before.singular_values, atol=1e-10)
            np.testing.assert_allclose(after.norm(), before.norm(), rtol=1e-10)


@given(ct.models(SMALL, biases=True), st.data())
def test_head_internal_basis_change_keeps_every_circuit(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """W_Q → G W_Q, W_K → G⁻ᵀ W_K, W_V → N W_V, W_O → W_O N⁻¹: W_QK and W_OV (so everything the
    Framework computes from them) are unchanged, although every single weight has changed."""
    c = model.cfg
    bases = ct.invertible_matrices(c.d_head, leading=(c.n_layers, c.n_heads))
    changed = ct.change_head_bases(model, data.draw(bases), data.draw(bases))
    for head in c.heads():
        np.testing.assert_allclose(changed.W_QK(*head).AB, model.W_QK(*head).AB, atol=1e-9)
        np.testing.assert_allclose(changed.W_OV(*head).AB, model.W_OV(*head).AB, atol=1e-9)


@given(ct.models(SMALL, biases=True), st.data())
def test_residual_basis_change_round_trip(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """Changing the residual basis by M and then by M⁻¹ gives back every weight."""
    M = data.draw(ct.invertible_matrices(model.cfg.d_model))
    back = ct.change_residual_basis(ct.change_residual_basis(model, M), np.linalg.inv(M))
    for name, weight in model.parameters().items():
        np.testing.assert_allclose(back.parameters()[name], weight, atol=1e-9, err_msg=name)
