r"""A training run read through its checkpoints: the ICL paper's picture, one row per step.

:func:`training_run` takes the checkpoints of one run (``{step: model}``, e.g. from
``circuits.zoo.load(name, step=s)`` over ``circuits.zoo.steps(name)``) and measures on each, with
the same sequences ``[BOS] r r`` (:func:`~circuits.analysis.repeated_random_tokens`; runs of
``s`` distinct tokens) for every step:

* **loss on repeated and on unrepeated tokens**: the mean next-token loss of the predictions of
  the second copy's tokens ``r_2 … r_s`` (positions ``b+s … b+2s−2``), which an induction head can
  make, and of the first copy's ``r_2 … r_s``, which nothing can (chance is ``ln`` of the number of
  ordinary tokens);
* **in-context-learning score**, the ICL paper's "loss late in the context minus loss early": the
  mean loss of the last ``⌈s/2⌉`` predictions of the sequence minus that of its first ``⌈s/2⌉``
  (from position 1); negative once the model uses its context;
* the **previous-token** and **prefix-matching** (induction) scores of every head
  (:func:`~circuits.analysis.behaviour_scores`), ``[step, layer, head]``;
* **K-composition** of every layer-0 head into every layer-1 head
  (:func:`~circuits.analysis.composition_scores`), ``[step, head₀, head₁]``, with the random
  baseline of the same shapes;
* optionally, any scalar a caller computes per checkpoint (``extra``), such as the certified
  accuracy of ``circuits.verify.certify`` on a short context — this module imports nothing from
  ``circuits.verify``; the ``circuits training-run`` command passes it in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from .._checks import is_int
from .._progress import Progress, progress_stream
from ..errors import AnalysisError
from ..model import AttnOnlyTransformer
from .ablation import next_token_loss
from .composition import composition_baseline, composition_scores
from .detection import behaviour_scores, repeated_random_tokens

__all__ = ["TrainingRun", "training_run"]


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """The measures of :func:`training_run`, one entry per checkpoint, in increasing step order."""

    steps: NDArray[np.intp]
    loss_repeated: FloatArray
    loss_unrepeated: FloatArray
    icl_score: FloatArray
    previous_token: FloatArray
    prefix_matching: FloatArray
    k_composition: FloatArray
    k_composition_baseline: float
    extra: dict[str, FloatArray]
    seq_len: int

    def table(self) -> str:
        """A plain-text table: one row per step; per-head scores of the best head of each role."""
        extras = sorted(self.extra)
        header = ["step", "loss rep", "loss unrep", "ICL", "prev (0.h)", "induct (1.h)", "K-comp"]
        rows = [header + extras]
        for k, step in enumerate(self.steps):
            prev = int(np.argmax(self.previous_token[k, 0]))
            ind = int(np.argmax(self.prefix_matching[k, 1]))
            rows.append(
                [
                    str(int(step)),
                    f"{self.loss_repeated[k]:.3f}",
                    f"{self.loss_unrepeated[k]:.3f}",
                    f"{self.icl_score[k]:+.3f}",
                    f"{self.previous_token[k, 0, prev]:.3f} (0.{prev})",
                    f"{self.prefix_matching[k, 1, ind]:.3f} (1.{ind})",
                    f"{self.k_composition[k, prev, ind]:.3f}",
                ]
                + [f"{self.extra[name][k]:.4f}" for name in extras]
            )
        widths = [max(len(row[c]) for row in rows) for c in range(len(header) + len(extras))]
        return "\n".join(
            "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and floats (JSON-ready)."""
        out: dict[str, Any] = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "extra"
        }
        out = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}
        out["extra"] = {name: values.tolist() for name, values in self.extra.items()}
        return out


def training_run(
    checkpoints: Mapping[int, AttnOnlyTransformer],
    *,
    seq_len: int | None = None,
    n_samples: int = 32,
    seed: int = 0,
    extra: Mapping[str, Callable[[AttnOnlyTransformer], float]] | None = None,
    progress: bool | IO[str] = True,
) -> TrainingRun:
    """Measure every checkpoint of a 2-layer run (module doc); ``extra`` maps names to scalars.

    The checkpoints must share one config. ``seq_len`` is the run length ``s`` of the repeated
    sequences (default: the longest that fits the context and vocabulary, at most 64).
    ``progress`` draws a bar of the checkpoints done (tqdm) on stderr when it is a terminal, or on
    the stream given; ``False`` draws none.
    """
    stream = progress_stream(progress, AnalysisError)
    if not isinstance(checkpoints, Mapping) or not checkpoints:
        raise AnalysisError("training_run: expected a non-empty mapping {step: model}")
    steps = sorted(checkpoints)
    for step in steps:
        if not is_int(step) or step < 0:
            raise AnalysisError(f"training_run: steps must be integers ≥ 0, got {step!r}")
        if not isinstance(checkpoints[step], AttnOnlyTransformer):
            raise AnalysisError(f"training_run: step {step} is not an AttnOnlyTransformer")
    first = checkpoints[steps[0]]
    if first.cfg.n_layers != 2:
        raise AnalysisError(f"training_run: expected a 2-layer model, got {first.cfg.n_layers}")
    if any(checkpoints[step].cfg != first.cfg for step in steps):
        raise AnalysisError("training_run: the checkpoints do not share one config")
    tokens = repeated_random_tokens(first, seq_len=seq_len, n_samples=n_samples, seed=seed)
    b = 0 if first.bos_token is None else 1
    s = (tokens.shape[1] - b) // 2
    if s < 2:
        raise AnalysisError("training_run: the repeated runs need at least 2 tokens")
    width = tokens.shape[1]
    first_copy, second_copy = np.zeros(width, bool), np.zeros(width, bool)
    first_copy[b : b + s - 1] = True
    second_copy[b + s : b + 2 * s - 1] = True
    half = math.ceil(s / 2)
    early, late = np.zeros(width, bool), np.zeros(width, bool)
    early[1 : 1 + half] = True
    late[width - 1 - half : width - 1] = True
    functions = dict(extra or {})
    rows: dict[str, list[Any]] = {
        key: [] for key in ("rep", "unrep", "icl", "prev", "ind", "k", *functions)
    }
    bar = Progress(len(steps), stream, "training run", "checkpoint")
    for step in steps:
        model = _wide(checkpoints[step])
        logits = model.forward(tokens)
        rows["rep"].append(next_token_loss(logits, tokens, positions=second_copy))
        rows["unrep"].append(next_token_loss(logits, tokens, positions=first_copy))
        rows["icl"].append(
            next_token_loss(logits, tokens, positions=late)
            - next_token_loss(logits, tokens, positions=early)
        )
        scores = behaviour_scores(model, seq_len=s, n_samples=n_samples, seed=seed)
        rows["prev"].append(scores["previous_token"])
        rows["ind"].append(scores["induction"])
        rows["k"].append(composition_scores(model, "K")[0, :, 1, :])
        for name, function in functions.items():
            rows[name].append(float(function(checkpoints[step])))
        bar.update(1)
    bar.close()
    return TrainingRun(
        steps=np.array(steps, dtype=np.intp),
        loss_repeated=np.array(rows["rep"]),
        loss_unrepeated=np.array(rows["unrep"]),
        icl_score=np.array(rows["icl"]),
        previous_token=np.array(rows["prev"]),
        prefix_matching=np.array(rows["ind"]),
        k_composition=np.array(rows["k"]),
        k_composition_baseline=float(composition_baseline(first)),
        extra={name: np.array(rows[name]) for name in functions},
        seq_len=s,
    )


def _wide(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    return model.replace(
        **{name: np.asarray(w, dtype=np.float64) for name, w in model.parameters().items()}
    )
