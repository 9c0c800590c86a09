r"""Graphviz diagrams of attention-only transformers and their circuits.

:func:`circuit_diagram` draws a model the way the Framework does: the residual stream as a spine
from the embeddings (bottom) to the unembedding (top), each layer's heads beside it, reading from
the stream below and writing to the stream above. On top of that it draws

* composition edges from a head to a head of a later layer, styled by kind (Q dashed blue,
  K dotted red, V solid green) with width ``1 + 5·score`` for every score at or above a threshold
  (by default 1.5 × the score of two unrelated heads, :func:`composition_threshold`);
* highlighted paths (a term of the path expansion, a circuit) as coloured chains of nodes;
* head roles (``previous-token``, ``induction``) from the model's metadata or given explicitly;
* for hand-built models (:mod:`circuits.construct`), the subspaces each head compares and moves
  (``QK tok · prev``, ``OV tok → out``) and the residual layout (``tok ⊕ pos ⊕ prev ⊕ out``).

Every label is escaped (drawn as a Graphviz HTML-like label), so names with quotes, ``<``, ``&``
or newlines render as written. :func:`save_diagram` writes ``.svg``, ``.png``, ``.pdf`` or
``.dot``; without Graphviz's ``dot`` program it writes the ``.dot`` source instead and says how to
install Graphviz.
"""

from __future__ import annotations

import html
import itertools
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
_PATH_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SOURCES = {EMBED: "tokens W_E", POS_EMBED: "positions W_P"}


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
    graph = _skeleton(model, known_roles, None if title is None else str(title))
    for kind, writer, reader, score in composition_edges(model, composition, threshold):
        style, colour = COMPOSITION_STYLES[kind]
        graph.edge(
            writer,
            reader,
            label=escape_label(f"{kind} {score:.2f}"),
            style=style,
            color=colour,
            fontcolor=colour,
            penwidth=f"{1 + 5 * score:.2f}",
            constraint="false",
            tooltip=f"{kind}-composition {writer} → {reader}: {score:.3f}",
        )
    if not isinstance(highlight, Iterable):
        raise PathError(f"highlight: expected a collection of paths, got {highlight!r}")
    for index, path in enumerate(highlight):
        _highlight(graph, model, path, _PATH_COLOURS[index % len(_PATH_COLOURS)])
    return graph


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
    model: AttnOnlyTransformer, roles: Mapping[str, list[str]], title: str | None
) -> graphviz.Digraph:
    cfg = model.cfg
    graph = graphviz.Digraph(name="circuit")
    graph.attr(rankdir="BT", nodesep="0.35", ranksep="0.45", fontname="Helvetica")
    graph.attr("node", fontname="Helvetica", fontsize="11")
    graph.attr("edge", fontname="Helvetica", fontsize="9", arrowsize="0.6")
    caption = [line for line in (title, _layout_caption(model)) if line]
    if caption:
        graph.attr(label=escape_label("\n".join(caption)), labelloc="t", fontsize="14")
    subspaces = head_subspaces(model)
    box = {"shape": "box", "style": "rounded,filled", "fillcolor": "#eeeeee"}
    for source, label in _SOURCES.items():
        if source == EMBED or model.W_P is not None:
            graph.node(source, escape_label(label), **box)
    graph.edge(EMBED, "resid 0", color="#888888")
    if cfg.positional_embedding_type == "standard":
        graph.edge(POS_EMBED, "resid 0", color="#888888")
    for layer in range(cfg.n_layers + 1):
        graph.node(
            f"resid {layer}", escape_label(f"x{layer}"), shape="circle", width="0.35",
            fixedsize="true", fontsize="9", color="#555555",
        )  # fmt: skip
    for layer in range(cfg.n_layers):
        with graph.subgraph(name=f"layer {layer}") as rank:
            rank.attr(rank="same")
            for head in range(cfg.n_heads):
                name = head_name(layer, head)
                lines = roles.get(name, []) + subspaces.get(name, [])
                label = escape_label("\n".join(lines), bold=name)
                rank.node(name, label, shape="box", style="rounded", color="#333333")
        graph.edge(f"resid {layer}", f"resid {layer + 1}", color="#555555", penwidth="2.5")
        for head in range(cfg.n_heads):
            name = head_name(layer, head)
            graph.edge(f"resid {layer}", name, color="#bbbbbb", arrowhead="none")
            graph.edge(name, f"resid {layer + 1}", color="#bbbbbb")
            if cfg.positional_embedding_type == "shortformer":
                graph.edge(POS_EMBED, name, color="#bbbbbb", style="dashed", constraint="false",
                           tooltip="shortformer positions: queries and keys only")  # fmt: skip
    graph.node(UNEMBED, escape_label("logits W_U"), **box)
    graph.edge(f"resid {cfg.n_layers}", UNEMBED, color="#888888")
    return graph


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
    graph: graphviz.Digraph,
    model: AttnOnlyTransformer,
    path: PathTerm | Sequence[str],
    colour: str,
) -> None:
    nodes = _path_nodes(model, path)
    tooltip = " → ".join(nodes)
    for node in nodes:
        bias = parse_node(node).part == "bias"  # bias sources are drawn only when on a path
        extra = {"label": escape_label(f"bias {node}"), "shape": "box"} if bias else {}
        graph.node(
            node, style="rounded,filled,bold", fillcolor=colour + "33", color=colour, **extra
        )
    for start, end in itertools.pairwise(nodes):
        graph.edge(start, end, color=colour, penwidth="3", constraint="false", tooltip=tooltip)


# ---------------------------------------------------------------------- output
@dataclass(frozen=True)
class Saved:
    """Where :func:`save_diagram` wrote; ``note`` is set when it fell back to ``.dot`` source."""

    path: Path
    note: str | None = None


def save_diagram(graph: graphviz.Digraph, path: str | Path) -> Saved:
    """Write ``graph`` to ``path`` as ``.svg``, ``.png``, ``.pdf`` or ``.dot`` (chosen by suffix).

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
        try:
            data = graph.pipe(format=suffix[1:])
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
