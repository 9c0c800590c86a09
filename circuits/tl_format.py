r"""Translation between TransformerLens state dicts and the library's column convention.

TransformerLens multiplies activations on the right (row vectors); the library, like the
Framework, multiplies column vectors on the left. The translation is a set of transposes:

=====================  ====================  =====================
TransformerLens key    TL shape              library weight (shape)
=====================  ====================  =====================
``embed.W_E``          ``[V, d]``            ``W_E = W_Eᵀ`` ``[d, V]``
``pos_embed.W_pos``    ``[n, d]``            ``W_P = W_posᵀ`` ``[d, n]``
``blocks.l.attn.W_Q``  ``[H, d, k]``         ``W_Q[l] = ·ᵀ`` ``[H, k, d]`` (same for K, V)
``blocks.l.attn.W_O``  ``[H, k, d]``         ``W_O[l] = ·ᵀ`` ``[H, d, k]``
``blocks.l.attn.b_Q``  ``[H, k]``            ``b_Q[l]`` (same for K, V)
``blocks.l.attn.b_O``  ``[d]``               ``b_O[l]``
``unembed.W_U``        ``[d, V]``            ``W_U = W_Uᵀ`` ``[V, d]``
``unembed.b_U``        ``[V]``               ``b_U``
=====================  ====================  =====================

so TransformerLens's ``OV = W_V W_O`` is the transpose of our ``W_OV = W_O W_V``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._arrays import to_numpy
from .config import TransformerConfig
from .errors import ConfigError, ModelFileError

__all__ = ["from_transformer_lens_dict", "to_transformer_lens_dict"]

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.attn\.(W_Q|W_K|W_V|W_O|b_Q|b_K|b_V|b_O|mask|IGNORE)$")
_TOP_KEYS = {"embed.W_E", "pos_embed.W_pos", "unembed.W_U", "unembed.b_U"}
_BUFFERS = {"mask", "IGNORE"}
_ATTN_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")
_NDIM = {"W_Q": 3, "W_K": 3, "W_V": 3, "W_O": 3, "b_Q": 2, "b_K": 2, "b_V": 2, "b_O": 1}
#: A LayerNorm (``ln1``, ``ln2``, ``ln_final``, …) or MLP (``mlp.*``) key of a TransformerLens model.
_NORM_OR_MLP_KEY = re.compile(r"(?:^|\.)(?:ln(?:\d+|_\w+)?|mlp)(?:\.|$)")
_EXPECTED_KEYS = (
    "embed.W_E, pos_embed.W_pos, blocks.<layer>.attn.{W,b}_{Q,K,V,O}, unembed.W_U, unembed.b_U"
)
_SHOWN_KEYS = 8


def from_transformer_lens_dict(
    state_dict: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[TransformerConfig, dict[str, NDArray[Any]]]:
    """Config and column-convention weights from a TransformerLens state dict.

    Shapes are inferred from the weights; ``overrides`` sets config fields the state dict cannot
    carry (``n_ctx`` without positional embedding, ``attn_scale``, ``positional_embedding_type``).
    Absent biases are left out (the model fills them with zeros). Buffers (``mask``, ``IGNORE``)
    are ignored; any other key is an error, since a LayerNorm or MLP weight means the state dict
    is not of an attention-only transformer without normalisation.
    """
    if not isinstance(state_dict, Mapping):
        raise ModelFileError(
            f"a state dict is a mapping of names to arrays, got {type(state_dict).__name__}"
        )
    blocks: dict[int, dict[str, Any]] = {}
    unexpected = []
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key) if isinstance(key, str) else None
        if match:
            if match.group(2) not in _BUFFERS:
                blocks.setdefault(int(match.group(1)), {})[match.group(2)] = value
        elif key not in _TOP_KEYS:
            unexpected.append(str(key))
    if unexpected:
        raise ModelFileError(_unexpected_keys_message(unexpected))
    for required in ("embed.W_E", "unembed.W_U"):
        if required not in state_dict:
            raise ModelFileError(f"state dict has no {required!r}")
    n_layers = max(blocks) + 1 if blocks else 0
    missing_layers = sorted(set(range(n_layers)) - set(blocks))
    if missing_layers:
        raise ModelFileError(f"state dict skips layers {missing_layers}")

    W_E = _read(state_dict, "embed.W_E", 2)
    weights: dict[str, NDArray[Any]] = {"W_E": W_E.T, "W_U": _read(state_dict, "unembed.W_U", 2).T}
    if "unembed.b_U" in state_dict:
        weights["b_U"] = _read(state_dict, "unembed.b_U", 1)
    if "pos_embed.W_pos" in state_dict:
        weights["W_P"] = _read(state_dict, "pos_embed.W_pos", 2).T
    inferred: dict[str, Any] = {
        "n_layers": n_layers,
        "d_vocab": W_E.shape[0],
        "d_model": W_E.shape[1],
    }
    if n_layers:
        weights.update(_stack_blocks(blocks, n_layers))
        inferred["n_heads"], inferred["d_head"] = weights["W_Q"].shape[1:3]
    else:
        inferred.update(n_heads=1, d_head=1)
    if "W_P" in weights:
        inferred["n_ctx"] = weights["W_P"].shape[1]
        inferred["positional_embedding_type"] = "standard"
    else:
        inferred["positional_embedding_type"] = "none"
    cfg_values = {**inferred, **overrides}
    if "n_ctx" not in cfg_values:
        raise ConfigError(
            "the state dict has no positional embedding: pass n_ctx=… to set the context"
        )
    if cfg_values.get("positional_embedding_type") == "none":
        weights.pop("W_P", None)
    if "attn_scale" not in cfg_values:
        cfg_values["attn_scale"] = math.sqrt(cfg_values["d_head"])
    return TransformerConfig.from_dict(cfg_values), weights


def format_keys(keys: Iterable[str]) -> str:
    """The first few of ``keys`` in sorted order, with their number when some are left out."""
    ordered = sorted(keys)
    shown = str(ordered[:_SHOWN_KEYS])
    return shown if len(ordered) <= _SHOWN_KEYS else f"{shown} ({len(ordered)} in all)"


def is_transformer_lens_key(key: str) -> bool:
    """Whether ``key`` names a weight in TransformerLens's layout (``embed.W_E``, ``blocks.0.…``)."""
    return bool(key in _TOP_KEYS or _BLOCK_KEY.match(key) or _NORM_OR_MLP_KEY.search(key))


def check_column_layout(names: Iterable[str]) -> None:
    """Refuse TransformerLens keys where the column-convention names (``W_E``, …) are expected."""
    tl_keys = [name for name in names if is_transformer_lens_key(name)]
    if tl_keys:
        raise ModelFileError(
            f"{format_keys(tl_keys)} are TransformerLens state-dict keys (row convention), not "
            "the column-convention weight names W_E, W_Q, …; read a TransformerLens state dict "
            "with AttnOnlyTransformer.from_transformer_lens"
        )


def _unexpected_keys_message(keys: list[str]) -> str:
    message = (
        f"not an attention-only transformer state dict: unexpected keys {format_keys(keys)}; "
        f"expected {_EXPECTED_KEYS}"
    )
    if any(_NORM_OR_MLP_KEY.search(key) for key in keys):
        message += " (LayerNorm and MLP weights are not part of the models this library analyses)"
    return message


def _stack_blocks(
    blocks: Mapping[int, Mapping[str, Any]], n_layers: int
) -> dict[str, NDArray[Any]]:
    """Stack per-layer TL weights into ``[L, H, …]`` arrays in the column convention."""
    out: dict[str, NDArray[Any]] = {}
    for name in _ATTN_WEIGHTS:
        present = [name in blocks[layer] for layer in range(n_layers)]
        if not any(present):
            if name.startswith("W_"):
                raise ModelFileError(f"state dict has no blocks.*.attn.{name}")
            continue
        if not all(present):
            layer = present.index(False)
            raise ModelFileError(f"state dict has no 'blocks.{layer}.attn.{name}'")
        layers = [
            _read(blocks[layer], name, _NDIM[name], f"blocks.{layer}.attn.{name}")
            for layer in range(n_layers)
        ]
        shapes = {a.shape for a in layers}
        if len(shapes) > 1:
            raise ModelFileError(f"blocks.*.attn.{name}: layers disagree on shape {sorted(shapes)}")
        stacked = np.stack(layers)
        out[name] = stacked.swapaxes(-1, -2) if name.startswith("W_") else stacked
    return out


def _read(
    mapping: Mapping[str, Any], key: str, ndim: int, label: str | None = None
) -> NDArray[Any]:
    label = label or key
    array = to_numpy(mapping[key], label)
    if array.ndim != ndim:
        raise ModelFileError(f"{label}: expected {ndim} dimensions, got shape {list(array.shape)}")
    return array


def to_transformer_lens_dict(
    cfg: TransformerConfig, weights: Mapping[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    """TransformerLens state dict (row convention, numpy arrays) from column-convention weights.

    The exact inverse of :func:`from_transformer_lens_dict` (biases are always written).
    """
    check_column_layout(weights)
    out: dict[str, NDArray[Any]] = {"embed.W_E": weights["W_E"].T.copy()}
    if "W_P" in weights:
        out["pos_embed.W_pos"] = weights["W_P"].T.copy()
    for layer in range(cfg.n_layers):
        for name in _ATTN_WEIGHTS:
            w = weights[name][layer]
            out[f"blocks.{layer}.attn.{name}"] = (
                w.swapaxes(-1, -2) if name.startswith("W_") else w
            ).copy()
    out["unembed.W_U"] = weights["W_U"].T.copy()
    out["unembed.b_U"] = weights["b_U"].copy()
    return out
