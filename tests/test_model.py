"""The forward pass: against a loop implementation, and the invariances the Framework relies on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import (
    AttnOnlyTransformer,
    ConfigError,
    HeadError,
    NumericalError,
    ShapeError,
    TokenError,
    TransformerConfig,
    WeightError,
    causal_softmax,
)

POSITIONS = ("standard", "shortformer", "none")


@st.composite
def models(draw: st.DrawFn, max_layers: int = 3, biases: bool | None = None) -> AttnOnlyTransformer:
    cfg = TransformerConfig(
        n_layers=draw(st.integers(0, max_layers)),
        n_heads=draw(st.integers(1, 3)),
        d_model=draw(st.integers(2, 10)),
        d_head=draw(st.integers(1, 5)),
        d_vocab=draw(st.integers(2, 12)),
        n_ctx=draw(st.integers(1, 8)),
        attn_scale=draw(st.just(-1.0) | st.floats(0.25, 8.0)),  # -1: √d_head
        positional_embedding_type=draw(st.sampled_from(POSITIONS)),
    )
    with_biases = draw(st.booleans()) if biases is None else biases
    return AttnOnlyTransformer.random(cfg, seed=draw(st.integers(0, 2**16)), biases=with_biases)


@st.composite
def model_and_tokens(draw: st.DrawFn, **kwargs: Any) -> tuple[AttnOnlyTransformer, np.ndarray]:
    model = draw(models(**kwargs))
    batch = draw(st.integers(1, 3))
    pos = draw(st.integers(1, model.cfg.n_ctx))
    seed = draw(st.integers(0, 2**16))
    tokens = np.random.default_rng(seed).integers(0, model.cfg.d_vocab, (batch, pos))
    return model, tokens


def _norm(
    x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, kind: str, eps: float
) -> np.ndarray:
    """One vector through a normalisation, as its formula writes it."""
    if kind.startswith("LN"):
        y = (x - np.mean(x)) / np.sqrt(np.var(x) + eps)
    else:
        y = x / np.sqrt(np.mean(np.square(x)) + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _reader(model: AttnOnlyTransformer, layer: int) -> Any:
    """What layer ``layer`` (``n_layers``: the unembedding) reads of one stream vector."""
    cfg, final = model.cfg, layer == model.cfg.n_layers
    if cfg.normalization_type is None:
        return lambda x: x
    w = model.w_LN_final if final else None if model.w_LN is None else model.w_LN[layer]
    b = model.b_LN_final if final else None if model.b_LN is None else model.b_LN[layer]
    return lambda x: _norm(x, w, b, str(cfg.normalization_type), cfg.eps)


def loop_forward(model: AttnOnlyTransformer, tokens: np.ndarray) -> np.ndarray:
    """The model written out one sequence, one position, one head at a time (the reference);
    with a normalisation, heads and unembedding read it, shortformer positions added after."""
    cfg = model.cfg
    shortformer = cfg.positional_embedding_type == "shortformer"
    out = []
    for seq in tokens:
        n = len(seq)
        pos = [np.zeros(cfg.d_model) if model.W_P is None else model.W_P[:, i] for i in range(n)]
        stream = [model.W_E[:, t] + (pos[i] if cfg.positional_embedding_type == "standard" else 0)
                  for i, t in enumerate(seq)]  # fmt: skip
        for layer in range(cfg.n_layers):
            read = [_reader(model, layer)(x) for x in stream]
            qk_in = [r + pos[i] if shortformer else r for i, r in enumerate(read)]
            new = [x + model.b_O[layer] for x in stream]
            for head in range(cfg.n_heads):
                W_Q, W_K, W_V, W_O = (
                    w[layer, head] for w in (model.W_Q, model.W_K, model.W_V, model.W_O)
                )
                b_Q, b_K, b_V = (b[layer, head] for b in (model.b_Q, model.b_K, model.b_V))
                for i in range(n):
                    q = W_Q @ qk_in[i] + b_Q
                    scores = np.array([q @ (W_K @ qk_in[j] + b_K) for j in range(i + 1)])
                    scores /= cfg.attn_scale
                    weights = np.exp(scores - scores.max())
                    weights /= weights.sum()
                    new[i] = new[i] + W_O @ sum(
                        w * (W_V @ read[j] + b_V) for j, w in enumerate(weights)
                    )
            stream = new
        final = _reader(model, cfg.n_layers)
        out.append([model.W_U @ final(x) + model.b_U for x in stream])
    return np.array(out)


@given(model_and_tokens())
def test_forward_matches_loop_implementation(case: tuple[AttnOnlyTransformer, np.ndarray]) -> None:
    model, tokens = case
    np.testing.assert_allclose(
        model.forward(tokens), loop_forward(model, tokens), rtol=1e-10, atol=1e-10
    )


@given(model_and_tokens())
def test_concatenated_heads_equal_sum_of_heads(
    case: tuple[AttnOnlyTransformer, np.ndarray],
) -> None:
    """x^{l+1} − x^l = Σ_h W_O^h Σ_j A^h_ij (W_V^h x_j + b_V^h) + b_O: concat-then-W_O = sum of heads."""
    model, tokens = case
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        heads = sum(cache.head_output(layer, h) for h in range(model.cfg.n_heads))
        np.testing.assert_allclose(
            cache.resid(layer + 1) - cache.resid(layer), heads + model.b_O[layer], atol=1e-10
        )


@given(model_and_tokens(), st.data())
def test_causality(case: tuple[AttnOnlyTransformer, np.ndarray], data: st.DataObject) -> None:
    model, tokens = case
    cut = data.draw(st.integers(0, tokens.shape[1] - 1))
    changed = tokens.copy()
    changed[:, cut:] = (changed[:, cut:] + 1) % model.cfg.d_vocab
    np.testing.assert_array_equal(model.forward(tokens)[:, :cut], model.forward(changed)[:, :cut])


def _random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@given(model_and_tokens(), st.integers(0, 2**16))
def test_residual_rotation_leaves_logits_unchanged(
    case: tuple[AttnOnlyTransformer, np.ndarray], seed: int
) -> None:
    """x → R x for orthogonal R: read weights W → W Rᵀ, write weights W → R W."""
    model, tokens = case
    R = _random_orthogonal(np.random.default_rng(seed), model.cfg.d_model)
    rotated = model.replace(
        W_E=R @ model.W_E,
        W_P=None if model.W_P is None else R @ model.W_P,
        W_Q=model.W_Q @ R.T,
        W_K=model.W_K @ R.T,
        W_V=model.W_V @ R.T,
        W_O=R @ model.W_O,
        b_O=model.b_O @ R.T,
        W_U=model.W_U @ R.T,
    )
    np.testing.assert_allclose(rotated.forward(tokens), model.forward(tokens), atol=1e-9)


def _head_basis_changes(model: AttnOnlyTransformer, seed: int) -> np.ndarray:
    """One well-conditioned invertible ``d_head × d_head`` matrix per head, ``[L, H, k, k]``."""
    L, H, k = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head
    return np.eye(k) + 0.3 * np.random.default_rng(seed).standard_normal((L, H, k, k)) / np.sqrt(k)


@given(model_and_tokens(), st.integers(0, 2**16))
def test_value_basis_change_leaves_logits_unchanged(
    case: tuple[AttnOnlyTransformer, np.ndarray], seed: int
) -> None:
    """W_V → M W_V, b_V → M b_V, W_O → W_O M⁻¹ leaves W_OV, hence the logits, unchanged."""
    model, tokens = case
    M = _head_basis_changes(model, seed)
    changed = model.replace(
        W_V=M @ model.W_V,
        b_V=np.einsum("lhij,lhj->lhi", M, model.b_V),
        W_O=model.W_O @ np.linalg.inv(M),
    )
    np.testing.assert_allclose(changed.forward(tokens), model.forward(tokens), atol=1e-8)


@given(model_and_tokens(), st.integers(0, 2**16))
def test_query_key_basis_change_leaves_scores_unchanged(
    case: tuple[AttnOnlyTransformer, np.ndarray], seed: int
) -> None:
    """W_Q → N W_Q, W_K → N⁻ᵀ W_K (biases alike) leaves W_QK and every score unchanged."""
    model, tokens = case
    N = _head_basis_changes(model, seed)
    N_inv_T = np.linalg.inv(N).swapaxes(-1, -2)
    changed = model.replace(
        W_Q=N @ model.W_Q,
        b_Q=np.einsum("lhij,lhj->lhi", N, model.b_Q),
        W_K=N_inv_T @ model.W_K,
        b_K=np.einsum("lhij,lhj->lhi", N_inv_T, model.b_K),
    )
    _, cache = model.run_with_cache(tokens)
    _, changed_cache = changed.run_with_cache(tokens)
    for layer, head in model.cfg.heads():
        np.testing.assert_allclose(
            changed_cache.scores(layer, head), cache.scores(layer, head), atol=1e-8
        )


@given(models(max_layers=2, biases=False))
def test_scores_are_the_qk_bilinear_form(model: AttnOnlyTransformer) -> None:
    """Without biases, s_ij = x_iᵀ W_QK x_j / attn_scale with x the (query/key) input stream."""
    tokens = np.arange(model.cfg.n_ctx) % model.cfg.d_vocab
    _, cache = model.run_with_cache(tokens)
    for layer, head in model.cfg.heads():
        x = cache.resid(layer)[0]
        if model.cfg.positional_embedding_type == "shortformer":
            x = x + model.W_P.T[: len(tokens)]
        W_QK = model.W_QK(layer, head).AB
        np.testing.assert_allclose(
            cache.scores(layer, head)[0], x @ W_QK @ x.T / model.cfg.attn_scale, atol=1e-10
        )
        W_OV = model.W_OV(f"{layer}.{head}").AB
        expected = cache.pattern(layer, head)[0] @ cache.resid(layer)[0] @ W_OV.T
        np.testing.assert_allclose(cache.head_output(layer, head)[0], expected, atol=1e-10)


def test_zero_layer_model_is_a_bigram_table() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 0, "n_heads": 1, "d_model": 5, "d_head": 1, "d_vocab": 7, "n_ctx": 4},
        biases=True,
    )
    tokens = np.array([3, 1, 6])
    expected = (model.W_U @ (model.W_E[:, tokens] + model.W_P[:, :3])).T + model.b_U
    np.testing.assert_allclose(model.forward(tokens), expected, atol=1e-12)


# ---------------------------------------------------------------------- softmax and stability
@given(st.integers(1, 6), st.floats(-1e3, 1e3), st.integers(0, 2**16))
def test_softmax_shift_invariant_and_stochastic(n: int, shift: float, seed: int) -> None:
    scores = np.random.default_rng(seed).standard_normal((2, n, n)) * 5
    pattern = causal_softmax(scores)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-12)
    assert np.all(np.triu(pattern, k=1) == 0)
    np.testing.assert_allclose(causal_softmax(scores + shift), pattern, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_huge_scores_stay_finite(dtype: Any, scale: float) -> None:
    """Scores of order 1e6 saturate the softmax to one-hot rows without overflow or NaN."""
    cfg = {"n_layers": 1, "n_heads": 1, "d_model": 4, "d_head": 4, "d_vocab": 4, "n_ctx": 4,
           "attn_scale": 1.0}  # fmt: skip
    eye = np.eye(4, dtype=dtype)
    shift = np.roll(eye, 1, axis=0)  # W_K e_t = e_{t+1}: query token t+1 matches key token t
    model = AttnOnlyTransformer(
        cfg, W_E=eye, W_U=eye, W_P=np.zeros((4, 4), dtype),
        W_Q=scale * eye[None, None], W_K=shift[None, None], W_V=eye[None, None], W_O=eye[None, None],
    )  # fmt: skip
    logits, cache = model.run_with_cache(np.array([0, 1, 2, 1]))
    pattern = cache.pattern(0, 0)[0]
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(pattern))
    np.testing.assert_allclose(pattern[2, :3], [0, 1, 0], atol=1e-6)  # token 2 finds token 1
    np.testing.assert_allclose(pattern[3], [1, 0, 0, 0], atol=1e-6)  # token 1 finds token 0
    assert logits.dtype == dtype


def test_overflowing_scores_raise() -> None:
    big = np.full((1, 1, 2, 2), 1e30, dtype=np.float32)
    model = AttnOnlyTransformer(
        {"n_layers": 1, "n_heads": 1, "d_model": 2, "d_head": 2, "d_vocab": 2, "n_ctx": 2,
         "positional_embedding_type": "none"},
        W_E=np.ones((2, 2), np.float32), W_U=np.ones((2, 2), np.float32),
        W_Q=big, W_K=big, W_V=big, W_O=big,
    )  # fmt: skip
    with pytest.raises(NumericalError, match="not finite"):
        model.forward([0, 1])


# ---------------------------------------------------------------------- shapes, dtypes, batches
def test_unbatched_tokens_give_unbatched_logits() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 2, "d_model": 6, "d_head": 3, "d_vocab": 9, "n_ctx": 5}
    )
    tokens = np.array([4, 0, 8, 8])
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (4, 9)
    assert cache.pattern("1.1").shape == (1, 4, 4)
    np.testing.assert_array_equal(model.forward(tokens[None])[0], logits)
    np.testing.assert_array_equal(model(list(tokens)), logits)


def test_dtype_is_kept() -> None:
    cfg = {"n_layers": 1, "n_heads": 2, "d_model": 6, "d_head": 3, "d_vocab": 9, "n_ctx": 5}
    model32 = AttnOnlyTransformer.random(cfg, dtype=np.float32)
    assert model32.dtype == np.float32
    assert model32.forward([1, 2]).dtype == np.float32
    assert model32.W_OV(0, 1).dtype == np.float32
    mixed = model32.replace(W_E=model32.W_E.astype(np.float64))
    assert mixed.dtype == np.float64 and mixed.W_Q.dtype == np.float64
    assert AttnOnlyTransformer.random(cfg).forward([1]).dtype == np.float64


def test_weights_are_read_only_copies() -> None:
    cfg = {"n_layers": 1, "n_heads": 1, "d_model": 3, "d_head": 2, "d_vocab": 4, "n_ctx": 3}
    W_E = np.ones((3, 4))
    model = AttnOnlyTransformer.random(cfg).replace(W_E=W_E)
    W_E[0, 0] = 99.0
    assert model.W_E[0, 0] == 1.0
    with pytest.raises(ValueError):
        model.W_E[0, 0] = 2.0


def test_circuits_are_the_papers_products() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 3, "d_model": 8, "d_head": 2, "d_vocab": 5, "n_ctx": 4}, seed=3
    )
    np.testing.assert_allclose(model.W_QK(1, 2).AB, model.W_Q[1, 2].T @ model.W_K[1, 2])
    np.testing.assert_allclose(model.W_OV("0.1").AB, model.W_O[0, 1] @ model.W_V[0, 1])
    assert model.W_QK(0, 0).mdim == 2
    for ref in ((1, 2), "1.2", " 1 . 2 "):
        np.testing.assert_array_equal(model.W_QK(ref).AB, model.W_QK(1, 2).AB)


# ---------------------------------------------------------------------- bad input
CFG = {"n_layers": 1, "n_heads": 2, "d_model": 4, "d_head": 2, "d_vocab": 6, "n_ctx": 5}


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([0.0, 1.0], "integer"),
        ([[[1]]], "shape"),
        ([], "empty"),
        ([[]], "empty"),
        ([6], "outside the vocabulary"),
        ([[0, 1], [2, -1]], r"id -1 at index \(1, 1\)"),
        (list(range(6)), "exceed the context n_ctx=5"),
        ([True, False], "integer"),
        ("abc", "integer"),
    ],
)
def test_bad_tokens_get_a_clear_error(tokens: Any, message: str) -> None:
    model = AttnOnlyTransformer.random(CFG)
    with pytest.raises(TokenError, match=message):
        model.forward(tokens)


def _weights(**changes: Any) -> dict[str, Any]:
    model = AttnOnlyTransformer.random(CFG)
    return {**model.parameters(), **changes}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"W_E": np.zeros((6, 4))}, ShapeError, r"W_E: expected shape \[4, 6\], got \[6, 4\]"),
        ({"W_Q": np.zeros((1, 2, 2))}, ShapeError, r"W_Q: expected shape \[1, 2, 2, 4\]"),
        ({"b_O": np.zeros(4)}, ShapeError, r"b_O: expected shape \[1, 4\]"),
        ({"W_U": np.full((6, 4), np.nan)}, WeightError, "W_U: contains a non-finite value"),
        ({"W_K": np.zeros((1, 2, 2, 4), complex)}, WeightError, "W_K: expected a real array"),
        ({"W_V": [["a"]]}, WeightError, "W_V"),
        ({"W_P": None}, ConfigError, "W_P is required"),
    ],
)
def test_bad_weights_get_a_clear_error(changes: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        AttnOnlyTransformer(CFG, **_weights(**changes))


@pytest.mark.parametrize(
    ("cfg_changes", "message"),
    [
        ({"n_heads": 0}, "n_heads must be an integer ≥ 1"),
        ({"d_model": 2.5}, "d_model must be an integer"),
        ({"n_ctx": True}, "n_ctx must be an integer"),
        ({"attn_scale": 0.0}, "attn_scale must be a finite number > 0"),
        ({"attn_scale": float("inf")}, "attn_scale"),
        ({"positional_embedding_type": "rotary"}, "positional_embedding_type must be one of"),
        ({"d_mlp": 3}, r"unknown config keys \['d_mlp'\]"),
    ],
)
def test_bad_config_gets_a_clear_error(cfg_changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransformerConfig.from_dict({**CFG, **cfg_changes})


def test_other_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="'none'"):
        AttnOnlyTransformer({**CFG, "positional_embedding_type": "none"}, **_weights())
    with pytest.raises(ConfigError, match="bos_token 6 is outside"):
        AttnOnlyTransformer(CFG, **_weights(), bos_token=6)
    with pytest.raises(ConfigError, match="JSON"):
        AttnOnlyTransformer(CFG, **_weights(), metadata={"f": object()})
    model = AttnOnlyTransformer.random(CFG)
    with pytest.raises(HeadError, match="layer 1 out of range"):
        model.W_QK(1, 0)
    with pytest.raises(HeadError, match="not a head name"):
        model.W_OV("1-0")
    with pytest.raises(ConfigError, match="unknown fields"):
        model.replace(W_X=1)
    _, cache = model.run_with_cache([1, 2])
    with pytest.raises(HeadError, match="head 2 out of range"):
        cache.pattern(0, 2)
    with pytest.raises(ConfigError, match=r"resid\(2\)"):
        cache.resid(2)


def test_default_attn_scale_is_sqrt_d_head() -> None:
    assert TransformerConfig.from_dict({**CFG, "d_head": 16}).attn_scale == 4.0
    assert TransformerConfig.from_dict({**CFG, "attn_scale": 3}).attn_scale == 3.0


@given(
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32)
        | st.sampled_from([3e38, -3e38, float("nan"), float("inf")]),
        min_size=1,
        max_size=40,
    )
)
def test_the_finiteness_check_agrees_with_numpy(values: list[float]) -> None:
    """The one-pass check of the logits: right also when finite entries overflow their sum."""
    from circuits._arrays import all_finite

    array = np.array(values, dtype=np.float32)
    assert all_finite(array) == bool(np.all(np.isfinite(array)))


def test_overflowing_logits_raise_and_large_finite_ones_do_not() -> None:
    """The unembedding's a-priori bound decides most passes; where it cannot, the logits are
    checked entry by entry, so an overflow is still a NumericalError and a large finite logit
    is not."""
    cfg = TransformerConfig(1, 1, 4, 2, 5, 4)
    model = AttnOnlyTransformer.random(cfg, seed=1, dtype=np.float32)
    tokens = np.array([0, 1, 2])
    huge = model.replace(
        W_U=np.full((5, 4), 3e38, dtype=np.float32), W_E=np.ones((4, 5), np.float32)
    )
    with pytest.raises(NumericalError, match="logits are not finite"):
        huge(tokens)
    # rows of norm ~ 1e38 against a stream of norm ~ 2: past the bound, yet every logit finite
    large = model.replace(
        W_U=np.diag([1e38, 0, 0, 0]).astype(np.float32)[[0, 1, 2, 3, 0]],
        W_E=np.full((4, 5), 0.5, np.float32), W_O=np.zeros_like(model.W_O),
    )  # fmt: skip
    assert np.all(np.isfinite(large(tokens)))


def test_softmax_weighs_minus_infinity_zero_and_refuses_plus_infinity_and_nan() -> None:
    scores = np.array([[0.0, 0.0, 0.0], [1.0, -np.inf, 0.0], [2.0, 0.0, 1.0]])
    pattern = causal_softmax(scores)
    np.testing.assert_array_equal(pattern[1], [1.0, 0.0, 0.0])  # key 1 weighs 0, key 2 is masked
    np.testing.assert_allclose(pattern.sum(-1), 1.0)
    for bad in (np.inf, np.nan):
        broken = scores.copy()
        broken[2, 1] = bad
        with pytest.raises(NumericalError, match="not finite"):
            causal_softmax(broken)
    masked_out = scores.copy()
    masked_out[0, 2] = np.nan  # above the diagonal: never read
    np.testing.assert_array_equal(causal_softmax(masked_out), pattern)
