"""The library finds the induction circuit of the shipped trained model (no torch needed).

Every check runs the library's analyses on the weights of ``zoo.load("attn2l-induction")``, in
float64. The head roles stored in the model's metadata were written by the training script from
``detect_heads``; the tests check them against a fresh detection and then check, independently of
that record, what the Framework predicts of an induction circuit: K-composition between the two
heads, a loss that falls on repeated text, logits carried by the induction heads' paths, attention
set by the K-composition term, and a previous-token head that acts only through the keys.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import circuits
from circuits import zoo
from circuits.analysis import (
    ablate_heads,
    circuit_recovery,
    composition_baseline,
    composition_scores,
    copying_scores,
    detect_heads,
    next_token_loss,
    prefix_matching_scores,
    repeated_random_tokens,
)

NAME = "attn2l-induction"
ROLE_THRESHOLD = 0.3  # the rule recorded in the model's metadata


@pytest.fixture(scope="module")
def model() -> circuits.AttnOnlyTransformer:
    return zoo.load(NAME, dtype=np.float64)


@pytest.fixture(scope="module")
def roles(model: circuits.AttnOnlyTransformer) -> tuple[str, list[str]]:
    """The previous-token head and the induction heads, as recorded in the metadata."""
    recorded = model.metadata["head_roles"]
    assert len(recorded["previous_token"]) == 1
    return recorded["previous_token"][0], list(recorded["induction"])


@pytest.fixture(scope="module")
def repeated(model: circuits.AttnOnlyTransformer) -> tuple[np.ndarray, int]:
    """``[BOS] r r`` sequences (a seed the training never saw) and the run length ``s``."""
    tokens = repeated_random_tokens(model, n_samples=16, seed=1)
    return tokens, (tokens.shape[1] - 1) // 2


def copy_masks(tokens: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions predicting a token of the first copy (from position 1) and of the second copy.

    Position ``i`` predicts token ``i + 1``: ``1 … s−1`` predict ``r[1:]`` the first time,
    ``s+1 … 2s−1`` predict it the second time, when induction can.
    """
    first = np.zeros(tokens.shape, dtype=bool)
    second = np.zeros(tokens.shape, dtype=bool)
    first[:, 1:s] = True
    second[:, s + 1 : 2 * s] = True
    return first, second


def layer_of(head: str) -> int:
    return circuits.parse_head(head)[0]


# ------------------------------------------------------------------------------ detection
def test_metadata_roles_are_what_detection_finds(
    model: circuits.AttnOnlyTransformer, roles: tuple[str, list[str]]
) -> None:
    found = detect_heads(model, seed=0)
    prev, induction = roles
    assert [h for h, score in found["previous_token"] if score > ROLE_THRESHOLD] == [prev]
    assert [h for h, score in found["induction"] if score > ROLE_THRESHOLD] == induction


def test_detection_separates_the_heads_by_layer(
    model: circuits.AttnOnlyTransformer, roles: tuple[str, list[str]]
) -> None:
    prev, induction = roles
    scores = dict(detect_heads(model, seed=2)["previous_token"])
    n = model.cfg.n_ctx
    assert layer_of(prev) == 0
    assert scores[prev] > 0.7 > 10 * math.log(n) / n  # far above uniform causal attention
    assert max(score for head, score in scores.items() if head != prev) < scores[prev] / 2
    induction_scores = dict(detect_heads(model, seed=2)["induction"])
    assert induction and all(layer_of(head) == 1 for head in induction)
    assert min(induction_scores[head] for head in induction) > 0.3
    assert max(induction_scores[f"0.{h}"] for h in range(model.cfg.n_heads)) < 0.05


# ------------------------------------------------------------------------------ weights
def test_k_composition_singles_out_the_pair(
    model: circuits.AttnOnlyTransformer, roles: tuple[str, list[str]]
) -> None:
    prev, induction = roles
    (p_layer, p_head) = circuits.parse_head(prev)
    K = composition_scores(model, "K")
    baseline = composition_baseline(model)
    for head in induction:
        layer, index = circuits.parse_head(head)
        writers = K[0, :, layer, index]
        assert int(np.argmax(writers)) == p_head, head
        assert writers[p_head] > 1.5 * baseline
    best = np.unravel_index(np.nanargmax(K), K.shape)
    assert (int(best[0]), int(best[1])) == (p_layer, p_head)
    assert f"{best[2]}.{best[3]}" in induction


def test_k_composition_circuit_matches_prefixes(
    model: circuits.AttnOnlyTransformer, roles: tuple[str, list[str]]
) -> None:
    """The eigenvalues of W_Eᵀ W_QK^{ind} W_OV^{prev} W_E are positive: a token attends to keys
    whose previous token is itself (the ICL paper's weight-based prefix matching)."""
    prev, induction = roles
    scores = prefix_matching_scores(model)
    p_layer, p_head = circuits.parse_head(prev)
    for head in induction:
        layer, index = circuits.parse_head(head)
        assert scores[p_layer, p_head, layer, index] > 0.9


def test_induction_heads_copy(
    model: circuits.AttnOnlyTransformer, roles: tuple[str, list[str]]
) -> None:
    copying = copying_scores(model)
    for head in roles[1]:
        assert copying[circuits.parse_head(head)] > 0.9


# ------------------------------------------------------------------------------ behaviour
def test_loss_on_the_second_copy_is_far_below_the_first(
    model: circuits.AttnOnlyTransformer, repeated: tuple[np.ndarray, int]
) -> None:
    tokens, s = repeated
    first, second = copy_masks(tokens, s)
    logits = model(tokens)
    chance = math.log(model.cfg.d_vocab - 1)  # random tokens, BOS never among them
    first_loss = next_token_loss(logits, tokens, positions=first)
    second_loss = next_token_loss(logits, tokens, positions=second)
    assert first_loss > 0.95 * chance
    assert second_loss < 0.25 * first_loss


def test_previous_token_head_acts_only_through_the_keys(
    model: circuits.AttnOnlyTransformer,
    roles: tuple[str, list[str]],
    repeated: tuple[np.ndarray, int],
) -> None:
    """Removing the previous-token head destroys the in-context gain when layer 1 recomputes its
    attention, and changes almost nothing when layer 1 keeps its patterns: all of its effect
    passes through the keys of the induction heads (K-composition), none through the values."""
    tokens, s = repeated
    first, second = copy_masks(tokens, s)
    prev = roles[0]

    def second_loss(logits: np.ndarray) -> float:
        return next_token_loss(logits, tokens, positions=second)

    full = second_loss(model(tokens))
    gain = next_token_loss(model(tokens), tokens, positions=first) - full
    recomputed = second_loss(ablate_heads(model, tokens, [prev], patterns="recomputed"))
    frozen = second_loss(ablate_heads(model, tokens, [prev], patterns="frozen"))
    assert (recomputed - full) / gain > 0.9
    assert abs(frozen - full) / gain < 0.05


# ------------------------------------------------------------------------------ paths
def test_path_expansion_is_exact_on_the_trained_weights(
    model: circuits.AttnOnlyTransformer,
    roles: tuple[str, list[str]],
    repeated: tuple[np.ndarray, int],
) -> None:
    tokens, _ = repeated
    logits, cache = model.run_with_cache(tokens)
    np.testing.assert_allclose(circuits.path_expansion(model).evaluate(cache), logits, atol=1e-10)
    for head in roles[1]:
        total = circuits.qk_expansion(model, head).evaluate(cache)
        np.testing.assert_allclose(total, cache.scores(head), atol=1e-10)


def test_induction_heads_paths_carry_the_logit_effect(
    model: circuits.AttnOnlyTransformer,
    roles: tuple[str, list[str]],
    repeated: tuple[np.ndarray, int],
) -> None:
    """On the second copy, the correct token's logit over the direct paths' comes from the
    one-head paths ``embed → induction head → unembed``."""
    tokens, s = repeated
    _, second = copy_masks(tokens, s)
    _, cache = model.run_with_cache(tokens)
    targets = np.concatenate([tokens[:, 1:], tokens[:, -1:]], axis=1)
    expansion = circuits.path_expansion(model)
    contributions = expansion.contributions(cache, targets)
    induction = set(roles[1])

    def through_induction(term: circuits.PathTerm) -> bool:
        return term.path[0] == "embed" and term.heads in {(h,) for h in induction}

    share = circuit_recovery(
        contributions, through_induction, baseline=expansion.filter(order=0), mask=second
    )
    assert share > 0.8


def test_k_composition_term_sets_the_induction_attention(
    model: circuits.AttnOnlyTransformer,
    roles: tuple[str, list[str]],
    repeated: tuple[np.ndarray, int],
) -> None:
    """Split each induction head's score margin — the score of the key after the earlier
    occurrence minus the mean score of the other keys — over the QK path expansion: the
    K-composition term (query: the token; key: the token through the previous-token head)
    gives most of it, and terms without the previous-token head almost none."""
    tokens, s = repeated
    _, cache = model.run_with_cache(tokens)
    prev = roles[0]
    queries = np.arange(s + 1, 2 * s + 1)  # the second copy
    targets = queries - s + 1  # the token after the earlier occurrence
    others = np.tril(np.ones((tokens.shape[1],) * 2, dtype=bool))[queries]
    others[np.arange(queries.size), targets] = False

    def margin(scores: np.ndarray) -> float:
        at_target = scores[:, queries, targets]
        elsewhere = np.where(others, scores[:, queries, :], 0.0).sum(-1) / others.sum(-1)
        return float(np.mean(at_target - elsewhere))

    for head in roles[1]:
        total = margin(cache.scores(head))
        assert total > 3.0
        shares: dict[str, float] = {"k_term": 0.0, "with_prev": 0.0}
        for term, values in circuits.qk_expansion(model, head).contributions(cache):
            part = margin(values) / total
            if term.query == ("embed", head) and term.key_path == ("embed", prev, head):
                shares["k_term"] += part
            if prev in term.query or prev in term.key_path:
                shares["with_prev"] += part
        assert shares["k_term"] > 0.6, head
        assert shares["with_prev"] > 0.9, head
