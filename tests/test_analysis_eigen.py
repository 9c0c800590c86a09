"""Eigen analysis: spectra against dense circuits, invariances, copying and prefix matching by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from analysis_models import induction_model, with_new_head_bases
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer
from circuits import testing as ct
from circuits.analysis import (
    composition_scores,
    copying_scores,
    eigenvalue_positivity,
    k_composition_eigenvalues,
    ov_eigenvalues,
    prefix_matching_scores,
    qk_eigenvalues,
    qk_positivity,
)

SMALL = ct.configs(n_layers=(1, 2), n_heads=(1, 2), d_model=(1, 6), d_head=(1, 4), d_vocab=(1, 7))
TWO = ct.configs(n_layers=(2, 3), n_heads=(1, 2), d_model=(1, 6), d_head=(1, 4), d_vocab=(1, 7))
WITH_POSITIONS = ct.configs(
    n_layers=1, n_heads=(1, 2), d_model=(1, 6), d_head=(1, 4), n_ctx=(1, 7),
    positional_embedding_types=["standard", "shortformer"],
)  # fmt: skip


def assert_same_nonzero_spectrum(values: np.ndarray, dense: np.ndarray) -> None:
    """Same eigenvalue multiset up to zeros: equal power sums Σλᵖ for p = 1 … len(values) + 1.

    Power sums determine the nonzero eigenvalues (Newton's identities); they are compared to
    Σ|λ|ᵖ so that the check is relative to the spectrum's scale.
    """
    for p in range(1, len(values) + 2):
        scale = np.sum(np.abs(values) ** p) + np.sum(np.abs(np.linalg.eigvals(dense)) ** p) + 1e-300
        ours = np.sum(values**p)
        theirs = np.trace(np.linalg.matrix_power(dense, p))
        assert abs(ours - theirs) <= 1e-8 * scale, (p, ours, theirs)


def sorted_by_modulus(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(np.abs(values)) <= 1e-12 * (1 + np.abs(values[0]))))


@given(ct.models(SMALL))
def test_ov_eigenvalues_are_those_of_the_dense_ov_circuit(model: AttnOnlyTransformer) -> None:
    values = ov_eigenvalues(model)
    assert values.shape == (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head)
    for layer, head in model.cfg.heads():
        dense = model.W_U @ model.W_O[layer, head] @ model.W_V[layer, head] @ model.W_E
        assert_same_nonzero_spectrum(values[layer, head], dense)
        assert sorted_by_modulus(values[layer, head])


@given(ct.models(WITH_POSITIONS), st.booleans())
def test_qk_eigenvalues_are_those_of_the_dense_qk_circuits(
    model: AttnOnlyTransformer, positional: bool
) -> None:
    embedding = model.W_P if positional else model.W_E
    values = qk_eigenvalues(model, positional=positional)
    for layer, head in model.cfg.heads():
        dense = embedding.T @ model.W_Q[layer, head].T @ model.W_K[layer, head] @ embedding
        assert_same_nonzero_spectrum(values[layer, head], dense)


@given(ct.models(TWO))
def test_k_composition_eigenvalues_are_those_of_the_dense_term(model: AttnOnlyTransformer) -> None:
    values = k_composition_eigenvalues(model)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for l1, h1, l2, h2 in itertools.product(range(L), range(H), range(L), range(H)):
        if l1 >= l2:
            assert np.all(np.isnan(values[l1, h1, l2, h2]))
            assert np.isnan(prefix_matching_scores(model)[l1, h1, l2, h2])
            continue
        dense = (
            model.W_E.T @ model.W_Q[l2, h2].T @ model.W_K[l2, h2]
            @ model.W_O[l1, h1] @ model.W_V[l1, h1] @ model.W_E
        )  # fmt: skip
        assert_same_nonzero_spectrum(values[l1, h1, l2, h2], dense)


def test_eigenvalue_positivity_on_known_spectra() -> None:
    spectra = np.array([[1, 2, 0], [1, -1, 0], [1j, -1j, 2], [-3, -1, 0], [0, 0, 0]])
    np.testing.assert_allclose(eigenvalue_positivity(spectra)[:4], [1.0, 0.0, 0.5, -1.0])
    assert np.isnan(eigenvalue_positivity(spectra)[4])


@given(ct.models(TWO), st.data())
def test_spectral_scores_are_invariant_under_any_change_of_residual_basis(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """W_U W_OV W_E and W_Eᵀ W_QK W_OV W_E are unchanged by x → Mx for any invertible M."""
    M = data.draw(ct.invertible_matrices(model.cfg.d_model))
    changed = ct.change_residual_basis(model, M)
    np.testing.assert_allclose(copying_scores(changed), copying_scores(model), atol=1e-7)
    np.testing.assert_allclose(
        prefix_matching_scores(changed), prefix_matching_scores(model), atol=1e-7
    )


@given(ct.models(TWO), st.data())
def test_spectra_depend_only_on_w_qk_and_w_ov(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    changed = with_new_head_bases(model, data)
    np.testing.assert_allclose(copying_scores(changed), copying_scores(model), atol=1e-7)
    np.testing.assert_allclose(qk_positivity(changed), qk_positivity(model), atol=1e-7)
    np.testing.assert_allclose(
        prefix_matching_scores(changed), prefix_matching_scores(model), atol=1e-7
    )


@given(ct.models(SMALL), st.data())
def test_a_negative_rescaling_of_w_o_flips_the_copying_score(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    scale = data.draw(st.sampled_from([-5.0, -1e-3, 0.5, 1e3]))
    flipped = copying_scores(model.replace(W_O=scale * model.W_O))
    np.testing.assert_allclose(flipped, np.sign(scale) * copying_scores(model), atol=1e-8)


def symmetric_model(sign: float, seed: int = 0) -> AttnOnlyTransformer:
    """W_U = W_Eᵀ, W_O = ±W_Vᵀ and W_Q = W_K: OV and QK circuits are ±(positive semidefinite)."""
    cfg = {"n_layers": 1, "n_heads": 2, "d_model": 6, "d_head": 3, "d_vocab": 9, "n_ctx": 4}
    rng = np.random.default_rng(seed)
    W_E, W_V, W_Q = (
        rng.standard_normal((6, 9)),
        rng.standard_normal((1, 2, 3, 6)),
        rng.standard_normal((1, 2, 3, 6)),
    )
    return AttnOnlyTransformer(
        cfg, W_E=W_E, W_U=W_E.T, W_P=rng.standard_normal((6, 4)),
        W_V=W_V, W_O=sign * W_V.swapaxes(-1, -2), W_Q=W_Q, W_K=sign * W_Q,
    )  # fmt: skip


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_copying_and_qk_positivity_of_semidefinite_circuits(sign: float) -> None:
    model = symmetric_model(sign)
    np.testing.assert_allclose(copying_scores(model), sign, atol=1e-10)
    np.testing.assert_allclose(qk_positivity(model), sign, atol=1e-10)
    np.testing.assert_allclose(qk_positivity(model, positional=True), sign, atol=1e-10)


def test_hand_built_induction_circuit_copies_and_prefix_matches() -> None:
    """Head 1.0 copies (OV = 10·identity on tokens); 0.0 → 1.0 is an exact prefix matcher."""
    model = induction_model(gains=np.arange(1.0, 9.0))
    copying = copying_scores(model)
    assert copying[1, 0] == pytest.approx(1.0)
    assert np.isnan(copying[0, 0])  # 0.0 writes only prev[·], which W_U never reads
    np.testing.assert_allclose(np.sort(ov_eigenvalues(model)[1, 0].real)[-8:], np.arange(1.0, 9.0))
    prefix = prefix_matching_scores(model)
    assert prefix[0, 0, 1, 0] == pytest.approx(1.0)
    # W_Eᵀ W_QK^{1.0} W_OV^{0.0} W_E = β · identity on the vocabulary
    np.testing.assert_allclose(k_composition_eigenvalues(model)[0, 0, 1, 0][:8], 30.0)


def test_positional_spectra_need_positions() -> None:
    cfg = {"n_layers": 1, "n_heads": 1, "d_model": 3, "d_head": 2, "d_vocab": 4, "n_ctx": 3}
    model = AttnOnlyTransformer.random({**cfg, "positional_embedding_type": "none"})
    with pytest.raises(circuits.AnalysisError, match="positional"):
        qk_eigenvalues(model, positional=True)


def test_one_layer_models_have_no_prefix_matching() -> None:
    cfg = {"n_layers": 1, "n_heads": 2, "d_model": 3, "d_head": 2, "d_vocab": 4, "n_ctx": 3}
    scores = prefix_matching_scores(AttnOnlyTransformer.random(cfg))
    assert scores.shape == (1, 2, 1, 2) and np.all(np.isnan(scores))


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_the_library_induction_models_compose_by_their_mechanism(mechanism: str) -> None:
    """K: 1.0's keys read what 0.0 writes (prev), its queries read tokens nobody writes; Q: the
    queries read the pointer 0.0 writes, the keys read positions."""
    model = circuits.induction_model(10, 16, mechanism=mechanism)  # type: ignore[arg-type]
    k, q = composition_scores(model, "K")[0, 0, 1, 0], composition_scores(model, "Q")[0, 0, 1, 0]
    if mechanism == "K":
        assert k > 0.1 and q == pytest.approx(0.0, abs=1e-12)
        assert prefix_matching_scores(model)[0, 0, 1, 0] == pytest.approx(1.0)
    else:
        assert q > 0.1 and k == pytest.approx(0.0, abs=1e-12)
    assert copying_scores(model)[1, 0] == pytest.approx(1.0)  # OV: tok[t] ↦ γ out[t]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spectral_scores_stay_finite_at_extreme_scales(dtype: type) -> None:
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_head": 4, "d_vocab": 30, "n_ctx": 4}
    model = AttnOnlyTransformer.random(cfg, seed=7, dtype=dtype)
    huge = model.replace(
        **{name: 1e6 * getattr(model, name) for name in ("W_E", "W_Q", "W_K", "W_V", "W_O", "W_U")}
    )
    for score in (copying_scores, qk_positivity, prefix_matching_scores):
        expected = score(model)
        got = score(huge)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
