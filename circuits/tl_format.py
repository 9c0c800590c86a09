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
``blocks.l.ln1.w``     ``[d]``               ``w_LN[l]`` (same for ``b``)
``ln_final.w``         ``[d]``               ``w_LN_final`` (same for ``b``)
=====================  ====================  =====================

LayerNorm keys tell ``"LN"`` (``w`` and ``b``) from ``"RMS"`` (``w`` only). A normalisation
without weights (``"LNPre"``, ``"RMSPre"``) leaves no key in a state dict, so it must be given
(``normalization_type=…``), or read from the model object
(:meth:`~circuits.AttnOnlyTransformer.from_hooked_transformer`).

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
from .errors import ConfigError, ModelFileError, UnsupportedModelError, WeightError

__all__ = ["from_transformer_lens_dict", "hooked_transformer_overrides", "to_transformer_lens_dict"]

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.attn\.(W_Q|W_K|W_V|W_O|b_Q|b_K|b_V|b_O|mask|IGNORE)$")
_LN_KEY = re.compile(r"^(?:blocks\.(\d+)\.ln1|ln_final)\.(w|b)$")
_TOP_KEYS = {"embed.W_E", "pos_embed.W_pos", "unembed.W_U", "unembed.b_U"}
_BUFFERS = {"mask", "IGNORE"}
_ATTN_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")
_NDIM = {"W_Q": 3, "W_K": 3, "W_V": 3, "W_O": 3, "b_Q": 2, "b_K": 2, "b_V": 2, "b_O": 1}
#: A LayerNorm (``ln1``, ``ln2``, ``ln_final``, …) or MLP (``mlp.*``) key of a TransformerLens model.
_NORM_OR_MLP_KEY = re.compile(r"(?:^|\.)(?:ln(?:\d+(?:_\w+)?|_\w+)?|mlp)(?:\.|$)")
_EXPECTED_KEYS = (
    "embed.W_E, pos_embed.W_pos, blocks.<layer>.attn.{W,b}_{Q,K,V,O}, unembed.W_U, unembed.b_U, "
    "and for LayerNorm blocks.<layer>.ln1.{w,b}, ln_final.{w,b}"
)
_SHOWN_KEYS = 8


def from_transformer_lens_dict(
    state_dict: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[TransformerConfig, dict[str, NDArray[Any]]]:
    """Config and column-convention weights from a TransformerLens state dict.

    Shapes are inferred from the weights; ``overrides`` sets config fields the state dict cannot
    carry (``n_ctx`` without positional embedding, ``attn_scale``, ``positional_embedding_type``).
    Absent biases are left out (the model fills them with zeros). LayerNorm weights
    (``blocks.l.ln1.{w,b}``, ``ln_final.{w,b}``) set ``normalization_type`` to ``"LN"`` (``"RMS"``
    without biases) unless ``overrides`` names it, and must then agree with it. Buffers (``mask``,
    ``IGNORE``) are ignored; any other key (an MLP, a second LayerNorm) is an error, since the
    state dict is then not of a model this library analyses.
    """
    if not isinstance(state_dict, Mapping):
        raise ModelFileError(
            f"a state dict is a mapping of names to arrays, got {type(state_dict).__name__}"
        )
    blocks: dict[int, dict[str, Any]] = {}
    norms: dict[str, Any] = {}
    unexpected = []
    for key, value in state_dict.items():
        match = _BLOCK_KEY.match(key) if isinstance(key, str) else None
        if match:
            if match.group(2) not in _BUFFERS:
                blocks.setdefault(int(match.group(1)), {})[match.group(2)] = value
        elif isinstance(key, str) and _LN_KEY.match(key):
            norms[key] = value
        elif key not in _TOP_KEYS:
            unexpected.append(str(key))
    if unexpected:
        raise ModelFileError(_unexpected_keys_message(unexpected))
    for required in ("embed.W_E", "unembed.W_U"):
        if required not in state_dict:
            raise ModelFileError(f"state dict has no {required!r}")
    n_layers = max(blocks) + 1 if blocks else 0
    normalization = _normalization(norms, n_layers, overrides)
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
    weights.update(_norm_weights(norms, n_layers, normalization))
    inferred["normalization_type"] = normalization
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


#: ``HookedTransformerConfig`` fields read into the config, with what they become.
_READ_FIELDS = ("n_layers", "d_model", "n_ctx", "d_head", "n_heads", "d_vocab", "eps")
#: Fields with no effect on an attention-only model's computation (names, devices, hooks,
#: initialisation, tokenizer, MLP and rotary settings of a model that has neither).
_INERT_FIELDS = frozenset({
    "model_name", "device", "n_devices", "seed", "dtype", "init_mode", "initializer_range",
    "init_weights", "tokenizer_name", "tokenizer_prepends_bos", "default_prepend_bos",
    "original_architecture", "from_checkpoint", "checkpoint_index", "checkpoint_label_type",
    "checkpoint_value", "n_params", "use_hook_tokens", "use_attn_result", "use_split_qkv_input",
    "use_attn_in", "use_hook_mlp_in", "trust_remote_code", "tie_word_embeddings", "load_in_4bit",
    "d_mlp", "act_fn", "gated_mlp", "parallel_attn_mlp", "experts_per_token",
    "ungroup_grouped_query_attention", "decoder_start_token_id", "rotary_dim", "rotary_base",
    "rotary_base_local", "rotary_adjacent_pairs", "use_NTK_by_parts_rope",
    "NTK_by_parts_low_freq_factor", "NTK_by_parts_high_freq_factor", "NTK_by_parts_factor",
    "NTK_original_ctx_len", "use_attn_scale", "attn_scale",
})  # fmt: skip
#: Fields that must have one of these values: anything else is not modelled here.
_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = {
    "attn_only": (True,),
    "normalization_type": (None, "LN", "LNPre", "RMS", "RMSPre"),
    "positional_embedding_type": ("standard", "shortformer"),
    "attention_dir": ("causal",),
    "final_rms": (False,),
    "use_normalization_before_and_after": (False,),
    "post_embedding_ln": (False,),
    "use_qk_norm": (False,),
    "use_local_attn": (False,),
    "window_size": (None,),
    "attn_types": (None,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "n_key_value_heads": (None,),
    "num_experts": (None,),
    "relative_attention_max_distance": (None,),
    "relative_attention_num_buckets": (None,),
}


def hooked_transformer_overrides(cfg: Any) -> dict[str, Any]:
    """The config fields of a TransformerLens ``HookedTransformerConfig`` ``cfg``, as overrides
    for :func:`from_transformer_lens_dict`; refuses anything the library does not model.

    Every field is either read (sizes, ``eps``, ``attn_scale`` with ``use_attn_scale``,
    ``normalization_type``, ``positional_embedding_type``), without effect on an attention-only
    model (names, devices, hooks, MLP settings when there is no MLP), or required to have the
    value the library models (causal attention, no soft-capping, no grouped-query attention,
    ``d_vocab_out = d_vocab``, …); any other field with a value other than its default is
    refused too, naming it, so that a newer TransformerLens option is never silently ignored.
    """
    import dataclasses

    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise UnsupportedModelError(
            f"expected a TransformerLens HookedTransformerConfig, got {type(cfg).__name__}"
        )
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for name, allowed in _REQUIRED_VALUES.items():
        if name in values and values[name] not in allowed:
            raise UnsupportedModelError(
                f"{name}={values[name]!r} is not modelled by this library (supported: "
                f"{', '.join(map(repr, allowed))})"
            )
    for name in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        if values.get(name, -1.0) > 0:
            raise UnsupportedModelError(f"{name}={values[name]!r}: soft-capping is not modelled")
    if values.get("d_vocab_out", -1) not in (-1, values.get("d_vocab")):
        raise UnsupportedModelError(
            f"d_vocab_out={values['d_vocab_out']!r} differs from d_vocab={values.get('d_vocab')!r}"
        )
    defaults = {
        f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING
    }
    known = {*_READ_FIELDS, *_INERT_FIELDS, *_REQUIRED_VALUES}
    known |= {"attn_scores_soft_cap", "output_logits_soft_cap", "d_vocab_out"}
    for name, value in values.items():
        if name not in known and name in defaults and value != defaults[name]:
            raise UnsupportedModelError(
                f"{name}={value!r}: a TransformerLens option this library does not know"
            )
    scale = float(values["attn_scale"]) if values.get("use_attn_scale", True) else 1.0
    overrides = {name: values[name] for name in _READ_FIELDS if name in values}
    overrides.update(
        attn_scale=scale,
        normalization_type=values.get("normalization_type"),
        positional_embedding_type=values.get("positional_embedding_type", "standard"),
    )
    return overrides


def _normalization(norms: Mapping[str, Any], n_layers: int, overrides: Mapping[str, Any]) -> Any:
    """The normalisation the LayerNorm keys ``norms`` show, checked against ``overrides``."""
    has_w, has_b = (any(key.endswith(f".{p}") for key in norms) for p in ("w", "b"))
    if has_b and not has_w:
        raise ModelFileError(f"LayerNorm biases without weights: {format_keys(norms)}")
    shown = ("LN" if has_b else "RMS") if has_w else None
    given = overrides.get("normalization_type", shown)
    if shown != (given if given in ("LN", "RMS") else None):
        found = f"{format_keys(norms)} ({shown!r})" if norms else "no LayerNorm weights"
        raise ModelFileError(
            f"normalization_type={given!r} does not match the state dict, which has {found}"
        )
    for name in _norm_parts(shown):
        keys = [f"blocks.{layer}.ln1.{name}" for layer in range(n_layers)] + [f"ln_final.{name}"]
        missing = [key for key in keys if key not in norms]
        if missing:
            raise ModelFileError(f"state dict has no {format_keys(missing)}")
    return given


def _norm_parts(normalization: Any) -> tuple[str, ...]:
    """The LayerNorm parameters a normalisation has: ``("w", "b")``, ``("w",)`` or none."""
    return {"LN": ("w", "b"), "RMS": ("w",)}.get(normalization, ())


def _norm_weights(
    norms: Mapping[str, Any], n_layers: int, normalization: Any
) -> dict[str, NDArray[Any]]:
    """``w_LN``/``b_LN`` ``[L, d]`` and ``w_LN_final``/``b_LN_final`` ``[d]`` from LayerNorm keys."""
    out: dict[str, NDArray[Any]] = {}
    for name in _norm_parts(normalization):
        final = _read(norms, f"ln_final.{name}", 1)
        layers = [_read(norms, f"blocks.{layer}.ln1.{name}", 1) for layer in range(n_layers)]
        if len({a.shape for a in layers}) > 1:
            raise ModelFileError(f"blocks.*.ln1.{name}: layers disagree on shape")
        out[f"{name}_LN"] = np.stack(layers) if layers else np.zeros((0, *final.shape))
        out[f"{name}_LN_final"] = final
    return out


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
        message += (
            " (MLP weights, and LayerNorms other than blocks.<layer>.ln1 and ln_final, are not part"
            " of the models this library analyses)"
        )
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
    if array.dtype.kind not in "biuf":  # strings, bytes, raw records: nothing to stack or compute
        raise WeightError(f"{label}: expected a real array, got dtype {array.dtype}")
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
    for name in ("w", "b"):
        if f"{name}_LN" in weights:
            for layer in range(cfg.n_layers):
                out[f"blocks.{layer}.ln1.{name}"] = weights[f"{name}_LN"][layer].copy()
            out[f"ln_final.{name}"] = weights[f"{name}_LN_final"].copy()
    out["unembed.W_U"] = weights["W_U"].T.copy()
    out["unembed.b_U"] = weights["b_U"].copy()
    return out
