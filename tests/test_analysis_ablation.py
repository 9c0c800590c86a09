"""Ablation with frozen or recomputed patterns, losses and term importance: exact references."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_models import induction_model
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer, path_expansion
from circuits import testing as ct
from circuits.analysis import (
    ablate_heads,
    ablate_paths,
    frozen_forward,
    head_ablation_effects,
    loss_recovery,
    next_token_loss,
    order_importance,
    repeated_random_tokens,
)

MODELS = ct.configs(
    n_layers=(1, 2), n_heads=(1, 2), d_model=(1, 5), d_head=(1, 3), d_vocab=(2, 6), n_ctx=(2, 5)
)  # fmt: skip
ONE_LAYER = ct.configs(
    n_layers=1, n_heads=(1, 3), d_model=(1, 5), d_head=(1, 3), d_vocab=(2, 6), n_ctx=(2, 5)
)  # fmt: skip


@st.composite
def model_and_tokens(draw: st.DrawFn, configs: st.SearchStrategy = MODELS) -> tuple:  # type: ignore[type-arg]
    model = draw(ct.models(configs))
    return model, draw(ct.token_sequences(model, length=(2, model.cfg.n_ctx), batch=2))


@given(model_and_tokens())
def test_frozen_forward_with_its_own_patterns_is_the_forward_pass(run: tuple) -> None:  # type: ignore[type-arg]
    model, tokens = run
    logits, cache = model.run_with_cache(tokens)
    np.testing.assert_allclose(frozen_forward(model, tokens, cache), logits, atol=1e-10)


@given(model_and_tokens(), ct.seeds())
def test_frozen_forward_is_the_path_expansion_with_frozen_patterns(run: tuple, seed: int) -> None:  # type: ignore[type-arg]
    """Another model's weights with this run's patterns: two independent computations agree."""
    model, tokens = run
    _, cache = model.run_with_cache(tokens)
    other = AttnOnlyTransformer.random(model.cfg, seed=seed, biases=True)
    np.testing.assert_allclose(
        frozen_forward(other, tokens, cache), path_expansion(other).evaluate(cache), atol=1e-9
    )


def through(head: str):  # type: ignore[no-untyped-def]
    """Paths a head's zero ablation removes: through it, or from its value bias."""
    return lambda term: head in term.heads or term.source == f"b_V[{head}]"


@given(model_and_tokens(), st.data())
def test_zero_ablation_with_frozen_patterns_drops_the_heads_paths(
    run: tuple,  # type: ignore[type-arg]
    data: st.DataObject,
) -> None:
    model, tokens = run
    head = data.draw(st.sampled_from(model.cfg.head_names()))
    _, cache = model.run_with_cache(tokens)
    np.testing.assert_allclose(
        ablate_heads(model, tokens, [head], patterns="frozen"),
        ablate_paths(model, cache, through(head)),
        atol=1e-9,
    )


@given(model_and_tokens(ONE_LAYER), st.data())
def test_one_layer_ablation_removes_or_replaces_the_heads_direct_output(
    run: tuple,  # type: ignore[type-arg]
    data: st.DataObject,
) -> None:
    """No later layer: both pattern modes give logits − W_U o (zero) or − W_U (o − mean o)."""
    model, tokens = run
    head = data.draw(st.sampled_from(model.cfg.head_names()))
    logits, cache = model.run_with_cache(tokens)
    output = cache.head_output(head)
    mean = output.mean(axis=(0, 1))
    for patterns in ("recomputed", "frozen"):
        zero = ablate_heads(model, tokens, [head], patterns=patterns)
        np.testing.assert_allclose(zero, logits - output @ model.W_U.T, atol=1e-9)
        averaged = ablate_heads(model, tokens, [head], method="mean", patterns=patterns)
        np.testing.assert_allclose(averaged, logits - (output - mean) @ model.W_U.T, atol=1e-9)


def test_patterns_recomputed_and_frozen_differ_exactly_when_a_later_head_reads() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 2, "d_model": 8, "d_head": 4, "d_vocab": 9, "n_ctx": 6}, seed=4
    )
    tokens = np.array([[1, 5, 2, 7, 3, 8]])
    for head, same in (("1.0", True), ("0.1", False)):
        frozen = ablate_heads(model, tokens, [head], patterns="frozen")
        recomputed = ablate_heads(model, tokens, [head], patterns="recomputed")
        assert np.allclose(frozen, recomputed, atol=1e-12) == same, head


def test_mean_ablation_uses_the_reference_run() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 1, "n_heads": 2, "d_model": 6, "d_head": 3, "d_vocab": 7, "n_ctx": 5}, seed=1
    )
    tokens, reference = np.array([[1, 2, 3, 4]]), np.array([[6, 6, 0, 1, 2], [3, 3, 3, 3, 3]])
    logits, cache = model.run_with_cache(tokens)
    _, ref_cache = model.run_with_cache(reference)
    mean = ref_cache.head_output("0.1").mean(axis=(0, 1))
    expected = logits - (cache.head_output("0.1") - mean) @ model.W_U.T
    got = ablate_heads(model, tokens, ["0.1"], method="mean", reference=reference)
    np.testing.assert_allclose(got, expected, atol=1e-10)


def reference_loss(logits: np.ndarray, tokens: np.ndarray) -> float:
    losses = []
    for b in range(tokens.shape[0]):
        for i in range(tokens.shape[1] - 1):
            z = logits[b, i].astype(np.float64)
            losses.append(-np.log(np.exp(z[tokens[b, i + 1]]) / np.exp(z).sum()))
    return float(np.mean(losses))


@given(st.integers(1, 3), st.integers(2, 6), st.integers(2, 9), ct.seeds())
def test_next_token_loss_matches_the_textbook_formula(
    batch: int, pos: int, vocab: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((batch, pos, vocab))
    tokens = rng.integers(0, vocab, (batch, pos))
    assert next_token_loss(logits, tokens) == pytest.approx(reference_loss(logits, tokens))
    assert next_token_loss(logits[0], tokens[0]) == pytest.approx(
        reference_loss(logits[:1], tokens[:1])
    )


def test_next_token_loss_is_stable_and_checks_shapes() -> None:
    logits = np.array([[[1e6, 0.0, -1e6], [0.0, 2e6, 0.0]]])  # only position 0 predicts
    assert next_token_loss(logits, np.array([[2, 1]])) == pytest.approx(1e6)
    assert next_token_loss(logits, np.array([[2, 2]])) == pytest.approx(2e6)
    assert next_token_loss(logits, np.array([[1, 0]])) == 0.0
    with pytest.raises(circuits.AnalysisError, match="pos ≥ 2"):
        next_token_loss(logits[:, :1], np.array([[0]]))
    with pytest.raises(circuits.AnalysisError, match=r"\[1, 3\]"):
        next_token_loss(logits, np.array([[0, 0, 1]]))
    with pytest.raises(circuits.AnalysisError, match="positions"):
        next_token_loss(logits, np.array([[0, 0]]), positions=[False, True])
    with pytest.raises(circuits.AnalysisError, match="positions"):
        next_token_loss(logits, np.array([[0, 0]]), positions=[True, True, True])


@given(st.integers(2, 6), ct.seeds())
def test_next_token_loss_on_chosen_positions(pos: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits, tokens = rng.standard_normal((2, pos, 5)), rng.integers(0, 5, (2, pos))
    keep = rng.random((2, pos)) < 0.5
    keep[0, 0] = True
    losses = [
        reference_loss(logits[b : b + 1, i : i + 2], tokens[b : b + 1, i : i + 2])
        for b in range(2) for i in range(pos - 1) if keep[b, i]
    ]  # fmt: skip
    assert next_token_loss(logits, tokens, positions=keep) == pytest.approx(np.mean(losses))


@given(model_and_tokens())
def test_head_ablation_effects_are_loss_differences(run: tuple) -> None:  # type: ignore[type-arg]
    model, tokens = run
    loss = next_token_loss(model(tokens), tokens)
    for patterns in ("recomputed", "frozen"):
        effects = head_ablation_effects(model, tokens, method="mean", patterns=patterns)
        for layer, head in model.cfg.heads():
            logits = ablate_heads(model, tokens, [(layer, head)], method="mean", patterns=patterns)
            assert effects[layer, head] == pytest.approx(next_token_loss(logits, tokens) - loss)


def second_copy(tokens: np.ndarray, run: int) -> np.ndarray:
    """Positions predicting a token of the second copy that is known from the first: BOS r r."""
    keep = np.zeros(tokens.shape[1], dtype=bool)
    keep[1 + run : -1] = True
    return keep


def test_ablating_the_induction_head_destroys_in_context_prediction() -> None:
    model = induction_model()
    tokens = repeated_random_tokens(model, n_samples=4, seed=3)
    positions = second_copy(tokens, 7)
    loss = next_token_loss(model(tokens), tokens, positions=positions)
    assert loss < 1e-3  # the hand-built circuit predicts the second copy
    for patterns in ("recomputed", "frozen"):
        effects = head_ablation_effects(model, tokens, patterns=patterns, positions=positions)
        assert effects[1, 0] > 1.0, patterns  # the second copy becomes unpredictable
        assert effects[1, 0] > 100 * abs(effects[1, 1]), patterns
    # without the previous-token head no key matches: only with patterns recomputed
    recomputed = head_ablation_effects(model, tokens, positions=positions)
    frozen = head_ablation_effects(model, tokens, patterns="frozen", positions=positions)
    assert recomputed[0, 0] > 1.0 and abs(frozen[0, 0]) < 1e-3


@given(model_and_tokens())
def test_order_importance_ends_at_the_models_loss(run: tuple) -> None:  # type: ignore[type-arg]
    model, tokens = run
    rows = order_importance(model, tokens)
    assert [order for order, _, _ in rows] == list(range(model.cfg.n_layers + 1))
    loss = next_token_loss(model(tokens), tokens)
    assert rows[-1][1] == pytest.approx(loss, abs=1e-9)
    assert sum(gain for _, _, gain in rows) == pytest.approx(np.log(model.cfg.d_vocab) - loss)
    assert len(order_importance(model, tokens, max_order=0)) == 1


@given(model_and_tokens())
def test_loss_recovery_of_the_whole_and_of_the_baseline(run: tuple) -> None:  # type: ignore[type-arg]
    model, tokens = run
    expansion = path_expansion(model)
    loss = next_token_loss(model(tokens), tokens)
    if abs(loss - np.log(model.cfg.d_vocab)) < 1e-6:
        return
    assert loss_recovery(model, tokens, expansion) == pytest.approx(1.0)
    assert loss_recovery(model, tokens, []) == pytest.approx(0.0, abs=1e-12)
    direct = expansion.filter(order=0)
    assert loss_recovery(model, tokens, direct, baseline=direct) == pytest.approx(0.0, abs=1e-12)


def test_the_induction_paths_recover_the_loss_of_the_hand_built_model() -> None:
    """Every logit of the hand-built model flows through embed → 1.0; the weak head 1.1 adds noise."""
    model = induction_model()
    tokens = repeated_random_tokens(model, n_samples=4, seed=3)
    positions = second_copy(tokens, 7)
    expansion = path_expansion(model)
    induction = [expansion.term("embed", "1.0")]
    recovered = loss_recovery(model, tokens, induction, positions=positions)
    assert recovered == pytest.approx(1.0, abs=1e-3)
    without = loss_recovery(
        model, tokens, lambda term: "1.0" not in term.heads, positions=positions
    )
    assert abs(without) < 0.05
    rows = order_importance(model, tokens, positions=positions)
    assert rows[1][2] > 0.9 * np.log(8)  # order 1 (the induction head's path) does the work


def test_bad_ablation_arguments_are_reported() -> None:
    model = induction_model()
    tokens = repeated_random_tokens(model, n_samples=1)
    with pytest.raises(circuits.AnalysisError, match="method"):
        ablate_heads(model, tokens, ["1.0"], method="resample")  # type: ignore[arg-type]
    with pytest.raises(circuits.AnalysisError, match="patterns"):
        ablate_heads(model, tokens, ["1.0"], patterns="fixed")  # type: ignore[arg-type]
    with pytest.raises(circuits.HeadError):
        ablate_heads(model, tokens, ["2.0"])
    _, cache = model.run_with_cache(tokens[:, :5])
    with pytest.raises(circuits.AnalysisError, match="cannot freeze"):
        frozen_forward(model, tokens, cache)
