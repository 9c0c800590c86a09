"""Brute force, counterexamples and the family's targets, checked from the outside."""

from __future__ import annotations

import io
import sys
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, VerificationError, induction_model
from circuits import testing as ct
from circuits.verify import (
    adversarial_search,
    brute_force,
    family_targets,
    find_counterexample,
    target_probabilities,
)


@cache
def model(mechanism: str = "K", vocab: int = 4, n_ctx: int = 6) -> AttnOnlyTransformer:
    return induction_model(vocab, n_ctx, mechanism=mechanism)  # type: ignore[arg-type]


@given(data=st.data())
def test_targets_agree_with_the_testing_module(data: st.DataObject) -> None:
    m = model("K", 7, 10)
    rows = [data.draw(ct.induction_sequences(m, length=(3, 10))) for _ in range(3)]
    for row in rows:
        targets, valid = family_targets(row[None])
        assert valid[0] and targets[0] == ct.induction_target(row)


def test_rows_outside_the_family_are_flagged() -> None:
    targets, valid = family_targets(np.array([[0, 1, 2, 3], [0, 1, 1, 1], [0, 2, 3, 2]]))
    assert valid.tolist() == [False, False, True] and targets.tolist() == [-1, -1, 3]


def test_target_probabilities_is_the_softmax_of_the_last_logits() -> None:
    m = model()
    tokens = np.array([[0, 1, 2, 1], [0, 3, 3, 2]])
    probability, is_argmax = target_probabilities(m, tokens, [2, 0])
    logits = m(tokens)[:, -1]
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(probability, expected[[0, 1], [2, 0]], rtol=1e-12)
    assert is_argmax.tolist() == [True, False]


@pytest.mark.parametrize(("vocab", "n_ctx"), [(3, 6), (4, 6), (5, 5)])
def test_brute_force_visits_every_member_once(vocab: int, n_ctx: int) -> None:
    ordinary = vocab - 1  # last token a, its earlier place p among L−2, the rest ≠ a
    expected = sum(ordinary * (L - 2) * (ordinary - 1) ** (L - 3) for L in range(3, n_ctx + 1))
    stream = io.StringIO()
    result = brute_force(model("K", vocab, n_ctx), progress=stream, batch=50)
    assert result.n_sequences == expected == result.probabilities.size
    assert result.n_failures == 0 and result.counterexample is None and result.accuracy == 1.0
    candidates = sum(ordinary ** (L - 1) for L in range(3, n_ctx + 1))  # BOS, then anything
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("brute force: 100%") and f"| {candidates}/{candidates} [" in last
    assert last.endswith("\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_and_quiet_elsewhere(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    brute_force(model("K", 3, 5))  # progress=True by default; stderr is captured, not a terminal
    adversarial_search(model("K", 3, 5), restarts=1, steps=2)
    assert capsys.readouterr().err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    brute_force(model("K", 3, 5))
    assert "brute force: 100%" in terminal.getvalue()


def test_adversarial_search_counts_its_rounds() -> None:
    stream = io.StringIO()
    adversarial_search(model("K", 4, 6), restarts=3, steps=4, population=2, progress=stream)
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("adversarial search: 100%") and "| 15/15 [" in last  # 3 × (1 + 4)


def test_the_bosless_counterexample_is_found_automatically() -> None:
    found = find_counterexample(model("K", 4, 6), bos=False)
    assert found is not None
    a, b, c = found.tokens.tolist()
    assert a == c != b and found.target == b and found.predicted == a and found.probability < 0.5
    assert "counterexample" in str(found)
    assert find_counterexample(model("K", 4, 6), bos=True) is None
    assert find_counterexample(model("Q", 4, 6), bos=False) is None


def test_a_random_model_fails_and_the_checker_says_so() -> None:
    cfg = {"n_layers": 2, "n_heads": 1, "d_model": 8, "d_head": 4, "d_vocab": 4, "n_ctx": 5}
    random_model = AttnOnlyTransformer.random(cfg, seed=0).replace(bos_token=0)
    result = brute_force(random_model, progress=False)
    assert result.n_failures > 0 and result.accuracy < 1.0
    assert result.counterexample is not None
    target = family_targets(result.counterexample.tokens[None])[0][0]
    assert result.counterexample.target == target != result.counterexample.predicted


def test_oversized_or_malformed_requests_are_refused() -> None:
    with pytest.raises(VerificationError, match="exceed max_sequences"):
        brute_force(model("K", 4, 6), max_sequences=10, progress=False)
    with pytest.raises(VerificationError, match="max_length"):
        brute_force(model(), max_length=2, progress=False)
    cfg = {"n_layers": 1, "n_heads": 1, "d_model": 4, "d_head": 2, "d_vocab": 3, "n_ctx": 4}
    with pytest.raises(VerificationError, match="no bos_token"):
        brute_force(AttnOnlyTransformer.random(cfg), progress=False)
