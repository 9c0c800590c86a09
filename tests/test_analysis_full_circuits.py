"""Full circuits against their dense formulas; top-k readouts against dense sorting."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_models import induction_model
from hypothesis import given
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer, FactoredMatrix, causal_softmax
from circuits import testing as ct
from circuits.analysis import (
    attended_offsets,
    column_top,
    full_circuits,
    k_composition_circuit,
    ov_circuit,
    positional_pattern,
    positional_qk_circuit,
    q_composition_circuit,
    token_qk_circuit,
    top_copied_tokens,
    top_diagonal,
    top_entries,
    virtual_ov_circuit,
)

TWO = ct.configs(
    n_layers=2, n_heads=(1, 2), d_model=(1, 6), d_head=(1, 3), d_vocab=(1, 7), n_ctx=(1, 5),
    positional_embedding_types=["standard", "shortformer"],
)  # fmt: skip


@given(ct.models(TWO), st.data())
def test_circuits_equal_their_dense_formulas(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    h1 = (0, data.draw(st.integers(0, model.cfg.n_heads - 1)))
    h2 = (1, data.draw(st.integers(0, model.cfg.n_heads - 1)))
    W_E, W_P, W_U = model.W_E, model.W_P, model.W_U
    qk2 = model.W_Q[h2].T @ model.W_K[h2]
    ov1, ov2 = (model.W_O[h] @ model.W_V[h] for h in (h1, h2))
    expected = {
        "token QK": (token_qk_circuit(model, h2), W_E.T @ qk2 @ W_E),
        "positional QK": (positional_qk_circuit(model, f"1.{h2[1]}"), W_P.T @ qk2 @ W_P),
        "OV": (ov_circuit(model, h1), W_U @ ov1 @ W_E),
        "virtual OV": (virtual_ov_circuit(model, h1, h2), W_U @ ov2 @ ov1 @ W_E),
        "K-composition": (k_composition_circuit(model, h1, h2), W_E.T @ qk2 @ ov1 @ W_E),
        "Q-composition": (q_composition_circuit(model, h1, h2), W_E.T @ ov1.T @ qk2 @ W_E),
    }
    for name, (circuit, dense) in expected.items():
        assert isinstance(circuit, FactoredMatrix), name
        # two heads' maps compose through the narrowest of d_head, d_model, d_head
        composed = name in {"virtual OV", "K-composition", "Q-composition"}
        d_head, d_model = model.cfg.d_head, model.cfg.d_model
        assert circuit.mdim == (min(d_head, d_model) if composed else d_head), name
        np.testing.assert_allclose(circuit.AB, dense, atol=1e-10, err_msg=name)


def test_composition_circuits_need_the_writer_first() -> None:
    model = AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 2, "d_model": 4, "d_head": 2, "d_vocab": 3, "n_ctx": 3}
    )
    for build in (virtual_ov_circuit, k_composition_circuit, q_composition_circuit):
        with pytest.raises(circuits.AnalysisError, match="earlier layer"):
            build(model, "1.0", "0.1")
        with pytest.raises(circuits.AnalysisError, match="earlier layer"):
            build(model, "1.0", "1.1")
    with pytest.raises(circuits.HeadError):
        ov_circuit(model, "2.0")
    with pytest.raises(circuits.HeadError, match=r"a head is a name 'l\.h' or a pair"):
        ov_circuit(model, 1)  # type: ignore[arg-type]


@given(
    ct.factored_matrices(rows=(1, 30), inner=(1, 3), cols=(1, 30)),
    st.integers(1, 12),
    st.booleans(),
    st.sampled_from([1, 7, 1 << 22]),
)
def test_top_entries_match_a_dense_sort(
    matrix: FactoredMatrix, k: int, largest: bool, block: int
) -> None:
    """Also with blocks of a single row or of 7 entries, so that candidates cross blocks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(full_circuits, "BLOCK_ENTRIES", block)
        entries = top_entries(matrix, k, largest=largest)
    dense = matrix.AB
    values = np.sort(dense.ravel())[::-1] if largest else np.sort(dense.ravel())
    np.testing.assert_allclose([e.value for e in entries], values[:k], atol=1e-12)
    for entry in entries:
        assert dense[entry.row, entry.col] == pytest.approx(entry.value, abs=1e-12)
    assert len({(e.row, e.col) for e in entries}) == len(entries)


@given(ct.factored_matrices(rows=(1, 12), inner=(1, 3), cols=(1, 12)), st.integers(1, 5))
def test_diagonal_and_column_readouts_match_dense(matrix: FactoredMatrix, k: int) -> None:
    dense = matrix.AB
    diagonal = np.diag(dense)
    np.testing.assert_allclose(
        [e.value for e in top_diagonal(matrix, k)], np.sort(diagonal)[::-1][:k], atol=1e-12
    )
    np.testing.assert_allclose(
        [e.value for e in top_diagonal(matrix, k, largest=False)], np.sort(diagonal)[:k], atol=1e-12
    )
    col = matrix.shape[1] - 1
    entries = column_top(matrix, col, k)
    assert all(e.col == col for e in entries)
    np.testing.assert_allclose(
        [e.value for e in entries], np.sort(dense[:, col])[::-1][:k], atol=1e-12
    )
    assert [dense[e.row, col] for e in entries] == pytest.approx([e.value for e in entries])


def test_readouts_carry_labels_and_check_arguments() -> None:
    matrix = FactoredMatrix(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0, -1.0, 0.5]]))
    labels = ["a", "b", "c"]
    best = top_entries(matrix, 1, row_labels=labels, col_labels=["x", "y", "z"])[0]
    assert (best.row, best.col, best.value, best.row_label, best.col_label) == (2, 0, 3.0, "c", "x")
    assert [e.row_label for e in top_diagonal(matrix, 3, labels=labels)] == ["c", "a", "b"]
    assert column_top(matrix, 1, 1, col_labels=labels)[0].col_label == "b"
    with pytest.raises(circuits.AnalysisError, match="k must be"):
        top_entries(matrix, 0)
    with pytest.raises(circuits.AnalysisError, match="column 3"):
        column_top(matrix, 3)
    stack = FactoredMatrix(np.ones((2, 3, 1)), matrix.B)  # a stack of two matrices
    for readout in (top_entries, top_diagonal):
        with pytest.raises(circuits.AnalysisError, match=r"a stack of shape \(2, 3, 3\)"):
            readout(stack, 1)


def test_hand_built_heads_read_out_as_built() -> None:
    gains = np.array([0.5, 4.0, 1.0, 9.0, 2.0, 3.0, 7.0, 6.0])
    model = induction_model(gains=gains)
    names = [f"t{t}" for t in range(8)]
    copied = top_copied_tokens(model, "1.0", 3, labels=names)
    assert [e.row_label for e in copied] == ["t3", "t6", "t7"]  # the largest gains
    assert [e.value for e in copied] == pytest.approx([9.0, 7.0, 6.0])
    # attending to token 5 raises logit 5 only
    raised = column_top(ov_circuit(model, "1.0"), 5, 1)[0]
    assert (raised.row, raised.value) == (5, pytest.approx(3.0))
    # the previous-token head's positional QK circuit prefers the key one position back
    offsets = attended_offsets(model, "0.0")
    assert offsets[0] == 0 and np.all(offsets[1:] == 1)
    pattern = positional_pattern(model, "0.0")
    np.testing.assert_allclose(pattern, causal_softmax(positional_qk_circuit(model, "0.0").AB))
    assert np.all(np.diag(pattern, -1) > 0.99)
