r"""The path expansion of a head's attention scores: one exact term per (query path, key path).

The scores of head ``h`` in layer ``l`` are bilinear in what its queries and keys read,

.. math::

    s^h_{ij} = \alpha^{-1} \, (W_Q^h x_i + b_Q^h)^T (W_K^h x_j + b_K^h),

and what they read, the stream entering layer ``l`` (plus :math:`W_P` for shortformer positions),
is itself a sum of paths. Expanding both sides gives one term per pair of paths of the computation
graph into the head's Q and K inputs,

.. math::

    s^h = \sum_{p, q} P_p \otimes P_q \otimes \alpha^{-1} W_p^T W_{QK}^h W_q
          \; + \text{(terms with } b_Q^h, b_K^h),

the Framework's :math:`A_q \otimes A_k \otimes W` terms. A query bias is a query "path"
``("b_Q[l.h]", "l.h")`` of its own, a key bias likewise; shortformer positions are the direct
paths ``("pos_embed", "l.h")``, the only place they appear. The terms sum exactly to
``cache.scores(l, h)`` (scaled, before mask and softmax; entries above the diagonal included).

A :class:`QKTerm` has ``query`` and ``key`` (node tuples ending at the head), their orders, a
``kind`` — ``"direct"`` (neither path through an earlier head), ``"Q"`` (Q-composition: only the
query path is), ``"K"`` (K-composition: only the key path is) or ``"both"`` — and ``parts``, the
source parts ``("token" | "position" | "bias", same)`` of query and key, which separate token and
positional terms. ``term.evaluate(cache)`` gives ``[batch, q, k]``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import networkx as nx
import numpy as np

from ._arrays import FloatArray
from ._checks import one_or_many
from ._streams import PathAlgebra
from .config import head_name
from .errors import PathError
from .graph import (
    BiasPolicy,
    count_paths,
    head_set,
    iter_paths,
    order_set,
    parse_node,
    source_nodes,
)
from .model import ActivationCache, AttnOnlyTransformer
from .paths import (
    Contributions,
    Expansion,
    ExpansionContext,
    Term,
    as_set,
    checked_predicate,
    head_sums,
    meet,
    placeholders,
    summed_heads,
)
from .symbolic import Kron

__all__ = ["QKContributions", "QKExpansion", "QKTerm", "qk_expansion"]

QKKind = Literal["direct", "Q", "K", "both"]
QK_KINDS: tuple[QKKind, ...] = ("direct", "Q", "K", "both")
_KIND_OF: dict[tuple[bool, bool], QKKind] = {
    (False, False): "direct",
    (True, False): "Q",
    (False, True): "K",
    (True, True): "both",
}


class QKTerm(Term):
    """One term of a head's scores: a query path and a key path, both ending at the head."""

    __slots__ = ("key_path", "query")

    def __init__(
        self, query: tuple[str, ...], key: tuple[str, ...], context: ExpansionContext
    ) -> None:
        super().__init__(context)
        self.query, self.key_path = query, key

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What identifies the term within its expansion: ``(query, key path)``."""
        return self.query, self.key_path

    @property
    def head(self) -> str:
        """The head ``"l.h"`` whose scores the term belongs to."""
        return self.query[-1]

    @property
    def query_order(self) -> int:
        """The number of earlier heads on the query path."""
        return len(self.query) - 2

    @property
    def key_order(self) -> int:
        """The number of earlier heads on the key path."""
        return len(self.key_path) - 2

    @property
    def kind(self) -> QKKind:
        """``"direct"``, ``"Q"`` (Q-composition), ``"K"`` (K-composition) or ``"both"``."""
        return _KIND_OF[self.query_order > 0, self.key_order > 0]

    @property
    def parts(self) -> tuple[str, str]:
        """The source parts of the query and key paths (``"token"``, ``"position"``, ``"bias"``)."""
        return str(parse_node(self.query[0]).part), str(parse_node(self.key_path[0]).part)

    def evaluate(self, cache: ActivationCache) -> FloatArray:
        """This term's contribution ``[batch, q, k]`` to ``cache.scores(head)``, patterns frozen."""
        algebra = PathAlgebra(self._context.model, cache)
        (_, q), (_, k) = _side_values(algebra, [("Q", self.query), ("K", self.key_path)])
        return _scores(algebra, q, k)

    def symbolic_form(self, *, expand: bool = False) -> Kron:
        r""":math:`P_q \otimes P_k \otimes \alpha^{-1} W_q^T W_{QK} W_k` as ``Kron(query patterns, key patterns, weights)``."""
        return self._context.symbols.qk_term(self.query, self.key_path, expand=expand)

    def __repr__(self) -> str:
        query, key = " → ".join(self.query[:-1]), " → ".join(self.key_path[:-1])
        return f"QKTerm({self.head}: query {query} | key {key}; {self.kind})"


def _side_values(
    algebra: PathAlgebra, sides: Sequence[tuple[str, tuple[str, ...]]]
) -> list[tuple[int, FloatArray]]:
    """What each side ``(input, path)`` gives its head's queries (``"Q"``) or keys (``"K"``).

    ``[batch|1, pos|1, d_head]``, in the order given: :math:`W_Q^h` (or :math:`W_K^h`) applied to
    the path's stream, or the bias :math:`b_Q^h` (:math:`b_K^h`) itself for a bias side. Stream
    prefixes are shared.
    """
    values: list[tuple[int, FloatArray]] = []
    streams, where = [], []
    for index, (_, path) in enumerate(sides):
        info, (layer, head) = parse_node(path[0]), _head_of(path)
        if info.weight in ("b_Q", "b_K"):
            bias = algebra.model.b_Q if info.weight == "b_Q" else algebra.model.b_K
            values.append((index, bias[layer, head][None, None]))
        else:
            streams.append(path[:-1])
            where.append(index)
    for position, stream in algebra.walk(streams):
        which, path = sides[where[position]]
        values.append((where[position], algebra.read(stream, which, *_head_of(path))))
    return sorted(values, key=lambda pair: pair[0])


def _head_of(path: Sequence[str]) -> tuple[int, int]:
    info = parse_node(path[-1])
    if info.layer is None or info.head is None:
        raise PathError(f"{' → '.join(path)} does not end at a head")
    return info.layer, info.head


def _scores(algebra: PathAlgebra, q: FloatArray, k: FloatArray) -> FloatArray:
    """:math:`q_i^T k_j / \\alpha` broadcast to ``[batch, q, k]``."""
    scores = (q @ np.swapaxes(k, -1, -2)) / algebra.model.cfg.attn_scale
    batch, n = algebra.shape
    result: FloatArray = np.ascontiguousarray(np.broadcast_to(scores, (batch, n, n)))
    return result


# ---------------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class _Side:
    """The filters of one side (query or key) of a QK expansion."""

    sources: frozenset[str] | None = None
    orders: frozenset[int] | None = None
    through: frozenset[str] = frozenset()

    def narrowed(self, graph: nx.DiGraph, source: Any, order: Any, through: Any) -> _Side:
        """Both sides' conditions at once."""
        sources = None if source is None else frozenset(source_nodes(graph, source))
        return _Side(
            meet(self.sources, sources),
            meet(self.orders, order_set(order)),
            self.through | head_set(graph, through),
        )

    def listing(self, composed: bool, n_layers: int) -> dict[str, Any]:
        """Arguments of iter_paths for the paths of this side through heads (or not)."""
        orders = frozenset(range(1, n_layers + 1)) if composed else frozenset({0})
        return {
            "source": None if self.sources is None else sorted(self.sources),
            "order": orders if self.orders is None else orders & self.orders,
            "through": self.through or None,
        }


@dataclass(frozen=True)
class _QKFilter:
    query: _Side = _Side()
    key: _Side = _Side()
    kinds: frozenset[str] = frozenset(QK_KINDS)
    predicates: tuple[Callable[[QKTerm], bool], ...] = field(default=())


@dataclass(frozen=True)
class QKContributions(Contributions[QKTerm]):
    """Every term's contribution ``[batch, q, k]`` to a head's scores: ``values[i]`` is ``terms[i]``'s.

    Index with a term or with ``(query path, key path)``. :meth:`ranked` averages over the
    causal entries (key ≤ query) by default, the only ones the softmax uses.
    """

    def default_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """The causal entries ``k ≤ q`` of every sequence."""
        batch, n_q, n_k = self.values.shape[1:]
        causal = np.tril(np.ones((n_q, n_k), dtype=bool))
        return np.broadcast_to(causal, (batch, n_q, n_k))


class QKExpansion(Expansion[QKTerm]):
    """The terms of one head's attention scores; lazy and filterable (see the module docstring)."""

    def __init__(
        self, context: ExpansionContext, layer: int, head: int, filters: _QKFilter | None = None
    ) -> None:
        super().__init__(context)
        self.layer, self.head = layer, head
        self._filters = filters or _QKFilter()

    @property
    def name(self) -> str:
        """The head ``"l.h"``."""
        return head_name(self.layer, self.head)

    # ------------------------------------------------------------------ listing
    def _sides(self, which: str, composed: bool) -> Iterator[tuple[str, ...]]:
        side = self._filters.query if which == "Q" else self._filters.key
        listing = side.listing(composed, self.model.cfg.n_layers)
        return iter_paths(self.graph, target=self.name, input=which, **listing)  # type: ignore[arg-type]

    def _count(self, which: str, composed: bool) -> int:
        side = self._filters.query if which == "Q" else self._filters.key
        listing = side.listing(composed, self.model.cfg.n_layers)
        return count_paths(self.graph, target=self.name, input=which, **listing)  # type: ignore[arg-type]

    def pairs(self) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
        """The ``(query path, key path)`` of every term, lazily: by query path, then key path."""
        kinds = self._filters.kinds
        keys = {c: list(self._sides("K", c)) for c in (False, True) if _any_kind(kinds, k=c)}
        for composed_q in (False, True):
            if not _any_kind(kinds, q=composed_q):
                continue
            for query in self._sides("Q", composed_q):
                for composed_k in (False, True):
                    if _KIND_OF[composed_q, composed_k] not in kinds:
                        continue
                    for key in keys[composed_k]:
                        if self._passes(query, key):
                            yield query, key

    def _passes(self, query: tuple[str, ...], key: tuple[str, ...]) -> bool:
        predicates = self._filters.predicates
        return not predicates or all(p(QKTerm(query, key, self._context)) for p in predicates)

    def __iter__(self) -> Iterator[QKTerm]:
        return (QKTerm(q, k, self._context) for q, k in self.pairs())

    def __len__(self) -> int:
        if self._filters.predicates:
            return sum(1 for _ in self.pairs())
        return sum(
            self._count("Q", composed_q) * self._count("K", composed_k)
            for (composed_q, composed_k), kind in _KIND_OF.items()
            if kind in self._filters.kinds
        )

    def term(self, query: Sequence[str], key: Sequence[str]) -> QKTerm:
        """The term of a query path and a key path (the head itself may be left off their ends).

        A :class:`~circuits.errors.PathError` if the pair is not one of this expansion's terms.
        """
        q, k = (tuple(one_or_many(p)) for p in (query, key))
        q, k = (p if p and p[-1] == self.name else (*p, self.name) for p in (q, k))
        term = QKTerm(q, k, self._context)
        sides = {
            which: {path for composed in (False, True) for path in self._sides(which, composed)}
            for which in ("Q", "K")
        }
        known = q in sides["Q"] and k in sides["K"] and term.kind in self._filters.kinds
        if not (known and self._passes(q, k)):
            raise PathError(f"no term with query {q} and key {k} in this expansion")
        return term

    def filter(
        self,
        *,
        kind: QKKind | Iterable[QKKind] | None = None,
        query_source: str | Iterable[str] | None = None,
        key_source: str | Iterable[str] | None = None,
        query_order: int | Iterable[int] | None = None,
        key_order: int | Iterable[int] | None = None,
        query_through: str | Iterable[str | tuple[int, int]] | None = None,
        key_through: str | Iterable[str | tuple[int, int]] | None = None,
        where: Callable[[QKTerm], bool] | None = None,
    ) -> QKExpansion:
        """The terms meeting every condition given (on top of this expansion's own filters).

        ``kind``: ``"direct"``, ``"Q"``, ``"K"``, ``"both"``; ``query_source``/``key_source``:
        source names or parts (``"token"``, ``"position"``, ``"bias"``: the token/positional
        split); ``*_order``: number(s) of earlier heads on that path; ``*_through``: heads that
        path must visit; ``where``: any predicate on terms.
        """
        f = self._filters
        kinds = as_set(kind, "kind", QK_KINDS)
        filters = replace(
            f,
            query=f.query.narrowed(self.graph, query_source, query_order, query_through),
            key=f.key.narrowed(self.graph, key_source, key_order, key_through),
            kinds=f.kinds if kinds is None else f.kinds & kinds,
            predicates=f.predicates + checked_predicate(where),
        )
        return QKExpansion(self._context, self.layer, self.head, filters)

    # ------------------------------------------------------------------ evaluation
    def contributions(self, cache: ActivationCache) -> QKContributions:
        """Every term's contribution ``[batch, q, k]`` to the head's scores, sides computed once."""
        algebra = PathAlgebra(self.model, cache)
        pairs = list(self.pairs())
        queries = sorted({q for q, _ in pairs})
        keys = sorted({k for _, k in pairs})
        sides = [("Q", q) for q in queries] + [("K", k) for k in keys]
        vectors = [v for _, v in _side_values(algebra, sides)]
        q_vec = dict(zip(queries, vectors[: len(queries)], strict=True))
        k_vec = dict(zip(keys, vectors[len(queries) :], strict=True))
        n = algebra.shape[1]
        values = np.empty((len(pairs), algebra.shape[0], n, n), dtype=self.model.dtype)
        for index, (query, key) in enumerate(pairs):
            values[index] = _scores(algebra, q_vec[query], k_vec[key])
        terms = tuple(QKTerm(q, k, self._context) for q, k in pairs)
        return QKContributions(terms, values)

    def evaluate(self, cache: ActivationCache) -> FloatArray:
        """The sum of the terms, ``[batch, q, k]``: ``cache.scores(head)`` for the full expansion.

        Without a ``where`` predicate the sum factorises, :math:`\\sum_{p,q} u_p^T v_q =
        (\\sum_p u_p)^T (\\sum_q v_q)` within each kind, so it costs one pass over the paths.
        """
        if self._filters.predicates:
            return self.contributions(cache).total()
        algebra = PathAlgebra(self.model, cache)
        summed: dict[tuple[str, bool], FloatArray | None] = {}
        for which in ("Q", "K"):
            for composed in (False, True):
                sides = [(which, path) for path in self._sides(which, composed)]
                vectors = [v for _, v in _side_values(algebra, sides)]
                summed[which, composed] = _sum(vectors)
        n = algebra.shape[1]
        total = np.zeros((algebra.shape[0], n, n), dtype=self.model.dtype)
        for (composed_q, composed_k), kind in _KIND_OF.items():
            q, k = summed["Q", composed_q], summed["K", composed_k]
            if kind in self._filters.kinds and q is not None and k is not None:
                total += _scores(algebra, q, k)
        return total

    # ------------------------------------------------------------------ printing
    def latex(self, *, grouped: bool = True, expand: bool = False) -> str:
        r"""The expansion as a LaTeX sum, the right-hand side of :math:`s^{l.h} = …`.

        With ``grouped``, terms that differ only in which heads of each layer their paths visit
        are summed over heads, with :math:`h_i` for the query path and :math:`h'_i` for the key
        path (complete groups only, as in :meth:`PathExpansion.latex`).
        """
        groups: dict[Hashable, list[tuple[tuple[str, ...], tuple[str, ...]]]] = defaultdict(list)
        for query, key in self.pairs():
            signature = (_side_signature(query), _side_signature(key)) if grouped else (query, key)
            groups[signature].append((query, key))
        return " + ".join(self._group_latex(members, expand) for members in groups.values()) or "0"

    def _group_latex(
        self, members: list[tuple[tuple[str, ...], tuple[str, ...]]], expand: bool
    ) -> str:
        symbols, (query, key) = self._context.symbols, members[0]
        q_slots, k_slots = summed_heads(query[:-1]), summed_heads(key[:-1])
        heads = self.model.cfg.n_heads
        if (
            len(members) == 1
            or heads == 1
            or len(members) != heads ** (len(q_slots) + len(k_slots))
        ):
            return " + ".join(symbols.qk_term(q, k, expand=expand).latex() for q, k in members)
        q_labels, k_labels = placeholders(q_slots, "h"), placeholders(k_slots, "h'")
        term = symbols.qk_term(query, key, q_labels, key_labels=k_labels, expand=expand)
        return head_sums(q_slots, "h") + head_sums(k_slots, "h'") + term.latex()

    def _repr_latex_(self) -> str:
        return f"$s^{{{self.name}}} = {self.latex()}$"

    def __repr__(self) -> str:
        return f"QKExpansion(head {self.name}, terms={len(self)})"


def _sum(arrays: Sequence[FloatArray]) -> FloatArray | None:
    """The broadcasting sum of ``arrays``; ``None`` for none."""
    if not arrays:
        return None
    total = arrays[0]
    for array in arrays[1:]:
        total = total + array
    return total


def _any_kind(kinds: frozenset[str], *, q: bool | None = None, k: bool | None = None) -> bool:
    return any(
        kind in kinds
        for (composed_q, composed_k), kind in _KIND_OF.items()
        if q in (None, composed_q) and k in (None, composed_k)
    )


def _side_signature(path: Sequence[str]) -> Hashable:
    info = parse_node(path[0])
    source = info.weight if info.weight in ("b_V", "b_Q", "b_K") else path[0]
    return source, tuple(parse_node(slot).layer for slot in summed_heads(path[:-1]))


def qk_expansion(
    model: AttnOnlyTransformer | nx.DiGraph,
    layer: int | str,
    head: int | None = None,
    *,
    biases: BiasPolicy = "nonzero",
) -> QKExpansion:
    """The expansion of the scores of one head (``(layer, head)`` or a name ``"l.h"``).

    ``model`` may also be a graph from :func:`~circuits.computation_graph`; ``biases`` as there.
    """
    context = ExpansionContext(model, biases)
    layer_index, head_index = context.model.cfg.resolve_head(layer, head)
    return QKExpansion(context, layer_index, head_index)
