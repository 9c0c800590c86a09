r"""Behavioural head scores on repeated random tokens, and head detection.

Each sample is ``[BOS] r r``: a run ``r`` of ``seq_len`` distinct random tokens (never the BOS
token), repeated once, after the model's BOS token when it has one (``b = 1``; else ``b = 0``).
With :math:`A` a head's attention pattern, averaged over samples:

* **previous-token** score: mean of :math:`A_{i,\,i-1}` over every position ``i ≥ 1``;
* **duplicate-token** score: mean of :math:`A_{i,\,i-s}` over the second copy
  ``b + s ≤ i < b + 2s`` (``s = seq_len``): attention to the earlier occurrence of the same token;
* **induction** score: mean of :math:`A_{i,\,i-s+1}` over the second copy: attention to the token
  that followed the earlier occurrence (prefix matching);
* **copying** score (the ICL paper's behavioural test of copying: does a head raise the logits of
  the tokens it attends to?): with :math:`o_i` the head's output at position i (``b_O`` excluded)
  and :math:`c_{ij} = (W_U[t_j] - \bar u)^T o_i` its direct effect on the logit of key token
  :math:`t_j`, centred over the vocabulary (:math:`\bar u` is the mean row of :math:`W_U`),

  .. math:: \frac{\sum_{i,j} A_{ij}\,c_{ij}}{\sum_{i,j} A_{ij}\,|c_{ij}|} \in [-1, 1],

  over queries ``i ≥ 1`` and keys other than BOS: 1 when every attended token is raised, −1 when
  every one is lowered. Only the ``[pos, pos]`` dot products with the sequence's own unembedding
  rows are formed, never a vocabulary-sized logit vector per head. (With a normalisation, the
  unembedding is the one the model applies: :math:`W_U \mathrm{diag}(w) C`, divided by the
  final scale :math:`\sigma_i`.)
* **current-token** and **first-token** scores: means of :math:`A_{ii}` and of :math:`A_{i0}`.

**On any sequences.** :func:`detection_scores` compares every head's pattern :math:`A` on the
caller's own tokens (or in the caller's own cache) with a *detection pattern* :math:`D` — one of
:func:`detection_pattern`'s, or any lower-triangular array the caller gives: ``"mul"`` scores
:math:`\sum_{ij} A'_{ij} D_{ij} / \sum_{ij} A'_{ij}` (the share of attention where ``D`` says),
``"abs"`` scores :math:`1 - \tfrac{1}{n} \sum_{ij} |A - D|'_{ij}` (one minus the mean L1 distance
of a row), where :math:`'` zeroes the BOS column (``exclude_bos``) and the diagonal
(``exclude_current_token``); scores are averaged over the sequences. These are TransformerLens's
``detect_head`` measures (``abs`` not rounded to three decimals here).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray, as_real_array
from .._checks import is_int, random_generator
from ..config import head_name
from ..errors import AnalysisError
from ..layer_norm import read_through_norm
from ..model import ActivationCache, AttnOnlyTransformer, as_model, token_ids

__all__ = [
    "BEHAVIOURS",
    "DETECTORS",
    "behaviour_scores",
    "copying_evaluator",
    "detect_heads",
    "detection_pattern",
    "detection_scores",
    "repeated_random_tokens",
]

#: The behaviours that name a head's role (:func:`detect_heads` on repeated random tokens).
BEHAVIOURS = ("previous_token", "duplicate_token", "induction")
#: Every behaviour with a detection pattern (:func:`detection_pattern`).
DETECTORS = (*BEHAVIOURS, "current_token", "first_token")
ERROR_MEASURES = ("mul", "abs")

#: Longest run used when ``seq_len`` is not given.
DEFAULT_SEQ_LEN = 64


def repeated_random_tokens(
    model: AttnOnlyTransformer,
    *,
    seq_len: int | None = None,
    n_samples: int = 16,
    seed: int = 0,
) -> NDArray[np.intp]:
    """``n_samples`` sequences ``[BOS] r r`` of ``b + 2·seq_len`` tokens, ``[n_samples, pos]``.

    Each run ``r`` holds ``seq_len`` distinct tokens drawn uniformly without the BOS token.
    ``seq_len`` defaults to the largest run up to 64 that fits the context and the vocabulary.
    """
    allowed = np.array([t for t in range(model.cfg.d_vocab) if t != model.bos_token])
    seq_len = _check_seq_len(model, seq_len, allowed.size)
    if not (is_int(n_samples) and n_samples >= 1):
        raise AnalysisError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
    rng = random_generator(seed)
    runs = np.stack([rng.choice(allowed, size=seq_len, replace=False) for _ in range(n_samples)])
    parts = [runs, runs]
    if model.bos_token is not None:
        parts.insert(0, np.full((n_samples, 1), model.bos_token))
    return np.concatenate(parts, axis=1).astype(np.intp)


def behaviour_scores(
    model: AttnOnlyTransformer,
    *,
    seq_len: int | None = None,
    n_samples: int = 16,
    seed: int = 0,
) -> dict[str, FloatArray]:
    """Previous-token, duplicate-token, induction, current-token, first-token and copying scores,
    each ``[n_layers, n_heads]``.

    Keys ``"previous_token"``, ``"duplicate_token"``, ``"induction"``, ``"current_token"``,
    ``"first_token"``, ``"copying"``; one forward pass over :func:`repeated_random_tokens`
    (definitions in the module docstring).
    """
    tokens = repeated_random_tokens(model, seq_len=seq_len, n_samples=n_samples, seed=seed)
    run = (tokens.shape[1] - _bos_offset(model)) // 2
    cache = _cache_on(model, tokens)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    scores: dict[str, FloatArray] = {name: np.zeros(shape) for name in DETECTORS}
    for layer, head in model.cfg.heads():
        pattern = cache.pattern(layer, head)
        scores["previous_token"][layer, head] = _offset_mean(pattern, 1, None)
        scores["duplicate_token"][layer, head] = _offset_mean(pattern, run, run)
        scores["induction"][layer, head] = _offset_mean(pattern, run - 1, run)
        scores["current_token"][layer, head] = _offset_mean(pattern, 0, None)
        scores["first_token"][layer, head] = float(np.mean(pattern[:, :, 0]))
    scores["copying"] = _copying(model, tokens, cache)
    return scores


def copying_evaluator(
    model: AttnOnlyTransformer,
    *,
    seq_len: int | None = None,
    n_samples: int = 16,
    seed: int = 0,
) -> FloatArray:
    """The behavioural copying score of every head, ``[n_layers, n_heads]`` (module docstring)."""
    return behaviour_scores(model, seq_len=seq_len, n_samples=n_samples, seed=seed)["copying"]


def detect_heads(
    model: AttnOnlyTransformer,
    *,
    tokens: Any = None,
    seq_len: int | None = None,
    n_samples: int = 16,
    seed: int = 0,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: str = "mul",
) -> dict[str, list[tuple[str, float]]]:
    """Every head ranked by each behaviour, best first.

    Values are lists of ``(head_name, score)`` such as ``("1.4", 0.93)``, sorted by decreasing
    score. Without ``tokens``: keys :data:`BEHAVIOURS`, with the scores of
    :func:`behaviour_scores` on repeated random tokens; a score near 1 means the head puts almost
    all its attention where the behaviour says (uniform causal attention gives about ``ln(n)/n``
    on ``n`` positions). With ``tokens`` (the caller's own sequences, ``[batch, pos]`` or
    ``[pos]``): keys :data:`DETECTORS`, with the :func:`detection_scores` of each behaviour on
    them, under ``exclude_bos``, ``exclude_current_token`` and ``error_measure``.
    """
    if tokens is None:
        scores = behaviour_scores(model, seq_len=seq_len, n_samples=n_samples, seed=seed)
        return {name: _ranked(scores[name]) for name in BEHAVIOURS}
    _, cache = as_model(model, AnalysisError).run_with_cache(tokens)
    return {
        name: _ranked(
            detection_scores(
                cache,
                name,
                exclude_bos=exclude_bos,
                exclude_current_token=exclude_current_token,
                error_measure=error_measure,
            )
        )
        for name in DETECTORS
    }


def detection_pattern(tokens: Any, behaviour: str, *, bos: bool = True) -> FloatArray:
    r"""The 0/1 pattern ``[batch, pos, pos]`` (``[pos, pos]`` for ``[pos]`` tokens) where a head of
    a behaviour attends: entry ``[i, j]`` (query ``i``, key ``j ≤ i``) is 1 for

    * ``"previous_token"``: :math:`j = i - 1`;
    * ``"duplicate_token"``: :math:`j < i` and :math:`t_j = t_i` (an earlier copy of the token);
    * ``"induction"``: :math:`1 \le j \le i` and :math:`t_{j-1} = t_i` with :math:`j - 1 < i` (the
      token after an earlier copy);
    * ``"current_token"``: :math:`j = i`;
    * ``"first_token"``: :math:`j = 0` (the BOS position when the sequences start with one).
    """
    ids = token_ids(tokens, "tokens")
    if ids.ndim not in (1, 2) or ids.shape[-1] == 0:
        raise AnalysisError(f"tokens: expected shape [batch, pos] or [pos], got {list(ids.shape)}")
    if behaviour not in DETECTORS:
        raise AnalysisError(f"behaviour: expected one of {DETECTORS}, got {behaviour!r}")
    batch = ids if ids.ndim == 2 else ids[None]
    n = batch.shape[1]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    same = batch[:, :, None] == batch[:, None, :]  # [b, i, j]: t_i == t_j
    if behaviour == "previous_token":
        pattern = np.broadcast_to(j == i - 1, same.shape)
    elif behaviour == "duplicate_token":
        pattern = same & (j < i)
    elif behaviour == "induction":
        after = np.zeros_like(same)
        after[:, :, 1:] = same[:, :, :-1] & (j[:, :-1] < i[:, :-1])  # t_i == t_{j-1}, j - 1 < i
        pattern = after & (j <= i)
    elif behaviour == "current_token":
        pattern = np.broadcast_to(j == i, same.shape)
    else:
        pattern = np.broadcast_to(j == 0, same.shape)
    result: FloatArray = pattern.astype(np.float64)
    return result if ids.ndim == 2 else result[0]


def detection_scores(
    source: AttnOnlyTransformer | ActivationCache,
    behaviour: str | Any,
    *,
    tokens: Any = None,
    heads: Any = None,
    exclude_bos: bool = False,
    exclude_current_token: bool = False,
    error_measure: str = "mul",
) -> FloatArray:
    r"""How closely each head's attention follows a detection pattern, ``[n_layers, n_heads]``.

    ``source`` is a cache (its tokens and patterns) or a model run on ``tokens``. ``behaviour``
    is a name in :data:`DETECTORS` (its :func:`detection_pattern` on the tokens) or the caller's
    own pattern, ``[pos, pos]`` or ``[batch, pos, pos]``, lower-triangular. The score of one
    sequence is ``"mul"``: :math:`\sum A' D / \sum A'`, or ``"abs"``:
    :math:`1 - \sum |A - D|' / n` (module docstring); the result is its mean over the sequences.
    ``heads`` limits the heads scored (the others are NaN).
    """
    cache = _detection_cache(source, tokens)
    if error_measure not in ERROR_MEASURES:
        raise AnalysisError(
            f"error_measure: expected one of {ERROR_MEASURES}, got {error_measure!r}"
        )
    wanted = cache.model.cfg.resolve_heads(cache.model.cfg.heads() if heads is None else heads)
    detection = _detection_target(cache, behaviour, error_measure)
    n = int(cache.tokens.shape[1])
    keep = np.ones((n, n), dtype=bool)
    if exclude_bos:
        keep[:, 0] = False
    if exclude_current_token:
        np.fill_diagonal(keep, False)
    scores = np.full((cache.model.cfg.n_layers, cache.model.cfg.n_heads), np.nan)
    for layer, head in wanted:
        pattern = cache.pattern(layer, head) * keep
        if error_measure == "mul":
            total = pattern.sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                per_sequence = (pattern * detection).sum(axis=(1, 2)) / total
        else:
            distance = np.abs(cache.pattern(layer, head) - detection) * keep
            per_sequence = 1 - distance.sum(axis=(1, 2)) / n
        scores[layer, head] = float(np.mean(per_sequence))
    return scores


# ---------------------------------------------------------------------- internals
def _detection_cache(source: object, tokens: Any) -> ActivationCache:
    """The cache to score: ``source`` itself, or the model ``source`` run on ``tokens``."""
    if isinstance(source, ActivationCache):
        if tokens is not None:
            raise AnalysisError("give tokens with a model, not with a cache (it has its own)")
        return source
    if tokens is None:
        raise AnalysisError("detection_scores of a model needs tokens=… to run it on")
    _, cache = as_model(source, AnalysisError).run_with_cache(tokens)
    return cache


def _detection_target(cache: ActivationCache, behaviour: Any, error_measure: str) -> FloatArray:
    """The detection pattern ``[batch|1, pos, pos]``: named, or the caller's own, checked."""
    n = cache.tokens.shape[1]
    if isinstance(behaviour, str):
        return detection_pattern(cache.tokens, behaviour)
    target = as_real_array(behaviour, "detection pattern", copy=False)
    if target.ndim == 2:
        target = target[None]
    if (
        target.ndim != 3
        or target.shape[-2:] != (n, n)
        or target.shape[0] not in (1, cache.tokens.shape[0])
    ):
        raise AnalysisError(
            f"detection pattern: expected shape [{n}, {n}] or [{cache.tokens.shape[0]}, {n}, {n}] "
            f"(the cache's sequences), got {list(np.shape(behaviour))}"
        )
    if np.any(np.triu(target, k=1) != 0):
        raise AnalysisError("detection pattern: expected a lower-triangular pattern (keys j ≤ i)")
    if error_measure == "mul" and np.any((target < 0) | (target > 1)):
        raise AnalysisError(
            "detection pattern: with error_measure 'mul', entries must lie in [0, 1]"
        )
    return target


def _bos_offset(model: AttnOnlyTransformer) -> int:
    return 0 if model.bos_token is None else 1


def _check_seq_len(model: AttnOnlyTransformer, seq_len: int | None, n_tokens: int) -> int:
    room = (model.cfg.n_ctx - _bos_offset(model)) // 2
    if seq_len is None:
        seq_len = min(DEFAULT_SEQ_LEN, room, n_tokens)
        if seq_len < 2:
            raise AnalysisError(
                f"repeated random tokens need runs of ≥ 2 distinct tokens; this model fits "
                f"{room} (n_ctx={model.cfg.n_ctx}) with {n_tokens} usable tokens"
            )
        return seq_len
    if not (is_int(seq_len) and 2 <= seq_len <= min(room, n_tokens)):
        raise AnalysisError(
            f"seq_len must be an integer in [2, {min(room, n_tokens)}] (two runs within "
            f"n_ctx={model.cfg.n_ctx}, distinct tokens among {n_tokens}), got {seq_len!r}"
        )
    return int(seq_len)


def _offset_mean(pattern: FloatArray, offset: int, last: int | None) -> float:
    """Mean of ``pattern[:, i, i - offset]`` over all ``i`` (or over the last ``last`` of them)."""
    diagonal = np.diagonal(pattern, offset=-offset, axis1=1, axis2=2)
    if last is not None:
        diagonal = diagonal[:, -last:]
    return float(np.mean(diagonal))


def _cache_on(model: AttnOnlyTransformer, tokens: NDArray[np.intp]) -> ActivationCache:
    """The activations of ``model`` on ``tokens``, from the model restricted to the tokens present.

    Dropping the columns of ``W_E`` and rows of ``W_U`` of absent tokens changes no activation, and
    spares the ``[batch, pos, d_vocab]`` logits (GBs at a real vocabulary) nobody reads here.
    """
    present, local = np.unique(tokens, return_inverse=True)
    bos = None if model.bos_token is None else int(np.searchsorted(present, model.bos_token))
    restricted = model.replace(
        cfg=dataclasses.replace(model.cfg, d_vocab=present.size),
        W_E=model.W_E[:, present],
        W_U=model.W_U[present],
        b_U=model.b_U[present],
        bos_token=bos,
    )
    _, cache = restricted.run_with_cache(local.reshape(tokens.shape))
    return cache


def _copying(
    model: AttnOnlyTransformer, tokens: NDArray[np.intp], cache: ActivationCache
) -> FloatArray:
    """The copying score of every head; ``cache`` holds the activations on ``tokens``."""
    unembedding = read_through_norm(model, model.W_U, model.cfg.n_layers)  # W_U diag(w) C
    key_rows = unembedding[tokens] - unembedding.mean(axis=0)  # [batch, pos, d]: centred rows
    inverse_scale = 1 / cache.scale(model.cfg.n_layers)[:, :, None]  # [batch, i, 1]
    first_key = _bos_offset(model)
    scores = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    for layer, head in model.cfg.heads():
        effect = cache.head_output(layer, head) @ key_rows.transpose(0, 2, 1)  # [batch, i, j]
        effect = effect * inverse_scale
        weights = cache.pattern(layer, head)[:, 1:, first_key:]
        effect = effect[:, 1:, first_key:]
        total = np.sum(weights * np.abs(effect))
        scores[layer, head] = np.sum(weights * effect) / total if total > 0 else np.nan
    return scores


def _ranked(scores: NDArray[Any]) -> list[tuple[str, float]]:
    named = [
        (head_name(layer, head), float(scores[layer, head]))
        for layer, head in np.ndindex(*scores.shape)
    ]
    return sorted(named, key=lambda pair: -pair[1])
