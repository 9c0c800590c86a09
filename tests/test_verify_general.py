"""The certifier for any 2-layer model, checked from outside: exhaustive enumeration of the family
(``exact_reference.family``, the model's own forward pass, and a 60-digit one on tiny cases)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from exact_reference import ExactModel, exact_family_extremes, family
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, TransformerConfig, VerificationError, induction_model
from circuits.verify import ModelCertificate, certify, certify_induction, exact_worst_case
from circuits.verify._intervals import exp_bound

#: float64 forward passes of tiny models round by far less than this
ROUNDING = 1e-12


def exhaustive(model: AttnOnlyTransformer) -> tuple[float, float, int]:
    """(least P(correct), fraction with the right strict argmax, family size), by enumeration."""
    assert model.bos_token is not None
    by_length: dict[int, list[tuple[tuple[int, ...], int]]] = {}
    for tokens, answer in family(model.cfg.d_vocab, model.cfg.n_ctx, model.bos_token):
        by_length.setdefault(len(tokens), []).append((tokens, answer))
    least, right, size = 1.0, 0, 0
    for group in by_length.values():
        tokens = np.array([g[0] for g in group])
        answers = np.array([g[1] for g in group])
        logits = model.forward(tokens)[:, -1]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        rows = np.arange(len(group))
        least = min(least, float((shifted[rows, answers] / shifted.sum(axis=1)).min()))
        others = logits.copy()
        others[rows, answers] = -np.inf
        right += int((logits[rows, answers] > others.max(axis=1)).sum())
        size += len(group)
    return least, right / size, size


@st.composite
def small_models(draw: st.DrawFn) -> AttnOnlyTransformer:
    """Random 2-layer models: vocabulary 3–6, context 3–6, 1–2 heads, biases or not, every
    positional kind, attn_scale ≠ √d_head, weights scaled up to sharpen the patterns."""
    kind = draw(st.sampled_from(["standard", "shortformer", "none"]))
    cfg = TransformerConfig(
        n_layers=2,
        n_heads=draw(st.integers(1, 2)),
        d_model=draw(st.integers(2, 8)),
        d_head=draw(st.integers(1, 4)),
        d_vocab=draw(st.integers(3, 6)),
        n_ctx=draw(st.integers(3, 6)),
        positional_embedding_type=kind,
        attn_scale=draw(st.sampled_from([-1.0, 0.7, 3.0])),
    )
    model = AttnOnlyTransformer.random(
        cfg, seed=draw(st.integers(0, 2**16)), biases=draw(st.booleans())
    )
    scale = draw(st.sampled_from([1.0, 3.0, 10.0]))
    weights = {name: w * scale for name, w in model.parameters().items()}
    return model.replace(**weights, bos_token=draw(st.integers(0, cfg.d_vocab - 1)))


def test_the_model_strategy_draws_every_kind() -> None:
    from hypothesis import find

    find(small_models(), lambda m: m.cfg.positional_embedding_type == "shortformer")
    find(small_models(), lambda m: m.cfg.positional_embedding_type == "none")
    find(small_models(), lambda m: bool(np.any(m.b_Q != 0)))
    find(small_models(), lambda m: not np.any(m.b_Q != 0))
    find(small_models(), lambda m: m.cfg.attn_scale != math.sqrt(m.cfg.d_head))
    find(small_models(), lambda m: m.cfg.n_heads == 2 and m.bos_token != 0)


@given(small_models())
@settings(max_examples=60)
def test_bounds_hold_on_random_models(model: AttnOnlyTransformer) -> None:
    cert = certify(model)
    least, accuracy, size = exhaustive(model)
    assert cert.family_size == size
    assert cert.bound <= least + ROUNDING
    assert cert.error_bound >= 1 - least - ROUNDING
    assert cert.accuracy_bound <= accuracy
    assert 0.0 <= cert.bound <= 1.0 and 0.0 <= cert.accuracy_bound <= 1.0


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(eta=st.sampled_from([1e-4, 1e-3, 3e-3, 1e-2, 3e-2]), seed=st.integers(0, 2**16))
@settings(max_examples=10)
def test_bounds_hold_on_perturbed_canonical_models(mechanism: str, eta: float, seed: int) -> None:
    base = induction_model(5, 6, mechanism=mechanism)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    weights = {
        name: w + eta * max(float(np.abs(w).max()), 1.0) * rng.standard_normal(w.shape)
        for name, w in base.parameters().items()
    }
    model = base.replace(**weights)
    cert = certify(model)
    least, accuracy, _ = exhaustive(model)
    assert cert.bound <= least + ROUNDING and cert.accuracy_bound <= accuracy


def test_the_bound_holds_for_the_real_number_model_to_60_digits() -> None:
    # a near-tie case: β large, γ small, so P(correct) is set by the output alone
    for mechanism in ("K", "Q"):
        model = induction_model(3, 4, mechanism=mechanism, beta0=50, beta1=50, gamma=0.375)  # type: ignore[arg-type]
        exact = exact_family_extremes(model)
        cert = certify(model)
        least = Fraction(str(exact.least))
        assert Fraction(cert.bound) <= least
        assert cert.accuracy_bound <= exact.right / exact.size


def test_canonical_models_are_certified_as_tightly_as_their_exact_worst_case() -> None:
    for mechanism in ("K", "Q"):
        model = induction_model(12, 16, mechanism=mechanism)  # type: ignore[arg-type]
        cert = certify(model)
        worst = exact_worst_case(model)
        assert cert.error_bound <= 2 * worst.error  # the goal: within 2×
        assert cert.error_bound >= worst.error * (1 - 1e-9)
        assert cert.accuracy_bound == 1.0
        assert cert.bound <= certify_induction(model).bound + 1e-15


def test_the_breakdown_covers_every_case_and_matches_the_bound() -> None:
    model = induction_model(5, 7)
    cert = certify(model)
    assert isinstance(cert, ModelCertificate)
    i, p, a, _c = cert.worst_case
    assert 1 <= p < i < 7 and a != model.bos_token
    assert cert.by_position[i, p] == cert.bound == np.nanmin(cert.by_position)
    rows, cols = np.nonzero(~np.isnan(cert.by_position))
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == {
        (q, e) for q in range(2, 7) for e in range(1, q)
    }
    assert np.nanmin(cert.by_token) == cert.bound and np.isnan(cert.by_token[model.bos_token])
    text = str(cert)
    assert "real-number model" in text and f"{cert.proved} of {cert.family_size}" in text


def test_worst_case_sequence_attains_no_less_than_the_bound() -> None:
    # the claimed least case, filled in every way, never goes below the bound
    model = induction_model(4, 5, gamma=0.5)
    cert = certify(model)
    i, p, a, c = cert.worst_case
    exact = ExactModel(model)
    values = [
        exact.probabilities(tokens)[answer]
        for tokens, answer in family(4, 5, 0)
        if len(tokens) == i + 1 and tokens[p] == a and tokens[p + 1] == c and tokens[i] == a
    ]
    assert values and min(Fraction(str(v)) for v in values) >= Fraction(cert.bound)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: AttnOnlyTransformer.random(
                {"n_layers": 1, "n_heads": 1, "d_model": 4, "d_head": 2, "d_vocab": 5, "n_ctx": 5}
            ).replace(bos_token=0),
            "2 layers",
        ),
        (lambda: induction_model(4, 5).replace(bos_token=None), "no BOS token"),
        (lambda: "not a model", "expected an AttnOnlyTransformer"),
    ],
)
def test_models_outside_the_method_are_refused(make: object, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        certify(make())  # type: ignore[operator]


@pytest.mark.parametrize("n_ctx", [2, 0, 6, 3.0, True])
def test_family_lengths_outside_the_model_are_refused(n_ctx: object) -> None:
    with pytest.raises(VerificationError, match="n_ctx"):
        certify(induction_model(4, 5), n_ctx=n_ctx)  # type: ignore[arg-type]


def test_a_shorter_family_is_the_family_of_shorter_sequences() -> None:
    model = induction_model(4, 6)
    short = certify(model, n_ctx=4)
    assert short.family_size == sum(1 for _ in family(4, 4, 0))
    assert short.bound >= certify(model).bound


@given(st.floats(-800, 720))
def test_exp_bounds_enclose_the_exponential(x: float) -> None:
    import mpmath

    ctx = mpmath.MPContext()
    ctx.prec = 200
    exact = ctx.exp(ctx.mpf(x))
    lo = float(exp_bound(np.array([x]), lower=True)[0])
    hi = float(exp_bound(np.array([x]), lower=False)[0])
    assert ctx.mpf(lo) <= exact <= ctx.mpf(hi)
    if lo > 1e-300 and hi < 1e300:
        assert hi / lo - 1 < 1e-13


def test_perturbed_canonical_models_keep_a_strong_certificate() -> None:
    """Every weight of the V 12, n_ctx 16 K circuit moved by N(0, (3·10⁻³ max|w|)²): the model
    still works (sampled sequences all right, P(correct) > 0.99999), and the proof must say so.
    Bounding each other key's score per previous token (not over their union) is what reaches it:
    with the union, this certificate proves 7 % of the family."""
    base = induction_model(12, 16)
    rng = np.random.default_rng(0)
    model = base.replace(
        **{
            name: w + 3e-3 * float(np.abs(w).max()) * rng.standard_normal(w.shape)
            for name, w in base.parameters().items()
        }
    )
    cert = certify(model)
    assert cert.accuracy_bound == 1.0
    assert cert.bound > 0.9999
    sequence = np.array([0, 5, 7, 2, 9, 3, 7])  # a = 7 at p = 2: the answer is 2
    logits = model(sequence)[-1]
    assert cert.bound <= np.exp(logits[2] - logits.max()) / np.exp(logits - logits.max()).sum()


def test_certify_draws_its_progress_where_asked_and_refuses_a_bad_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    stream = io.StringIO()
    certify(induction_model(4, 6), progress=stream)
    last = stream.getvalue().split("\r")[-1]
    total = sum(i * i for i in range(2, 6))  # one step per (p, key) pair of each query position
    assert last.startswith("certify: 100%") and f"| {total}/{total} [" in last
    certify(induction_model(4, 6))  # progress=True, but stderr is captured, not a terminal
    assert capsys.readouterr().err == ""
    with pytest.raises(VerificationError, match="progress: expected True, False or a text stream"):
        certify(induction_model(4, 6), progress="yes")  # type: ignore[arg-type]
