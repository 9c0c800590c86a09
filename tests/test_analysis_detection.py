"""Behavioural scores against loop references; detection of the heads of hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_models import induction_model
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer
from circuits import testing as ct
from circuits.analysis import (
    behaviour_scores,
    copying_evaluator,
    detect_heads,
    detection_pattern,
    detection_scores,
    repeated_random_tokens,
)
from circuits.analysis.detection import DETECTORS

MODELS = ct.configs(
    n_layers=(1, 2), n_heads=(1, 2), d_model=(2, 6), d_head=(1, 3), d_vocab=(3, 12), n_ctx=(5, 10)
)  # fmt: skip


def with_bos(model: AttnOnlyTransformer, bos: int | None) -> AttnOnlyTransformer:
    return model.replace(bos_token=bos)


@st.composite
def models_and_bos(draw: st.DrawFn) -> AttnOnlyTransformer:
    model = draw(ct.models(MODELS))
    bos = draw(st.none() | st.integers(0, model.cfg.d_vocab - 1))
    return with_bos(model, bos)


@given(models_and_bos(), st.integers(1, 3), ct.seeds())
def test_repeated_random_tokens_are_bos_then_a_run_of_distinct_tokens_twice(
    model: AttnOnlyTransformer, n_samples: int, seed: int
) -> None:
    tokens = repeated_random_tokens(model, n_samples=n_samples, seed=seed)
    b = 0 if model.bos_token is None else 1
    run = (tokens.shape[1] - b) // 2
    assert tokens.shape == (n_samples, b + 2 * run) and tokens.shape[1] <= model.cfg.n_ctx
    assert run == min(64, (model.cfg.n_ctx - b) // 2, model.cfg.d_vocab - b)
    if b:
        assert np.all(tokens[:, 0] == model.bos_token)
    first, second = tokens[:, b : b + run], tokens[:, b + run :]
    np.testing.assert_array_equal(first, second)
    assert all(len(set(row)) == run for row in first.tolist())
    assert model.bos_token not in first
    again = repeated_random_tokens(model, n_samples=n_samples, seed=seed)
    np.testing.assert_array_equal(again, tokens)


def reference_scores(model: AttnOnlyTransformer, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The definitions, written with explicit loops over sequences, queries and keys."""
    _, cache = model.run_with_cache(tokens)
    b = 0 if model.bos_token is None else 1
    run = (tokens.shape[1] - b) // 2
    previous = ct.previous_token_positions(tokens)
    induction = ct.induction_positions(tokens)
    u = model.W_U - model.W_U.mean(axis=0)
    out = {name: np.zeros((model.cfg.n_layers, model.cfg.n_heads)) for name in
           ("previous_token", "duplicate_token", "induction", "current_token", "first_token",
            "copying")}  # fmt: skip
    for layer, head in model.cfg.heads():
        A = cache.pattern(layer, head)
        output = cache.head_output(layer, head)
        prev, dup, ind, num, den = [], [], [], 0.0, 0.0
        for s in range(tokens.shape[0]):
            logits = output[s] @ u.T  # [pos, V]: centred direct effect on every logit
            for i in range(tokens.shape[1]):
                if i >= 1:
                    prev.append(A[s, i, previous[s, i]])
                    for j in range(b, i + 1):
                        effect = logits[i, tokens[s, j]]
                        num, den = num + A[s, i, j] * effect, den + A[s, i, j] * abs(effect)
                if i >= b + run:
                    earlier = [j for j in range(i) if tokens[s, j] == tokens[s, i]]
                    assert earlier == [i - run]
                    dup.append(A[s, i, earlier[0]])
                    ind.append(A[s, i, induction[s, i]])
        out["previous_token"][layer, head] = np.mean(prev)
        out["duplicate_token"][layer, head] = np.mean(dup)
        out["induction"][layer, head] = np.mean(ind)
        out["copying"][layer, head] = num / den if den > 0 else np.nan
        n = tokens.shape[1]
        out["current_token"][layer, head] = np.mean(
            [A[s, i, i] for s in range(len(A)) for i in range(n)]
        )
        out["first_token"][layer, head] = np.mean(
            [A[s, i, 0] for s in range(len(A)) for i in range(n)]
        )
    return out


@given(models_and_bos(), ct.seeds())
def test_behaviour_scores_match_the_loop_reference(model: AttnOnlyTransformer, seed: int) -> None:
    scores = behaviour_scores(model, n_samples=2, seed=seed)
    expected = reference_scores(model, repeated_random_tokens(model, n_samples=2, seed=seed))
    for name, values in expected.items():
        np.testing.assert_allclose(scores[name], values, rtol=1e-9, atol=1e-12, err_msg=name)


@given(models_and_bos(), st.data())
def test_behaviour_scores_do_not_depend_on_the_residual_basis(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    changed = ct.change_residual_basis(model, data.draw(ct.invertible_matrices(model.cfg.d_model)))
    before, after = behaviour_scores(model, n_samples=2), behaviour_scores(changed, n_samples=2)
    for name, values in before.items():
        np.testing.assert_allclose(after[name], values, rtol=1e-6, atol=1e-9, err_msg=name)


def test_detect_heads_recovers_the_hand_built_heads() -> None:
    found = detect_heads(induction_model(), n_samples=4)
    assert set(found) == {"previous_token", "duplicate_token", "induction"}
    for behaviour, head in [
        ("previous_token", "0.0"),
        ("duplicate_token", "0.1"),
        ("induction", "1.0"),
    ]:
        ranking = found[behaviour]
        assert sorted(name for name, _ in ranking) == ["0.0", "0.1", "1.0", "1.1"]
        assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
        assert ranking[0][0] == head and ranking[0][1] > 0.99, (behaviour, ranking)
        assert ranking[1][1] < 0.3, (behaviour, ranking)


def test_copying_evaluator_sees_copying_and_anti_copying() -> None:
    model = induction_model(gains=np.linspace(1.0, 3.0, 8))
    scores = copying_evaluator(model, n_samples=4)
    assert scores[1, 0] > 0.99
    assert np.isnan(scores[0, 0]) and np.isnan(scores[0, 1])  # writes nothing W_U reads
    W_O = np.array(model.W_O)
    W_O[1, 0] *= -1
    assert copying_evaluator(model.replace(W_O=W_O), n_samples=4)[1, 0] < -0.99


def test_detection_without_bos_runs_from_position_zero() -> None:
    model = induction_model(bos=False)
    tokens = repeated_random_tokens(model, n_samples=2)
    assert tokens.shape == (2, 16) and 0 in tokens  # token 0 is an ordinary token here
    assert detect_heads(model, n_samples=2)["induction"][0][0] == "1.0"


def test_bad_sizes_are_reported() -> None:
    model = induction_model()  # 16 positions, 7 non-BOS tokens
    with pytest.raises(circuits.AnalysisError, match=r"seq_len must be an integer in \[2, 7\]"):
        detect_heads(model, seq_len=8)
    with pytest.raises(circuits.AnalysisError, match="n_samples"):
        detect_heads(model, n_samples=0)
    tiny = AttnOnlyTransformer.random(
        {"n_layers": 1, "n_heads": 1, "d_model": 2, "d_head": 1, "d_vocab": 5, "n_ctx": 4}
    ).replace(bos_token=0)
    with pytest.raises(circuits.AnalysisError, match="n_ctx=4"):
        detect_heads(tiny)


BEHAVIOUR_OF_ROLE = {
    "previous-token": "previous_token",
    "duplicate-token": "duplicate_token",
    "induction": "induction",
}


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@pytest.mark.parametrize(("code", "d_code"), [("one-hot", None), ("random", 8)])
def test_detect_heads_recovers_the_roles_of_the_library_induction_models(
    mechanism: str, code: str, d_code: int | None
) -> None:
    model = circuits.induction_model(12, 20, mechanism=mechanism, code=code, d_code=d_code)  # type: ignore[arg-type]
    found = detect_heads(model, n_samples=4)
    roles = model.metadata["head_roles"]
    assert set(roles.values()) == {
        "induction",
        "previous-token" if mechanism == "K" else "duplicate-token",
    }
    for head, role in roles.items():
        best, score = found[BEHAVIOUR_OF_ROLE[role]][0]
        assert best == head and score > 0.99, (role, found[BEHAVIOUR_OF_ROLE[role]])


# ---------------------------------------------------------------------- on the caller's sequences
def loop_detection_pattern(tokens: np.ndarray, behaviour: str) -> np.ndarray:
    """Each behaviour's pattern entry by entry, from its definition."""
    n = len(tokens)
    rule = {
        "previous_token": lambda i, j: j == i - 1,
        "duplicate_token": lambda i, j: j < i and tokens[j] == tokens[i],
        "induction": lambda i, j: 1 <= j <= i and j - 1 < i and tokens[j - 1] == tokens[i],
        "current_token": lambda i, j: j == i,
        "first_token": lambda i, j: j == 0,
    }[behaviour]
    return np.array([[float(j <= i and rule(i, j)) for j in range(n)] for i in range(n)])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=9), st.sampled_from(DETECTORS))
def test_detection_patterns_follow_their_definitions(tokens: list[int], behaviour: str) -> None:
    ids = np.array(tokens)
    np.testing.assert_array_equal(
        detection_pattern(ids, behaviour), loop_detection_pattern(ids, behaviour)
    )
    batched = detection_pattern(np.stack([ids, ids[::-1]]), behaviour)
    np.testing.assert_array_equal(batched[1], loop_detection_pattern(ids[::-1], behaviour))


def loop_score(A: np.ndarray, D: np.ndarray, measure: str, no_bos: bool, no_current: bool) -> float:
    """One sequence's score, entry by entry: the share of kept attention on D, or one minus the
    mean L1 distance of a row over the kept entries."""
    n = len(A)
    kept = [
        (i, j)
        for i in range(n)
        for j in range(n)
        if not (no_bos and j == 0) and not (no_current and i == j)
    ]
    if measure == "mul":
        return sum(A[i, j] * D[i, j] for i, j in kept) / sum(A[i, j] for i, j in kept)
    return 1 - sum(abs(A[i, j] - D[i, j]) for i, j in kept) / n


@given(ct.models(MODELS), ct.seeds(), st.sampled_from(DETECTORS), st.sampled_from(["mul", "abs"]),
       st.booleans(), st.booleans())  # fmt: skip
def test_detection_scores_match_the_loop_reference(
    model: AttnOnlyTransformer,
    seed: int,
    behaviour: str,
    measure: str,
    no_bos: bool,
    no_current: bool,
) -> None:
    tokens = np.random.default_rng(seed).integers(0, model.cfg.d_vocab, (2, model.cfg.n_ctx))
    _, cache = model.run_with_cache(tokens)
    scores = detection_scores(
        model, behaviour, tokens=tokens, error_measure=measure, exclude_bos=no_bos,
        exclude_current_token=no_current,
    )  # fmt: skip
    for layer, head in model.cfg.heads():
        A = cache.pattern(layer, head)
        expected = np.mean([
            loop_score(A[s], loop_detection_pattern(tokens[s], behaviour), measure, no_bos, no_current)
            for s in range(2)
        ])  # fmt: skip
        np.testing.assert_allclose(scores[layer, head], expected, rtol=1e-12, atol=1e-12)


def test_detection_on_the_callers_sequences_finds_the_hand_built_heads() -> None:
    model = induction_model()
    rng = np.random.default_rng(0)
    run = rng.permutation(np.arange(1, model.cfg.d_vocab))[:6]
    tokens = np.concatenate([[model.bos_token], run, run])
    found = detect_heads(model, tokens=tokens, exclude_bos=True)
    assert set(found) == set(DETECTORS)
    assert found["previous_token"][0][0] == "0.0" and found["previous_token"][0][1] > 0.99
    # "mul" is the share of all kept attention on the pattern: first-copy queries have no
    # target, so even a perfect induction head scores well below 1 here
    (top, score), (_, runner_up) = found["induction"][:2]
    assert top == "1.0" and score > 0.5 > 2 * runner_up, found["induction"]
    _, cache = model.run_with_cache(tokens)
    own = np.tril(np.ones((len(tokens), len(tokens)))) / np.arange(1, len(tokens) + 1)[:, None]
    uniform = detection_scores(cache, own, error_measure="abs", heads=["1.0"])
    assert np.isnan(uniform[0, 0]) and 0 < uniform[1, 0] < 1  # only the head asked is scored


@pytest.mark.parametrize(
    ("behaviour", "options", "message"),
    [
        ("induction_head", {}, "behaviour: expected one of"),
        (np.ones((3, 3)), {}, "lower-triangular"),
        (np.ones((2, 2)), {}, r"expected shape \[3, 3\]"),
        (2 * np.eye(3), {}, r"entries must lie in \[0, 1\]"),
        ("induction", {"error_measure": "l2"}, "error_measure: expected one of"),
        ("induction", {"heads": ["2.0"]}, "layer 2 out of range"),
    ],
)
def test_bad_detection_requests_are_named(
    behaviour: object, options: dict[str, object], message: str
) -> None:
    model = induction_model()
    with pytest.raises(circuits.CircuitsError, match=message):
        detection_scores(model, behaviour, tokens=np.array([0, 1, 2]), **options)


def test_detection_needs_tokens_with_a_model_and_none_with_a_cache() -> None:
    model = induction_model()
    _, cache = model.run_with_cache(np.array([0, 1, 2]))
    with pytest.raises(circuits.AnalysisError, match="needs tokens"):
        detection_scores(model, "induction")
    with pytest.raises(circuits.AnalysisError, match="not with a cache"):
        detection_scores(cache, "induction", tokens=np.array([0, 1, 2]))
    with pytest.raises(circuits.AnalysisError, match="expected an AttnOnlyTransformer"):
        detection_scores(None, "induction", tokens=np.array([0, 1, 2]))  # type: ignore[arg-type]


def test_copying_reads_the_unembedding_through_the_normalisation() -> None:
    cfg = circuits.TransformerConfig(2, 2, 8, 3, 9, 8, normalization_type="LN")
    model = AttnOnlyTransformer.random(cfg, seed=2, biases=True).replace(bos_token=0)
    folded = circuits.fold_layer_norm(model)
    np.testing.assert_allclose(
        copying_evaluator(model, n_samples=2), copying_evaluator(folded, n_samples=2), rtol=1e-9
    )
    ignored = model.replace(w_LN_final=np.ones(8))  # a copying score blind to the final weight
    assert not np.allclose(
        copying_evaluator(ignored, n_samples=2), copying_evaluator(model, n_samples=2)
    )
