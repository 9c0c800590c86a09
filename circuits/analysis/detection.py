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
  rows are formed, never a vocabulary-sized logit vector per head.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from .._checks import is_int, random_generator
from ..config import head_name
from ..errors import AnalysisError
from ..model import ActivationCache, AttnOnlyTransformer

__all__ = [
    "BEHAVIOURS",
    "behaviour_scores",
    "copying_evaluator",
    "detect_heads",
    "repeated_random_tokens",
]

#: The behaviours :func:`detect_heads` ranks heads by.
BEHAVIOURS = ("previous_token", "duplicate_token", "induction")

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
    """Previous-token, duplicate-token, induction and copying scores, each ``[n_layers, n_heads]``.

    Keys ``"previous_token"``, ``"duplicate_token"``, ``"induction"``, ``"copying"``; one forward
    pass over :func:`repeated_random_tokens` (definitions in the module docstring).
    """
    tokens = repeated_random_tokens(model, seq_len=seq_len, n_samples=n_samples, seed=seed)
    run = (tokens.shape[1] - _bos_offset(model)) // 2
    cache = _cache_on(model, tokens)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    scores: dict[str, FloatArray] = {name: np.zeros(shape) for name in BEHAVIOURS}
    for layer, head in model.cfg.heads():
        pattern = cache.pattern(layer, head)
        scores["previous_token"][layer, head] = _offset_mean(pattern, 1, None)
        scores["duplicate_token"][layer, head] = _offset_mean(pattern, run, run)
        scores["induction"][layer, head] = _offset_mean(pattern, run - 1, run)
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
    seq_len: int | None = None,
    n_samples: int = 16,
    seed: int = 0,
) -> dict[str, list[tuple[str, float]]]:
    """Every head ranked by each behaviour, best first.

    Keys ``"previous_token"``, ``"duplicate_token"``, ``"induction"``; values are lists of
    ``(head_name, score)`` such as ``("1.4", 0.93)``, sorted by decreasing score, with the scores
    of :func:`behaviour_scores`. A score near 1 means the head puts almost all its attention
    where the behaviour says; uniform causal attention gives about ``ln(n)/n`` on ``n`` positions.
    """
    scores = behaviour_scores(model, seq_len=seq_len, n_samples=n_samples, seed=seed)
    return {name: _ranked(scores[name]) for name in BEHAVIOURS}


# ---------------------------------------------------------------------- internals
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
    key_rows = model.W_U[tokens] - model.W_U.mean(axis=0)  # [batch, pos, d]: centred unembedding
    first_key = _bos_offset(model)
    scores = np.zeros((model.cfg.n_layers, model.cfg.n_heads))
    for layer, head in model.cfg.heads():
        effect = cache.head_output(layer, head) @ key_rows.transpose(0, 2, 1)  # [batch, i, j]
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
