"""Diagrams: valid SVG whose nodes and edges carry the expected names, escaping, the .dot fallback."""

from __future__ import annotations

import itertools
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import graphviz
import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, HeadError, all_composition_scores, render
from circuits import testing as ct
from circuits.construct.induction import induction_model
from circuits.errors import PathError, RenderError
from circuits.paths import path_expansion
from circuits.verify import certify_induction

SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")
CFG = {"n_layers": 2, "n_heads": 3, "d_model": 6, "d_head": 2, "d_vocab": 5, "n_ctx": 4}


def svg_titles(svg: str, kind: str) -> list[str]:
    """The <title> of every node or edge group of an SVG written by dot (parsing proves validity)."""
    root = ET.fromstring(svg)
    return [
        "".join(group.find(f"{SVG}title").itertext())  # type: ignore[union-attr]
        for group in root.iter(f"{SVG}g")
        if group.get("class") == kind
    ]


def svg_text(svg: str) -> str:
    return "\n".join("".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text"))


def random_model(**changes: object) -> AttnOnlyTransformer:
    return AttnOnlyTransformer.random({**CFG, **changes})  # type: ignore[arg-type]


@needs_dot
@given(ct.models(ct.configs(n_layers=(0, 3), n_heads=(1, 3))))
@settings(max_examples=10)
def test_nodes_are_named_after_the_model(model: AttnOnlyTransformer) -> None:
    svg = render.to_svg(render.circuit_diagram(model))
    assert svg is not None
    L = model.cfg.n_layers
    expected = {
        "embed",
        "unembed",
        *model.cfg.head_names(),
        *(f"resid {layer}" for layer in range(L + 1)),
    }
    if model.W_P is not None:
        expected.add("pos_embed")
    assert set(svg_titles(svg, "node")) == expected
    edges = set(svg_titles(svg, "edge"))
    for layer, head in model.cfg.heads():
        assert {f"resid {layer}->{layer}.{head}", f"{layer}.{head}->resid {layer + 1}"} <= edges
    assert ("pos_embed->resid 0" in edges) == (model.cfg.positional_embedding_type == "standard")


@needs_dot
def test_roles_from_metadata_and_arguments_are_shown() -> None:
    model = random_model().replace(
        metadata={"head_roles": {"previous_token": ["0.1"], "induction": ["1.2", "7.7"]}}
    )
    assert render.head_roles(model) == {"0.1": ["previous token"], "1.2": ["induction"]}
    text = svg_text(render.to_svg(render.circuit_diagram(model)) or "")
    assert "previous token" in text and "induction" in text
    given_roles = render.circuit_diagram(model, roles={"1.0": ["copy", "name mover"]})
    text = svg_text(render.to_svg(given_roles) or "")
    assert "name mover" in text and "induction" not in text
    with pytest.raises(HeadError):
        render.circuit_diagram(model, roles={"5.0": "nowhere"})
    flipped = model.replace(
        metadata={
            "roles": {"0.0": "duplicate-token", "1.1": ["a", "b"]},
            "head_roles": {"b": ["1.1"]},
        }
    )
    assert render.head_roles(flipped) == {"0.0": ["duplicate-token"], "1.1": ["a", "b"]}


LABEL_CHARS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from("\n\"'<>&\\{}|"),
    min_size=1,
    max_size=12,
)


EVERY_SPECIAL = "a<b>&c\"d'e\nf &amp; &lt;"  # under every profile, not only when drawn


@given(LABEL_CHARS, st.none() | LABEL_CHARS)
@example(EVERY_SPECIAL, None)
@example(EVERY_SPECIAL, EVERY_SPECIAL)
def test_escaped_labels_read_back_as_written(text: str, bold: str | None) -> None:
    """An escaped label is well-formed markup whose text is exactly the input: nothing left raw,
    nothing escaped twice, newlines as line breaks."""
    label = render.escape_label(text, bold=bold)
    assert label.startswith("<") and label.endswith(">")
    segments = label[1:-1].split("<BR/>")  # an escaped text holds no "<", so no "<BR/>"
    parsed = [ET.fromstring(f"<line>{segment}</line>") for segment in segments]  # every & an entity
    if bold is not None:
        assert [child.tag for child in parsed[0]] == ["B"] and not parsed[0].text
    for segment in segments:
        raw = segment.removeprefix("<B>").removesuffix("</B>") if bold is not None else segment
        assert not set("<>\"'") & set(raw), (segment, label)
    lines = ["".join(element.itertext()) for element in parsed]
    expected = [] if bold is None else [bold]
    assert lines == expected + ([] if bold is not None and text == "" else text.split("\n"))


@needs_dot
@given(LABEL_CHARS, LABEL_CHARS)
@example(EVERY_SPECIAL, EVERY_SPECIAL)
@settings(max_examples=15)
def test_labels_with_special_characters_render_as_written(role: str, title: str) -> None:
    svg = render.to_svg(render.circuit_diagram(random_model(), roles={"1.1": role}, title=title))
    assert svg is not None
    text = svg_text(svg)
    for written in (role, title):
        for line in written.split("\n"):
            assert line.strip() in text


def scores_with(entries: dict[tuple[int, int, int, int], float]) -> np.ndarray:
    scores = np.full((2, 3, 2, 3), np.nan)
    scores[0, :, 1, :] = 0.05
    for index, value in entries.items():
        scores[index] = value
    return scores


@needs_dot
def test_composition_edges_above_threshold_styled_by_kind() -> None:
    composition = {
        "K": scores_with({(0, 1, 1, 2): 0.9, (0, 0, 1, 0): 0.3}),
        "Q": scores_with({(0, 2, 1, 1): 0.5}),
        "V": scores_with({}),
    }
    graph = render.circuit_diagram(random_model(), composition=composition, threshold=0.4)
    svg = render.to_svg(graph) or ""
    head_edges = [e for e in svg_titles(svg, "edge") if not ("W_" in e or "resid" in e)]
    assert sorted(head_edges) == ["0.1->1.2", "0.2->1.1"]
    assert "style=dotted" in graph.source and "penwidth=5.50" in graph.source  # K, 1 + 5·0.9
    assert "style=dashed" in graph.source and "penwidth=3.50" in graph.source  # Q, 1 + 5·0.5
    low = render.circuit_diagram(random_model(), composition=composition, threshold=0.0)
    low_edges = [e for e in svg_titles(render.to_svg(low) or "", "edge") if "W_" not in e]
    assert len([e for e in low_edges if "resid" not in e]) == 3 * 9  # NaN pairs never drawn


def test_composition_true_computes_the_scores() -> None:
    model = induction_model(vocab_size=6, n_ctx=8)
    expected = render.composition_edges(model, all_composition_scores(model), 0.2)
    assert render.composition_edges(model, True, 0.2) == expected
    assert [edge[:3] for edge in expected] == [("K", "0.0", "1.0")]
    source = render.circuit_diagram(model, composition=True, threshold=0.2).source
    assert "style=dotted" in source  # the K-composition edge


@given(st.data())
@settings(max_examples=15)
def test_composition_edges_are_exactly_the_scores_above_threshold(data: st.DataObject) -> None:
    model = random_model()
    values = st.floats(0, 1) | st.just(float("nan"))
    arrays = {
        kind: np.array(data.draw(st.lists(values, min_size=36, max_size=36))).reshape(2, 3, 2, 3)
        for kind in data.draw(st.sets(st.sampled_from("QKV"), min_size=1))
    }
    threshold = data.draw(st.floats(0, 1))
    source = render.circuit_diagram(model, composition=arrays, threshold=threshold).source
    expected = sum(
        1
        for scores in arrays.values()
        for l1, l2 in [(0, 1)]
        for h1 in range(3)
        for h2 in range(3)
        if scores[l1, h1, l2, h2] >= threshold
    )
    assert source.count("-composition ") == expected


EDGE_LINE = re.compile(r'^\s*("[^"]*"|\S+) -> ("[^"]*"|\S+) \[(.*)\]$')


def edges_along(graph: graphviz.Digraph, path: str) -> set[tuple[str, str]]:
    """The edges of a diagram whose tooltip names ``path`` (a highlighted path runs along them)."""
    found = set()
    for line in graph.source.splitlines():
        match = EDGE_LINE.match(line)
        if match and (f'tooltip="{path}' in match.group(3) or f"; {path}" in match.group(3)):
            found.add((match.group(1).strip('"'), match.group(2).strip('"')))
    return found


def chain(*nodes: str) -> set[tuple[str, str]]:
    return set(itertools.pairwise(nodes))


@needs_dot
def test_highlighted_paths_run_along_the_residual_stream() -> None:
    """From the source into the stream, up the spine to each head, out of it, on to unembed."""
    graph = render.circuit_diagram(random_model(), highlight=[["0.1", "1.2"], ["pos_embed", "1.0"]])
    first = chain("embed", "resid 0", "0.1", "resid 1", "1.2", "resid 2", "unembed")
    second = chain("pos_embed", "resid 0", "resid 1", "1.0", "resid 2", "unembed")
    assert edges_along(graph, "embed → 0.1 → 1.2 → unembed") == first
    assert edges_along(graph, "pos_embed → 1.0 → unembed") == second
    edges = svg_titles(render.to_svg(graph) or "", "edge")
    assert all(edges.count(f"{a}->{b}") == 1 for a, b in first | second)  # coloured, not doubled
    assert "#ff7f0e:#9467bd" in graph.source  # resid 2 → unembed carries both paths' colours
    text = svg_text(render.to_svg(graph) or "")
    assert "path embed → 0.1 → 1.2 → unembed" in text  # named in the legend


@needs_dot
def test_terms_and_bias_paths_can_be_highlighted() -> None:
    model = random_model()
    term = path_expansion(model).term("pos_embed", "0.2", "1.1")
    graph = render.circuit_diagram(model, highlight=[term, ["b_V[0.1]", "1.0"], ["b_U"]])
    assert edges_along(graph, "pos_embed → 0.2 → 1.1 → unembed") == chain(
        "pos_embed", "resid 0", "0.2", "resid 1", "1.1", "resid 2", "unembed"
    )
    assert edges_along(graph, "b_V[0.1] → 1.0 → unembed") == chain(
        "b_V[0.1]", "resid 1", "1.0", "resid 2", "unembed"
    )
    assert edges_along(graph, "b_U → unembed") == {("b_U", "unembed")}
    svg = render.to_svg(graph) or ""
    assert {"b_V[0.1]", "b_U"} <= set(svg_titles(svg, "node"))
    assert "bias b_V[0.1]" in svg_text(svg)
    assert "b_O[0]" not in svg_titles(render.to_svg(render.circuit_diagram(model)) or "", "node")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (["1.0", "0.1"], r"embed → 1\.0 → 0\.1 → unembed is not a path"),
        (["0.1", "0.2"], "is not a path"),
        (["embed", "9.9", "unembed"], "is not a path"),
        (["embed", "W_X"], "is not a path"),
        ("0.1", "non-empty sequence"),
        ([], "non-empty sequence"),
    ],
)
def test_bad_paths_are_rejected(path: list[str], message: str) -> None:
    with pytest.raises(PathError, match=message):
        render.circuit_diagram(random_model(), highlight=[path])


def test_paths_from_missing_positions_are_rejected() -> None:
    model = random_model(positional_embedding_type="none")
    with pytest.raises(PathError, match=r"pos_embed → 0\.0 → unembed is not a path"):
        render.circuit_diagram(model, highlight=[["pos_embed", "0.0"]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": float("nan")}, "threshold"),
        ({"composition": {"X": np.zeros((2, 3, 2, 3))}}, "unknown composition kind 'X'"),
        ({"composition": {"K": np.zeros((2, 3))}}, r"expected scores of shape \[2, 3, 2, 3\]"),
        ({"composition": "all"}, "composition must map kinds"),
    ],
)
def test_bad_options_get_a_render_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render.circuit_diagram(random_model(), **kwargs)  # type: ignore[arg-type]


@needs_dot
@pytest.mark.parametrize(
    ("suffix", "magic"),
    [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF"), (".dot", b"digraph")],
)
def test_save_diagram_writes_each_format(tmp_path: Path, suffix: str, magic: bytes) -> None:
    saved = render.save_diagram(render.circuit_diagram(random_model()), tmp_path / f"m{suffix}")
    assert saved.note is None and saved.path == tmp_path / f"m{suffix}"
    assert saved.path.read_bytes().startswith(magic)


def test_missing_dot_falls_back_to_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on an empty PATH
    graph = render.circuit_diagram(random_model())
    saved = render.save_diagram(graph, tmp_path / "model.svg")
    assert saved.path == tmp_path / "model.dot" and not (tmp_path / "model.svg").exists()
    assert saved.path.read_text() == graph.source
    assert saved.note is not None and "apt-get install graphviz" in saved.note
    assert render.to_svg(graph) is None


def test_save_diagram_errors(tmp_path: Path) -> None:
    graph = render.circuit_diagram(random_model())
    with pytest.raises(RenderError, match=r"unknown diagram type '\.jpg'"):
        render.save_diagram(graph, tmp_path / "m.jpg")
    with pytest.raises(RenderError, match="cannot write"):
        render.save_diagram(graph, tmp_path / "missing" / "m.dot")


@needs_dot
@pytest.mark.parametrize(
    ("mechanism", "labels"),
    [
        ("K", {"0.0": ["QK pos · pos", "OV tok → prev"], "1.0": ["QK tok · prev", "OV tok → out"]}),
        (
            "Q",
            {
                "0.0": ["QK tok+pos · tok+pos", "OV pos → ptr"],
                "1.0": ["QK ptr · pos", "OV tok → out"],
            },
        ),
    ],
)
def test_hand_built_circuits_show_their_subspaces(
    mechanism: str, labels: dict[str, list[str]]
) -> None:
    model = induction_model(vocab_size=5, n_ctx=6, mechanism=mechanism)  # type: ignore[arg-type]
    assert render.head_subspaces(model) == labels
    text = svg_text(render.to_svg(render.circuit_diagram(model)) or "")
    assert "induction" in text and "OV tok → out" in text
    layout = " ⊕ ".join(b["name"] for b in model.metadata["layout"]["blocks"])
    assert f"residual stream: {layout}" in text
    assert render.head_subspaces(random_model()) == {}


@needs_dot
def test_models_certificates_and_terms_show_themselves_in_notebooks() -> None:
    model = induction_model(vocab_size=5, n_ctx=6)
    svg = model._repr_svg_()
    assert svg is not None and {"0.0", "1.0", "embed"} <= set(svg_titles(svg, "node"))
    certificate = certify_induction(model)
    latex = certificate._repr_latex_()
    assert latex.startswith(r"$P(\text{correct}) \ge ") and latex.endswith(
        f"{certificate.bound:.12g}$"
    )
    assert sp.latex(certificate.expression) in latex
    term = path_expansion(model).term("embed", "1.0")
    assert "W_{OV}" in term._repr_latex_()


def test_notebook_svg_is_none_without_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert random_model()._repr_svg_() is None


@needs_dot
def test_a_large_model_has_a_straight_spine_a_legend_and_no_edge_labels(tmp_path: Path) -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 4, "n_heads": 8, "d_model": 24, "d_head": 3, "d_vocab": 9, "n_ctx": 6}, seed=0
    )
    graph = render.circuit_diagram(model, composition=True, highlight=[["0.3", "2.5"]])
    svg = render.to_svg(graph) or ""
    root = ET.fromstring(svg)
    spine_x, names = set(), set()
    for group in root.iter(f"{SVG}g"):
        if group.get("class") not in ("node", "edge"):
            continue
        title = "".join(group.find(f"{SVG}title").itertext())  # type: ignore[union-attr]
        if group.get("class") == "node":
            names.add(title)
            if title.startswith("resid"):
                spine_x.add(round(float(group.find(f"{SVG}ellipse").get("cx")), 1))  # type: ignore[union-attr, arg-type]
        if group.get("class") == "edge":
            assert next(group.iter(f"{SVG}text"), None) is None, f"edge {title} has a label"
    assert len(spine_x) == 1  # x0 … x4 on one vertical line
    assert {"embed", "pos_embed", "unembed"} <= names
    text = svg_text(svg)
    kinds = {edge[0] for edge in render.composition_edges(model, True)}
    assert kinds  # this model composes at the default threshold
    for kind in render.COMPOSITION_STYLES:
        assert (f"{kind}-composition, writer to reader" in text) == (kind in kinds)
    assert "residual stream x0 … x4" in text and "a head reads the stream" in text
    assert "path embed → 0.3 → 2.5 → unembed" in text and "composition scores:" in text
    # the PNG is drawn at print resolution: PNG_DPI pixels for each inch (72 points) of the SVG
    png = render.save_diagram(graph, tmp_path / "m.png").path.read_bytes()
    width = int.from_bytes(png[16:20], "big")
    points = float(root.get("width", "0").removesuffix("pt"))
    assert render.PNG_DPI == 300 and width == pytest.approx(points * 300 / 72, rel=0.02)
