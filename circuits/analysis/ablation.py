r"""Ablation of heads and paths, with attention patterns frozen or recomputed, and loss analyses.

**Patterns recomputed**: the ablated model runs normally, so later heads may attend elsewhere.
**Patterns frozen**: every head keeps the pattern :math:`A^h` it had on the clean run; the network
is then linear in its sources and

.. math::  x^{l+1} = x^l + \sum_h W_O^h A^h (W_V^h x^l + \mathbb{1} b_V^h{}^T) + b_O^l

(:func:`frozen_forward`). Frozen, ablating a set of heads with zeros is exactly dropping every
path through them from the path expansion.

A head is ablated by **zeros** (its output removed) or by its **mean** output over the batch and
positions of a reference run (the clean tokens by default), which is written as the constant
``b_O`` it adds: :math:`W_O^h \to 0`, :math:`b_O^l \to b_O^l + \bar o^h`.

The **loss** is the mean next-token cross-entropy: logits at position ``i`` predict token
``i + 1``, :math:`\mathcal{L} = -\frac{1}{B(n-1)} \sum_{b,i<n-1} \log \operatorname{softmax}
(\text{logits}_{b,i})[t_{b,i+1}]`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from .._arrays import FloatArray, as_real_array
from .._checks import is_int
from ..config import HeadRef
from ..errors import AnalysisError
from ..model import ActivationCache, AttnOnlyTransformer, as_cache, token_ids, validate_tokens
from ..paths import PathExpansion, path_expansion
from .attribution import Circuit, circuit_paths

__all__ = [
    "ablate_heads",
    "ablate_paths",
    "frozen_forward",
    "head_ablation_effects",
    "loss_recovery",
    "next_token_loss",
    "order_importance",
]

Method = Literal["zero", "mean"]
Patterns = Literal["recomputed", "frozen"]


def next_token_loss(logits: Any, tokens: Any, *, positions: Any = None) -> float:
    r"""Mean cross-entropy of ``logits[b, i]`` (``[batch, pos, d_vocab]``) against ``tokens[b, i+1]``.

    ``positions`` (booleans ``[batch, pos]`` or ``[pos]``) keeps only the predictions made at the
    positions it marks (the last position predicts nothing and is always left out).
    :math:`\log\operatorname{softmax}` is taken as :math:`z - \max z - \log\sum e^{z - \max z}`,
    finite for logits of any finite size.
    """
    values = as_real_array(logits, "logits", dtype=np.dtype(np.float64), copy=False)
    ids = token_ids(tokens, "tokens", values.shape[-1] if values.ndim else None)
    if values.ndim == 2:
        values, ids = values[None], ids[None]
    if values.ndim != 3 or ids.shape != values.shape[:2] or ids.shape[1] < 2:
        raise AnalysisError(
            f"next_token_loss: expected logits [batch, pos, d_vocab] and tokens [batch, pos] with "
            f"pos ≥ 2, got {list(values.shape)} and {list(ids.shape)}"
        )
    keep = _positions(positions, ids.shape)[:, :-1]
    predicting, targets = values[:, :-1], ids[:, 1:]
    shifted = predicting - predicting.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1))
    chosen = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    return float(np.mean((log_norm - chosen)[keep]))


def frozen_forward(
    model: AttnOnlyTransformer, tokens: Any, patterns: ActivationCache
) -> FloatArray:
    """Logits ``[batch, pos, d_vocab]`` of ``model`` with every head's pattern taken from ``patterns``.

    ``patterns`` is the cache of a run on the same number of sequences and positions by a model of
    the same configuration (typically the clean model on the same tokens). With the cache of
    ``model`` itself on ``tokens`` this is exactly ``model(tokens)``.
    """
    batched, _ = validate_tokens(tokens, model.cfg)
    _check_patterns(model, batched, patterns)
    x = model.embed(batched)
    for layer in range(model.cfg.n_layers):
        A = np.stack([patterns.pattern(layer, h) for h in range(model.cfg.n_heads)], axis=1)
        values = np.einsum("bjd,hkd->bhjk", x, model.W_V[layer], optimize=True)
        mixed = A @ (values + model.b_V[layer][None, :, None])
        x = (
            x
            + np.einsum("bhik,hdk->bid", mixed, model.W_O[layer], optimize=True)
            + model.b_O[layer]
        )
    logits: FloatArray = x @ model.W_U.T + model.b_U
    return logits


def ablate_heads(
    model: AttnOnlyTransformer,
    tokens: Any,
    heads: Iterable[HeadRef] | HeadRef,
    *,
    method: Method = "zero",
    patterns: Patterns = "recomputed",
    reference: Any = None,
) -> FloatArray:
    """Logits ``[batch, pos, d_vocab]`` on ``tokens`` with ``heads`` ablated (module docstring).

    ``heads``: names ``"l.h"`` or pairs ``(layer, head)``, or one such head alone.
    ``method``: ``"zero"`` or ``"mean"`` (mean output over ``reference`` tokens, default
    ``tokens``); ``patterns``: ``"recomputed"`` or ``"frozen"`` (those of the clean run).
    """
    _, clean = model.run_with_cache(_batched(model, tokens))
    means = _mean_outputs(model, clean, reference, method)
    return _ablated_logits(model, clean, heads, means, patterns)


def head_ablation_effects(
    model: AttnOnlyTransformer,
    tokens: Any,
    *,
    method: Method = "zero",
    patterns: Patterns = "recomputed",
    reference: Any = None,
    positions: Any = None,
) -> FloatArray:
    """Increase of :func:`next_token_loss` (on ``positions``) when each head alone is ablated.

    ``[n_layers, n_heads]``; ``method``, ``patterns`` and ``reference`` as for :func:`ablate_heads`.
    """
    logits, clean = model.run_with_cache(_batched(model, tokens))
    means = _mean_outputs(model, clean, reference, method)
    loss = next_token_loss(logits, clean.tokens, positions=positions)
    effects = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    for head in model.cfg.heads():
        ablated = _ablated_logits(model, clean, [head], means, patterns)
        effects[head] = next_token_loss(ablated, clean.tokens, positions=positions) - loss
    return effects


def ablate_paths(model: AttnOnlyTransformer, cache: ActivationCache, paths: Circuit) -> FloatArray:
    """Logits ``[batch, pos, d_vocab]`` from every path of the expansion except ``paths``.

    Patterns are frozen (those of ``cache``): the logits are the sum of the remaining terms of
    ``path_expansion(model)``, evaluated with ``cache``.
    """
    return _without(path_expansion(model), paths).evaluate(cache)


def loss_recovery(
    model: AttnOnlyTransformer,
    tokens: Any,
    circuit: Circuit,
    *,
    baseline: Circuit | None = None,
    positions: Any = None,
) -> float:
    r"""The fraction of the loss reduction that a circuit's paths alone achieve, patterns frozen.

    With :math:`\mathcal{L}_F` the model's loss, :math:`\mathcal{L}_C` the loss of the logits made
    of the circuit's terms only and :math:`\mathcal{L}_B` that of the baseline's terms (default:
    no terms, logits 0, :math:`\mathcal{L}_B = \ln d_\text{vocab}`), the result is
    :math:`(\mathcal{L}_B - \mathcal{L}_C) / (\mathcal{L}_B - \mathcal{L}_F)`; losses on ``positions``
    (see :func:`next_token_loss`).
    """
    batched = _batched(model, tokens)
    logits, cache = model.run_with_cache(batched)
    expansion = path_expansion(model)

    def loss(values: FloatArray) -> float:
        return next_token_loss(values, batched, positions=positions)

    full = loss(logits)
    part = loss(_only(expansion, circuit).evaluate(cache))
    if baseline is None:
        base = float(np.log(model.cfg.d_vocab))
    else:
        base = loss(_only(expansion, baseline).evaluate(cache))
    if base == full:
        raise AnalysisError("the model's loss equals the baseline's: no fraction exists")
    return (base - part) / (base - full)


def order_importance(
    model: AttnOnlyTransformer,
    tokens: Any,
    *,
    max_order: int | None = None,
    positions: Any = None,
) -> list[tuple[int, float, float]]:
    r"""The Framework's term-importance analysis by path order, patterns frozen.

    For each order :math:`m = 0, 1, …` (the number of heads a path passes through after its
    source; bias paths included by the same count), ``(m, loss, gain)``: the loss of the logits
    made of every term of order :math:`\le m`, and ``gain`` the loss reduction from adding the
    terms of order exactly m (for m = 0: from :math:`\ln d_\text{vocab}`, logits 0). The last
    loss is the model's own (orders up to ``n_layers``, unless ``max_order`` stops earlier).
    Losses are on ``positions`` (see :func:`next_token_loss`).
    """
    batched = _batched(model, tokens)
    _, cache = model.run_with_cache(batched)
    expansion = path_expansion(model)
    if not (max_order is None or (is_int(max_order) and max_order >= 0)):
        raise AnalysisError(f"max_order must be an integer ≥ 0 or None, got {max_order!r}")
    last = model.cfg.n_layers if max_order is None else min(int(max_order), model.cfg.n_layers)
    rows, previous = [], float(np.log(model.cfg.d_vocab))
    logits = np.zeros((*batched.shape, model.cfg.d_vocab), dtype=model.dtype)
    for order in range(last + 1):
        logits = logits + expansion.filter(order=order).evaluate(cache)
        loss = next_token_loss(logits, batched, positions=positions)
        rows.append((order, loss, previous - loss))
        previous = loss
    return rows


# ---------------------------------------------------------------------- internals
def _positions(positions: Any, shape: tuple[int, ...]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """``positions`` as booleans ``[batch, pos]`` (all by default), with at least one prediction."""
    if positions is None:
        return np.ones(shape, dtype=bool)
    marks = np.asarray(positions)
    try:
        keep = np.broadcast_to(marks, shape)
    except ValueError:
        raise AnalysisError(
            f"positions: expected booleans of shape {list(shape)} or {list(shape[1:])}, got "
            f"{list(marks.shape)}"
        ) from None
    if keep.dtype != bool or not keep[:, :-1].any():
        raise AnalysisError(
            "positions: expected booleans marking at least one position but the last"
        )
    return keep


def _batched(model: AttnOnlyTransformer, tokens: Any) -> Any:
    batched, _ = validate_tokens(tokens, model.cfg)
    return batched


def _check_patterns(model: AttnOnlyTransformer, tokens: Any, patterns: ActivationCache) -> None:
    cache = as_cache(patterns, "patterns")
    if cache.model.cfg != model.cfg or cache.tokens.shape != tokens.shape:
        raise AnalysisError(
            f"patterns: a cache of shape {list(patterns.tokens.shape)} from a model with "
            f"{patterns.model.cfg} cannot freeze a run of shape {list(tokens.shape)} of {model.cfg}"
        )


def _mean_outputs(
    model: AttnOnlyTransformer, clean: ActivationCache, reference: Any, method: str
) -> FloatArray | None:
    """Every head's mean output ``[n_layers, n_heads, d_model]`` for ``"mean"``, else ``None``."""
    if method not in ("zero", "mean"):
        raise AnalysisError(f"method must be 'zero' or 'mean', got {method!r}")
    if method == "zero":
        return None
    cache = clean if reference is None else model.run_with_cache(_batched(model, reference))[1]
    means = np.stack([cache.head_output(*head).mean(axis=(0, 1)) for head in model.cfg.heads()])
    return means.reshape(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model)


def _ablated_logits(
    model: AttnOnlyTransformer,
    clean: ActivationCache,
    heads: Iterable[HeadRef] | HeadRef,
    means: FloatArray | None,
    patterns: str,
) -> FloatArray:
    """Logits on the clean tokens with ``W_O`` of ``heads`` zeroed, their ``means`` (if any) in ``b_O``."""
    if patterns not in ("recomputed", "frozen"):
        raise AnalysisError(f"patterns must be 'recomputed' or 'frozen', got {patterns!r}")
    W_O, b_O = np.array(model.W_O), np.array(model.b_O)
    for layer, head in model.cfg.resolve_heads(heads):
        W_O[layer, head] = 0.0
        if means is not None:
            b_O[layer] += means[layer, head]
    ablated = model.replace(W_O=W_O, b_O=b_O)
    if patterns == "recomputed":
        return ablated.forward(clean.tokens)
    return frozen_forward(ablated, clean.tokens, clean)


def _only(expansion: PathExpansion, circuit: Circuit) -> PathExpansion:
    chosen = circuit_paths(circuit, expansion)
    return expansion.filter(where=lambda term: term.path in chosen)


def _without(expansion: PathExpansion, circuit: Circuit) -> PathExpansion:
    dropped = circuit_paths(circuit, expansion)
    return expansion.filter(where=lambda term: term.path not in dropped)
