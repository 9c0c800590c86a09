"""Each step of the closed-form certificate, checked on its own against the forward pass.

The final bound of ``certify_induction`` is loose, so an unsound intermediate step (a margin
claimed too large, an attention error claimed too small) can hide behind the slack of the later
steps. Here every claimed quantity is compared with what the model does on every sequence of a
small family, at scales where the layer-0 errors are large and the gap between the total error ε₀
and the per-key error η₀ is wide: substituting one for the other breaks a claim by far more than
rounding.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from exact_reference import family

from circuits import induction_model
from circuits.verify import certify_induction

SLACK = 1e-9  # float64 rounding of the forward pass, far below the gaps the checks rely on


def _step_values(certificate: object) -> dict[str, float]:
    return {name: value for step in certificate.steps for name, _, value in step.quantities}  # type: ignore[attr-defined]


def _by_length(vocab: int, n_ctx: int, bos: int) -> dict[int, list[tuple[int, ...]]]:
    groups: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for tokens, _ in family(vocab, n_ctx, bos):
        groups[len(tokens)].append(tokens)
    return groups


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_every_claimed_step_holds_on_every_sequence_of_the_family(mechanism: str) -> None:
    vocab, n_ctx = 4, 7
    model = induction_model(vocab, n_ctx, mechanism=mechanism, beta0=2.0, beta1=6.0, gamma=3.0)
    claimed = _step_values(certify_induction(model))
    assert claimed["ε₀"] > 3 * claimed["η₀"]  # the scales keep the two errors apart
    assert model.bos_token is not None
    worst = {"ε₀": 0.0, "η₀": 0.0, "ε₁": 0.0, "Δ₁": np.inf}
    for length, sequences in _by_length(vocab, n_ctx, model.bos_token).items():
        tokens = np.array(sequences)
        _, cache = model.run_with_cache(tokens)
        last = length - 1
        earlier = np.array([s[:last].index(s[last]) for s in sequences])  # p, once before
        rows = np.arange(len(sequences))
        layer0 = cache.pattern(0, 0)
        if mechanism == "K":  # every query j ≥ 1 looks at j − 1
            queries = np.arange(1, length)
            on_target = layer0[:, queries, queries - 1]
            off = layer0[:, 1:, :].copy()
            off[:, queries - 1, queries - 1] = 0.0
        else:  # the last query looks at the earlier occurrence p
            on_target = layer0[rows, last, earlier]
            off = layer0[:, last, :].copy()
            off[rows, earlier] = 0.0
        worst["ε₀"] = max(worst["ε₀"], float((1 - on_target).max()))
        worst["η₀"] = max(worst["η₀"], float(off.max()))
        scores = cache.scores(1, 0)[:, last, :length].copy()
        target = scores[rows, earlier + 1]
        scores[rows, earlier + 1] = -np.inf
        worst["Δ₁"] = min(worst["Δ₁"], float((target - scores.max(-1)).min()))
        layer1 = cache.pattern(1, 0)[rows, last, earlier + 1]
        worst["ε₁"] = max(worst["ε₁"], float((1 - layer1).max()))
    for error in ("ε₀", "η₀", "ε₁"):
        assert worst[error] <= claimed[error] + SLACK, (error, worst[error], claimed[error])
    assert worst["Δ₁"] >= claimed["Δ₁"] - SLACK, ("Δ₁", worst["Δ₁"], claimed["Δ₁"])
    # and the claims are not vacuous: each is within a factor of the truth
    assert claimed["ε₀"] < 2 * worst["ε₀"] and claimed["Δ₁"] > 0.3 * worst["Δ₁"]
