"""Composition scores: against TransformerLens's definition computed densely, invariances, baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from analysis_models import with_new_head_bases
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer
from circuits import testing as ct
from circuits.analysis import (
    all_composition_scores,
    composition_baseline,
    composition_scores,
    relative_composition_scores,
)

CONFIGS = ct.configs(n_layers=(0, 3), n_heads=(1, 3), d_model=(1, 7), d_head=(1, 4), d_vocab=(1, 4))
DEEP = ct.configs(n_layers=(2, 3), n_heads=(1, 3), d_model=(2, 7), d_head=(1, 4), d_vocab=(1, 4))


def transformer_lens_reference(model: AttnOnlyTransformer, kind: str) -> np.ndarray:
    """TransformerLens's formula on the exported (row-convention) weights, dense, pair by pair.

    TL: left = OV of the writer (``W_V W_O``), right = ``QK`` (Q), ``QK.T`` (K) or ``OV`` (V) of the
    reader, score = ‖left @ right‖ / (‖left‖ ‖right‖), only for writer layer < reader layer.
    """
    state = model.to_transformer_lens()
    L, H = model.cfg.n_layers, model.cfg.n_heads

    def block(layer: int, name: str, head: int) -> np.ndarray:
        return np.asarray(state[f"blocks.{layer}.attn.{name}"][head], dtype=np.float64)

    out = np.full((L, H, L, H), np.nan)
    for l1, h1, l2, h2 in itertools.product(range(L), range(H), range(L), range(H)):
        if l1 >= l2:
            continue
        left = block(l1, "W_V", h1) @ block(l1, "W_O", h1)
        qk = block(l2, "W_Q", h2) @ block(l2, "W_K", h2).T
        right = {"Q": qk, "K": qk.T, "V": block(l2, "W_V", h2) @ block(l2, "W_O", h2)}[kind]
        out[l1, h1, l2, h2] = np.linalg.norm(left @ right) / (
            np.linalg.norm(left) * np.linalg.norm(right)
        )
    return out


@given(ct.models(CONFIGS), st.sampled_from("QKV"))
def test_scores_match_the_transformer_lens_definition(
    model: AttnOnlyTransformer, kind: str
) -> None:
    scores = composition_scores(model, kind)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    assert scores.shape == (L, H, L, H)
    np.testing.assert_allclose(
        scores, transformer_lens_reference(model, kind), rtol=1e-10, atol=1e-12
    )


@given(ct.models(DEEP), st.sampled_from("QKV"))
def test_scores_are_cosine_like_and_undefined_without_a_later_reader(
    model: AttnOnlyTransformer, kind: str
) -> None:
    scores = composition_scores(model, kind)
    layers = np.arange(model.cfg.n_layers)
    undefined = np.broadcast_to(
        (layers[:, None] >= layers[None, :])[:, None, :, None], scores.shape
    )
    assert np.all(np.isnan(scores[undefined]))
    defined = scores[~undefined]
    assert np.all((defined >= 0) & (defined <= 1 + 1e-12))


@given(ct.models(DEEP), st.data())
def test_scores_are_invariant_under_rotations_of_the_residual_basis(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Frobenius norms are unchanged by W_QK → Uᵀ... orthogonal changes of basis (not by general ones)."""
    rotated = ct.change_residual_basis(model, data.draw(ct.orthogonal_matrices(model.cfg.d_model)))
    for kind, scores in all_composition_scores(model).items():
        np.testing.assert_allclose(composition_scores(rotated, kind), scores, rtol=1e-9, atol=1e-12)


@given(ct.models(DEEP), st.data())
def test_scores_depend_only_on_w_qk_and_w_ov(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    """Changing every head's internal bases changes the factors, not W_QK = W_Qᵀ W_K, W_OV = W_O W_V."""
    changed = with_new_head_bases(model, data)
    for kind, scores in all_composition_scores(model).items():
        np.testing.assert_allclose(composition_scores(changed, kind), scores, rtol=1e-8, atol=1e-12)


@given(ct.models(DEEP), st.data())
def test_rescaling_one_heads_factors_leaves_scores_unchanged(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    layer = data.draw(st.integers(0, model.cfg.n_layers - 1))
    head = data.draw(st.integers(0, model.cfg.n_heads - 1))
    factor = data.draw(st.sampled_from(["W_Q", "W_K", "W_V", "W_O"]))
    scale = data.draw(st.sampled_from([-3.0, 1e-3, 7.5, 1e4]))
    weights = np.array(getattr(model, factor))
    weights[layer, head] *= scale
    scaled = model.replace(**{factor: weights})
    for kind, scores in all_composition_scores(model).items():
        np.testing.assert_allclose(composition_scores(scaled, kind), scores, rtol=1e-8, atol=1e-12)


def test_orthogonal_heads_do_not_compose_and_aligned_rank_one_heads_fully_do() -> None:
    """Hand-built: the writer writes e₀; a reader reading e₀ scores 1, one reading e₁ scores 0."""
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 4, "d_head": 1, "d_vocab": 3, "n_ctx": 2}
    e = np.eye(4)
    W_Q, W_K, W_V = (np.zeros((2, 2, 1, 4)) for _ in range(3))
    W_O = np.zeros((2, 2, 4, 1))
    W_O[0, 0, :, 0], W_V[0, 0, 0] = e[0], e[2]  # writer 0.0: W_OV = e₀ e₂ᵀ
    W_K[1, 0, 0], W_Q[1, 0, 0] = e[0], e[3]  # 1.0 keys read e₀: K-composes with 0.0
    W_K[1, 1, 0], W_Q[1, 1, 0] = e[1], e[3]  # 1.1 keys read e₁: no composition
    W_V[1, 0, 0], W_O[1, 0, :, 0] = e[0], e[3]  # 1.0 values read e₀: V-composes
    W_V[1, 1, 0], W_O[1, 1, :, 0] = e[1], e[3]
    model = AttnOnlyTransformer(
        cfg, W_E=np.ones((4, 3)), W_P=np.ones((4, 2)), W_U=np.ones((3, 4)),
        W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_O,
    )  # fmt: skip
    K, V, Q = (composition_scores(model, kind) for kind in "KVQ")
    assert K[0, 0, 1, 0] == pytest.approx(1.0) and K[0, 0, 1, 1] == pytest.approx(0.0)
    assert V[0, 0, 1, 0] == pytest.approx(1.0) and V[0, 0, 1, 1] == pytest.approx(0.0)
    assert Q[0, 0, 1, 0] == pytest.approx(0.0)  # queries read e₃, which nobody writes
    assert np.isnan(K[0, 1, 1, 0])  # head 0.1 writes nothing: undefined, not 0


def test_float32_scores_agree_with_float64() -> None:
    cfg = {"n_layers": 2, "n_heads": 3, "d_model": 32, "d_head": 8, "d_vocab": 5, "n_ctx": 4}
    low = AttnOnlyTransformer.random(cfg, seed=3, dtype=np.float32)
    high = AttnOnlyTransformer.random(cfg, seed=3)
    for kind, scores in all_composition_scores(low).items():
        assert scores.dtype == np.float32
        np.testing.assert_allclose(scores, composition_scores(high, kind), rtol=1e-4)


def test_kinds_are_checked_and_case_insensitive() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 1, "d_model": 4, "d_head": 2, "d_vocab": 3, "n_ctx": 2}
    )
    np.testing.assert_array_equal(composition_scores(model, "k"), composition_scores(model, "K"))
    with pytest.raises(circuits.AnalysisError, match="'QK'"):
        composition_scores(model, "QK")
    with pytest.raises(circuits.AnalysisError, match="n_samples"):
        composition_baseline(model, n_samples=0)


# ---------------------------------------------------------------------- baseline
def test_rms_score_of_randomly_oriented_heads_is_one_over_root_d() -> None:
    """E[C²] = 1/d when one head's orientation is Haar-random: checked by rotating a real head."""
    d = 6
    cfg = {"n_layers": 2, "n_heads": 1, "d_model": d, "d_head": 2, "d_vocab": 3, "n_ctx": 2}
    model = AttnOnlyTransformer.random(cfg, seed=1)
    rng = np.random.default_rng(0)
    squares = []
    for _ in range(600):
        U = np.linalg.qr(rng.standard_normal((d, d)))[0]
        W_O, W_V = np.array(model.W_O), np.array(model.W_V)
        W_O[0, 0], W_V[0, 0] = U @ W_O[0, 0], W_V[0, 0] @ U.T  # W_OV → U W_OV Uᵀ
        squares.append(composition_scores(model.replace(W_O=W_O, W_V=W_V), "K")[0, 0, 1, 0] ** 2)
    standard_error = np.std(squares) / np.sqrt(len(squares))
    assert abs(np.mean(squares) - 1 / d) < 4 * standard_error
    assert composition_baseline(model) == pytest.approx(1 / np.sqrt(d))


def test_monte_carlo_baseline_is_close_to_and_below_the_rms() -> None:
    cfg = {"n_layers": 2, "n_heads": 1, "d_model": 16, "d_head": 4, "d_vocab": 3, "n_ctx": 2}
    model = AttnOnlyTransformer.random(cfg)
    estimate = composition_baseline(model, n_samples=3000, seed=1)
    rms = composition_baseline(model)
    assert 0.85 * rms < estimate < 1.01 * rms  # E[C] ≤ √E[C²], tight when C concentrates
    assert composition_baseline(model, n_samples=3000, seed=1) == estimate  # reproducible


@given(ct.models(DEEP), st.sampled_from("QKV"))
def test_relative_scores_are_scores_over_the_baseline(
    model: AttnOnlyTransformer, kind: str
) -> None:
    np.testing.assert_allclose(
        relative_composition_scores(model, kind),
        composition_scores(model, kind) * np.sqrt(model.cfg.d_model),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scores_stay_finite_and_scale_free_at_extreme_scales(dtype: type) -> None:
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_head": 4, "d_vocab": 5, "n_ctx": 4}
    model = AttnOnlyTransformer.random(cfg, seed=7, dtype=dtype)
    huge = model.replace(
        **{name: 1e6 * getattr(model, name) for name in ("W_Q", "W_K", "W_V", "W_O")}
    )
    tiny = model.replace(
        **{name: 1e-6 * getattr(model, name) for name in ("W_Q", "W_K", "W_V", "W_O")}
    )
    for kind, scores in all_composition_scores(model).items():
        for scaled in (huge, tiny):
            np.testing.assert_allclose(composition_scores(scaled, kind), scores, rtol=1e-4)
