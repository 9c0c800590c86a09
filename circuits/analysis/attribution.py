r"""Attribution of target logits to components and to paths, and how much a circuit recovers.

**Direct logit attribution by component.** The final residual stream is the sum of what every
component wrote, so the logit of a target token :math:`t` at position ``i`` splits exactly into

.. math::

    \text{logit}_{t}(i) = W_U[t] \cdot \Big(W_E[:, t_i] + W_P[:, i]
        + \sum_{l,h} o^{l.h}_i + \sum_l b_O^l\Big) + b_U[t],

with :math:`o^{l.h}_i = W_O^h \sum_j A^h_{ij}(W_V^h x_j + b_V^h)` the head's output (value bias
included, ``b_O`` excluded), as the model computed it. This is :func:`head_attribution`.

**Paths.** The path expansion (:func:`circuits.path_expansion`) splits each head's output further
into the paths through it; ``path_expansion(model).contributions(cache, targets)`` gives every
path's contribution to the same target logits, and the contributions of the paths ending at a
head add up to that head's direct attribution. :func:`circuit_recovery` reads off what fraction of
the target logits (or of their excess over a baseline) a chosen set of paths accounts for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._arrays import FloatArray
from .._streams import PathAlgebra
from ..config import head_name
from ..errors import AnalysisError, PathError
from ..graph import EMBED, POS_EMBED, bias_node
from ..model import ActivationCache, as_cache
from ..paths import Contributions, PathContributions, PathExpansion, PathTerm

__all__ = ["Circuit", "Component", "circuit_recovery", "head_attribution"]

#: A set of paths: a (filtered) expansion, terms, or a predicate on terms.
Circuit = PathExpansion | Iterable[PathTerm] | Callable[[PathTerm], bool]


@dataclass(frozen=True)
class Component:
    """A writer to the residual stream: ``"embed"``, ``"pos_embed"``, a head ``"l.h"``,
    ``"b_O[l]"`` or ``"b_U"``; ``kind`` is ``"embedding"``, ``"head"`` or ``"bias"``."""

    name: str
    kind: str

    @property
    def key(self) -> str:
        """What identifies the component among contributions: its name."""
        return self.name


def head_attribution(cache: ActivationCache, targets: Any) -> Contributions[Component]:
    """Every component's direct contribution ``[batch, pos]`` to the logits ``targets[b, i]``.

    ``targets`` are token ids ``[batch, pos]`` (e.g. the next tokens). The contributions sum
    exactly to the model's logits at the targets (module docstring); index the result with a name
    (``result["1.4"]``) and rank components with ``result.ranked()``.
    """
    model = as_cache(cache).model
    target_ids = PathAlgebra(model, cache).targets(targets)
    rows = model.W_U[target_ids]  # [batch, pos, d]

    def read(vectors: FloatArray) -> FloatArray:
        values: FloatArray = np.einsum("bpd,bpd->bp", *np.broadcast_arrays(rows, vectors))
        return values

    parts: list[tuple[Component, FloatArray]] = [
        (Component(EMBED, "embedding"), read(model.W_E.T[cache.tokens]))
    ]
    if model.cfg.positional_embedding_type == "standard" and model.W_P is not None:
        positions = model.W_P[:, : cache.tokens.shape[1]].T[None]
        parts.append((Component(POS_EMBED, "embedding"), read(positions)))
    for layer, head in model.cfg.heads():
        parts.append(
            (Component(head_name(layer, head), "head"), read(cache.head_output(layer, head)))
        )
    for layer in range(model.cfg.n_layers):
        parts.append(
            (Component(bias_node("b_O", layer), "bias"), read(model.b_O[layer][None, None]))
        )
    parts.append((Component("b_U", "bias"), model.b_U[target_ids]))
    terms = tuple(component for component, _ in parts)
    return Contributions(terms, np.stack([value for _, value in parts]))


def circuit_recovery(
    contributions: PathContributions,
    circuit: Circuit,
    *,
    baseline: Circuit | None = None,
    mask: Any = None,
) -> float:
    r"""The fraction of the target logits that the paths of ``circuit`` account for.

    With :math:`F`, :math:`C`, :math:`B` the mean (over the entries ``mask`` keeps, default all) of
    the summed contributions of all terms, of the circuit's and of the baseline's (none by
    default: :math:`B = 0`), the result is :math:`(C - B) / (F - B)`: 1 when the circuit accounts
    for everything the full model adds over the baseline, 0 when it adds nothing to it. Usual
    baselines: the direct paths (``path_expansion(model).filter(order=0)``), the bias paths.
    """
    if not isinstance(contributions, PathContributions):
        raise AnalysisError(
            "contributions: expected the PathContributions of a path expansion "
            f"(expansion.contributions(cache, targets)), got {type(contributions).__name__}"
        )
    try:
        means = contributions.means(mask)  # one mean per term
    except PathError as error:
        raise AnalysisError(str(error)) from None
    full = float(means.sum())
    part = _mean_of(contributions, means, circuit)
    base = 0.0 if baseline is None else _mean_of(contributions, means, baseline)
    if full == base:
        raise AnalysisError(
            "the full model adds nothing over the baseline here: no fraction exists"
        )
    return (part - base) / (full - base)


def circuit_paths(circuit: Circuit, terms: Iterable[PathTerm]) -> set[tuple[str, ...]]:
    """The paths of ``circuit``; a predicate is applied to each of ``terms``."""
    if isinstance(circuit, PathExpansion):
        return {term.path for term in circuit}
    if callable(circuit):
        return {term.path for term in terms if circuit(term)}
    given: object = circuit
    items: list[object] | None = (
        list(given) if isinstance(given, Iterable) and not isinstance(given, str) else None
    )
    if items is None:
        raise AnalysisError(f"{_CIRCUIT_HINT}, got {type(given).__name__}")
    wrong = sorted({type(item).__name__ for item in items if not isinstance(item, PathTerm)})
    if wrong:
        raise AnalysisError(f"{_CIRCUIT_HINT}, got items of type {', '.join(wrong)}")
    return {term.path for term in items if isinstance(term, PathTerm)}


_CIRCUIT_HINT = "a circuit is a PathExpansion, a collection of PathTerms or a predicate on terms"


def _mean_of(contributions: PathContributions, means: FloatArray, circuit: Circuit) -> float:
    """The summed mean contribution of the circuit's terms (each counted once)."""
    chosen = circuit_paths(circuit, contributions.terms)
    index = {term.path: i for i, term in enumerate(contributions.terms)}
    missing = sorted(" → ".join(path) for path in chosen - set(index))
    if missing:
        raise AnalysisError(f"paths not among the contributions: {missing[:3]}")
    return float(sum(means[index[path]] for path in chosen))
