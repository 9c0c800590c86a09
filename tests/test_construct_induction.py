"""The hand-built induction circuits: right on the whole family, wrong without BOS (K), stable."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits import ConfigError, VerificationError, induction_model
from circuits import testing as ct
from circuits.construct import induction_circuit, induction_parameters
from circuits.construct.induction import Mechanism
from circuits.verify import certify_induction, exact_worst_case, family_targets

IntArray = np.ndarray


@cache
def model(
    vocab: int, n_ctx: int, mechanism: Mechanism = "K", **options: object
) -> circuits.AttnOnlyTransformer:
    return induction_model(vocab, n_ctx, mechanism=mechanism, **options)  # type: ignore[arg-type]


@cache
def bound(vocab: int, n_ctx: int, mechanism: Mechanism = "K", **options: object) -> float:
    """The certified bound of ``model(...)`` (checked against its weights once)."""
    return certify_induction(model(vocab, n_ctx, mechanism, **options)).bound


@st.composite
def family(draw: st.DrawFn, vocab: int, n_ctx: int, bos: int | None = 0) -> IntArray:
    """A family sequence whose fillers are all one token (adversarial) or random.

    ``bos=None``: no BOS; the earlier occurrence may then be at position 0.
    """
    ordinary = [t for t in range(vocab) if t != bos]
    start = 0 if bos is None else 1
    length = draw(st.integers(start + 2, n_ctx))
    a = draw(st.sampled_from(ordinary))
    others = [t for t in ordinary if t != a]
    p = draw(st.integers(start, length - 2))
    if draw(st.booleans()):
        fillers = [draw(st.sampled_from(others))] * length
    else:
        fillers = draw(st.lists(st.sampled_from(others), min_size=length, max_size=length))
    tokens = np.array(fillers, dtype=np.intp)
    if bos is not None:
        tokens[0] = bos
    tokens[p] = tokens[-1] = a
    return tokens


def predictions(m: circuits.AttnOnlyTransformer, tokens: IntArray) -> tuple[int, int, float]:
    """(right token, argmax, P(right)) at the last position."""
    target = int(family_targets(tokens[None])[0][0])
    logits = m(tokens)[-1]
    p = np.exp(logits - logits.max())
    return target, int(np.argmax(logits)), float(p[target] / p.sum())


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(data=st.data())
def test_right_on_the_whole_family(mechanism: Mechanism, data: st.DataObject) -> None:
    vocab, n_ctx = data.draw(st.sampled_from([(3, 5), (4, 8), (12, 16), (30, 24)]))
    m = model(vocab, n_ctx, mechanism)
    tokens = data.draw(family(vocab, n_ctx))
    target, predicted, p = predictions(m, tokens)
    assert predicted == target
    assert p >= bound(vocab, n_ctx, mechanism) * (1 - 1e-12)


@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(data=st.data())
def test_right_on_the_testing_modules_induction_sequences(
    mechanism: Mechanism, data: st.DataObject
) -> None:
    m = model(9, 12, mechanism)
    tokens = data.draw(ct.induction_sequences(m))
    target, predicted, _ = predictions(m, tokens)
    assert predicted == target == ct.induction_target(tokens)


@cache
def big(mechanism: Mechanism) -> circuits.AttnOnlyTransformer:
    return induction_model(1000, 512, mechanism=mechanism)


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_right_at_vocabulary_1000_and_context_512(mechanism: Mechanism) -> None:
    m = big(mechanism)
    sizes = {"vocab_size": 1000, "n_ctx": 512, "mechanism": mechanism}
    worst = exact_worst_case(**sizes).tokens  # adversarial: every other position one token
    assert worst.size == 512
    adversarial = np.full(512, 7)
    adversarial[0], adversarial[300], adversarial[-1] = 0, 900, 900
    random_fill = np.random.default_rng(1).choice(np.arange(2, 1000), size=512)
    random_fill[0], random_fill[100], random_fill[-1] = 0, 1, 1
    batch = np.stack([worst, adversarial, random_fill])
    targets, valid = family_targets(batch)
    assert valid.all()
    logits = m(batch)[:, -1]
    assert np.array_equal(logits.argmax(axis=-1), targets)
    log_p = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(log_p[np.arange(3), targets]) / np.exp(log_p).sum(axis=-1)
    certified = certify_induction(**sizes).bound
    assert certified > 0.5  # so the argmax is right on every sequence of the family, proved
    assert np.all(p >= certified * (1 - 1e-12))


# ---------------------------------------------------------------------- without BOS
def test_k_composition_fails_without_bos_when_the_match_is_at_position_0() -> None:
    m = model(6, 8, "K")
    tokens = np.array([1, 2, 1])  # no BOS: position 0 has no previous token
    target, predicted, p = predictions(m, tokens)
    assert (target, predicted) == (2, 1) and p < 0.5
    # position 0's `prev` block holds its own token, so key 0 matches the query as well as key 1
    _, cache_ = m.run_with_cache(tokens)
    pattern = cache_.pattern(1, 0)[0, -1]
    assert pattern[0] > 0.45 and pattern[1] > 0.45


@given(family(6, 8, bos=None))
def test_without_bos_only_a_match_at_position_0_breaks_the_k_circuit(tokens: IntArray) -> None:
    target, predicted, _ = predictions(model(6, 8, "K"), tokens)
    broken = tokens[0] == tokens[-1] and target != tokens[-1]  # p = 0 and c ≠ a
    assert (predicted == target) != broken


@given(family(6, 8, bos=None))
def test_the_pointer_circuit_does_not_need_bos(tokens: IntArray) -> None:
    target, predicted, _ = predictions(model(6, 8, "Q"), tokens)
    assert predicted == target


# ---------------------------------------------------------------------- scales, codes, stability
@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(data=st.data())
@settings(max_examples=10)
def test_stable_up_to_scales_of_a_million(mechanism: Mechanism, data: st.DataObject) -> None:
    m = model(7, 10, mechanism, beta0=1e6, beta1=1e6, gamma=1e6)
    tokens = data.draw(family(7, 10))
    logits = m(tokens)
    assert np.all(np.isfinite(logits))
    target, predicted, p = predictions(m, tokens)
    assert predicted == target and p == 1.0


@pytest.mark.parametrize(("code", "d_code"), [("structured", 64), ("random", 96)])
@pytest.mark.parametrize("mechanism", ["K", "Q"])
@given(data=st.data())
@settings(max_examples=10)
def test_compressed_codes_stay_right_where_certified(
    code: str, d_code: int, mechanism: Mechanism, data: st.DataObject
) -> None:
    m = model(200, 16, mechanism, code=code, d_code=d_code)
    assert m.cfg.d_model == (3 * d_code + 16 if mechanism == "K" else 2 * d_code + 2 * 16)
    certified = bound(200, 16, mechanism, code=code, d_code=d_code)
    assert certified > 0.5  # so the argmax is proved right on the whole family
    tokens = data.draw(family(200, 16))
    target, predicted, p = predictions(m, tokens)
    assert predicted == target and p >= certified * (1 - 1e-12)


def test_default_scales_and_sizes() -> None:
    m = model(5, 6, "K")
    assert m.bos_token == 0 and m.cfg.d_vocab == 5 and m.cfg.attn_scale == 1.0
    assert m.cfg.d_model == 3 * 5 + 6 and m.cfg.d_head == 5  # max(rank QK shift 5, rank OV 5)
    q = model(5, 6, "Q")
    assert q.cfg.d_model == 2 * 5 + 2 * 6 and q.cfg.d_head == 5 + 6


def test_head_roles_and_what_each_head_reads_and_writes() -> None:
    k, q = model(5, 6, "K").metadata, model(5, 6, "Q").metadata
    assert k["head_roles"] == {"0.0": "previous-token", "1.0": "induction"}
    assert q["head_roles"] == {"0.0": "duplicate-token", "1.0": "induction"}
    assert k["heads"]["0.0"]["ov"]["label"] == "tok → prev"
    assert k["heads"]["1.0"]["qk"]["label"] == "tok · prev"
    assert k["heads"]["1.0"]["ov"]["label"] == "tok → out"
    assert q["heads"]["0.0"]["qk"]["label"] == "tok+pos · tok+pos"
    assert q["heads"]["1.0"]["qk"]["label"] == "ptr · pos"
    assert k["construction"]["mechanism"] == "K" and k["construction"]["beta1"] == 20.0


def test_parameters_are_read_back_and_tampering_is_caught(tmp_path: Path) -> None:
    m = model(5, 6, "Q", beta1=7.0)
    params = induction_parameters(m)
    assert (params.mechanism, params.beta1, params.vocab_size) == ("Q", 7.0, 5)
    circuits.save(m, tmp_path / "q.npz")
    assert induction_parameters(circuits.load(tmp_path / "q.npz")) == params
    W_O = m.W_O.copy()
    W_O[1, 0, 0, 0] += 1e-6
    with pytest.raises(VerificationError, match="W_O differs"):
        induction_parameters(m.replace(W_O=W_O))
    with pytest.raises(VerificationError, match="does not describe"):
        induction_parameters(m.replace(metadata={}))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mechanism": "V"}, "mechanism"),
        ({"beta0": -1.0}, "beta0"),
        ({"code": "random"}, "d_code"),
        ({"code": "one-hot", "d_code": 3}, "d_code"),
        ({"bos_token": 9}, "bos_token"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        induction_circuit(5, 6, **options)  # type: ignore[arg-type]
