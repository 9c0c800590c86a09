r"""The path expansion of the logits: one exact term per path of the computation graph.

With the attention patterns :math:`A^h` of a forward pass held fixed, the logits are a sum over
the source→sink paths of :func:`~circuits.computation_graph`,

.. math::

    \text{logits} = \sum_{\text{paths}} (A^{h_m} \cdots A^{h_1} P_0) \otimes
        (W_U W_{OV}^{h_m} \cdots W_{OV}^{h_1} W_0),

where the source writes :math:`P_0 \otimes W_0`: :math:`\mathrm{Id} \otimes W_E` for tokens,
:math:`\mathrm{Id} \otimes W_P` for standard positions, :math:`\mathbb{1} \otimes W_O^h b_V^h`,
:math:`\mathbb{1} \otimes b_O^l` for biases, and :math:`\mathbb{1} \otimes b_U` directly at the
logits. A model of ``L`` layers of ``H`` heads has :math:`(1+H)^L` paths from each of ``embed``
and (standard) ``pos_embed``. The terms sum to ``model.forward(tokens)`` exactly (to rounding).

A :class:`PathTerm` has ``path`` (node names), ``source``, ``heads``, ``order`` (number of heads),
``kind`` — ``"direct"`` (order 0), ``"head"`` (order 1), ``"virtual"`` (order ≥ 2: V-composition, the
Framework's virtual heads) or ``"bias"`` (from a bias source, any order) — and ``part`` of its
source (``"token"``, ``"position"``, ``"bias"``). ``term.evaluate(cache)`` gives its contribution
``[batch, pos, d_vocab]`` to the logits with the cache's patterns; ``term.evaluate(cache,
targets=t)`` only the contribution ``[batch, pos]`` to the logits ``t[b, i]``: **targets** are an
integer array ``[batch, pos]`` of token ids, the shape of ``cache.tokens`` (typically the next
tokens, ``tokens[:, 1:]`` for a cache of ``tokens[:, :-1]``); they never touch the vocabulary
dimension. ``term.symbolic`` is the term as a :class:`~circuits.symbolic.Kron`
``(patterns ⊗ weights)`` of sympy symbols, ``term.latex()`` prints it.

A :class:`PathExpansion` (from :func:`path_expansion`) is lazy: iterating creates terms one at a
time, ``len()`` counts without listing, ``filter`` narrows it (by source, order, heads visited,
kind, or any predicate), ``contributions(cache, targets)`` evaluates every term's target-logit
contribution at once, sharing the computation of common path prefixes, and ``latex()`` prints the
expansion as sums over heads like the Framework's equations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Generic, Literal, Protocol, TypeVar

import networkx as nx
import numpy as np
import sympy as sp

from ._arrays import FloatArray
from ._checks import one_or_many
from ._streams import IntArray, PathAlgebra, Stream
from .config import parse_head
from .errors import ConfigError, PathError
from .graph import (
    UNEMBED,
    BiasPolicy,
    computation_graph,
    count_paths,
    head_set,
    iter_paths,
    order_set,
    parse_node,
    source_nodes,
)
from .model import ActivationCache, AttnOnlyTransformer
from .symbolic import Kron, ModelSymbols, pattern_values, substitute, weight_values

__all__ = [
    "Contributions",
    "Expansion",
    "PathContributions",
    "PathExpansion",
    "PathTerm",
    "path_expansion",
    "path_kind",
]

Kind = Literal["direct", "head", "virtual", "bias"]
KINDS: tuple[Kind, ...] = ("direct", "head", "virtual", "bias")


class ExpansionContext:
    """What the terms of one model's expansions share: the model, its graph and its symbols."""

    def __init__(self, model: AttnOnlyTransformer | nx.DiGraph, biases: BiasPolicy) -> None:
        if isinstance(model, nx.DiGraph):
            if not isinstance(model.graph.get("model"), AttnOnlyTransformer):
                raise ConfigError("the graph was not built by computation_graph (it has no model)")
            self.model: AttnOnlyTransformer = model.graph["model"]
            self.graph: nx.DiGraph = model
        elif isinstance(model, AttnOnlyTransformer):
            self.model, self.graph = model, computation_graph(model, biases=biases)
        else:
            raise ConfigError(f"expected an AttnOnlyTransformer, got {type(model).__name__}")
        self.symbols = ModelSymbols.of(self.model.cfg)

    @cached_property
    def values(self) -> dict[str, Any]:
        """Symbol name → the model's weight (circuits factored), for substitution."""
        return weight_values(self.model.parameters(), self.model.cfg)


def as_set(value: Any, name: str, allowed: Sequence[Any]) -> frozenset[Any] | None:
    """``value`` (one item or a collection) as a set of allowed items; ``None`` stays ``None``."""
    if value is None:
        return None
    items = frozenset(one_or_many(value))
    unknown = sorted(str(item) for item in items if item not in allowed)
    if unknown:
        raise PathError(f"{name}: unknown value(s) {unknown}; expected some of {list(allowed)}")
    return items


# ---------------------------------------------------------------------------------- terms
class Term:
    """What every expansion term shares: a symbolic form, its weight product, LaTeX, identity.

    Subclasses give :meth:`symbolic_form` and :attr:`key` (what identifies the term within its
    expansion); the weight product is the last factor of the symbolic form.
    """

    __slots__ = ("_context",)

    def __init__(self, context: ExpansionContext) -> None:
        self._context = context

    @property
    def key(self) -> Hashable:
        """What identifies the term within its expansion."""
        raise NotImplementedError

    def symbolic_form(self, *, expand: bool = False) -> Kron:
        r"""The term as a :class:`~circuits.symbolic.Kron`; ``expand`` writes :math:`W_{OV}` as
        :math:`W_O W_V` and :math:`W_{QK}` as :math:`W_Q^T W_K`."""
        raise NotImplementedError

    @property
    def symbolic(self) -> Kron:
        """The term as a :class:`~circuits.symbolic.Kron` of sympy expressions."""
        return self.symbolic_form()

    @property
    def weights(self) -> sp.MatrixExpr:
        r"""The weight product, e.g. :math:`W_U W_{OV}^{h_m} \cdots W_{OV}^{h_1} W_0`."""
        return self.symbolic.factors[-1]

    def weight_value(self, values: Mapping[str, Any] | None = None, *, expand: bool = False) -> Any:
        """The weight product evaluated from the model's weights, or from ``values`` if given.

        Numeric results stay factored when low rank (``W_U W_OV W_E`` is a ``V × V``
        :class:`~circuits.FactoredMatrix` of rank ≤ ``d_head``); sympy values (a symbolic,
        hand-built model) give an exact sympy matrix, e.g. to show that an unintended term
        vanishes identically. See :func:`circuits.symbolic.substitute`.
        """
        form = self.symbolic_form(expand=expand).factors[-1]
        return substitute(form, self._context.values if values is None else values)

    def latex(self, *, expand: bool = False) -> str:
        r"""The term in LaTeX, e.g. ``\left(A^{1.4} A^{0.7}\right) \otimes \left(W_{U} W_{OV}^{1.4} …\right)``."""
        return self.symbolic_form(expand=expand).latex()

    def _repr_latex_(self) -> str:
        return f"${self.latex()}$"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Term) or type(other) is not type(self):
            return NotImplemented
        return self.key == other.key and self._context.model is other._context.model

    def __hash__(self) -> int:
        return hash((self.key, id(self._context.model)))


class PathTerm(Term):
    """One term of the path expansion of the logits: the path ``(source, h_1, …, h_m, "unembed")``."""

    __slots__ = ("path",)

    def __init__(self, path: tuple[str, ...], context: ExpansionContext) -> None:
        super().__init__(context)
        self.path = path

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies the term within its expansion: its path."""
        return self.path

    @property
    def source(self) -> str:
        """The source node the path starts from."""
        return self.path[0]

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads ``"l.h"`` on the path, by layer."""
        return self.path[1:-1]

    @property
    def order(self) -> int:
        """The number of heads on the path."""
        return len(self.path) - 2

    @property
    def part(self) -> str:
        """The source's part: ``"token"``, ``"position"`` or ``"bias"``."""
        return str(parse_node(self.source).part)

    @property
    def kind(self) -> Kind:
        """``"bias"`` for bias sources, else ``"direct"``, ``"head"`` or ``"virtual"`` by order."""
        return path_kind(self.path)

    def evaluate(self, cache: ActivationCache, targets: Any = None) -> FloatArray:
        """This term's contribution to the logits, with the cache's tokens and patterns.

        ``[batch, pos, d_vocab]``; with ``targets`` (token ids ``[batch, pos]``) only the
        contribution ``[batch, pos]`` to the logits ``targets[b, i]`` (no vocabulary-sized work).
        """
        algebra = PathAlgebra(self._context.model, cache)
        if targets is None:
            return _logits(algebra, self.path)
        ((_, value),) = _target_values(algebra, algebra.targets(targets), [self.path])
        return value

    def symbolic_form(self, *, expand: bool = False) -> Kron:
        r"""The term as ``Kron(patterns, weights)``: :math:`P \otimes W`."""
        return self._context.symbols.ov_term(self.path, expand=expand)

    @property
    def patterns(self) -> sp.MatrixExpr:
        r"""The pattern product :math:`A^{h_m} \cdots A^{h_1}` (``Id`` at order 0, times 𝟙 for biases)."""
        return self.symbolic.factors[0]

    def pattern_value(self, cache: ActivationCache, batch: int = 0) -> FloatArray:
        """The pattern product on sequence ``batch`` of ``cache``: ``[pos, pos]`` (``[pos, 1]`` for biases)."""
        value: FloatArray = substitute(self.patterns, pattern_values(cache, batch))
        return value

    def __repr__(self) -> str:
        return f"PathTerm({' → '.join(self.path)}; {self.kind})"


def path_kind(path: Sequence[str]) -> Kind:
    """The kind of a path of the logits: ``"bias"``, ``"direct"``, ``"head"`` or ``"virtual"``."""
    if parse_node(path[0]).part == "bias":
        return "bias"
    order = len(path) - 2
    return "direct" if order == 0 else "head" if order == 1 else "virtual"


#: Sources the unembedding reads as they are (no head, no normalisation in between).
CONSTANT_LOGITS = ("b_U", "b_LN_final")


def _logits(algebra: PathAlgebra, path: Sequence[str]) -> FloatArray:
    if path[0] in CONSTANT_LOGITS:
        return algebra.full(algebra.constant_logits(path[0]))
    ((_, stream),) = algebra.walk([path[:-1]])
    return algebra.logits(stream)


def _target_values(
    algebra: PathAlgebra, targets: IntArray, paths: Sequence[Sequence[str]]
) -> Iterator[tuple[int, FloatArray]]:
    """``(index, contribution [batch, pos])`` of each path to the target logits, prefixes shared."""
    readout = algebra.readout(targets)
    streams, where = [], []
    for index, path in enumerate(paths):
        if path[0] in CONSTANT_LOGITS:
            yield index, algebra.constant_logits(path[0])[0, 0][targets]
        else:
            streams.append(path[:-1])
            where.append(index)
    for position, stream in algebra.walk(streams):
        yield where[position], readout(stream)


class Keyed(Protocol):
    """Anything with a hashable ``key`` that identifies it (terms, components of a model)."""

    @property
    def key(self) -> Hashable:
        """What identifies the item."""


KeyedT = TypeVar("KeyedT", bound=Keyed)
TermT = TypeVar("TermT", bound=Term)


@dataclass(frozen=True)
class Contributions(Generic[KeyedT]):
    """Terms with their numeric contributions: ``values[i]`` (``[batch, …]``) belongs to ``terms[i]``."""

    terms: tuple[KeyedT, ...]
    values: FloatArray

    def __len__(self) -> int:
        return len(self.terms)

    def __iter__(self) -> Iterator[tuple[KeyedT, FloatArray]]:
        return zip(self.terms, self.values, strict=True)

    @cached_property
    def _index(self) -> dict[Hashable, int]:
        return {term.key: i for i, term in enumerate(self.terms)}

    def _key(self, key: Any) -> Hashable:
        """The lookup key of ``key``: a term's own key, or a description of a term."""
        lookup: Hashable = key.key if hasattr(key, "key") else key
        return lookup

    def __getitem__(self, key: Any) -> FloatArray:
        """The contribution of a term, given as a term or as its path(s)."""
        lookup = self._key(key)
        if lookup not in self._index:
            raise PathError(f"no term {key!r} among these contributions")
        value: FloatArray = self.values[self._index[lookup]]
        return value

    def total(self) -> FloatArray:
        """The sum over the terms (for a full expansion: the quantity expanded)."""
        total: FloatArray = self.values.sum(axis=0)
        return total

    def group(self, key: Callable[[KeyedT], Hashable]) -> dict[Hashable, FloatArray]:
        """Sums of the contributions per value of ``key(term)`` (e.g. ``lambda t: t.kind``)."""
        sums: dict[Hashable, FloatArray] = {}
        for term, value in self:
            group = key(term)
            sums[group] = sums[group] + value if group in sums else value.copy()
        return sums

    def default_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """The entries :meth:`ranked` averages over by default: all of them."""
        return np.ones(self.values.shape[1:], dtype=bool)

    def means(self, mask: Any = None) -> FloatArray:
        """Each term's mean contribution over the entries ``mask`` keeps (default :meth:`default_mask`).

        ``mask`` holds booleans shaped like one term's values, at least one of them true.
        """
        keep = self.default_mask() if mask is None else np.asarray(mask)
        if keep.shape != self.values.shape[1:] or keep.dtype != bool:
            raise PathError(
                f"mask: expected booleans of shape {list(self.values.shape[1:])}, got {keep.dtype} "
                f"of shape {list(keep.shape)}"
            )
        if not keep.any():
            raise PathError("mask: keeps no entry, so there is nothing to average")
        means: FloatArray = self.values[:, keep].mean(axis=1)
        return means

    def ranked(self, mask: Any = None) -> list[tuple[KeyedT, float]]:
        """Terms with their mean contribution over the entries ``mask`` keeps, largest |mean| first."""
        means = self.means(mask)
        order = np.argsort(-np.abs(means), kind="stable")
        return [(self.terms[i], float(means[i])) for i in order]


@dataclass(frozen=True)
class PathContributions(Contributions[PathTerm]):
    """Every term's contribution ``[batch, pos]`` to the logits ``targets[b, i]``.

    ``values`` is ``[n_terms, batch, pos]``; ``targets`` the token ids ``[batch, pos]``. Index
    with a term or its path (``contributions["embed", "0.1"]``, ``"unembed"`` optional).
    """

    targets: IntArray

    def _key(self, key: Any) -> Hashable:
        if isinstance(key, PathTerm):
            return key.path
        path = tuple(one_or_many(key))
        return path if path and path[-1] == UNEMBED else (*path, UNEMBED)


# ---------------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class _Filter:
    """An expansion's filters: graph-level ones (pushed to the path listing), then per term."""

    sources: frozenset[str] | None = None
    orders: frozenset[int] | None = None
    through: frozenset[str] = frozenset()
    kinds: frozenset[str] | None = None
    predicates: tuple[Callable[[PathTerm], bool], ...] = field(default=())

    def admits(self, path: tuple[str, ...], term: PathTerm) -> bool:
        """Whether a path of the graph passes every filter."""
        return (
            (self.sources is None or path[0] in self.sources)
            and (self.orders is None or len(path) - 2 in self.orders)
            and self.through <= set(path)
            and (self.kinds is None or path_kind(path) in self.kinds)
            and all(predicate(term) for predicate in self.predicates)
        )


def checked_predicate(where: Any) -> tuple[Callable[[Any], bool], ...]:
    """``(where,)`` for a predicate on terms, ``()`` for ``None``."""
    if where is None:
        return ()
    if not callable(where):
        raise PathError(f"where: expected a predicate on terms (a function), got {where!r}")
    return (where,)


def meet(current: frozenset[Any] | None, new: frozenset[Any] | None) -> frozenset[Any] | None:
    """Both conditions at once: the intersection of two allowed sets, ``None`` meaning "any"."""
    if new is None:
        return current
    return new if current is None else current & new


class Expansion(Generic[TermT]):
    """What the path and QK expansions share: their model, its graph, lazy iteration of terms."""

    def __init__(self, context: ExpansionContext) -> None:
        self._context = context

    @property
    def model(self) -> AttnOnlyTransformer:
        """The model expanded."""
        return self._context.model

    @property
    def graph(self) -> nx.DiGraph:
        """Its computation graph."""
        return self._context.graph

    def __iter__(self) -> Iterator[TermT]:
        raise NotImplementedError

    def terms(self) -> list[TermT]:
        """Every term, as a list."""
        return list(self)


class PathExpansion(Expansion[PathTerm]):
    """The terms of the logits, one per path; lazy and filterable (see the module docstring)."""

    def __init__(self, context: ExpansionContext, filters: _Filter | None = None) -> None:
        super().__init__(context)
        self._filters = filters or _Filter()

    # ------------------------------------------------------------------ listing
    def _listing(self) -> dict[str, Any]:
        f = self._filters
        sources = None if f.sources is None else sorted(f.sources)
        return {"source": sources, "order": f.orders, "through": f.through or None}

    def paths(self) -> Iterator[tuple[str, ...]]:
        """The paths of the terms, lazily, in the order of :func:`~circuits.graph.iter_paths`."""
        f = self._filters
        per_term = f.kinds is not None or bool(f.predicates)
        for path in iter_paths(self.graph, **self._listing()):
            if not per_term or f.admits(path, PathTerm(path, self._context)):
                yield path

    def __iter__(self) -> Iterator[PathTerm]:
        return (PathTerm(path, self._context) for path in self.paths())

    def __len__(self) -> int:
        if self._filters.kinds is None and not self._filters.predicates:
            return count_paths(self.graph, **self._listing())
        return sum(1 for _ in self.paths())

    def term(self, *nodes: str) -> PathTerm:
        """The term of the path ``nodes`` (the final ``"unembed"`` may be left out).

        A :class:`~circuits.errors.PathError` if the path is not one of this expansion's terms.
        """
        path = nodes if nodes and nodes[-1] == UNEMBED else (*nodes, UNEMBED)
        term = PathTerm(path, self._context)
        if not (self._is_graph_path(path) and self._filters.admits(path, term)):
            raise PathError(f"{' → '.join(map(str, path))} is not a path of this expansion")
        return term

    def _is_graph_path(self, path: tuple[str, ...]) -> bool:
        if len(path) < 2 or path[0] not in source_nodes(self.graph):
            return False
        try:
            listed = iter_paths(self.graph, source=path[0], order=len(path) - 2, through=path[1:-1])
            return any(candidate == path for candidate in listed)
        except PathError:
            return False

    def filter(
        self,
        *,
        source: str | Iterable[str] | None = None,
        order: int | Iterable[int] | None = None,
        through: str | Iterable[str | tuple[int, int]] | None = None,
        kind: Kind | Iterable[Kind] | None = None,
        where: Callable[[PathTerm], bool] | None = None,
    ) -> PathExpansion:
        """The terms meeting every condition given (on top of this expansion's own filters).

        ``source``: source names or parts (``"token"``, ``"position"``, ``"bias"``); ``order``:
        number(s) of heads; ``through``: heads every path must visit; ``kind``: ``"direct"``,
        ``"head"``, ``"virtual"``, ``"bias"``; ``where``: any predicate on terms.
        """
        f = self._filters
        sources = None if source is None else frozenset(source_nodes(self.graph, source))
        filters = replace(
            f,
            sources=meet(f.sources, sources),
            orders=meet(f.orders, order_set(order)),
            through=f.through | head_set(self.graph, through),
            kinds=meet(f.kinds, as_set(kind, "kind", KINDS)),
            predicates=f.predicates + checked_predicate(where),
        )
        return PathExpansion(self._context, filters)

    # ------------------------------------------------------------------ evaluation
    def contributions(self, cache: ActivationCache, targets: Any) -> PathContributions:
        """Every term's contribution to the logits ``targets`` (token ids ``[batch, pos]``).

        Paths are evaluated depth-first so that a shared prefix (e.g. ``embed → 0.3``) is
        computed once for all its continuations, in a ``d_head``-wide basis; the vocabulary
        dimension is never touched. ``values.sum(0)`` equals the logits at the targets.
        """
        algebra = PathAlgebra(self.model, cache)
        target_ids = algebra.targets(targets)
        paths = list(self.paths())
        values = np.empty((len(paths), *algebra.shape), dtype=self.model.dtype)
        for index, value in _target_values(algebra, target_ids, paths):
            values[index] = value
        terms = tuple(PathTerm(path, self._context) for path in paths)
        return PathContributions(terms, values, target_ids)

    def evaluate(self, cache: ActivationCache, targets: Any = None) -> FloatArray:
        """The sum of the terms: ``[batch, pos, d_vocab]`` (the logits, for the full expansion).

        With ``targets``, the sum ``[batch, pos]`` of their target-logit contributions. Streams
        are added in the ``d_head``-wide basis of the head that wrote them, then in the residual
        stream, and unembedded once.
        """
        algebra = PathAlgebra(self.model, cache)
        paths = list(self.paths())
        if targets is not None:
            total = np.zeros(algebra.shape, dtype=self.model.dtype)
            for _, value in _target_values(algebra, algebra.targets(targets), paths):
                total += value
            return total
        streams = [path[:-1] for path in paths if path[0] not in CONSTANT_LOGITS]
        by_owner: dict[Any, FloatArray] = {}
        for _, s in algebra.walk(streams):
            by_owner[s.owner] = by_owner[s.owner] + s.z if s.owner in by_owner else s.z
        resid: FloatArray = np.zeros((1, 1, self.model.cfg.d_model), dtype=self.model.dtype)
        for owner, z in by_owner.items():
            resid = resid + algebra.resid(Stream(owner, z))
        logits = algebra.logits(Stream(None, resid))
        constants = [algebra.constant_logits(p[0]) for p in paths if p[0] in CONSTANT_LOGITS]
        return logits + sum(constants, np.zeros_like(logits))

    # ------------------------------------------------------------------ printing
    def latex(self, *, grouped: bool = True, expand: bool = False) -> str:
        r"""The expansion as a LaTeX sum, the right-hand side of ``logits = …``.

        With ``grouped`` (default) the terms that differ only in which head of each layer they
        visit are written once, summed over the heads :math:`\mathcal{H}_l` of each layer ``l``, as
        the Framework writes :math:`\sum_{h \in \mathcal{H}_0} A^h \otimes W_U W_{OV}^h W_E`.
        A group is summed only when it is complete (every head present, e.g. not after
        ``filter(through=…)``) and layers have more than one head.
        """
        groups: dict[Hashable, list[tuple[str, ...]]] = defaultdict(list)
        for path in self.paths():
            groups[_signature(path) if grouped else path].append(path)
        pieces = [self._group_latex(members, expand) for members in groups.values()]
        return " + ".join(pieces) if pieces else "0"

    def _group_latex(self, members: list[tuple[str, ...]], expand: bool) -> str:
        symbols, path = self._context.symbols, members[0]
        summed = summed_heads(path)
        heads = self.model.cfg.n_heads
        if len(members) == 1 or heads == 1 or len(members) != heads ** len(summed):
            return " + ".join(symbols.ov_term(p, expand=expand).latex() for p in members)
        return (
            head_sums(summed) + symbols.ov_term(path, placeholders(summed), expand=expand).latex()
        )

    def _repr_latex_(self) -> str:
        return f"$\\text{{logits}} = {self.latex()}$"

    def __repr__(self) -> str:
        return f"PathExpansion({self.model!r}, terms={len(self)})"


def summed_heads(path: Sequence[str]) -> list[str]:
    """The heads a grouped sum ranges over: the owner of a value-bias source, then the path's."""
    info = parse_node(path[0])
    owner = [info.owner] if info.weight == "b_V" and info.owner is not None else []
    return owner + [node for node in path[1:] if parse_node(node).role == "head"]


def _signature(path: Sequence[str]) -> Hashable:
    """What the terms of one grouped sum share: the source (value biases by layer), head layers."""
    source = "b_V" if parse_node(path[0]).weight == "b_V" else path[0]
    return source, tuple(parse_head(slot)[0] for slot in summed_heads(path[:-1]))


def placeholders(heads: Sequence[str], prefix: str = "h") -> dict[str, str]:
    """Summation indices for heads: ``h`` for one, ``h_1, h_2, …`` for several."""
    if len(heads) == 1:
        return {heads[0]: prefix}
    return {head: f"{prefix}_{i + 1}" for i, head in enumerate(heads)}


def head_sums(heads: Sequence[str], prefix: str = "h") -> str:
    r"""``\sum_{h_1 \in \mathcal{H}_0} \sum_{h_2 \in \mathcal{H}_1}`` for heads in layers 0 and 1."""
    labels = placeholders(heads, prefix)
    return "".join(
        rf"\sum_{{{labels[slot]} \in \mathcal{{H}}_{{{parse_head(slot)[0]}}}}} " for slot in heads
    )


def path_expansion(
    model: AttnOnlyTransformer | nx.DiGraph, *, biases: BiasPolicy = "nonzero"
) -> PathExpansion:
    """The path expansion of ``model``'s logits (or of a graph from :func:`computation_graph`).

    ``biases`` is passed to :func:`~circuits.computation_graph`: the default keeps the bias
    sources that are nonzero, so the terms always sum to the logits.
    """
    return PathExpansion(ExpansionContext(model, biases))
