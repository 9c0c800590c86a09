"""Naming heads and indexing tensors by pairs of heads (internal)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from ..config import HeadRef
from ..errors import AnalysisError
from ..model import AttnOnlyTransformer


def check_order(model: AttnOnlyTransformer, writer: HeadRef, reader: HeadRef) -> None:
    """Raise unless ``writer`` is in an earlier layer than ``reader``."""
    first, second = model.cfg.resolve_head(writer), model.cfg.resolve_head(reader)
    if first[0] >= second[0]:
        raise AnalysisError(
            f"the writer {writer!r} (layer {first[0]}) must be in an earlier layer than the reader "
            f"{reader!r} (layer {second[0]})"
        )


def positional_embedding(model: AttnOnlyTransformer) -> FloatArray:
    """``W_P``, or an error for a model without positions."""
    if model.W_P is None:
        raise AnalysisError(
            "the model has no positional embedding (positional_embedding_type 'none')"
        )
    return model.W_P


def writer_reader_tensor(reader_major: NDArray[Any], n_layers: int) -> NDArray[Any]:
    """``[L, H, L, H, …]`` from values for readers in layers 1…L-1 and writers in layers 0…L-2.

    ``reader_major`` is ``[L-1, H, L-1, H, …]`` indexed ``[l₂ - 1, h₂, l₁, h₁, …]``; the result is
    indexed ``[l₁, h₁, l₂, h₂, …]`` and is NaN wherever ``l₁ ≥ l₂`` (no composition is possible).
    """
    H, tail = reader_major.shape[1], reader_major.shape[4:]
    out = np.full((n_layers, H, n_layers, H, *tail), np.nan, dtype=reader_major.dtype)
    order = (2, 3, 0, 1, *range(4, reader_major.ndim))
    out[:-1, :, 1:, :] = reader_major.transpose(order)
    layers = np.arange(n_layers)
    undefined = (layers[:, None] >= layers[None, :])[:, None, :, None]  # [l₁, ·, l₂, ·]
    undefined = undefined.reshape(undefined.shape + (1,) * len(tail))
    out[np.broadcast_to(undefined, out.shape)] = np.nan
    return out
