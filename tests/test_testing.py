"""The Hypothesis toolkit itself: strategies draw what they promise, assertions can fail."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import (
    AttnOnlyTransformer,
    ConfigError,
    FactoredMatrix,
    ShapeError,
    TokenError,
    TransformerConfig,
)
from circuits import testing as ct
from circuits.construct.induction import induction_model

SMALL = ct.configs(n_layers=(0, 2), d_model=(1, 6), d_vocab=(2, 8), n_ctx=(3, 8))
FIXED = TransformerConfig(n_layers=1, n_heads=2, d_model=4, d_head=2, d_vocab=5, n_ctx=4)


@given(
    ct.configs(
        n_layers=(1, 2),
        n_heads=3,
        d_model=(2, 5),
        d_head=1,
        d_vocab=(4, 4),
        n_ctx=(2, 9),
        positional_embedding_types=["shortformer"],
    )
)
def test_configs_respect_their_ranges(cfg: TransformerConfig) -> None:
    assert 1 <= cfg.n_layers <= 2 and cfg.n_heads == 3 and 2 <= cfg.d_model <= 5
    assert cfg.d_head == 1 and cfg.d_vocab == 4 and 2 <= cfg.n_ctx <= 9
    assert cfg.positional_embedding_type == "shortformer"
    assert cfg.attn_scale == 1.0 or 0.25 <= cfg.attn_scale <= 8.0  # √d_head, or another scale


@given(ct.models(SMALL, biases=True), ct.models(FIXED.to_dict(), biases=False))
def test_models_follow_their_config_and_bias_choice(
    with_biases: AttnOnlyTransformer, without: AttnOnlyTransformer
) -> None:
    for name in ("b_Q", "b_K", "b_V", "b_O", "b_U"):
        assert not np.any(getattr(without, name))
        assert getattr(with_biases, name).size == 0 or np.any(getattr(with_biases, name))
    assert with_biases.dtype == np.float64


@given(ct.models(SMALL), st.data())
def test_token_sequences_fit_the_model(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    tokens = data.draw(ct.token_sequences(model))
    assert tokens.ndim == 1 and 1 <= tokens.size <= model.cfg.n_ctx
    batch = data.draw(ct.token_sequences(model.cfg, length=(2, 3), batch=2))
    assert batch.shape[0] == 2 and batch.shape[1] in (2, 3)
    for array in (tokens, batch):
        assert array.min() >= 0 and array.max() < model.cfg.d_vocab
    model.forward(batch)  # accepted by the model as they are


@given(ct.models(SMALL), st.data())
def test_repeated_sequences_repeat_a_bos_free_half(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    bos = data.draw(st.integers(0, model.cfg.d_vocab - 1))
    tokens = data.draw(ct.repeated_sequences(model, bos_token=bos))
    assert tokens[0] == bos and bos not in tokens[1:]
    half = (len(tokens) - 1) // 2
    assert len(tokens) == 2 * half + 1 and half >= 1
    np.testing.assert_array_equal(tokens[1 : 1 + half], tokens[1 + half :])
    plain = data.draw(ct.repeated_sequences(model.cfg, half_length=1))
    assert len(plain) == 2 and plain[0] == plain[1]


@given(ct.models(SMALL), st.data())
def test_induction_sequences_have_one_earlier_occurrence(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    bos = model.cfg.d_vocab - 1
    tokens = data.draw(ct.induction_sequences(model, bos_token=bos))
    assert 3 <= len(tokens) <= model.cfg.n_ctx
    assert tokens[0] == bos and bos not in tokens[1:]
    earlier = [j for j in range(len(tokens) - 1) if tokens[j] == tokens[-1]]
    assert len(earlier) == 1
    assert ct.induction_target(tokens) == tokens[earlier[0] + 1]


@given(st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_induction_positions_follow_the_most_recent_earlier_copy(tokens: list[int]) -> None:
    positions = ct.induction_positions(np.array(tokens))
    for i, token in enumerate(tokens):
        copies = [j for j in range(i) if tokens[j] == token]
        assert positions[i] == (copies[-1] + 1 if copies else -1)
    batched = ct.induction_positions(np.array([tokens, tokens]))
    np.testing.assert_array_equal(batched, [positions, positions])
    np.testing.assert_array_equal(ct.previous_token_positions(tokens), np.arange(len(tokens)) - 1)


def test_induction_target_needs_an_earlier_copy() -> None:
    with pytest.raises(TokenError, match="does not occur earlier"):
        ct.induction_target(np.array([0, 1, 2]))
    with pytest.raises(TokenError, match=r"\[pos\]"):
        ct.induction_target(np.zeros((2, 2), dtype=int))


@given(st.integers(1, 6), st.data())
def test_orthogonal_and_invertible_matrices(n: int, data: st.DataObject) -> None:
    Q = data.draw(ct.orthogonal_matrices(n))
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    M = data.draw(ct.invertible_matrices(n, leading=(2, 3), condition=3.0))
    assert M.shape == (2, 3, n, n)
    assert np.all(np.linalg.cond(M) <= 3.0 + 1e-9)


@given(ct.factored_matrices(rows=(2, 4), inner=1, cols=None))
def test_factored_matrices_have_the_requested_shape(matrix: FactoredMatrix) -> None:
    m, n = matrix.shape
    assert m == n and 2 <= m <= 4 and matrix.mdim == 1


@given(ct.models(SMALL, biases=True), st.data())
def test_basis_changes_keep_the_function(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    c = model.cfg
    tokens = data.draw(ct.token_sequences(model, batch=2))
    M = data.draw(ct.invertible_matrices(c.d_model))
    moved = ct.change_residual_basis(model, M)
    ct.assert_same_logits(model, moved, tokens)
    np.testing.assert_allclose(moved.W_E, M @ model.W_E)
    bases = ct.invertible_matrices(c.d_head, leading=(c.n_layers, c.n_heads))
    G, N = data.draw(bases), data.draw(bases)
    rebased = ct.change_head_bases(model, G, N)
    ct.assert_same_logits(model, rebased, tokens)
    for layer, head in c.heads():
        np.testing.assert_allclose(
            rebased.W_Q[layer, head], G[layer, head] @ model.W_Q[layer, head]
        )
        np.testing.assert_allclose(
            rebased.W_QK(layer, head).AB, model.W_QK(layer, head).AB, atol=1e-10
        )


def test_assert_same_logits_detects_a_different_function() -> None:
    model = AttnOnlyTransformer.random(FIXED)
    other = model.replace(W_U=model.W_U * 1.001)
    with pytest.raises(AssertionError, match="logits differ: largest error at index"):
        ct.assert_same_logits(model, other, [0, 1])


def previous_token_model(n: int, beta: float) -> AttnOnlyTransformer:
    """One head whose score is β·[j = i − 1], reading one-hot positions."""
    eye = np.eye(n)
    return AttnOnlyTransformer(
        {"n_layers": 1, "n_heads": 1, "d_model": n, "d_head": n, "d_vocab": 2, "n_ctx": n,
         "attn_scale": 1.0},
        W_E=np.zeros((n, 2)), W_P=eye, W_U=np.zeros((2, n)),
        W_Q=beta * eye[None, None], W_K=np.eye(n, k=-1)[None, None],
        W_V=eye[None, None], W_O=eye[None, None],
    )  # fmt: skip


def test_assert_attends_passes_and_fails_where_it_should() -> None:
    _, cache = previous_token_model(6, beta=30.0).run_with_cache(np.zeros((2, 6), dtype=int))
    ct.assert_attends(cache, "0.0", ct.previous_token_positions, at_least=0.999)
    ct.assert_attends(cache, (0, 0), [-1, 0, 1, 2, 3, 4])
    with pytest.raises(AssertionError, match=r"head 0\.0: query 2 of sequence 0 gives attention"):
        ct.assert_attends(cache, "0.0", [-1, -1, 2, 2, 3, 4])
    _, weak = previous_token_model(6, beta=1.0).run_with_cache(np.zeros(6, dtype=int))
    with pytest.raises(AssertionError, match=r"expected ≥ 0\.9"):
        ct.assert_attends(weak, "0.0", ct.previous_token_positions)
    with pytest.raises(ShapeError, match="after its query"):
        ct.assert_attends(cache, "0.0", [1, 1, 1, 1, 1, 1])


def test_assert_terms_sum_to() -> None:
    total = np.arange(6.0).reshape(2, 3)
    ct.assert_terms_sum_to([total / 3, total / 3, total / 3], total)
    error = np.zeros((2, 3))
    error[1, 2] = 1e-6
    with pytest.raises(AssertionError, match=r"index \(1, 2\): 5\.000001 vs 5\.0"):
        ct.assert_terms_sum_to([total, error], total)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ct.configs(n_heads=0), ConfigError, "n_heads"),
        (lambda: ct.configs(d_model=(3, 2)), ConfigError, r"low ≤ high, got \(3, 2\)"),
        (lambda: ct.configs(d_vocab="big"), ConfigError, "pair of ints"),
        (lambda: ct.configs(positional_embedding_types=["rotary"]), ConfigError, "rotary"),
        (lambda: ct.token_sequences(FIXED, length=99), TokenError, "n_ctx"),
        (lambda: ct.repeated_sequences(FIXED, half_length=9), TokenError, "fit"),
        (
            lambda: ct.induction_sequences(
                TransformerConfig(0, 1, 1, 1, d_vocab=2, n_ctx=5), length=5
            ),
            ConfigError,
            "1 non-BOS tokens",
        ),
        (lambda: ct.invertible_matrices(3, condition=0.5), ConfigError, "condition"),
    ],
)
def test_bad_arguments_get_clear_errors(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_missing_hypothesis_gives_an_install_hint() -> None:
    code = "import sys; sys.modules['hypothesis'] = None; import circuits.testing"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError: circuits.testing needs Hypothesis" in result.stderr
    assert "pip install 'circuits[dev]'" in result.stderr


@given(ct.models(SMALL), st.data())
def test_assert_path_expansion_exact(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    tokens = data.draw(ct.token_sequences(model, batch=2))
    ct.assert_path_expansion_exact(model, tokens)
    ct.assert_path_expansion_exact(model, tokens, order=range(model.cfg.n_layers + 1))


def test_assert_path_expansion_exact_fails_on_a_partial_expansion() -> None:
    model = AttnOnlyTransformer.random(FIXED, biases=True)
    with pytest.raises(AssertionError, match=r"path expansion of \d+ terms: .*largest error"):
        ct.assert_path_expansion_exact(model, [1, 2, 3], order=0)


@given(ct.models(SMALL), st.data())
def test_assert_qk_expansion_exact(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    tokens = data.draw(ct.token_sequences(model))
    ct.assert_qk_expansion_exact(model, tokens)


def test_assert_qk_expansion_exact_fails_without_the_composition_terms() -> None:
    model = AttnOnlyTransformer.random({**FIXED.to_dict(), "n_layers": 2}, biases=True)
    ct.assert_qk_expansion_exact(model, [1, 2, 3], heads=["0.1"], kind="direct")  # layer 0: all
    with pytest.raises(AssertionError, match=r"QK expansion of head 1\.0 \(\d+ terms\)"):
        ct.assert_qk_expansion_exact(model, [1, 2, 3], heads=[(1, 0)], kind="direct")


INDUCTION = induction_model(vocab_size=6, n_ctx=10)


@given(ct.induction_sequences(INDUCTION))
def test_the_induction_circuit_is_right_on_every_induction_sequence(tokens: np.ndarray) -> None:
    """The example of docs/testing.md: the strategies and assertions on a hand-built circuit."""
    logits, cache = INDUCTION.run_with_cache(tokens)
    assert logits[-1].argmax() == ct.induction_target(tokens)
    ct.assert_attends(cache, "0.0", ct.previous_token_positions, at_least=0.999)
    last_query_only = np.full(len(tokens), -1)
    last_query_only[-1] = ct.induction_positions(tokens)[-1]
    ct.assert_attends(cache, "1.0", last_query_only, at_least=0.999)


@given(st.data())
def test_one_ordinary_token_leaves_only_the_shortest_induction_sequence(
    data: st.DataObject,
) -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 0, "n_heads": 1, "d_model": 1, "d_head": 1, "d_vocab": 2, "n_ctx": 6}
    )
    tokens = data.draw(ct.induction_sequences(model, bos_token=1))
    np.testing.assert_array_equal(tokens, [1, 0, 0])
    with pytest.raises(ConfigError, match="leaves 1 non-BOS tokens; these sequences need 2"):
        ct.induction_sequences(model, bos_token=1, length=4)
