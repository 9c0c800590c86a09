"""Trained models that ship with the library, so every analysis can run on real weights offline.

Each model is a pair of package files: ``<name>.safetensors``, written by :func:`circuits.save`
(config, weights, ``bos_token`` and ``metadata`` such as head roles), and ``<name>.json``, the
training config and a summary of the training log.

>>> from circuits import zoo
>>> zoo.names()
['attn2l-induction']
>>> model = zoo.load("attn2l-induction")
>>> model.bos_token, model.cfg.n_layers
(0, 2)

``attn2l-induction`` is a 2-layer, 4-heads-per-layer attention-only transformer (d_model 64,
d_head 16, vocabulary 64, context 64, standard positions, no biases) trained by gradient descent
on sequences ``BOS`` + random tokens + a repeated random segment; it forms a previous-token head
in layer 0 and induction heads in layer 1. ``examples/train_induction.py`` reproduces it.
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

__all__ = ["info", "load", "names"]

_WEIGHTS = ".safetensors"
_INFO = ".json"


def names() -> list[str]:
    """The names of the shipped models, sorted."""
    return sorted(
        entry.name.removesuffix(_WEIGHTS)
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(_WEIGHTS)
    )


def load(name: str, *, dtype: Any = None) -> AttnOnlyTransformer:
    """The shipped model ``name``, as stored (float32) or with every weight cast to ``dtype``.

    ``dtype=np.float64`` is the choice for analyses that check exact identities to ~1e-10.
    """
    with resources.as_file(_entry(name, _WEIGHTS)) as path:
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


def _entry(name: object, suffix: str) -> Traversable:
    available = names()
    if name not in available:
        raise ZooError(f"no model named {name!r} in the zoo; available: {available}")
    return resources.files(__name__) / f"{name}{suffix}"
