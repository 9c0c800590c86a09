"""Certificates and exact worst cases: bound ≤ exact worst case ≤ every brute-force value."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, VerificationError, induction_model
from circuits.construct import InductionParameters
from circuits.construct.induction import Mechanism
from circuits.verify import (
    SYMBOLS,
    adversarial_search,
    brute_force,
    certify_induction,
    exact_worst_case,
    pair_probabilities,
    target_probabilities,
)
from circuits.verify.worst_case import representative

TOL = 1e-12  # float rounding of P(correct) computed by the forward pass or the reduced formula


@cache
def tiny(
    vocab: int, n_ctx: int, mechanism: Mechanism, beta0: float, beta1: float, gamma: float
) -> AttnOnlyTransformer:
    return induction_model(vocab, n_ctx, mechanism=mechanism, beta0=beta0, beta1=beta1, gamma=gamma)


scales = st.sampled_from([0.3, 1.0, 2.5, 6.0, 20.0])


@given(
    vocab=st.integers(2, 5),
    n_ctx=st.integers(3, 6),
    mechanism=st.sampled_from(["K", "Q"]),
    beta0=scales,
    beta1=scales,
    gamma=scales,
)
def test_bound_below_exact_worst_case_below_every_brute_force_value(
    vocab: int, n_ctx: int, mechanism: Mechanism, beta0: float, beta1: float, gamma: float
) -> None:
    model = tiny(vocab, n_ctx, mechanism, beta0, beta1, gamma)
    certificate = certify_induction(model)
    worst = exact_worst_case(model)
    every = brute_force(model, progress=False)
    assert certificate.bound <= worst.probability + TOL
    assert np.all(every.probabilities >= worst.probability - TOL)
    # the reduction is exact: brute force attains the worst case, on its representative sequence
    assert every.min_probability == pytest.approx(worst.probability, abs=TOL)
    probability, _ = target_probabilities(model, worst.tokens[None], [worst.target])
    assert probability[0] == pytest.approx(worst.probability, abs=TOL)


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(beta0=scales, beta1=scales, gamma=scales)
@settings(max_examples=10)
def test_reduced_formula_matches_the_forward_pass_on_every_pair(
    mechanism: Mechanism, beta0: float, beta1: float, gamma: float
) -> None:
    model = tiny(6, 9, mechanism, beta0, beta1, gamma)
    pairs = pair_probabilities(model)
    params = InductionParameters(6, 9, mechanism, beta0, beta1, gamma)
    assert pairs.query.size == 7 * 8 // 2  # every 1 ≤ p < i ≤ 8
    for i, p, expected, error in zip(
        pairs.query, pairs.earlier, pairs.probability, pairs.error, strict=True
    ):
        tokens = representative(params, int(i), int(p))
        got, _ = target_probabilities(model, tokens[None], [tokens[p + 1]])
        assert got[0] == pytest.approx(expected, abs=TOL)
        assert error == pytest.approx(1 - expected, abs=TOL)


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_strong_and_tight_at_vocabulary_1000_and_context_1024(mechanism: Mechanism) -> None:
    certificate = certify_induction(vocab_size=1000, n_ctx=1024, mechanism=mechanism)
    worst = exact_worst_case(vocab_size=1000, n_ctx=1024, mechanism=mechanism)
    assert certificate.bound >= 0.999
    assert 0.0 <= worst.probability - certificate.bound <= 1e-5
    # on the error scale, where the numbers are not rounded away: P(wrong) ≤ the certified bound
    assert worst.error <= certificate.error_bound * (1 + 1e-9)
    assert worst.query == 1023


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_expression_steps_and_text(mechanism: Mechanism) -> None:
    certificate = certify_induction(vocab_size=50, n_ctx=64, mechanism=mechanism, beta1=9.0)
    values = {SYMBOLS[k]: v for k, v in certificate.values.items()}
    assert float(certificate.expression.subs(values).evalf(30)) == pytest.approx(
        certificate.bound, rel=1e-12
    )
    assert certificate.expression.free_symbols == set(SYMBOLS.values())
    assert [s.title.split(" (")[0] for s in certificate.steps] == ["layer 0", "layer 1", "output"]
    names = [name for step in certificate.steps for name, _, _ in step.quantities]
    assert names == ["Δ₀", "ε₀", "η₀", "Δ₁", "ε₁", "bound"]
    assert certificate.bound + certificate.error_bound == pytest.approx(1.0, abs=1e-15)
    text = str(certificate)
    assert "P(correct next token) ≥" in text and "starts with BOS" in text and "Δ₁" in text


def test_model_and_parameters_give_the_same_certificate() -> None:
    model = induction_model(7, 12, mechanism="Q", beta0=5.0, gamma=9.0)
    from_model = certify_induction(model)
    from_parameters = certify_induction(vocab_size=7, n_ctx=12, mechanism="Q", beta0=5.0, gamma=9.0)
    assert from_model.bound == from_parameters.bound and from_model.values == from_parameters.values


@pytest.mark.parametrize("scale", [1e3, 1e6])
def test_stable_at_huge_scales(scale: float) -> None:
    certificate = certify_induction(
        vocab_size=1000, n_ctx=1024, beta0=scale, beta1=scale, gamma=scale
    )
    worst = exact_worst_case(vocab_size=1000, n_ctx=1024, beta0=scale, beta1=scale, gamma=scale)
    # P(correct) < 1 exactly, so the largest float below it is the one just under 1
    assert certificate.bound == math.nextafter(1.0, 0.0) and 0.0 < certificate.error_bound < 1e-300
    assert worst.probability == 1.0 and math.isfinite(worst.error)


def test_a_huge_score_with_a_tiny_positional_scale_is_still_finite() -> None:
    worst = exact_worst_case(vocab_size=20, n_ctx=64, beta0=0.01, beta1=1e6, gamma=1e6)
    certificate = certify_induction(vocab_size=20, n_ctx=64, beta0=0.01, beta1=1e6, gamma=1e6)
    assert 0.0 <= certificate.bound <= worst.probability + TOL <= 1.0 + TOL


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(seed=st.integers(0, 1000))
@settings(max_examples=4)
def test_adversarial_search_on_long_sequences_never_goes_below_the_bound(
    mechanism: Mechanism, seed: int
) -> None:
    model = tiny(30, 48, mechanism, 4.0, 6.0, 6.0)
    found = adversarial_search(model, restarts=1, steps=15, population=8, seed=seed)
    assert found.min_probability >= exact_worst_case(model).probability - TOL
    assert found.min_probability >= certify_induction(model).bound - TOL


@cache
def compressed(mechanism: Mechanism) -> AttnOnlyTransformer:
    return induction_model(60, 24, mechanism=mechanism, code="random", d_code=24, seed=3)


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(seed=st.integers(0, 1000))
@settings(max_examples=4)
def test_compressed_codes_adversarial_search_respects_the_coherence_bound(
    mechanism: Mechanism, seed: int
) -> None:
    model = compressed(mechanism)
    certificate = certify_induction(model)
    assert 0 < certificate.values["coherence"] < 1
    found = adversarial_search(model, restarts=1, steps=15, population=8, seed=seed)
    assert found.min_probability >= certificate.bound - TOL


def test_bad_requests_are_refused() -> None:
    model = induction_model(5, 6)
    with pytest.raises(VerificationError, match="not both"):
        certify_induction(model, n_ctx=6)
    with pytest.raises(VerificationError, match="vocab_size= and n_ctx="):
        certify_induction(n_ctx=6)
    with pytest.raises(VerificationError, match="coherence"):
        certify_induction(vocab_size=5, n_ctx=6, coherence=1.5)
    with pytest.raises(VerificationError, match="one-hot"):
        exact_worst_case(compressed("K"))
    with pytest.raises(VerificationError, match="would not hold"):
        certify_induction(compressed("K"), coherence=0.0)
    weaker = certify_induction(model, coherence=0.2)
    assert weaker.bound < certify_induction(model).bound
    with pytest.raises(VerificationError, match="too many"):
        exact_worst_case(vocab_size=5, n_ctx=10**6)


def test_the_bound_is_a_sympy_function_of_the_parameters() -> None:
    certificate = certify_induction(vocab_size=10, n_ctx=10)
    V, n = SYMBOLS["vocab_size"], SYMBOLS["n_ctx"]
    # more vocabulary or more context can only lower the bound
    assert (
        sp.diff(certificate.expression, V).subs(
            {s: certificate.values[k] for k, s in SYMBOLS.items()}
        )
        < 0
    )
    assert (
        sp.diff(certificate.expression, n).subs(
            {s: certificate.values[k] for k, s in SYMBOLS.items()}
        )
        < 0
    )
