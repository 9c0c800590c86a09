r"""Graphviz diagrams of attention-only transformers and their circuits.

:func:`circuit_diagram` draws a model the way the Framework does: the residual stream as a spine
from the embeddings (bottom) to the unembedding (top), each layer's heads beside it, reading from
the stream below and writing to the stream above. On top of that it draws

* composition edges from a head to a head of a later layer, styled by kind (Q dashed blue,
  K dotted red, V solid green) with width ``1 + 5·score`` for every score at or above a threshold
  (by default 1.5 × the score of two unrelated heads, :func:`composition_threshold`), their
  scores listed in the legend (an edge carries no label, so no label lies on a line);
* highlighted paths (a term of the path expansion, a circuit) in colour along the edges they run
  through: from the source into the stream, up the spine to each head, out of it, to the sink;
* head roles (``previous-token``, ``induction``) from the model's metadata or given explicitly;
* for hand-built models (:mod:`circuits.construct`), the subspaces each head compares and moves
  (``QK tok · prev``, ``OV tok → out``) and the residual layout (``tok ⊕ pos ⊕ prev ⊕ out``).

A legend names every colour and line style drawn. The spine runs straight up the left, the heads
of each layer to its right; sources and sink carry the node names of the paths (``embed``,
``pos_embed``, ``unembed``). Every label is escaped (drawn as a Graphviz HTML-like label), so names
with quotes, ``<``, ``&`` or newlines render as written. :func:`save_diagram` writes ``.svg``,
``.png`` (at :data:`PNG_DPI` dots per inch), ``.pdf`` or ``.dot``; without Graphviz's ``dot``
program it writes the ``.dot`` source instead and says how to install Graphviz.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphviz
import numpy as np

from ._arrays import as_real_array
from ._checks import is_real
from .analysis import all_composition_scores, composition_baseline
from .config import head_name
from .errors import PathError, RenderError
from .graph import EMBED, POS_EMBED, UNEMBED, parse_node
from .model import AttnOnlyTransformer
from .paths import PathTerm, path_expansion

__all__ = [
    "COMPOSITION_STYLES",
    "FORMATS",
    "GRAPHVIZ_HINT",
    "PNG_DPI",
    "Saved",
    "circuit_diagram",
    "composition_edges",
    "composition_threshold",
    "escape_label",
    "head_roles",
    "head_subspaces",
    "model_svg",
    "save_diagram",
    "to_svg",
]

#: Edge style and colour of each kind of composition.
COMPOSITION_STYLES: dict[str, tuple[str, str]] = {
    "Q": ("dashed", "#1f77b4"),
    "K": ("dotted", "#d62728"),
    "V": ("solid", "#2ca02c"),
}
#: File types :func:`save_diagram` writes.
FORMATS = (".svg", ".png", ".pdf", ".dot")
#: How to get Graphviz's ``dot`` program, shown when it is missing.
GRAPHVIZ_HINT = (
    "install Graphviz to get pictures (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
    "graphviz; conda: conda install graphviz), or paste the .dot source into any Graphviz viewer"
)
#: Resolution of ``.png`` diagrams, in dots per inch (print quality).
PNG_DPI = 300
_PATH_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SOURCES = {EMBED: "W_E: tokens", POS_EMBED: "W_P: positions"}
_SPINE, _HEAD_EDGE, _SOURCE_EDGE = "#555555", "#bbbbbb", "#888888"
#: Composition edges listed with their scores in the legend, strongest first; the rest counted.
LEGEND_EDGES = 12


def escape_label(text: object, *, bold: str | None = None) -> str:
    """``text`` as a Graphviz HTML-like label: ``&``, ``<``, ``>``, quotes escaped, newlines kept.

    With ``bold``, that text comes first, in bold, on its own line.
    """
    lines = [html.escape(line) for line in str(text).split("\n")]
    if bold is not None:
        lines = [f"<B>{html.escape(bold)}</B>"] + ([] if lines == [""] else lines)
    return "<" + "<BR/>".join(lines) + ">"


def head_roles(model: AttnOnlyTransformer) -> dict[str, list[str]]:
    """Roles of heads recorded in ``model.metadata``, as ``{head name: [roles]}``.

    Read from ``metadata["roles"]`` and ``metadata["head_roles"]``, each mapping a head to a role
    or list of roles (``{"1.0": "induction"}``) or a role to a list of heads
    (``{"induction": ["1.0"]}``); underscores become spaces, and names of heads the model does not
    have are ignored.
    """
    found: dict[str, list[str]] = {}
    names = set(model.cfg.head_names())
    for key in ("roles", "head_roles"):
        entries = model.metadata.get(key)
        if not isinstance(entries, Mapping):
            continue
        for name, value in entries.items():
            values = _role_names(value) or []
            pairs = [(name, v) for v in values] if name in names else [(v, name) for v in values]
            for head, role in pairs:
                text = str(role).replace("_", " ")
                if head in names and text not in found.setdefault(head, []):
                    found[head].append(text)
    return found


def head_subspaces(model: AttnOnlyTransformer) -> dict[str, list[str]]:
    """For a hand-built model, what each head compares and moves: ``["QK tok · prev", "OV tok → out"]``.

    Read from ``model.metadata["heads"][name]["qk" | "ov"]["label"]``, as the models of
    :mod:`circuits.construct` record them; empty for other models.
    """
    heads = model.metadata.get("heads")
    found: dict[str, list[str]] = {}
    if not isinstance(heads, Mapping):
        return found
    for name in model.cfg.head_names():
        entry = heads.get(name)
        if isinstance(entry, Mapping):
            found[name] = [
                f"{kind.upper()} {entry[kind]['label']}"
                for kind in ("qk", "ov")
                if isinstance(entry.get(kind), Mapping) and "label" in entry[kind]
            ]
    return found


def _layout_caption(model: AttnOnlyTransformer) -> str | None:
    """``residual stream: tok ⊕ pos ⊕ prev ⊕ out`` from a hand-built model's recorded layout."""
    layout = model.metadata.get("layout")
    blocks = layout.get("blocks") if isinstance(layout, Mapping) else None
    if not isinstance(blocks, list):
        return None
    names = [f"{b['name']}" for b in blocks if isinstance(b, Mapping) and "name" in b]
    return "residual stream: " + " ⊕ ".join(names) if names else None


def circuit_diagram(
    model: AttnOnlyTransformer,
    *,
    composition: Mapping[str, Any] | bool | None = None,
    threshold: float | None = None,
    roles: Mapping[str, str | Sequence[str]] | None = None,
    highlight: Iterable[PathTerm | Sequence[str]] = (),
    title: str | None = None,
) -> graphviz.Digraph:
    """The model as a Graphviz graph: residual spine, embeddings, heads by layer, unembedding.

    ``composition`` maps a kind (``"Q"``, ``"K"``, ``"V"``) to scores ``[n_layers, n_heads,
    n_layers, n_heads]`` (entry ``[l₁, h₁, l₂, h₂]`` from writer ``l₁.h₁`` to reader ``l₂.h₂``, as
    ``circuits.analysis.all_composition_scores`` returns them, and computes them when
    ``composition=True``); each score ``≥ threshold`` (default: :func:`composition_threshold`)
    becomes an edge. ``roles`` (default: :func:`head_roles`) labels heads. Each path of
    ``highlight`` is a term of :func:`~circuits.paths.path_expansion` or a path of the computation graph as node
    names (``"embed"``, ``"pos_embed"``, ``"b_O[0]"``, heads ``"l.h"``, ``"unembed"``; see
    :mod:`circuits.graph`); heads alone run from ``embed`` to ``unembed``. Bias sources appear
    only when a highlighted path starts at one.

    Node names in the diagram (the ``<title>`` of each node in its SVG) are ``embed``,
    ``pos_embed``, ``resid 0`` … ``resid L``, the head names and ``unembed``.
    """
    known_roles = head_roles(model) if roles is None else _role_lists(model, roles)
    if not isinstance(highlight, Iterable):
        raise PathError(f"highlight: expected a collection of paths, got {highlight!r}")
    paths = [
        (_PATH_COLOURS[index % len(_PATH_COLOURS)], _path_nodes(model, path))
        for index, path in enumerate(highlight)
    ]
    edges = composition_edges(model, composition, threshold)
    graph = _skeleton(model, known_roles, paths)
    for kind, writer, reader, score in edges:
        style, colour = COMPOSITION_STYLES[kind]
        graph.edge(
            writer,
            reader,
            style=style,
            color=colour,
            penwidth=f"{1 + 5 * score:.2f}",
            tooltip=f"{kind}-composition {writer} → {reader}: {score:.3f}",
        )
    _legend(graph, model, edges, paths, None if title is None else str(title))
    return graph


def _line_cell(colour: str, style: str = "solid", width: float = 2) -> str:
    """A table cell drawn as a short horizontal line of this colour, style and width."""
    return (
        f'<TD WIDTH="34" HEIGHT="8" FIXEDSIZE="TRUE" SIDES="B" BORDER="{max(1, round(width))}" '
        f'COLOR="{colour}" STYLE="{style}"></TD>'
    )


def _legend(
    graph: graphviz.Digraph,
    model: AttnOnlyTransformer,
    edges: Sequence[tuple[str, str, str, float]],
    paths: Sequence[tuple[str, tuple[str, ...]]],
    title: str | None,
) -> None:
    """The graph's label, above the drawing: title, residual layout, and a legend naming every
    colour and line style drawn, with the composition scores (no edge carries a label)."""
    caption = [line for line in (title, _layout_caption(model)) if line]
    sizes = ["14" if line == title else "11" for line in caption]  # the title larger
    cells = [
        f'<TR><TD><FONT POINT-SIZE="{size}">{escape_label(line)[1:-1]}</FONT></TD></TR>'
        for size, line in zip(sizes, caption, strict=False)
    ]
    last = model.cfg.n_layers
    rows = [
        (_line_cell(_SPINE, width=2.5), f"residual stream x0 … x{last} between the layers"),
        (
            _line_cell(_HEAD_EDGE, width=1),
            "a head reads the stream below it, adds to the one above",
        ),
    ]
    if model.cfg.positional_embedding_type == "shortformer":
        rows.append(
            (_line_cell(_HEAD_EDGE, "dashed", 1), "shortformer positions: queries and keys only")
        )
    for kind in COMPOSITION_STYLES:
        if any(edge[0] == kind for edge in edges):
            style, colour = COMPOSITION_STYLES[kind]
            rows.append(
                (
                    _line_cell(colour, style, 3),
                    f"{kind}-composition, writer to reader, width 1 + 5·score",
                )
            )
    for colour, nodes in paths:
        rows.append((_line_cell(colour, width=3), "path " + " → ".join(nodes)))
    key = "".join(
        f'<TR>{cell}<TD ALIGN="LEFT">{html.escape(text)}</TD></TR>' for cell, text in rows
    )
    cells.append(
        f'<TR><TD><TABLE BORDER="0" CELLSPACING="1" CELLPADDING="1">{key}</TABLE></TD></TR>'
    )
    if edges:
        scores = []
        for kind, writer, reader, score in edges[:LEGEND_EDGES]:
            text = html.escape(f"{kind} {writer} → {reader} {score:.2f}")
            scores.append(f'<FONT COLOR="{COMPOSITION_STYLES[kind][1]}">{text}</FONT>')
        if len(edges) > LEGEND_EDGES:
            scores.append(f"… and {len(edges) - LEGEND_EDGES} more")
        lines = [", ".join(scores[i : i + 4]) for i in range(0, len(scores), 4)]
        cells.append("<TR><TD>composition scores: " + "<BR/>".join(lines) + "</TD></TR>")
    graph.attr(
        label='<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="1">'
        + "".join(cells)
        + "</TABLE>>",
        labelloc="t",
        fontsize="10",
    )


def _role_lists(
    model: AttnOnlyTransformer, roles: Mapping[str, str | Sequence[str]]
) -> dict[str, list[str]]:
    if not isinstance(roles, Mapping):
        raise RenderError(f"roles: expected a mapping of heads to roles, got {roles!r}")
    found = {}
    for head, role in roles.items():
        layer, index = model.cfg.resolve_head(head)
        names = _role_names(role)
        if names is None:
            raise RenderError(f"roles[{head!r}]: expected a role or a list of roles, got {role!r}")
        found[head_name(layer, index)] = names
    return found


def _role_names(value: object) -> list[str] | None:
    """A role or a list of roles as a list of strings; ``None`` for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _skeleton(
    model: AttnOnlyTransformer,
    roles: Mapping[str, list[str]],
    paths: Sequence[tuple[str, tuple[str, ...]]] = (),
) -> graphviz.Digraph:
    """The model's nodes and stream edges; each path of ``paths`` (colour, nodes) colours the edges
    it runs along (:func:`_route`) and its nodes, and adds the edges from its bias source.

    Every node is pinned (:func:`_positions`) and drawn by Graphviz's ``neato``, which routes each
    edge around the nodes: the spine is one straight vertical line at the left, each layer's heads
    a row to its right, in order.
    """
    cfg = model.cfg
    graph = graphviz.Digraph(name="circuit", engine="neato")
    graph.attr(layout="neato", splines="true", fontname="Helvetica")
    graph.attr("node", fontname="Helvetica", fontsize="11")
    graph.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.6")
    routes = [(colour, nodes, _route(model, nodes)) for colour, nodes in paths]
    subspaces = head_subspaces(model)
    labels = {
        head_name(layer, head): roles.get(head_name(layer, head), [])
        + subspaces.get(head_name(layer, head), [])
        for layer, head in cfg.heads()
    }
    bias = [node for _, nodes in paths for node in nodes if parse_node(node).part == "bias"]
    where = _positions(model, labels, list(dict.fromkeys(bias)))

    def node(name: str, label: str, **attrs: str) -> None:
        x, y = where[name]
        graph.node(name, label, pos=f"{x:.3f},{y:.3f}!", **attrs)

    def edge(start: str, end: str, **attrs: str) -> None:
        """A stream edge, in the colours of the paths that run along it."""
        on = [(colour, nodes) for colour, nodes, hops in routes if (start, end) in hops]
        if on:
            attrs["color"] = ":".join(colour for colour, _ in on)
            attrs["penwidth"] = "3"
            attrs["tooltip"] = "; ".join(" → ".join(nodes) for _, nodes in on)
        graph.edge(start, end, **attrs)

    box = {"shape": "box", "style": "rounded,filled", "fillcolor": "#eeeeee"}
    for source, label in _SOURCES.items():
        if source == EMBED or model.W_P is not None:
            node(source, escape_label(label, bold=source), **box)
    edge(EMBED, "resid 0", color=_SOURCE_EDGE)
    if cfg.positional_embedding_type == "standard":
        edge(POS_EMBED, "resid 0", color=_SOURCE_EDGE)
    for layer in range(cfg.n_layers + 1):
        node(
            f"resid {layer}", escape_label(f"x{layer}"), shape="circle", width="0.35",
            fixedsize="true", fontsize="9", color=_SPINE,
        )  # fmt: skip
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            name = head_name(layer, head)
            label = escape_label("\n".join(labels[name]), bold=name)
            node(name, label, shape="box", style="rounded", color="#333333")
        edge(f"resid {layer}", f"resid {layer + 1}", color=_SPINE, penwidth="2.5")
        for head in range(cfg.n_heads):
            name = head_name(layer, head)
            edge(f"resid {layer}", name, color=_HEAD_EDGE, arrowhead="none")
            edge(name, f"resid {layer + 1}", color=_HEAD_EDGE)
            if cfg.positional_embedding_type == "shortformer":
                edge(POS_EMBED, name, color=_HEAD_EDGE, style="dashed",
                     tooltip="shortformer positions: queries and keys only")  # fmt: skip
    node(UNEMBED, escape_label("W_U: logits", bold=UNEMBED), **box)
    edge(f"resid {cfg.n_layers}", UNEMBED, color=_SOURCE_EDGE)
    for colour, nodes, hops in routes:
        _highlight(graph, nodes, hops, colour)
        for name in nodes:
            if name in bias:
                x, y = where[name]
                graph.node(name, pos=f"{x:.3f},{y:.3f}!")
    return graph


def _text_size(lines: Sequence[str]) -> tuple[float, float]:
    """About how wide and tall (inches) a box with these lines of 11-point text is drawn."""
    widest = max((len(line) for line in lines), default=0)
    return max(0.75, 0.3 + 0.085 * widest), max(0.5, 0.2 + 0.19 * len(lines))  # Graphviz's least


def _positions(
    model: AttnOnlyTransformer, labels: Mapping[str, list[str]], bias: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Where each node is pinned, in inches: the spine ``resid l`` at x = 0, the heads of layer l
    in a row halfway between ``resid l`` and ``resid l+1``, columns as wide as their widest head;
    sources below, ``unembed`` on top, bias sources to the left of the spine."""
    cfg = model.cfg
    sizes = {name: _text_size([name, *lines]) for name, lines in labels.items()}
    widths = [
        max((sizes[head_name(layer, head)][0] for layer in range(cfg.n_layers)), default=0.6)
        for head in range(cfg.n_heads)
    ]
    half = max([0.8, *(height / 2 + 0.45 for _, height in sizes.values())])
    where: dict[str, tuple[float, float]] = {}
    x = 0.45
    for head, width in enumerate(widths):
        for layer in range(cfg.n_layers):
            where[head_name(layer, head)] = (x + width / 2, (2 * layer + 1) * half)
        x += width + 0.25
    for layer in range(cfg.n_layers + 1):
        where[f"resid {layer}"] = (0.0, 2 * layer * half)
    where[EMBED] = (0.0, -0.9)
    where[POS_EMBED] = (1.6, -0.9)
    where[UNEMBED] = (0.0, 2 * cfg.n_layers * half + 0.9)
    for index, name in enumerate(bias):
        owner = parse_node(name).layer
        y = where[UNEMBED][1] if owner is None else (2 * owner + 1) * half
        where[name] = (-1.5, y - 0.5 * index)
    return where


#: The default composition threshold, as a multiple of :func:`~circuits.composition_baseline`.
THRESHOLD_OVER_BASELINE = 1.5


def composition_threshold(model: AttnOnlyTransformer, threshold: float | None = None) -> float:
    r"""``threshold``, checked; by default :math:`1.5 / \sqrt{d_\text{model}}`.

    The default is 1.5 × :func:`~circuits.composition_baseline`, the root-mean-square score of
    two unrelated heads: a perfect composition through ``r`` dimensions scores only about
    :math:`1/\sqrt{r}`, so a fixed threshold would hide real composition in wide models.
    """
    if threshold is None:
        return THRESHOLD_OVER_BASELINE * composition_baseline(model)
    if not (is_real(threshold) and math.isfinite(threshold)):
        raise RenderError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def composition_edges(
    model: AttnOnlyTransformer,
    composition: Mapping[str, Any] | bool | None,
    threshold: float | None = None,
) -> list[tuple[str, str, str, float]]:
    """``(kind, writer, reader, score)`` for every defined score ``≥ threshold``, strongest first.

    ``composition`` maps kinds to ``[n_layers, n_heads, n_layers, n_heads]`` scores (entry
    ``[l₁, h₁, l₂, h₂]`` from writer ``l₁.h₁`` to reader ``l₂.h₂``, defined for ``l₁ < l₂``);
    ``True`` computes all three kinds with :func:`~circuits.analysis.all_composition_scores`.
    ``threshold`` defaults to :func:`composition_threshold`.
    """
    threshold = composition_threshold(model, threshold)
    if composition is True:
        composition = all_composition_scores(model)
    if not composition:
        return []
    if not isinstance(composition, Mapping):
        raise RenderError(
            "composition must map kinds ('Q', 'K', 'V') to scores [n_layers, n_heads, n_layers, "
            f"n_heads], or be True; got {type(composition).__name__}"
        )
    cfg = model.cfg
    shape = (cfg.n_layers, cfg.n_heads, cfg.n_layers, cfg.n_heads)
    edges = []
    for kind, values in composition.items():
        if kind not in COMPOSITION_STYLES:
            raise RenderError(f"unknown composition kind {kind!r}; expected one of Q, K, V")
        scores = as_real_array(values, f"composition[{kind!r}]", finite=False, copy=False)
        if scores.shape != shape:
            raise RenderError(
                f"composition[{kind!r}]: expected scores of shape {list(shape)}, "
                f"got {list(scores.shape)}"
            )
        for l1, h1, l2, h2 in zip(*np.nonzero(scores >= threshold), strict=True):
            if l1 < l2:
                score = float(scores[l1, h1, l2, h2])
                edges.append((kind, head_name(l1, h1), head_name(l2, h2), score))
    return sorted(edges, key=lambda edge: -edge[3])


def _path_nodes(model: AttnOnlyTransformer, path: PathTerm | Sequence[str]) -> tuple[str, ...]:
    """The nodes of a path of the computation graph, checked against the model.

    Heads alone are completed to ``embed → … → unembed``; a missing final ``unembed`` is added.
    """
    if isinstance(path, PathTerm):
        return path.path
    if isinstance(path, str) or not isinstance(path, Sequence) or not path:
        raise PathError(f"a path is a non-empty sequence of node names, got {path!r}")
    nodes = tuple(path)
    if parse_node(nodes[0]).role != "source":
        nodes = (EMBED, *nodes)
    return path_expansion(model, biases="all").term(*nodes).path


def _highlight(
    graph: graphviz.Digraph, nodes: Sequence[str], hops: Sequence[tuple[str, str]], colour: str
) -> None:
    """Colour a path's nodes, and draw the hops from a bias source that the skeleton lacks."""
    for node in nodes:
        bias = parse_node(node).part == "bias"  # bias sources are drawn only when on a path
        extra = {"label": escape_label(f"bias {node}"), "shape": "box"} if bias else {}
        graph.node(
            node, style="rounded,filled,bold", fillcolor=colour + "33", color=colour, **extra
        )
    tooltip = " → ".join(nodes)
    for start, end in hops:
        if not start.startswith("resid") and parse_node(start).part == "bias":
            graph.edge(start, end, color=colour, penwidth="3", tooltip=tooltip)


def _route(model: AttnOnlyTransformer, nodes: Sequence[str]) -> list[tuple[str, str]]:
    """The edges of the diagram a path runs along: from its source into the stream, up the spine
    to each head it passes through, from that head into the stream above, and on to ``unembed``.

    ``embed`` (and standard ``pos_embed``) enter at ``resid 0``, the biases ``b_O[l]`` and
    ``b_V[l.h]`` at ``resid l+1``; any other source (shortformer positions, ``b_U``) goes straight
    to the path's next node.
    """
    cfg = model.cfg
    first = parse_node(nodes[0])
    hops: list[tuple[str, str]] = []
    level: int | None = None
    if nodes[0] == EMBED or (nodes[0] == POS_EMBED and cfg.positional_embedding_type == "standard"):
        level = 0
    elif first.weight in ("b_O", "b_V") and first.layer is not None:
        level = first.layer + 1
    if level is not None:
        hops.append((nodes[0], f"resid {level}"))
    previous = nodes[0]
    for node in nodes[1:]:
        info = parse_node(node)
        target = cfg.n_layers if node == UNEMBED else info.layer
        if level is None or target is None:
            hops.append((previous, node))
        else:
            hops += [(f"resid {a}", f"resid {a + 1}") for a in range(level, target)]
            hops.append((f"resid {target}", node))
        if info.role == "head" and info.layer is not None:
            hops.append((node, f"resid {info.layer + 1}"))
            level = info.layer + 1
        previous = node
    return hops


# ---------------------------------------------------------------------- output
@dataclass(frozen=True)
class Saved:
    """Where :func:`save_diagram` wrote; ``note`` is set when it fell back to ``.dot`` source."""

    path: Path
    note: str | None = None


def save_diagram(graph: graphviz.Digraph, path: str | Path) -> Saved:
    """Write ``graph`` to ``path`` as ``.svg``, ``.png`` (at :data:`PNG_DPI`), ``.pdf`` or ``.dot``
    (chosen by suffix).

    Without Graphviz's ``dot`` program, writes the ``.dot`` source next to ``path`` instead and
    returns a note saying so and how to install Graphviz.
    """
    if not isinstance(graph, graphviz.Digraph):
        raise RenderError(
            f"expected a diagram (graphviz.Digraph, e.g. circuit_diagram(model)), "
            f"got {type(graph).__name__}"
        )
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise RenderError(f"{target}: unknown diagram type {suffix!r}; expected one of {FORMATS}")
    if suffix != ".dot":
        drawn = graph
        if suffix == ".png":
            drawn = graph.copy()
            drawn.attr(dpi=str(PNG_DPI))
        try:
            data = drawn.pipe(format=suffix[1:])
        except graphviz.ExecutableNotFound:
            fallback = target.with_suffix(".dot")
            _write(fallback, graph.source.encode())
            return Saved(
                fallback, f"Graphviz's dot was not found: wrote {fallback}; {GRAPHVIZ_HINT}"
            )
        _write(target, data)
        return Saved(target)
    _write(target, graph.source.encode())
    return Saved(target)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise RenderError(f"{path}: cannot write ({error.strerror or error})") from None


def model_svg(model: AttnOnlyTransformer) -> str | None:
    """The :func:`circuit_diagram` of ``model`` as SVG text (a model's notebook display)."""
    return to_svg(circuit_diagram(model))


def to_svg(graph: graphviz.Digraph) -> str | None:
    """The SVG text of ``graph``, or ``None`` without Graphviz's ``dot`` (for notebook display)."""
    try:
        svg: str = graph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        return None
    return svg
