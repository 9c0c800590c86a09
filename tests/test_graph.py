"""The computation graph: nodes, attributes, edges, and the listing and counting of its paths."""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, PathError, computation_graph, count_paths, iter_paths
from circuits import testing as ct
from circuits.errors import ConfigError
from circuits.graph import bias_node, head_set, order_set, parse_node, source_nodes


def small_model(positions: str = "standard", *, layers: int = 2, heads: int = 2, biases: bool = False,
                seed: int = 0) -> AttnOnlyTransformer:  # fmt: skip
    cfg = {"n_layers": layers, "n_heads": heads, "d_model": 6, "d_head": 2, "d_vocab": 5,
           "n_ctx": 4, "positional_embedding_type": positions}  # fmt: skip
    return AttnOnlyTransformer.random(cfg, seed=seed, biases=biases)


def ov_subgraph(graph: nx.DiGraph) -> nx.DiGraph:
    """The edges a signal can travel to the logits: into a head's V input, or into the sink."""
    keep = [(u, v) for u, v, d in graph.edges(data=True) if {"V", "U"} & set(d["inputs"])]
    return graph.edge_subgraph(keep).copy()


def written_at(node: str) -> int:
    """The layer after which a node writes to the stream (-1 for the embeddings)."""
    layer = parse_node(node).layer
    return -1 if layer is None else layer


# ---------------------------------------------------------------------------------- nodes and edges
def test_nodes_of_a_model_without_biases() -> None:
    graph = computation_graph(small_model())
    assert set(graph) == {"embed", "pos_embed", "0.0", "0.1", "1.0", "1.1", "unembed"}
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.graph["n_layers"] == 2 and graph.graph["n_heads"] == 2


def test_bias_policies() -> None:
    model = small_model(biases=True)
    nonzero = computation_graph(model)
    expected_biases = {
        f"{w}[{layer}.{h}]" for w in ("b_Q", "b_K", "b_V") for layer in (0, 1) for h in (0, 1)
    }
    expected_biases |= {"b_O[0]", "b_O[1]", "b_U"}
    assert {n for n, d in nonzero.nodes(data=True) if d.get("part") == "bias"} == expected_biases
    assert set(computation_graph(model, biases="none")) == set(computation_graph(small_model()))
    zero_bias = model.replace(b_V=np.zeros_like(model.b_V))
    assert not any(n.startswith("b_V") for n in computation_graph(zero_bias))
    assert any(n.startswith("b_V") for n in computation_graph(zero_bias, biases="all"))
    with pytest.raises(ConfigError, match="biases"):
        computation_graph(model, biases="some")  # type: ignore[arg-type]


def test_node_attributes_carry_the_model_weights() -> None:
    model = small_model(biases=True)
    graph = computation_graph(model)
    for layer, head in model.cfg.heads():
        data = graph.nodes[f"{layer}.{head}"]
        assert (data["role"], data["layer"], data["head"]) == ("head", layer, head)
        np.testing.assert_array_equal(
            data["W_QK"].AB, model.W_Q[layer, head].T @ model.W_K[layer, head]
        )
        np.testing.assert_array_equal(
            data["W_OV"].AB, model.W_O[layer, head] @ model.W_V[layer, head]
        )
        bias = graph.nodes[f"b_V[{layer}.{head}]"]
        assert bias["owner"] == f"{layer}.{head}" and bias["layer"] == layer
        np.testing.assert_array_equal(bias["value"], model.b_V[layer, head])
    assert graph.nodes["embed"]["value"] is model.W_E
    assert graph.nodes["unembed"]["W_U"] is model.W_U
    assert graph.nodes["unembed"]["layer"] == 2
    for name, data in graph.nodes(data=True):
        assert {"role", "layer", "label", "latex"} <= set(data), name


def test_every_writer_feeds_every_later_head_and_the_sink() -> None:
    model = small_model(biases=True)
    graph = computation_graph(model)
    writers = ["embed", "pos_embed", "b_V[0.0]", "b_V[0.1]", "b_O[0]", "0.0", "0.1"]
    for writer in writers:
        assert graph.edges[writer, "1.0"]["inputs"] == ("Q", "K", "V")
        assert graph.edges[writer, "unembed"]["inputs"] == ("U",)
        assert not graph.has_edge(writer, "0.0") or writer in ("embed", "pos_embed")
    assert set(graph.successors("b_Q[1.0]")) == {"1.0"}
    assert graph.edges["b_Q[1.0]", "1.0"]["inputs"] == ("Q",)
    assert graph.edges["b_K[0.1]", "0.1"]["inputs"] == ("K",)
    assert set(graph.successors("b_U")) == {"unembed"}
    assert not graph.has_edge("0.0", "0.1")


def test_shortformer_positions_feed_only_queries_and_keys() -> None:
    graph = computation_graph(small_model("shortformer"))
    assert set(graph.successors("pos_embed")) == {"0.0", "0.1", "1.0", "1.1"}
    assert all(
        graph.edges["pos_embed", h]["inputs"] == ("Q", "K") for h in graph.successors("pos_embed")
    )
    assert not list(iter_paths(graph, source="pos_embed"))
    assert list(iter_paths(graph, source="pos_embed", target="1.0", input="K")) == [
        ("pos_embed", "1.0")
    ]
    assert "pos_embed" not in computation_graph(small_model("none"))


# ---------------------------------------------------------------------------------- node names
@pytest.mark.parametrize(
    ("name", "role", "part", "weight", "layer", "head"),
    [
        ("embed", "source", "token", "W_E", None, None),
        ("pos_embed", "source", "position", "W_P", None, None),
        ("b_U", "source", "bias", "b_U", None, None),
        ("unembed", "sink", None, "W_U", None, None),
        ("3.11", "head", None, None, 3, 11),
        ("b_V[1.4]", "source", "bias", "b_V", 1, 4),
        ("b_Q[0.2]", "source", "bias", "b_Q", 0, 2),
        ("b_O[7]", "source", "bias", "b_O", 7, None),
    ],
)
def test_parse_node(name: str, role: str, part: str | None, weight: str | None,
                    layer: int | None, head: int | None) -> None:  # fmt: skip
    info = parse_node(name)
    assert (info.role, info.part, info.weight, info.layer, info.head) == (
        role,
        part,
        weight,
        layer,
        head,
    )


@pytest.mark.parametrize("name", ["head", "b_V[1]", "b_O[1.2]", "b_X[0.0]", "1.", "W_E", ""])
def test_parse_node_rejects_other_names(name: str) -> None:
    with pytest.raises(PathError, match="not a node name"):
        parse_node(name)


def test_bias_node_names_round_trip() -> None:
    assert bias_node("b_V", 1, 4) == "b_V[1.4]" and parse_node("b_V[1.4]").owner == "1.4"
    assert bias_node("b_O", 2) == "b_O[2]"
    with pytest.raises(PathError):
        bias_node("b_O", 1, 2)
    with pytest.raises(PathError):
        bias_node("b_U", 1)


# ---------------------------------------------------------------------------------- paths
@given(ct.models(ct.configs(n_layers=(0, 4), n_heads=(1, 3))))
def test_each_source_has_one_plus_h_to_the_l_paths(model: AttnOnlyTransformer) -> None:
    """(1+H)^L token paths; C(L, m) H^m of them through m heads; the DP count equals the listing."""
    graph = computation_graph(model)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    paths = list(iter_paths(graph, source="embed"))
    assert len(paths) == count_paths(graph, source="embed") == (1 + H) ** L
    assert len(set(paths)) == len(paths)
    for m in range(L + 2):
        expected = math.comb(L, m) * H**m
        assert count_paths(graph, source="embed", order=m) == expected
        assert sum(1 for p in paths if len(p) == m + 2) == expected
    positional = count_paths(graph, source="position")
    assert positional == ((1 + H) ** L if model.cfg.positional_embedding_type == "standard" else 0)


@given(ct.models(ct.configs(n_layers=(0, 3), n_heads=(1, 3)), biases=True))
def test_listing_agrees_with_networkx_simple_paths(model: AttnOnlyTransformer) -> None:
    """An independent enumeration: simple paths to the sink along edges read by V or U."""
    graph = computation_graph(model)
    ov = ov_subgraph(graph)
    expected = {
        tuple(path)
        for source in source_nodes(graph)
        if source in ov
        for path in nx.all_simple_paths(ov, source, "unembed")
    }
    expected |= {(s, "unembed") for s in source_nodes(graph) if graph.has_edge(s, "unembed")}
    listed = list(iter_paths(graph))
    assert set(listed) == expected and len(listed) == len(expected) == count_paths(graph)


@given(ct.models(ct.configs(n_layers=(1, 3), n_heads=(1, 3)), biases=True), st.data())
def test_paths_into_a_head_input(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    """Query paths of head l.h: every stream path that ends before layer l, b_Q, shortformer W_P."""
    graph = computation_graph(model)
    head = data.draw(st.sampled_from(model.cfg.head_names()))
    layer = parse_node(head).layer
    assert layer is not None
    for which, bias in (("Q", "b_Q"), ("K", "b_K"), ("V", None)):
        listed = set(iter_paths(graph, target=head, input=which))
        stream = {
            (*p[:-1], head)
            for p in iter_paths(graph)
            if p[0] != "b_U" and all(written_at(n) < layer for n in p[:-1])
        }
        extra = {(f"{bias}[{head}]", head)} if bias else set()
        if which != "V" and model.cfg.positional_embedding_type == "shortformer":
            extra.add(("pos_embed", head))
        assert listed == stream | extra
        assert count_paths(graph, target=head, input=which) == len(listed)


@given(ct.models(ct.configs(n_layers=(1, 4), n_heads=(1, 3))), st.data())
def test_filters_by_heads_order_and_source(model: AttnOnlyTransformer, data: st.DataObject) -> None:
    graph = computation_graph(model)
    heads = data.draw(st.lists(st.sampled_from(model.cfg.head_names()), max_size=2, unique=True))
    orders = data.draw(st.lists(st.integers(0, model.cfg.n_layers), max_size=3))
    everything = list(iter_paths(graph))
    expected = [
        p for p in everything if set(heads) <= set(p) and (not orders or len(p) - 2 in orders)
    ]
    listed = list(iter_paths(graph, through=heads, order=orders or None))
    assert listed == expected
    assert count_paths(graph, through=heads, order=orders or None) == len(expected)
    assert list(iter_paths(graph, source="token")) == [p for p in everything if p[0] == "embed"]


def test_listing_order_is_source_then_order_then_depth_first() -> None:
    graph = computation_graph(small_model("none"))
    assert list(iter_paths(graph)) == [
        ("embed", "unembed"),
        ("embed", "0.0", "unembed"),
        ("embed", "0.1", "unembed"),
        ("embed", "1.0", "unembed"),
        ("embed", "1.1", "unembed"),
        ("embed", "0.0", "1.0", "unembed"),
        ("embed", "0.0", "1.1", "unembed"),
        ("embed", "0.1", "1.0", "unembed"),
        ("embed", "0.1", "1.1", "unembed"),
    ]


def test_heads_given_as_tuples_and_sets() -> None:
    graph = computation_graph(small_model())
    assert head_set(graph, [(0, 1), "1.0"]) == {"0.1", "1.0"}
    assert order_set(2) == {2} and order_set(range(2)) == {0, 1} and order_set(None) is None
    assert source_nodes(graph, ["token", "pos_embed"]) == ("embed", "pos_embed")
    same_layer = list(iter_paths(graph, through=["0.0", "0.1"]))
    assert same_layer == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "nowhere"}, "not a node"),
        ({"target": "embed"}, "is a source"),
        ({"target": "unembed", "input": "Q"}, "one input"),
        ({"target": "1.0", "input": "U"}, "inputs are"),
        ({"source": "b_U[0]"}, "neither a source"),
        ({"order": -1}, "order"),
        ({"order": [1, 1.5]}, "order"),
        ({"through": "embed"}, "not a head"),
        ({"through": [(5, 0)]}, "not a head"),
    ],
)
def test_bad_path_queries(kwargs: dict[str, object], message: str) -> None:
    graph = computation_graph(small_model())
    with pytest.raises(PathError, match=message):
        list(iter_paths(graph, **kwargs))  # type: ignore[arg-type]
    with pytest.raises(PathError, match=message):
        count_paths(graph, **kwargs)  # type: ignore[arg-type]


def test_four_layers_of_twelve_heads_list_quickly() -> None:
    """13⁴ token paths, listed lazily, each through heads of strictly increasing layers."""
    model = small_model("none", layers=4, heads=12)
    graph = computation_graph(model)
    count = 0
    for path in iter_paths(graph, source="embed"):
        layers = [parse_node(h).layer for h in path[1:-1]]
        assert layers == sorted(set(layers))  # type: ignore[type-var]
        count += 1
    assert count == 13**4
    assert list(itertools.islice(iter_paths(graph, order=4), 1)) == [
        ("embed", "0.0", "1.0", "2.0", "3.0", "unembed")
    ]
