r"""The computation graph of an attention-only transformer, and its paths.

The residual stream connects every component to every later one, so the model is a DAG: sources
write into the stream, heads read from it and write back, the unembedding reads the final stream.
:func:`computation_graph` builds that DAG as a :class:`networkx.DiGraph`. Every path from a source
to the sink is one term of the path expansion of the logits (:mod:`circuits.paths`); every pair
of paths into a head's query and key inputs is one term of its attention scores
(:mod:`circuits.qk_paths`).

Nodes (names are plain strings)
-------------------------------
========================  =========  ==============================================================
name                      role       meaning
========================  =========  ==============================================================
``"embed"``               source     token embedding :math:`W_E` (part ``"token"``)
``"pos_embed"``           source     positional embedding :math:`W_P` (part ``"position"``); absent
                                     with positional type ``none``
``"b_Q[l.h]"``            source     query bias of head ``l.h``; one edge, into that head's Q input
``"b_K[l.h]"``            source     key bias of head ``l.h``; one edge, into that head's K input
``"b_V[l.h]"``            source     value bias of head ``l.h``: since patterns are row-stochastic
                                     (:math:`A\mathbb{1} = \mathbb{1}`) it enters the stream after
                                     layer ``l`` as the constant :math:`W_O^h b_V^h`
``"b_O[l]"``              source     output bias of layer ``l``
``"b_U"``                 source     unembedding bias; one edge, into the sink
``"b_LN[l]"``             source     bias of the normalisation read by layer ``l`` (``"LN"`` only):
                                     edges into every head of layer ``l`` (``Q``, ``K``, ``V``)
``"b_LN_final"``          source     bias of the normalisation before the unembedding; one edge,
                                     into the sink
``"l.h"``                 head       head ``h`` of layer ``l`` (e.g. ``"1.4"``)
``"unembed"``             sink       the unembedding :math:`W_U`
========================  =========  ==============================================================

With a normalisation (``normalization_type``), every edge into a head or the sink passes through
it; with its scales frozen from a forward pass it is a fixed linear map (see
:mod:`circuits.paths`), so the graph's paths are still the terms of the expansion. Its biases
enter after it, as the sources ``b_LN[l]`` and ``b_LN_final``. Bias sources are part ``"bias"``. By default a bias node is present only when its bias is nonzero
(``biases="nonzero"``), which keeps every expansion exact while sparing models without biases
hundreds of empty terms; ``biases="all"`` keeps them all, ``biases="none"`` drops them all (the
expansion is then exact only for models without biases).

Node attributes: every node has ``role`` (``"source"``, ``"head"``, ``"sink"``), ``layer`` (the
layer it writes after: ``-1`` for ``embed`` and ``pos_embed``; ``l`` for heads and the biases of
layer ``l``; ``n_layers`` for the sink), ``label`` (plain text) and ``latex``. Sources also have
``part``, ``weight`` (``"W_E"``, ``"W_P"``, ``"b_Q"``, …) and ``value`` (the array; ``b_V`` gives
:math:`b_V^h`, not yet multiplied by :math:`W_O^h`); bias sources of a head have ``owner`` (its
name). Heads have ``head`` (index), ``W_QK`` and ``W_OV`` (:class:`~circuits.FactoredMatrix`). The
sink has ``W_U``. The graph itself carries ``model``, ``n_layers``, ``n_heads``,
``positional_embedding_type`` and ``biases`` in ``graph.graph``.

Edges run from every node that writes the stream (``embed``, standard ``pos_embed``, heads,
``b_V``, ``b_O``) to every head of a later layer and to the sink. Each edge's ``inputs`` attribute
names what reads it: a subset of ``("Q", "K", "V")`` for an edge into a head, ``("U",)`` for an
edge into the sink. Shortformer positions feed only queries and keys: ``pos_embed`` then has an
edge with ``inputs=("Q", "K")`` into every head and none into the sink.

Paths
-----
A path is a tuple of node names from a source to a target. A signal passes through a head only
by its value input, so every edge into an intermediate head must read ``"V"``; the last edge must
read the target's chosen input (``"U"`` for the sink). The **order** of a path is the number of
heads strictly between its source and its target. :func:`iter_paths` lists paths lazily in a fixed
order (by source, then order, then heads by ``(layer, head)``) and filters them by source, order
and heads they must visit; :func:`count_paths` counts them without listing them when it can.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import networkx as nx
import numpy as np

from ._checks import is_int, one_or_many
from .config import head_name, parse_head
from .errors import ConfigError, HeadError, PathError
from .model import AttnOnlyTransformer, as_model

__all__ = [
    "EMBED",
    "POS_EMBED",
    "UNEMBED",
    "NodeInfo",
    "bias_node",
    "computation_graph",
    "count_paths",
    "head_set",
    "iter_paths",
    "order_set",
    "parse_node",
    "source_nodes",
]

EMBED = "embed"
POS_EMBED = "pos_embed"
UNEMBED = "unembed"

BiasPolicy = Literal["nonzero", "all", "none"]
Input = Literal["Q", "K", "V"]
SOURCE_PARTS = ("token", "position", "bias")

_HEAD_BIASES = ("b_Q", "b_K", "b_V")
_BIAS_NODE = re.compile(r"^(b_Q|b_K|b_V|b_O|b_LN)\[([^\]]*)\]$")


@dataclass(frozen=True)
class NodeInfo:
    """What a node name means: its ``role``, source ``part``, ``weight``, ``layer`` and ``head``.

    ``layer`` is ``None`` for ``embed``, ``pos_embed``, ``b_U`` and ``unembed`` (their layer
    depends on the model); ``head`` is set for heads and for the biases of a head.
    """

    name: str
    role: Literal["source", "head", "sink"]
    part: Literal["token", "position", "bias"] | None
    weight: str | None
    layer: int | None
    head: int | None

    @property
    def owner(self) -> str | None:
        """The head ``"l.h"`` a head or head bias belongs to, else ``None``."""
        if self.layer is None or self.head is None:
            return None
        return head_name(self.layer, self.head)


def parse_node(name: str) -> NodeInfo:
    """Decode a node name (``"embed"``, ``"b_V[1.4]"``, ``"1.4"``, …); see the module docstring."""
    if not isinstance(name, str):
        raise PathError(f"node names are strings, got {name!r}")
    return _parse_node(name)


@lru_cache(maxsize=4096)
def _parse_node(name: str) -> NodeInfo:
    fixed = {
        EMBED: NodeInfo(name, "source", "token", "W_E", None, None),
        POS_EMBED: NodeInfo(name, "source", "position", "W_P", None, None),
        "b_U": NodeInfo(name, "source", "bias", "b_U", None, None),
        "b_LN_final": NodeInfo(name, "source", "bias", "b_LN_final", None, None),
        UNEMBED: NodeInfo(name, "sink", None, "W_U", None, None),
    }
    if name in fixed:
        return fixed[name]
    match = _BIAS_NODE.match(name)
    try:
        if match is None:
            layer, head = parse_head(name)
            return NodeInfo(name, "head", None, None, layer, head)
        weight, inner = match.groups()
        if weight in ("b_O", "b_LN"):
            if not inner.isdigit():
                raise PathError(
                    f"not a node name: {name!r}; expected '{weight}[layer]', e.g. '{weight}[1]'"
                )
            return NodeInfo(name, "source", "bias", weight, int(inner), None)
        layer, head = parse_head(inner)
        return NodeInfo(name, "source", "bias", weight, layer, head)
    except HeadError:
        raise PathError(
            f"not a node name: {name!r}; expected 'embed', 'pos_embed', 'unembed', 'b_U', a head "
            "'l.h', or a bias 'b_Q[l.h]', 'b_K[l.h]', 'b_V[l.h]', 'b_O[l]', 'b_LN[l]', 'b_LN_final'"
        ) from None


def bias_node(weight: str, layer: int, head: int | None = None) -> str:
    """The name of a bias node: ``bias_node("b_V", 1, 4) == "b_V[1.4]"``, ``bias_node("b_O", 1) == "b_O[1]"``."""
    if weight in ("b_O", "b_LN") and head is None:
        return f"{weight}[{layer}]"
    if weight in _HEAD_BIASES and head is not None:
        return f"{weight}[{head_name(layer, head)}]"
    raise PathError(f"no bias node {weight!r} for layer {layer!r}, head {head!r}")


# ---------------------------------------------------------------------------------- construction
def computation_graph(model: AttnOnlyTransformer, *, biases: BiasPolicy = "nonzero") -> nx.DiGraph:
    """The DAG of sources, heads and the unembedding of ``model`` (see the module docstring)."""
    if biases not in ("nonzero", "all", "none"):
        raise ConfigError(f"biases must be 'nonzero', 'all' or 'none', got {biases!r}")
    cfg = as_model(model).cfg
    graph = nx.DiGraph(
        model=model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        positional_embedding_type=cfg.positional_embedding_type,
        biases=biases,
    )

    def keep(value: np.ndarray[Any, Any]) -> bool:
        return biases == "all" or (biases == "nonzero" and bool(np.any(value != 0)))

    _add_source(graph, EMBED, "W_E", model.W_E, -1)
    if model.W_P is not None:
        _add_source(graph, POS_EMBED, "W_P", model.W_P, -1)
    writers = [EMBED, POS_EMBED] if cfg.positional_embedding_type == "standard" else [EMBED]
    for layer in range(cfg.n_layers):
        writers += _add_layer(graph, model, layer, writers, keep)
    graph.add_node(
        UNEMBED, role="sink", layer=cfg.n_layers, W_U=model.W_U, label="unembed (W_U)", latex="W_U"
    )
    for writer in writers:
        graph.add_edge(writer, UNEMBED, inputs=("U",))
    for name in ("b_LN_final", "b_U"):
        value = getattr(model, name)
        if value is not None and keep(value):
            _add_source(graph, name, name, value, cfg.n_layers)
            graph.add_edge(name, UNEMBED, inputs=("U",))
    return graph


_PARTS = {"W_E": "token", "W_P": "position"}


def _add_source(
    graph: nx.DiGraph, name: str, weight: str, value: Any, layer: int, owner: str | None = None
) -> None:
    part = _PARTS.get(weight, "bias")
    label = name if part == "bias" else f"{name} ({weight})"
    graph.add_node(name, role="source", part=part, weight=weight, value=value, layer=layer)
    graph.nodes[name].update(label=label, latex=_source_latex(weight, owner))
    if owner is not None:
        graph.nodes[name]["owner"] = owner


def _add_layer(
    graph: nx.DiGraph,
    model: AttnOnlyTransformer,
    layer: int,
    writers: list[str],
    keep: Callable[[np.ndarray[Any, Any]], bool],
) -> list[str]:
    """Add the heads of ``layer`` and their biases, fed by ``writers``; return the new writers."""
    heads = [head_name(layer, head) for head in range(model.cfg.n_heads)]
    written = list(heads)
    for head, name in enumerate(heads):
        graph.add_node(
            name,
            role="head",
            layer=layer,
            head=head,
            W_QK=model.W_QK(layer, head),
            W_OV=model.W_OV(layer, head),
            label=f"head {name}",
            latex=f"h^{{{name}}}",
        )
        for writer in writers:
            graph.add_edge(writer, name, inputs=("Q", "K", "V"))
        if model.b_LN is not None and keep(model.b_LN[layer]):
            node = bias_node("b_LN", layer)
            if node not in graph:
                _add_source(graph, node, "b_LN", model.b_LN[layer], layer)
            graph.add_edge(node, name, inputs=("Q", "K", "V"))
        if model.cfg.positional_embedding_type == "shortformer":
            graph.add_edge(POS_EMBED, name, inputs=("Q", "K"))
        for weight, inputs in (("b_Q", ("Q",)), ("b_K", ("K",))):
            if keep(getattr(model, weight)[layer, head]):
                node = bias_node(weight, layer, head)
                _add_source(graph, node, weight, getattr(model, weight)[layer, head], layer, name)
                graph.add_edge(node, name, inputs=inputs)
    for head, name in enumerate(heads):
        if keep(model.b_V[layer, head]):
            _add_source(
                graph, bias_node("b_V", layer, head), "b_V", model.b_V[layer, head], layer, name
            )
            written.append(bias_node("b_V", layer, head))
    if keep(model.b_O[layer]):
        _add_source(graph, bias_node("b_O", layer), "b_O", model.b_O[layer], layer)
        written.append(bias_node("b_O", layer))
    return written


def _source_latex(weight: str, owner: str | None) -> str:
    if weight == "b_LN_final":
        return r"b_{LN}^{\mathrm{final}}"
    base, _, sub = weight.partition("_")
    symbol = f"{base}_{{{sub}}}" if owner is None else f"{base}_{{{sub}}}^{{{owner}}}"
    return symbol


# ---------------------------------------------------------------------------------- paths
class _Walk:
    """A resolved path query (sources, target and its input, orders, heads to visit), with the
    successor lists and path counts it needs, computed once."""

    def __init__(
        self,
        graph: nx.DiGraph,
        sources: tuple[str, ...],
        target: str,
        last_input: str,
        orders: frozenset[int] | None,
        through: frozenset[str],
    ) -> None:
        self.graph, self.sources, self.target = graph, sources, target
        self.last_input, self.through = last_input, through
        head_layers = {d["layer"] for _, d in graph.nodes(data=True) if d.get("role") == "head"}
        self.orders = [m for m in range(len(head_layers) + 1) if orders is None or m in orders]
        self._next: dict[str, list[str]] = {}
        self._counts: dict[tuple[str, int], int] = {}

    def heads_after(self, node: str) -> list[str]:
        """The heads a signal reaches from ``node`` through their value input, by (layer, head)."""
        if node not in self._next:
            nodes = self.graph.nodes
            self._next[node] = sorted(
                (
                    s
                    for s, data in self.graph.succ[node].items()
                    if "V" in data.get("inputs", ()) and nodes[s].get("role") == "head"
                ),
                key=lambda s: (nodes[s]["layer"], nodes[s]["head"]),
            )
        return self._next[node]

    def ends(self, node: str) -> bool:
        """Whether ``node`` has an edge into the target that the target's input reads."""
        edge = self.graph.succ[node].get(self.target)
        return edge is not None and self.last_input in edge.get("inputs", ())

    def count(self, node: str, order: int) -> int:
        """The number of ways to continue from ``node`` to the target through ``order`` heads."""
        key = (node, order)
        if key not in self._counts:
            if order == 0:
                self._counts[key] = int(self.ends(node))
            else:
                self._counts[key] = sum(self.count(s, order - 1) for s in self.heads_after(node))
        return self._counts[key]

    def tails(self, node: str, order: int, todo: frozenset[str]) -> Iterator[tuple[str, ...]]:
        """Node tuples continuing a path from ``node`` through exactly ``order`` more heads."""
        if order == 0:
            if not todo:
                yield (self.target,)
            return
        nodes = self.graph.nodes
        for succ in self.heads_after(node):
            if self.count(succ, order - 1) == 0:
                continue
            layer = nodes[succ]["layer"]
            if any(nodes[h]["layer"] <= layer and h != succ for h in todo):
                continue  # a required head in this or an earlier layer would be missed for good
            for tail in self.tails(succ, order - 1, todo - {succ}):
                yield (succ, *tail)

    def paths(self) -> Iterator[tuple[str, ...]]:
        """Every path of the query, in the documented order."""
        for src in self.sources:
            for order in self.orders:
                if self.count(src, order):
                    for tail in self.tails(src, order, self.through):
                        yield (src, *tail)

    def total(self) -> int:
        """The number of paths of the query."""
        if self.through:
            return sum(1 for _ in self.paths())
        return sum(self.count(src, order) for src in self.sources for order in self.orders)


def _resolve(
    graph: nx.DiGraph,
    target: str,
    input: Input | None,
    source: str | Iterable[str] | None,
    order: int | Iterable[int] | None,
    through: Iterable[str | tuple[int, int]] | str | None,
) -> _Walk:
    if not isinstance(graph, nx.DiGraph):
        raise PathError(
            f"expected the graph of computation_graph(model), got {type(graph).__name__}"
        )
    if not isinstance(target, str) or target not in graph:
        raise PathError(f"target {target!r} is not a node of the graph")
    role = graph.nodes[target].get("role")
    if role == "source":
        raise PathError(f"target {target!r} is a source; paths end at a head or at {UNEMBED!r}")
    if role == "sink":
        if input not in (None, "U"):
            raise PathError(f"the sink {target!r} has one input 'U', got input={input!r}")
        last_input = "U"
    else:
        if input not in (None, "Q", "K", "V"):
            raise PathError(f"a head's inputs are 'Q', 'K' and 'V', got input={input!r}")
        last_input = input or "V"
    return _Walk(
        graph,
        source_nodes(graph, source),
        target,
        last_input,
        order_set(order),
        head_set(graph, through),
    )


def source_nodes(graph: nx.DiGraph, source: str | Iterable[str] | None = None) -> tuple[str, ...]:
    """The source nodes of ``graph`` (in graph order), or those named or of the parts given.

    ``source`` may mix node names and parts (``"token"``, ``"position"``, ``"bias"``).
    """
    all_sources = [n for n, d in graph.nodes(data=True) if d.get("role") == "source"]
    if source is None:
        return tuple(all_sources)
    wanted = one_or_many(source)
    for name in wanted:
        if not isinstance(name, str) or (name not in SOURCE_PARTS and name not in all_sources):
            raise PathError(
                f"source {name!r} is neither a source node of the graph ({_preview(all_sources)})"
                f" nor a part {SOURCE_PARTS}"
            )
    return tuple(n for n in all_sources if n in wanted or graph.nodes[n].get("part") in wanted)


def order_set(order: int | Iterable[int] | None) -> frozenset[int] | None:
    """A path order (number of heads) or collection of orders as a set; ``None`` stays ``None``."""
    if order is None:
        return None
    values = one_or_many(order)
    if not all(is_int(v) and v >= 0 for v in values):
        raise PathError(f"order must be an integer ≥ 0 or a collection of them, got {order!r}")
    return frozenset(int(v) for v in values)


def head_set(
    graph: nx.DiGraph, through: Iterable[str | tuple[int, int]] | str | None
) -> frozenset[str]:
    """Heads given by name ``"l.h"`` or as ``(layer, head)``, checked to be heads of ``graph``."""
    if through is None:
        return frozenset()
    names = []
    for item in one_or_many(through):
        pair = isinstance(item, tuple) and len(item) == 2 and all(is_int(i) for i in item)
        name = head_name(*item) if pair else item
        if (
            not isinstance(name, str)
            or name not in graph
            or graph.nodes[name].get("role") != "head"
        ):
            raise PathError(f"{item!r} is not a head of the graph (heads are named 'l.h')")
        names.append(name)
    return frozenset(names)


def _preview(names: Collection[str], limit: int = 8) -> str:
    shown = ", ".join(list(names)[:limit])
    return shown + (", …" if len(names) > limit else "")


def iter_paths(
    graph: nx.DiGraph,
    *,
    target: str = UNEMBED,
    input: Input | None = None,
    source: str | Iterable[str] | None = None,
    order: int | Iterable[int] | None = None,
    through: Iterable[str | tuple[int, int]] | str | None = None,
) -> Iterator[tuple[str, ...]]:
    """Lazily list the paths ``(source, h_1, …, h_m, target)`` of ``graph``.

    ``target`` is the sink (default) or a head, entered by its ``input`` (``"Q"``, ``"K"`` or
    ``"V"``; default ``"V"``). ``source`` keeps paths from the given source names or parts
    (``"token"``, ``"position"``, ``"bias"``); ``order`` keeps paths through exactly that many
    heads (an int or a collection); ``through`` keeps paths visiting every head given (names
    ``"l.h"`` or ``(layer, head)``). Listing order: by source (graph order), then order, then
    heads by ``(layer, head)`` — for one source and one order, depth-first order.
    """
    return _resolve(graph, target, input, source, order, through).paths()


def count_paths(
    graph: nx.DiGraph,
    *,
    target: str = UNEMBED,
    input: Input | None = None,
    source: str | Iterable[str] | None = None,
    order: int | Iterable[int] | None = None,
    through: Iterable[str | tuple[int, int]] | str | None = None,
) -> int:
    r"""The number of paths :func:`iter_paths` lists, by dynamic programming on the DAG.

    :math:`N(v, m) = \sum_{s} N(s, m-1)` over the heads ``s`` reachable from ``v``, with
    :math:`N(v, 0) = 1` if ``v`` feeds the target. With ``through`` the paths are listed and
    counted. A model of ``L`` layers of ``H`` heads has :math:`(1+H)^L` paths from ``embed`` to the
    sink.
    """
    return _resolve(graph, target, input, source, order, through).total()
