"""OV maps and QK forms from action, and their rank-revealing factorisation into heads."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from circuits import ConstructionError, LayoutError
from circuits.construct import (
    BilinearForm,
    Block,
    CircuitSpec,
    HeadSpec,
    LinearMap,
    ResidualLayout,
    factorise,
    head_weights,
)
from circuits.construct.codes import random_code
from circuits.construct.heads import verify_factors


def _layout(n_a: int, n_b: int, code_dim: int | None = None) -> ResidualLayout:
    a = (
        Block.one_hot("a", range(n_a))
        if code_dim is None
        else Block.coded("a", range(n_a), random_code(n_a, code_dim, seed=3))
    )
    return ResidualLayout.of(a, Block.one_hot("b", range(n_b)), Block.one_hot("c", range(2)))


@st.composite
def actions(draw: st.DrawFn, n_source: int, n_target: int) -> dict[Hashable, dict[Hashable, float]]:
    """A random sparse action: each source label to a few target labels with weights."""
    action: dict[Hashable, dict[Hashable, float]] = {}
    for s in range(n_source):
        targets = draw(st.lists(st.integers(0, n_target - 1), max_size=2, unique=True))
        action[s] = {t: draw(st.floats(-2, 2).filter(lambda w: abs(w) > 0.1)) for t in targets}
    return action


@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_one_hot_map_sends_each_direction_to_its_image(
    n_a: int, n_b: int, data: st.DataObject
) -> None:
    layout = _layout(n_a, n_b)
    action = data.draw(actions(n_a, n_b))
    scale = data.draw(st.floats(0.5, 3))
    M = LinearMap.from_action(layout, "a", "b", action, scale=scale)
    for s, image in action.items():
        expected = scale * layout.vector(weights={f"b[{t}]": w for t, w in image.items()})
        np.testing.assert_allclose(M(layout.vector(f"a[{s}]")), expected, atol=1e-12)
    assert np.array_equal(M.matrix() @ layout.vector("c[0]"), np.zeros(layout.d_model))


@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_one_hot_form_scores_the_pairs_of_its_action(
    n_a: int, n_b: int, data: st.DataObject
) -> None:
    layout = _layout(n_a, n_b)
    action = data.draw(actions(n_a, n_b))
    form = BilinearForm.from_action(layout, "a", "b", action, scale=2.0)
    for q in range(n_a):
        for k in range(n_b):
            expected = 2.0 * action[q].get(k, 0.0)
            assert form.score(layout.vector(f"a[{q}]"), layout.vector(f"b[{k}]")) == pytest.approx(
                expected, abs=1e-12
            )


def test_coded_identity_action_is_exact_copy_and_inner_product() -> None:
    code = random_code(20, 6, seed=0)
    layout = ResidualLayout.of(
        Block.coded("tok", range(20), code), Block.coded("prev", range(20), code)
    )
    copy = LinearMap.from_action(layout, "tok", "prev")
    match = BilinearForm.from_action(layout, "tok", "prev", scale=3.0)
    for t in (0, 7, 19):
        np.testing.assert_allclose(
            copy(layout.vector(f"tok[{t}]")), layout.vector(f"prev[{t}]"), atol=1e-12
        )
    for a, b in ((1, 1), (2, 5), (19, 4)):
        score = match.score(layout.vector(f"tok[{a}]"), layout.vector(f"prev[{b}]"))
        assert score == pytest.approx(3.0 * code[:, a] @ code[:, b], abs=1e-12)


@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_apply_matrix_and_symbolic_agree(n_a: int, n_b: int, data: st.DataObject) -> None:
    layout = _layout(n_a, n_b, code_dim=data.draw(st.sampled_from([None, 2, 3])))
    beta = sp.Symbol("beta")
    M = LinearMap.from_action(layout, "a", "b", data.draw(actions(n_a, n_b)), scale=beta)
    M = M + LinearMap.from_action(layout, "c", "a", {0: 0, 1: {0: -1.0}}) * 2.0
    numeric = M.substitute({"beta": 1.5})
    x = np.random.default_rng(0).standard_normal((layout.d_model, 3))
    np.testing.assert_allclose(numeric.apply(x), numeric.matrix() @ x, atol=1e-12)
    symbolic = np.array(M.symbolic().subs(beta, 1.5), dtype=float)
    np.testing.assert_allclose(symbolic, numeric.matrix(), atol=1e-12)
    assert M.is_symbolic and not numeric.is_symbolic
    assert M.col_blocks == ("a", "c") and M.row_blocks == ("a", "b")


def test_actions_into_missing_labels_and_bad_scales_are_refused() -> None:
    layout = _layout(3, 2)
    with pytest.raises(LayoutError, match=r"b\[2\], which block 'b' does not have"):
        LinearMap.from_action(layout, "a", "b")  # identity: a[2] has no image in b
    with pytest.raises(ConstructionError, match="finite real number"):
        LinearMap.from_action(layout, "a", "a", scale=float("inf"))
    with pytest.raises(ConstructionError, match="free symbols"):
        LinearMap.from_action(layout, "a", "a", scale=sp.Symbol("g")).matrix()


# ---------------------------------------------------------------------- factorisation
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_factorisation_is_exact_and_rank_revealing(n_a: int, n_b: int, data: st.DataObject) -> None:
    layout = _layout(n_a, n_b, code_dim=data.draw(st.sampled_from([None, 2, 4])))
    form = BilinearForm.from_action(layout, "a", "b", data.draw(actions(n_a, n_b)), scale=1.3)
    form = form + BilinearForm.from_action(layout, "b", "a", data.draw(actions(n_b, n_a)))
    factors = factorise(form)
    left, right = factors.numeric()
    dense = form.matrix()
    np.testing.assert_allclose(left @ right, dense, atol=1e-12)
    assert factors.rank == np.linalg.matrix_rank(dense)


def test_a_shift_factors_without_any_svd_into_exact_integers() -> None:
    layout = ResidualLayout.of(Block.one_hot("pos", range(6)))
    shift = BilinearForm.from_action(
        layout, "pos", "pos", lambda i: i - 1 if i >= 1 else None, scale=4.0
    )  # type: ignore[operator]
    left, right = factorise(shift).numeric()
    assert left.shape == (6, 5)
    assert set(np.unique(left)) <= {0.0, 4.0, -4.0} and set(np.unique(right)) <= {0.0, 1.0, -1.0}
    np.testing.assert_array_equal(left @ right, np.diag(np.full(5, 4.0), k=-1))


def test_symbolic_scales_group_by_their_symbolic_part() -> None:
    layout = _layout(3, 3)
    beta = sp.Symbol("beta")
    form = BilinearForm.from_action(layout, "a", "a", scale=beta) + BilinearForm.from_action(
        layout, "b", "b", scale=-2 * beta
    )
    factors = factorise(form)
    assert set(factors.scales) == {beta} and factors.rank == 6
    left, right = factors.symbolic()
    assert sp.simplify(left * right - form.symbolic()) == sp.zeros(layout.d_model, layout.d_model)


@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_head_weights_reproduce_both_maps_in_the_least_d_head(
    n_a: int, n_b: int, data: st.DataObject
) -> None:
    layout = _layout(n_a, n_b)
    head = HeadSpec(
        BilinearForm.from_action(layout, "a", "b", data.draw(actions(n_a, n_b)), scale=2.0),
        LinearMap.from_action(layout, "b", "c", data.draw(actions(n_b, 2)), scale=0.5),
    )
    alpha = data.draw(st.sampled_from([1.0, 0.5, 3.0]))
    w = head_weights(head, attn_scale=alpha)
    np.testing.assert_allclose(w.W_Q.T @ w.W_K / alpha, head.qk.matrix(), atol=1e-12)
    np.testing.assert_allclose(w.W_O @ w.W_V, head.ov.matrix(), atol=1e-12)
    needed = max(
        np.linalg.matrix_rank(head.qk.matrix()), np.linalg.matrix_rank(head.ov.matrix()), 0
    )
    assert w.W_Q.shape[0] == needed == head.rank


def test_a_map_that_needs_more_than_d_head_is_a_clear_error() -> None:
    layout = _layout(4, 4)
    head = HeadSpec(
        BilinearForm.from_action(layout, "a", "b"), LinearMap.from_action(layout, "a", "c", {0: 0})
    )
    with pytest.raises(ConstructionError, match=r"QK form has rank 4, more than d_head=3"):
        head_weights(head, 3)


def test_wrong_factors_are_caught() -> None:
    layout = _layout(3, 3)
    form = BilinearForm.from_action(layout, "a", "b")
    left, right = factorise(form).numeric()
    verify_factors(form, left, right, "good")
    bad = left.copy()
    bad[0, 0] += 1e-6
    with pytest.raises(ConstructionError, match="do not reproduce"):
        verify_factors(form, bad, right, "bad")


def test_assembled_model_carries_the_maps_roles_and_layout() -> None:
    layout = ResidualLayout.of(
        Block.one_hot("tok", range(3)),
        Block.one_hot("pos", range(4)),
        Block.one_hot("out", range(3)),
    )
    copier = HeadSpec(
        BilinearForm.from_action(layout, "pos", "pos", scale=5.0),
        LinearMap.from_action(layout, "tok", "out", scale=2.0),
        role="self-copier",
    )
    idle = HeadSpec(BilinearForm.zero(layout), LinearMap.zero(layout))
    spec = CircuitSpec(layout, ((copier, idle), (idle,)), vocab_size=3, n_ctx=4, bos_token=0)
    model = spec.model()
    assert model.cfg.n_heads == 2 and model.cfg.d_head == 4 and model.bos_token == 0
    np.testing.assert_allclose(model.W_QK(0, 0).AB, copier.qk.matrix(), atol=1e-12)
    np.testing.assert_allclose(model.W_OV(0, 0).AB, copier.ov.matrix(), atol=1e-12)
    assert not model.W_OV(1, 1).AB.any()  # the padded head
    assert model.metadata["head_roles"] == {"0.0": "self-copier"}
    summary = model.metadata["heads"]["0.0"]
    assert summary["qk"]["label"] == "pos · pos" and summary["ov"]["label"] == "tok → out"
    assert [b["name"] for b in model.metadata["layout"]["blocks"]] == ["tok", "pos", "out"]
    # the model does what the layout says: each position copies its own token into `out`
    logits = model(np.array([2, 1, 1, 0]))
    np.testing.assert_array_equal(logits.argmax(axis=-1), [2, 1, 1, 0])


def test_specs_check_their_blocks() -> None:
    layout = ResidualLayout.of(Block.one_hot("tok", range(3)), Block.one_hot("out", range(2)))
    with pytest.raises(LayoutError, match=r"block 'out' lacks the token label\(s\) \[2\]"):
        CircuitSpec(layout, (), vocab_size=3, n_ctx=4, position_block=None)
    beta = sp.Symbol("beta")
    layout = ResidualLayout.of(Block.one_hot("tok", range(3)), Block.one_hot("out", range(3)))
    head = HeadSpec(
        BilinearForm.zero(layout), LinearMap.from_action(layout, "tok", "out", scale=beta)
    )
    spec = CircuitSpec(layout, ((head,),), vocab_size=3, n_ctx=4, position_block=None)
    with pytest.raises(ConstructionError, match="symbolic scales"):
        spec.model()
    assert spec.substitute({beta: 2.0}).model().W_OV(0, 0).AB.max() == 2.0
