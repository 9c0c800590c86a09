r"""Checks by running the model: brute force over a family, adversarial search, counterexamples.

These work from the model's forward pass alone (any :class:`~circuits.AttnOnlyTransformer`,
hand-built or not), so they test the constructions and their certificates from the outside.

The family of an induction check has sequences of length ``3 … max_length`` (``2 …`` without BOS):
with ``bos=True`` they are ``BOS, t_1, …, t_{L−1}`` with ordinary ``t_j ≠ BOS``; with ``bos=False``
every token is ordinary. In both, the last token occurs exactly once before, at ``p``, and the
right answer is ``t_{p+1}``; ``P(correct)`` is the softmax of the last position's logits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray
from .._checks import checked_int, is_int, random_generator
from .._progress import Progress, progress_stream
from ..errors import VerificationError
from ..model import AttnOnlyTransformer, token_ids

__all__ = [
    "BruteForceResult",
    "Counterexample",
    "SearchResult",
    "adversarial_search",
    "brute_force",
    "family_targets",
    "find_counterexample",
    "target_probabilities",
]

IntArray = NDArray[np.intp]

#: Brute force refuses families larger than this unless told otherwise.
MAX_SEQUENCES = 2_000_000


# ---------------------------------------------------------------------- the family
def family_targets(tokens: Any) -> tuple[IntArray, NDArray[np.bool_]]:
    """For ``[batch, L]`` tokens: the right next token, and whether the row is in the family.

    A row is in the family when its last token occurs exactly once among the earlier positions;
    its target is the token after that occurrence (``−1`` for rows outside the family).
    """
    array = token_ids(tokens, "tokens")
    if array.ndim != 2 or array.shape[1] < 2:
        raise VerificationError(f"tokens: expected [batch, length ≥ 2], got {list(array.shape)}")
    earlier = array[:, :-1] == array[:, -1:]
    valid = earlier.sum(axis=1) == 1
    p = np.argmax(earlier, axis=1)
    targets = np.where(valid, array[np.arange(array.shape[0]), p + 1], -1)
    return targets.astype(np.intp), valid


def target_probabilities(
    model: AttnOnlyTransformer, tokens: Any, targets: Any
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """``P(target)`` at the last position of each row, and whether the target is the strict argmax."""
    logits = model.forward(tokens)
    if logits.ndim != 3:
        raise VerificationError(f"tokens: expected [batch, length], got {list(np.shape(tokens))}")
    logits = logits[:, -1]
    target_ids = token_ids(targets, "targets", model.cfg.d_vocab)
    if target_ids.shape != logits.shape[:1]:
        raise VerificationError(
            f"targets: expected one per sequence, shape {[logits.shape[0]]}, got "
            f"{list(target_ids.shape)}"
        )
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(logits.shape[0])
    chosen = logits[rows, target_ids]
    others = logits.copy()
    others[rows, target_ids] = -np.inf
    probability: FloatArray = np.exp(log_p[rows, target_ids])
    return probability, chosen > others.max(axis=1)


def _ordinary(model: AttnOnlyTransformer, bos: bool) -> tuple[IntArray, int | None]:
    bos_token = model.bos_token
    if bos and bos_token is None:
        raise VerificationError("the model has no bos_token; check the family with bos=False")
    ids = np.arange(model.cfg.d_vocab, dtype=np.intp)
    return (ids[ids != bos_token] if bos_token is not None else ids), bos_token


def _family_chunks(
    ordinary: IntArray, bos_token: int | None, bos: bool, length: int, chunk: int
) -> Iterator[tuple[int, IntArray]]:
    """Every family sequence of one length: (candidates examined, members), a chunk at a time."""
    free = length - 1 if bos else length
    candidates = itertools.product(range(ordinary.size), repeat=free)
    while True:
        block = np.array(list(itertools.islice(candidates, chunk)), dtype=np.intp).reshape(-1, free)
        if block.size == 0:
            return
        tokens = ordinary[block]
        if bos:
            tokens = np.hstack([np.full((tokens.shape[0], 1), bos_token, dtype=np.intp), tokens])
        _, valid = family_targets(tokens)
        yield block.shape[0], tokens[valid]


# ---------------------------------------------------------------------- brute force
@dataclass(frozen=True)
class Counterexample:
    """A family sequence on which the model's argmax is not the right token."""

    tokens: IntArray
    target: int
    predicted: int
    probability: float

    def __str__(self) -> str:
        return (
            f"counterexample {self.tokens.tolist()}: the right next token is {self.target}, "
            f"the model predicts {self.predicted} (P(right) = {self.probability:.6g})"
        )


@dataclass(frozen=True)
class BruteForceResult:
    """Every sequence of a family run through the model."""

    n_sequences: int
    min_probability: float
    worst: IntArray
    n_failures: int
    counterexample: Counterexample | None
    probabilities: FloatArray

    @property
    def accuracy(self) -> float:
        """Fraction of sequences where the right token is the strict argmax."""
        return 1.0 - self.n_failures / max(self.n_sequences, 1)


def _counterexample(
    model: AttnOnlyTransformer, tokens: IntArray, target: int, p: float
) -> Counterexample:
    predicted = int(np.argmax(model.forward(tokens)[-1]))
    return Counterexample(tokens.copy(), int(target), predicted, float(p))


def brute_force(
    model: AttnOnlyTransformer,
    *,
    max_length: int | None = None,
    bos: bool = True,
    batch: int = 4096,
    progress: bool | IO[str] = True,
    max_sequences: int = MAX_SEQUENCES,
    stop_at_failure: bool = False,
) -> BruteForceResult:
    """Run every sequence of the family (module doc) up to ``max_length`` (default ``n_ctx``).

    Returns the least ``P(correct)``, a sequence attaining it, the number of argmax failures and
    the first (shortest) counterexample. ``progress`` draws a bar (tqdm) on stderr when it is a
    terminal, or on the stream given. Families of more than ``max_sequences`` candidates are
    refused.
    """
    length = model.cfg.n_ctx if max_length is None else max_length
    shortest = 3 if bos else 2
    checked_int(batch, "batch", 1, VerificationError)
    stream = progress_stream(progress, VerificationError)
    if not (is_int(length) and shortest <= length <= model.cfg.n_ctx):
        raise VerificationError(
            f"max_length must be in [{shortest}, n_ctx={model.cfg.n_ctx}], got {max_length!r}"
        )
    ordinary, bos_token = _ordinary(model, bos)
    sizes = [ordinary.size ** (L - 1 if bos else L) for L in range(shortest, length + 1)]
    if sum(sizes) > max_sequences:
        raise VerificationError(
            f"{sum(sizes)} candidate sequences exceed max_sequences={max_sequences}; "
            "lower max_length or use adversarial_search"
        )
    bar = Progress(sum(sizes), stream, "brute force", "seq")
    all_p, worst, worst_p, failures, first = [], np.zeros(0, np.intp), np.inf, 0, None
    for L in range(shortest, length + 1):
        for examined, tokens in _family_chunks(ordinary, bos_token, bos, L, batch):
            bar.update(examined)
            if tokens.shape[0] == 0:
                continue
            targets, _ = family_targets(tokens)
            probs, correct = target_probabilities(model, tokens, targets)
            all_p.append(probs)
            failures += int((~correct).sum())
            k = int(np.argmin(probs))
            if probs[k] < worst_p:
                worst_p, worst = float(probs[k]), tokens[k].copy()
            if first is None and not correct.all():
                bad = int(np.argmax(~correct))
                first = _counterexample(model, tokens[bad], int(targets[bad]), float(probs[bad]))
                if stop_at_failure:
                    break
        if first is not None and stop_at_failure:
            break
    bar.close()
    probabilities = np.concatenate(all_p) if all_p else np.zeros(0)
    return BruteForceResult(probabilities.size, worst_p, worst, failures, first, probabilities)


def find_counterexample(
    model: AttnOnlyTransformer,
    *,
    bos: bool = False,
    max_length: int = 6,
    progress: bool | IO[str] = False,
) -> Counterexample | None:
    """The shortest family sequence the model gets wrong (lengths tried in order), else ``None``.

    With ``bos=False`` this is the BOS-less check: it finds where a construction that relies on
    BOS breaks (for the K-composition circuit: ``a, b, a`` — position 0 has no previous token, so
    its ``prev`` block holds its own token and ties with the real match).
    """
    length = min(
        checked_int(max_length, "max_length", 3 if bos else 2, VerificationError), model.cfg.n_ctx
    )
    return brute_force(
        model, max_length=length, bos=bos, progress=progress, stop_at_failure=True
    ).counterexample


# ---------------------------------------------------------------------- adversarial search
@dataclass(frozen=True)
class SearchResult:
    """The lowest ``P(correct)`` an adversarial search reached, and where."""

    min_probability: float
    tokens: IntArray
    evaluations: int


def _random_member(
    rng: np.random.Generator, ordinary: IntArray, bos_token: int, length: int
) -> IntArray:
    """``BOS, …, a`` with ``a`` once before at a random place and random other tokens ≠ a."""
    a = rng.choice(ordinary)
    others = ordinary[ordinary != a]
    fillers = rng.choice(others, size=length - 1) if others.size else np.full(length - 1, a)
    tokens = np.concatenate([[bos_token], fillers]).astype(np.intp)
    tokens[-1] = a
    tokens[rng.integers(1, length - 1)] = a
    return tokens


def _mutate(rng: np.random.Generator, tokens: IntArray, ordinary: IntArray) -> IntArray:
    """Change one middle token to another token (≠ the last), or move the earlier occurrence."""
    out: IntArray = tokens.copy()
    a = out[-1]
    middle = np.arange(1, out.size - 1)
    fillers = middle[out[middle] != a]
    if fillers.size == 0:
        return out
    if rng.random() < 0.2:
        p = int(np.flatnonzero(out[:-1] == a)[0])
        q = int(rng.choice(middle))
        out[p], out[q] = out[q], a
        return out
    q = int(rng.choice(fillers))
    pool = ordinary[ordinary != a]
    out[q] = rng.choice(pool) if rng.random() < 0.5 else out[rng.choice(middle)]
    if out[q] == a:
        out[q] = rng.choice(pool)
    return out


def adversarial_search(
    model: AttnOnlyTransformer,
    *,
    length: int | None = None,
    restarts: int = 4,
    steps: int = 50,
    population: int = 16,
    seed: int = 0,
    progress: bool | IO[str] = True,
) -> SearchResult:
    """Hill-climb towards the family sequence of ``length`` (default ``n_ctx``) with least ``P(correct)``.

    Each of ``restarts`` runs starts from a random member and, for ``steps`` rounds, evaluates
    ``population`` mutants of its best sequence (one token changed to a random or repeated
    filler, or the earlier occurrence moved), keeping the lowest. Evaluations are batched.
    ``progress`` draws a bar of the rounds (tqdm) on stderr when it is a terminal, or on the
    stream given.
    """
    L = model.cfg.n_ctx if length is None else length
    if not (is_int(L) and 3 <= L <= model.cfg.n_ctx):
        raise VerificationError(f"length must be in [3, n_ctx={model.cfg.n_ctx}], got {length!r}")
    ordinary, bos_token = _ordinary(model, True)
    assert bos_token is not None
    if ordinary.size < 2 and L > 3:
        raise VerificationError("the family needs two ordinary tokens at this length")
    for name, value, least in (
        ("restarts", restarts, 1),
        ("steps", steps, 0),
        ("population", population, 1),
    ):
        checked_int(value, name, least, VerificationError)
    stream = progress_stream(progress, VerificationError)
    rng = random_generator(seed)
    best_p, best_tokens, evaluations = np.inf, np.zeros(0, np.intp), 0
    bar = Progress(restarts * (steps + 1), stream, "adversarial search", "round")
    for _ in range(restarts):
        current = _random_member(rng, ordinary, bos_token, L)
        current_p = float(_probabilities(model, current[None])[0])
        bar.update(1)
        for _ in range(steps):
            batch = np.stack([_mutate(rng, current, ordinary) for _ in range(population)])
            probs = _probabilities(model, batch)
            evaluations += population
            k = int(np.argmin(probs))
            if probs[k] < current_p:
                current, current_p = batch[k], float(probs[k])
            bar.update(1)
        evaluations += 1
        if current_p < best_p:
            best_p, best_tokens = current_p, current.copy()
    bar.close()
    return SearchResult(best_p, best_tokens, evaluations)


def _probabilities(model: AttnOnlyTransformer, tokens: IntArray) -> FloatArray:
    targets, valid = family_targets(tokens)
    if not valid.all():
        raise VerificationError("internal: a search candidate left the family")
    return target_probabilities(model, tokens, targets)[0]
