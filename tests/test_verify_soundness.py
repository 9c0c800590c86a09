"""The closed-form certificate is a proof to the last bit: checked against a 60-digit forward pass.

The bound is rounded down (and P(wrong) up) from exact interval ends, with no global numeric
state; refused inputs get a VerificationError. The references are in ``exact_reference``.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from exact_reference import exact_family_extremes

from circuits import VerificationError, induction_circuit, induction_model
from circuits.verify import certify_induction
from circuits.verify.certificate import REAL_NUMBER_MODEL


def _fraction(value: object) -> Fraction:
    return Fraction(str(mpmath.nstr(value, 55, min_fixed=-1000, max_fixed=1000)))


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@pytest.mark.parametrize("vocab", [3, 4])
def test_bound_and_error_bound_are_on_the_safe_side_of_the_exact_minimum(
    mechanism: str, vocab: int
) -> None:
    # γ = k/8 at β = 1000: layer-0 and layer-1 errors vanish, so the bound is the exact minimum
    # up to rounding, and rounding to nearest would land above it about half the time
    for k in range(1, 11):
        model = induction_model(vocab, 3, mechanism=mechanism, beta0=1000, beta1=1000, gamma=k / 8)
        cert = certify_induction(model)
        exact = exact_family_extremes(model)
        least = _fraction(exact.least)
        assert Fraction(cert.bound) <= least, (k, cert.bound, exact.least)
        assert Fraction(cert.error_bound) >= 1 - least - Fraction(1, 10**50), (k, cert.error_bound)


def test_the_reported_case_is_rounded_down() -> None:
    model = induction_model(3, 3, beta0=1000, beta1=1000, gamma=0.5)
    exact = exact_family_extremes(model)
    assert exact.worst == (0, 1, 1)
    assert Fraction(certify_induction(model).bound) <= _fraction(exact.least)


def test_a_bound_below_one_never_rounds_up_to_one() -> None:
    cert = certify_induction(vocab_size=10, n_ctx=10, beta0=60, beta1=60, gamma=40)
    assert cert.bound < 1.0
    assert cert.error_bound > 0.0


def test_the_bound_does_not_depend_on_mpmaths_global_precision() -> None:
    model = induction_model(3, 3, beta0=1000, beta1=1000, gamma=0.5)
    reference = certify_induction(model)
    saved = mpmath.mp.prec
    try:
        for prec in (10, 53, 300):
            mpmath.mp.prec = prec
            cert = certify_induction(model)
            assert (cert.bound, cert.error_bound) == (reference.bound, reference.error_bound)
    finally:
        mpmath.mp.prec = saved


def test_a_float32_model_is_certified_as_the_real_number_model() -> None:
    model = induction_model(3, 3, beta0=16, beta1=16, gamma=16)
    as32 = model.replace(**{k: v.astype(np.float32) for k, v in model.parameters().items()})
    cert = certify_induction(as32)
    assert cert.about == REAL_NUMBER_MODEL and "real-number model" in str(cert)
    assert Fraction(cert.bound) <= _fraction(exact_family_extremes(as32).least)


def test_weights_that_differ_in_the_last_bit_are_not_the_construction() -> None:
    model = induction_model(3, 4)
    W_U = model.W_U.copy()
    W_U[1, np.flatnonzero(W_U[1])[0]] = np.nextafter(W_U[1, np.flatnonzero(W_U[1])[0]], 0)
    with pytest.raises(VerificationError, match="W_U differs"):
        certify_induction(model.replace(W_U=W_U))


def test_a_symbolic_twin_substituted_back_is_certified_like_the_numeric_model() -> None:
    b0, b1, g = sp.symbols("beta_0 beta_1 gamma", positive=True)
    twin = induction_circuit(4, 5, beta0=b0, beta1=b1, gamma=2 * g).symbolic()
    substituted = twin.substitute({"beta_0": 3, "beta_1": 4, "gamma": 5})
    numeric = induction_model(4, 5, beta0=3, beta1=4, gamma=10)
    assert certify_induction(substituted).bound == certify_induction(numeric).bound


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"beta0": sp.Symbol("x")}, r"beta0 = x is symbolic"),
        ({"gamma": sp.Float("1e400")}, r"gamma must be a finite number"),
        ({"n_ctx": 10**400}, r"n_ctx must be ≤ 2\^53"),
        ({"n_ctx": 2}, r"n_ctx must be ≥ 3.*empty"),
    ],
)
def test_inputs_outside_the_closed_form_are_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        certify_induction(**{"vocab_size": 5, "n_ctx": 6, **given})  # type: ignore[arg-type]
