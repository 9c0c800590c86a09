"""Direct logit attribution and circuit recovery: exact sums, agreement with the path expansion."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_models import induction_model
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer, PathTerm, path_expansion
from circuits import testing as ct
from circuits.analysis import circuit_recovery, head_attribution, repeated_random_tokens

MODELS = ct.configs(
    n_layers=(0, 2), n_heads=(1, 2), d_model=(1, 5), d_head=(1, 3), d_vocab=(2, 6), n_ctx=(2, 5)
)  # fmt: skip


@st.composite
def runs(draw: st.DrawFn) -> tuple[AttnOnlyTransformer, np.ndarray, np.ndarray]:
    """A model (with or without biases), a batch of tokens and random target ids."""
    model = draw(ct.models(MODELS))
    tokens = draw(ct.token_sequences(model, batch=2))
    targets = draw(ct.token_sequences(model, length=tokens.shape[1], batch=2))
    return model, tokens, targets


def target_logits(
    model: AttnOnlyTransformer, tokens: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    return np.take_along_axis(model(tokens), targets[..., None], axis=-1)[..., 0]


@given(runs())
def test_component_attributions_sum_to_the_target_logits(
    run: tuple[AttnOnlyTransformer, np.ndarray, np.ndarray],
) -> None:
    model, tokens, targets = run
    _, cache = model.run_with_cache(tokens)
    attribution = head_attribution(cache, targets)
    ct.assert_terms_sum_to(attribution.values, target_logits(model, tokens, targets))
    names = [component.name for component in attribution.terms]
    assert names[0] == "embed" and names[-1] == "b_U"
    assert ("pos_embed" in names) == (model.cfg.positional_embedding_type == "standard")
    assert [n for n in names if "." in n and "[" not in n] == model.cfg.head_names()


def last_writer(term: PathTerm) -> str:
    """The component that writes a path's signal into the final stream."""
    if term.heads:
        return term.heads[-1]
    if term.source.startswith("b_V["):  # a value bias enters through its own head's W_O
        return term.source[4:-1]
    return term.source


@given(runs())
def test_component_attributions_are_path_contributions_grouped_by_last_writer(
    run: tuple[AttnOnlyTransformer, np.ndarray, np.ndarray],
) -> None:
    model, tokens, targets = run
    _, cache = model.run_with_cache(tokens)
    grouped = path_expansion(model).contributions(cache, targets).group(last_writer)
    for component, value in head_attribution(cache, targets):
        expected = grouped.get(component.name, np.zeros_like(value))  # zero biases: no paths
        np.testing.assert_allclose(value, expected, atol=1e-10, err_msg=component.name)


def test_the_induction_head_carries_the_next_token_logit() -> None:
    """Hand-built: on the second copy, head 1.0 adds gain[t] to the logit of the next token t."""
    gains = np.linspace(2.0, 9.0, 8)
    model = induction_model(gains=gains)
    tokens = repeated_random_tokens(model, n_samples=3, seed=5)
    _, cache = model.run_with_cache(tokens[:, :-1])
    targets = tokens[:, 1:]
    attribution = head_attribution(cache, targets)
    second = slice(1 + 7, None)  # positions whose next token is predictable
    np.testing.assert_allclose(attribution["1.0"][:, second], gains[targets[:, second]], rtol=1e-6)
    for name in ("embed", "pos_embed", "0.0", "0.1", "b_U"):
        assert np.all(attribution[name] == 0.0)  # nothing else writes what W_U reads
    ranked = attribution.ranked()
    assert ranked[0][0].name == "1.0"


@given(runs(), st.data())
def test_circuit_recovery_is_additive_and_normalised(
    run: tuple[AttnOnlyTransformer, np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    model, tokens, targets = run
    _, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model)
    contributions = expansion.contributions(cache, targets)
    full = contributions.values.mean(axis=(1, 2)).sum()
    if abs(full) < 1e-3:  # the fraction is ill-conditioned when the logits average to ~0
        return
    order = data.draw(st.integers(0, model.cfg.n_layers))
    circuit = expansion.filter(order=order)
    fraction = circuit_recovery(contributions, circuit)
    as_list = circuit_recovery(contributions, circuit.terms())
    as_predicate = circuit_recovery(contributions, lambda term: term.order == order)
    assert fraction == pytest.approx(as_list) and fraction == pytest.approx(as_predicate)
    complement = circuit_recovery(contributions, lambda term: term.order != order)
    assert fraction + complement == pytest.approx(1.0, abs=1e-9)
    assert circuit_recovery(contributions, expansion) == pytest.approx(1.0)
    assert circuit_recovery(contributions, []) == 0.0


def test_circuit_recovery_over_a_baseline() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 2, "d_model": 6, "d_head": 3, "d_vocab": 7, "n_ctx": 6}, seed=2
    )
    tokens = np.array([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2]])
    _, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model)
    contributions = expansion.contributions(cache, tokens)
    direct = expansion.filter(order=0)
    means = {term.path: value.mean() for term, value in contributions}
    full, base = sum(means.values()), sum(means[t.path] for t in direct)
    heads = expansion.filter(order=[0, 1])
    expected = (sum(means[t.path] for t in heads) - base) / (full - base)
    assert circuit_recovery(contributions, heads, baseline=direct) == pytest.approx(expected)
    assert circuit_recovery(contributions, direct, baseline=direct) == 0.0
    mask = np.zeros(tokens.shape, dtype=bool)
    mask[:, -1] = True
    last = {term.path: value[:, -1].mean() for term, value in contributions}
    assert circuit_recovery(contributions, heads, mask=mask) == pytest.approx(
        sum(last[t.path] for t in heads) / sum(last.values())
    )
    with pytest.raises(circuits.AnalysisError, match="mask"):
        circuit_recovery(contributions, heads, mask=np.ones(3, dtype=bool))
    other = path_expansion(model.replace(b_U=np.ones(7)))
    with pytest.raises(circuits.AnalysisError, match="b_U"):
        circuit_recovery(contributions, other)
