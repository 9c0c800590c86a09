r"""Folding a normalisation into the weights: three exact identities, as TransformerLens loads models.

A normalisation reads the stream as :math:`\mathrm{LN}(x) = w \odot C x / \sigma(x) + b`, with
:math:`C = I - \tfrac{1}{d}\mathbb{1}\mathbb{1}^T` the centring (the identity for RMS) and
:math:`\sigma(x) = \sqrt{\overline{(Cx)^2} + \epsilon}`. Everything that reads it is linear, so
for a reading weight :math:`W` (a head's :math:`W_Q, W_K, W_V` or the unembedding :math:`W_U`)

.. math::  W \,\mathrm{LN}(x) = (W \mathrm{diag}(w) C)\, C x / \sigma(x) + W b ,

using :math:`C C = C`. :func:`fold_layer_norm` moves :math:`\mathrm{diag}(w) C` into every reading
weight and :math:`W b` into its bias, leaving the weightless ``"LNPre"`` (``"RMSPre"``)
normalisation :math:`C x / \sigma(x)`: the same model, to rounding.

:func:`center_writing_weights` subtracts from everything that writes to the stream
(:math:`W_E`, standard :math:`W_P`, :math:`W_O`, :math:`b_O`) its mean over the ``d_model``
entries. Every reader of a centring normalisation sees only :math:`Cx`, and :math:`C(Cx) = Cx`, so
the logits are unchanged; the stream itself changes (its mean is gone). Shortformer positions are
added after the normalisation, so they are not writers and stay as they are.

:func:`center_unembed` subtracts from :math:`W_U` and :math:`b_U` their means over the vocabulary:
every logit at a position moves by the same amount, so log-probabilities and the argmax are
unchanged (the logits themselves are not).

**What stays an approximation.** Weight-based analyses (composition scores, QK and OV circuits,
eigenvalues) of a model with a normalisation use the folded weights and leave out the scale
:math:`1/\sigma`, which depends on the input. Within one forward pass it is a positive factor
per position: the QK circuit of a head is right up to :math:`1/(\sigma_i \sigma_j)` for query
``i`` and key ``j``, an OV circuit up to :math:`1/\sigma_j` at the source and :math:`1/\sigma_i`
at the readout. The path expansion (:mod:`circuits.paths`) keeps these scales, frozen from a
forward pass, and stays exact.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

import numpy as np

from ._arrays import FloatArray
from .config import NormalizationType
from .errors import ConfigError
from .model import AttnOnlyTransformer, as_model

__all__ = [
    "center_unembed",
    "center_writing_weights",
    "fold_layer_norm",
    "folded_weights",
    "read_through_norm",
]

_FOLDED: weakref.WeakKeyDictionary[AttnOnlyTransformer, AttnOnlyTransformer] = (
    weakref.WeakKeyDictionary()
)


def fold_layer_norm(
    model: AttnOnlyTransformer, *, center_weights: bool = True
) -> AttnOnlyTransformer:
    r"""The same model with the normalisation's weight and bias folded into what reads it.

    For each layer :math:`l` and head :math:`h`, with :math:`w, b` the layer's normalisation,
    :math:`W_\bullet^h \to W_\bullet^h \mathrm{diag}(w) C` and
    :math:`b_\bullet^h \to b_\bullet^h + W_\bullet^h b` for :math:`\bullet \in \{Q, K, V\}`;
    :math:`W_U \to W_U \mathrm{diag}(w_f) C`, :math:`b_U \to b_U + W_U b_f`; the normalisation
    becomes ``"LNPre"`` (``"RMSPre"``). ``center_weights=False`` leaves out :math:`C` (the
    normalisation still centres, so either way the forward pass is the same). A model without
    normalisation weights is returned as it is. Shortformer positions are added to what the
    normalisation gives the queries and keys, so folding would send them through
    :math:`\mathrm{diag}(w) C` too: such a model is refused with a
    :class:`~circuits.errors.ConfigError`.
    """
    cfg = as_model(model).cfg
    if not cfg.normalization_weights:
        return model
    if cfg.positional_embedding_type == "shortformer":
        raise ConfigError(
            "fold_layer_norm is not exact with shortformer positions: they are added after the "
            "normalisation, so folding its weight would scale them too"
        )
    b_LN = np.zeros((cfg.n_layers, cfg.d_model)) if model.b_LN is None else model.b_LN
    b_final = np.zeros(cfg.d_model) if model.b_LN_final is None else model.b_LN_final
    changes: dict[str, Any] = {}
    for name in ("Q", "K", "V"):
        W = getattr(model, f"W_{name}")  # [L, H, k, d]
        changes[f"b_{name}"] = getattr(model, f"b_{name}") + np.einsum("lhkd,ld->lhk", W, b_LN)
        read = [
            read_through_norm(model, W[i], i, centre=center_weights) for i in range(cfg.n_layers)
        ]
        changes[f"W_{name}"] = np.stack(read) if read else W
    changes["b_U"] = model.b_U + model.W_U @ b_final
    changes["W_U"] = read_through_norm(model, model.W_U, cfg.n_layers, centre=center_weights)
    folded_type: NormalizationType = "LNPre" if cfg.centred else "RMSPre"
    return AttnOnlyTransformer(
        replace(cfg, normalization_type=folded_type),
        **{**_kept(model), **changes},
        bos_token=model.bos_token,
        metadata=model.metadata,
    )


def center_writing_weights(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    r"""The same model with every writer to the stream centred: :math:`W \to C W` for
    :math:`W_E`, :math:`W_O^h`, :math:`b_O^l` and standard :math:`W_P`.

    Exact (the logits do not change) when every reader centres first: ``normalization_type``
    ``"LN"`` or ``"LNPre"``; any other model is refused with a :class:`~circuits.errors.ConfigError`.
    """
    cfg = as_model(model).cfg
    if not cfg.centred:
        raise ConfigError(
            "center_writing_weights changes the logits unless every reader centres the stream: "
            f"it needs normalization_type 'LN' or 'LNPre', got {cfg.normalization_type!r}"
        )
    changes = {
        "W_E": _centred_columns(model.W_E),
        "W_O": _centred_columns(model.W_O),
        "b_O": model.b_O - model.b_O.mean(axis=-1, keepdims=True),
    }
    if cfg.positional_embedding_type == "standard" and model.W_P is not None:
        changes["W_P"] = _centred_columns(model.W_P)
    return model.replace(**changes)


def center_unembed(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    r"""The same model with :math:`W_U \to W_U - \mathbb{1}\bar{u}^T` and :math:`b_U \to b_U - \bar{b}_U`
    (means over the vocabulary): every logit at a position moves by one amount, so
    log-probabilities and predictions are unchanged."""
    as_model(model)
    return model.replace(
        W_U=model.W_U - model.W_U.mean(axis=0, keepdims=True),
        b_U=model.b_U - model.b_U.mean(),
    )


def read_through_norm(
    model: AttnOnlyTransformer, W: FloatArray, layer: int, *, centre: bool | None = None
) -> FloatArray:
    r""":math:`W \mathrm{diag}(w) C`: a weight ``W`` ``[..., d_model]`` that reads the stream through
    the normalisation of ``layer``'s input (``layer = n_layers``: the unembedding's), its scale
    aside. ``w = 1`` without normalisation weights; :math:`C = I` without centring (or with
    ``centre=False``); ``W`` itself for a model without normalisation."""
    cfg = model.cfg
    if not cfg.normalized:
        return W
    weights = model.w_LN_final if layer == cfg.n_layers else model.w_LN
    if weights is not None and layer < cfg.n_layers:
        weights = weights[layer]
    read = W if weights is None else W * weights
    return _centred_rows(read, cfg.centred if centre is None else centre and cfg.centred)


def folded_weights(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    """:func:`fold_layer_norm` of ``model``, computed once per model: the weights that the
    weight-based analyses read (the model itself when it has no normalisation weights; refused,
    as by :func:`fold_layer_norm`, for shortformer positions with normalisation weights)."""
    if not as_model(model).cfg.normalization_weights:
        return model
    if model not in _FOLDED:
        _FOLDED[model] = fold_layer_norm(model)
    return _FOLDED[model]


def _kept(model: AttnOnlyTransformer) -> dict[str, FloatArray]:
    """The weights that folding leaves alone (the normalisation's own are dropped)."""
    return {
        name: value
        for name, value in model.parameters().items()
        if name not in ("w_LN", "b_LN", "w_LN_final", "b_LN_final")
    }


def _centred_rows(W: FloatArray, centre: bool) -> FloatArray:
    """:math:`W C`: each row minus its mean over the last (``d_model``) axis, if ``centre``."""
    return W - W.mean(axis=-1, keepdims=True) if centre else W


def _centred_columns(W: FloatArray) -> FloatArray:
    """:math:`C W` for ``W`` ``[..., d_model, n]``: each column minus its mean over ``d_model``."""
    result: FloatArray = W - W.mean(axis=-2, keepdims=True)
    return result
