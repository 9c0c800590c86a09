"""Trained models that ship with the library, so every analysis can run on real weights offline.

Each model is a pair of package files: ``<name>.safetensors``, written by :func:`circuits.save`
(config, weights, ``bos_token`` and ``metadata`` such as head roles), and ``<name>.json``, the
training config and a summary of the training log.

>>> from circuits import zoo
>>> zoo.names()
['attn2l-clean-induction', 'attn2l-induction', 'attn2l-tiny-induction']
>>> model = zoo.load("attn2l-clean-induction")
>>> model.bos_token, model.cfg.n_layers, model.cfg.n_heads
(0, 2, 1)

A model trained with checkpoints also ships them, as ``checkpoints/<name>/step-<step>.safetensors``:
:func:`steps` lists them and ``load(name, step=...)`` loads one (the last step is the model itself).

``attn2l-clean-induction`` is the flagship: 2 layers × 1 head (d_model 64, d_head 8, vocabulary
32, context 16, standard positions, no biases), trained on the induction family by
``examples/train_clean_induction.py``: a previous-token head 0.0 and an induction head 1.0, right
on the family at every length; its card (:func:`info`, key ``"measured"``) holds the figures.
``attn2l-tiny-induction`` (2 × 1 heads, d_model 32, d_head 8, vocabulary 8, context 8) is small
enough to enumerate every sequence of the family: the reference for certificates on trained
weights.

``attn2l-induction`` is a 2-layer, 4-heads-per-layer attention-only transformer (d_model 64,
d_head 16, vocabulary 64, context 64, standard positions, no biases) trained by gradient descent
on sequences ``BOS`` + random tokens + a repeated random segment; it forms a previous-token head
in layer 0 and induction heads in layer 1 (four redundant ones, each parking attention on BOS):
the first model of the zoo, kept for the analyses written against it.
``examples/train_induction.py`` reproduces it.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from typing import Any

import numpy as np

from .._arrays import float_dtype
from ..errors import ZooError
from ..io import load as load_file
from ..model import AttnOnlyTransformer

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover
    from importlib.abc import Traversable

__all__ = ["info", "load", "names", "steps"]

_WEIGHTS = ".safetensors"
_INFO = ".json"
_CHECKPOINTS = "checkpoints"
_STEP_PREFIX = "step-"


def names() -> list[str]:
    """The names of the shipped models, sorted."""
    return sorted(
        entry.name.removesuffix(_WEIGHTS)
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(_WEIGHTS)
    )


def steps(name: str) -> list[int]:
    """The training steps at which ``name`` has a shipped checkpoint, sorted (empty if none)."""
    return sorted(_checkpoints(name))


def load(name: str, *, step: int | None = None, dtype: Any = None) -> AttnOnlyTransformer:
    """The shipped model ``name``, as stored (float32) or with every weight cast to ``dtype``.

    ``step`` picks a checkpoint of its training run (one of :func:`steps`); the default is the
    trained model. ``dtype=np.float64`` is the choice for analyses that check exact identities to
    ~1e-10.
    """
    if step is None:
        entry = _entry(name, _WEIGHTS)
    else:
        available = _checkpoints(name)
        if not isinstance(step, int) or isinstance(step, bool) or step not in available:
            raise ZooError(
                f"{name!r} has no checkpoint at step {step!r}; steps: {sorted(available)}"
            )
        entry = available[step]
    with resources.as_file(entry) as path:
        model = load_file(path)
    if dtype is None:
        return model
    target = float_dtype(dtype)
    return model.replace(
        **{weight: np.asarray(array, dtype=target) for weight, array in model.parameters().items()}
    )


def info(name: str) -> dict[str, Any]:
    """The training config and training-log summary of the shipped model ``name`` (a fresh dict)."""
    description: dict[str, Any] = json.loads(_entry(name, _INFO).read_text(encoding="utf-8"))
    return description


def _checkpoints(name: object) -> dict[int, Traversable]:
    _entry(name, _WEIGHTS)  # an unknown name is a ZooError
    folder = resources.files(__name__) / _CHECKPOINTS / str(name)
    if not folder.is_dir():
        return {}
    found: dict[int, Traversable] = {}
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(_WEIGHTS)
        number = stem.removeprefix(_STEP_PREFIX)
        if entry.name.endswith(_WEIGHTS) and stem.startswith(_STEP_PREFIX) and number.isdigit():
            found[int(number)] = entry
    return found


def _entry(name: object, suffix: str) -> Traversable:
    available = names()
    if name not in available:
        raise ZooError(f"no model named {name!r} in the zoo; available: {available}")
    return resources.files(__name__) / f"{name}{suffix}"
