"""``training_run`` on the shipped checkpoints draws the ICL paper's picture; its CLI verb; errors.

No torch: the checkpoints are package data. Each claim of docs/trained-model.md about the runs
(the loss on repeated tokens falls from chance to near zero in a few checkpoints while the loss on
unrepeated tokens stays near chance; the previous-token and prefix-matching scores and the
K-composition rise with it) is asserted here with a stated threshold.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import circuits
from circuits import zoo
from circuits.analysis import TrainingRun, training_run
from circuits.cli import main
from circuits.errors import AnalysisError

NAMES = ("attn2l-clean-induction", "attn2l-tiny-induction")


@pytest.fixture(scope="module", params=NAMES)
def run(request: pytest.FixtureRequest) -> tuple[str, TrainingRun]:
    name = request.param
    checkpoints = {step: zoo.load(name, step=step) for step in zoo.steps(name)}
    return name, training_run(checkpoints)


def chance(name: str) -> float:
    return math.log(zoo.load(name).cfg.d_vocab - 1)


def test_the_loss_on_repeated_tokens_falls_from_chance(run: tuple[str, TrainingRun]) -> None:
    name, measured = run
    assert list(measured.steps) == zoo.steps(name)
    assert measured.loss_repeated[0] > 0.8 * chance(name)
    assert measured.loss_repeated[-1] < 0.1
    assert np.all(measured.loss_unrepeated > 0.6 * chance(name))  # nothing to copy there
    assert measured.icl_score[0] > -0.3 and measured.icl_score[-1] < -1.0


def test_the_fall_is_a_phase_change(run: tuple[str, TrainingRun]) -> None:
    """More than half of the whole fall happens within three consecutive checkpoint intervals,
    spanning less than a tenth of the run, with checkpoints before and after them."""
    _, measured = run
    loss, steps = measured.loss_repeated, measured.steps
    fall = loss[0] - loss[-1]
    drops = loss[:-3] - loss[3:]
    start = int(np.argmax(drops))
    assert drops[start] > 0.5 * fall
    assert steps[start + 3] - steps[start] < 0.1 * steps[-1]
    assert start > 0 and start + 3 < len(steps) - 1


def test_the_heads_form_with_it(run: tuple[str, TrainingRun]) -> None:
    _, measured = run
    prev, induction = measured.previous_token[:, 0, 0], measured.prefix_matching[:, 1, 0]
    k_comp = measured.k_composition[:, 0, 0]
    assert prev[0] < 0.5 < 0.8 < prev[-1]
    assert induction[0] < 0.5 < 0.9 < induction[-1]
    assert k_comp[-1] > 2 * measured.k_composition_baseline > k_comp[0]
    assert np.isfinite(measured.icl_score).all()


def test_extra_scalars_are_measured_per_step() -> None:
    name = NAMES[1]
    checkpoints = {step: zoo.load(name, step=step) for step in zoo.steps(name)[:3]}
    seen: list[int] = []

    def step_of(model: circuits.AttnOnlyTransformer) -> float:
        seen.append(model.metadata["step"])
        return float(model.metadata["step"])

    measured = training_run(checkpoints, extra={"step": step_of})
    assert seen == sorted(checkpoints)
    np.testing.assert_array_equal(measured.extra["step"], sorted(checkpoints))
    table = measured.table().splitlines()
    assert len(table) == 1 + len(checkpoints) and "step" in table[0]
    assert json.loads(json.dumps(measured.to_dict()))["steps"] == sorted(checkpoints)


def test_progress_counts_the_checkpoints() -> None:
    import io

    name = NAMES[1]
    checkpoints = {step: zoo.load(name, step=step) for step in zoo.steps(name)[:3]}
    stream = io.StringIO()
    training_run(checkpoints, progress=stream)
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("training run: 100%") and "| 3/3 [" in last
    with pytest.raises(AnalysisError, match="progress: expected True, False or a text stream"):
        training_run(checkpoints, progress=1)  # type: ignore[arg-type]


def test_bad_input_is_refused() -> None:
    model = zoo.load(NAMES[1])
    other = zoo.load(NAMES[0])
    one_layer = circuits.AttnOnlyTransformer.random(
        {**model.cfg.to_dict(), "n_layers": 1}, seed=0
    ).replace(bos_token=0)
    for bad in ({}, [model], {0: "model"}, {-1: model}, {0: model, 1: other}, {0: one_layer}):
        with pytest.raises(AnalysisError, match="training_run"):
            training_run(bad)  # type: ignore[arg-type]


def test_cli_verb_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    name = NAMES[1]
    assert main(["training-run", name, "--certify-n-ctx", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(zoo.steps(name))
    assert "certified acc (n≤5)" in lines[0]
    certified = [float(line.split()[-1]) for line in lines[1:]]
    final = circuits.verify.certify(zoo.load(name), n_ctx=5).accuracy_bound
    assert certified[-1] == pytest.approx(final, abs=5e-5)
    assert main(["training-run", name, "--certify-n-ctx", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["extra"] == {}


def test_cli_verb_refuses_a_model_without_checkpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["training-run", "attn2l-induction"]) == 1
    err = capsys.readouterr().err
    assert "ships no checkpoints" in err and NAMES[0] in err
