"""Residual layouts and token codes: labels, vectors, embedding, projection, read-out, coherence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import LayoutError, ShapeError
from circuits.construct import Block, Direction, ResidualLayout
from circuits.construct.codes import (
    coherence,
    random_code,
    structured_code,
    structured_code_parameters,
)


@st.composite
def layouts(draw: st.DrawFn) -> ResidualLayout:
    """One to four blocks, one-hot or coded (random unit codes), of small random sizes."""
    blocks = []
    for index in range(draw(st.integers(1, 4))):
        labels = draw(st.integers(1, 6))
        if draw(st.booleans()):
            blocks.append(Block.one_hot(f"b{index}", range(labels)))
        else:
            dim = draw(st.integers(1, 5))
            code = random_code(labels, dim, seed=draw(st.integers(0, 100)))
            blocks.append(Block.coded(f"b{index}", range(labels), code))
    return ResidualLayout(tuple(blocks))


def test_direction_parsing() -> None:
    assert Direction.parse("tok[7]") == Direction("tok", 7)
    assert Direction.parse(" pos [ -1 ] ") == Direction("pos", -1)
    assert Direction.parse("role[first]") == Direction("role", "first")
    assert str(Direction("prev", 3)) == "prev[3]"
    for bad in ("tok", "tok[3", "3[tok]", 5):
        with pytest.raises(LayoutError, match="direction label"):
            Direction.parse(bad)  # type: ignore[arg-type]


@given(layouts())
def test_offsets_partition_the_stream(layout: ResidualLayout) -> None:
    covered = np.zeros(layout.d_model, dtype=int)
    for name in layout.names:
        covered[layout.slice(name)] += 1
    assert np.all(covered == 1)
    assert layout.d_model == sum(b.dim for b in layout.blocks)
    assert len(layout.axis_labels()) == layout.d_model


@given(layouts(), st.data())
def test_vector_is_the_sum_of_its_directions(layout: ResidualLayout, data: st.DataObject) -> None:
    block = data.draw(st.sampled_from(layout.blocks))
    value = data.draw(st.sampled_from(block.values))
    other = data.draw(st.sampled_from(layout.blocks))
    other_value = data.draw(st.sampled_from(other.values))
    weight = data.draw(st.floats(-3, 3))
    x = layout.vector(f"{block.name}[{value}]", weights={f"{other.name}[{other_value}]": weight})
    expected = np.zeros(layout.d_model)
    expected[layout.slice(block.name)] += block.code_matrix()[:, block.index(value)]
    expected[layout.slice(other.name)] += weight * other.code_matrix()[:, other.index(other_value)]
    np.testing.assert_allclose(x, expected, atol=1e-15)


@given(layouts(), st.data())
def test_embed_then_project_round_trips(layout: ResidualLayout, data: st.DataObject) -> None:
    block = data.draw(st.sampled_from(layout.blocks))
    coords = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal((3, block.dim))
    x = layout.embed(block.name, coords)
    np.testing.assert_array_equal(layout.project(x, block.name), coords)
    rest = np.delete(x, np.arange(layout.d_model)[layout.slice(block.name)], axis=-1)
    assert not rest.any()


@given(layouts(), st.data())
def test_read_is_the_matched_filter(layout: ResidualLayout, data: st.DataObject) -> None:
    block = data.draw(st.sampled_from(layout.blocks))
    value = data.draw(st.sampled_from(block.values))
    scores = layout.read(layout.vector(Direction(block.name, value)), block.name)
    code = block.code_matrix()
    np.testing.assert_allclose(scores, code.T @ code[:, block.index(value)], atol=1e-12)
    if block.is_one_hot:
        assert scores[block.index(value)] == 1.0 and np.count_nonzero(scores) == 1


def test_describe_names_the_largest_directions() -> None:
    layout = ResidualLayout.of(Block.one_hot("tok", range(4)), Block.one_hot("pos", range(3)))
    x = layout.vector(weights={"tok[2]": 0.5, "pos[1]": -2.0, "tok[0]": 1e-12})
    assert layout.describe(x) == [("pos[1]", -2.0), ("tok[2]", 0.5)]


def test_direct_sum_keeps_order_and_rejects_repeated_names() -> None:
    a = ResidualLayout.of(Block.one_hot("tok", range(3)))
    b = ResidualLayout.of(Block.one_hot("pos", range(2)))
    assert (a + b).names == ("tok", "pos") and (a + b).slice("pos") == slice(3, 5)
    with pytest.raises(LayoutError, match="used twice"):
        a + a


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Block.one_hot("1tok", range(3)), LayoutError, "identifier"),
        (lambda: Block.one_hot("tok", [1, 1]), LayoutError, "repeated"),
        (lambda: Block.one_hot("tok", []), LayoutError, "no labels"),
        (lambda: Block.coded("tok", range(3), np.ones((2, 4))), ShapeError, r"\[\*, 3\]"),
    ],
)
def test_bad_blocks_are_refused(build: Callable[[], Block], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()


def test_unknown_blocks_and_labels_are_named() -> None:
    layout = ResidualLayout.of(Block.one_hot("tok", range(3)))
    with pytest.raises(LayoutError, match="no block 'pos'"):
        layout.vector("pos[0]")
    with pytest.raises(LayoutError, match="no label 7"):
        layout.vector("tok[7]")
    with pytest.raises(LayoutError, match=r"expected shape \[..., 3\]"):
        layout.project(np.zeros(4), "tok")


# ---------------------------------------------------------------------- codes
@given(st.integers(2, 300), st.integers(4, 80), st.integers(0, 5))
def test_random_codes_have_unit_columns(n: int, dim: int, seed: int) -> None:
    code = random_code(n, dim, seed=seed)
    assert code.shape == (dim, n)
    np.testing.assert_allclose(np.linalg.norm(code, axis=0), 1.0)


@given(st.integers(2, 400), st.integers(4, 160))
def test_structured_codes_meet_their_coherence_bound(n: int, dim: int) -> None:
    try:
        q, k, m = structured_code_parameters(n, dim)
    except LayoutError:
        return  # too few dimensions: refused, never a bad code
    code = structured_code(n, dim)
    assert code.shape == (dim, n) and q * m <= dim and q**k >= n
    np.testing.assert_allclose(np.linalg.norm(code, axis=0), 1.0)
    gram = code.T @ code
    np.fill_diagonal(gram, 0.0)
    assert gram.max() <= (k - 1) / m + 1e-12
    assert coherence(code) == pytest.approx(np.abs(gram).max(), abs=1e-12)


def test_structured_codes_beat_random_ones_at_vocabulary_1000() -> None:
    structured = coherence(structured_code(1000, 128))
    assert structured <= 2 / 11 + 1e-12
    assert structured < coherence(random_code(1000, 128, seed=0)) / 2


def test_coherence_of_one_hot_is_zero_and_chunking_does_not_matter() -> None:
    assert coherence(np.eye(5)) == 0.0
    code = random_code(50, 8, seed=1)
    assert coherence(code, chunk=7) == coherence(code, chunk=1000)
