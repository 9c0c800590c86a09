r"""Full circuits of heads as :class:`~circuits.FactoredMatrix`, and labelled readouts of them.

===========================  ===========================================================  ==========
circuit                      matrix                                                       shape
===========================  ===========================================================  ==========
token QK                     :math:`W_E^T W_{QK}^h W_E` (query token × key token)         V × V
positional QK                :math:`W_P^T W_{QK}^h W_P` (query position × key position)   n × n
OV                           :math:`W_U W_{OV}^h W_E` (output token × source token)       V × V
virtual OV                   :math:`W_U W_{OV}^{h_2} W_{OV}^{h_1} W_E`                      V × V
K-composition                :math:`W_E^T W_{QK}^{h_2} W_{OV}^{h_1} W_E`                    V × V
Q-composition                :math:`W_E^T W_{OV}^{h_1\,T} W_{QK}^{h_2} W_E`                 V × V
===========================  ===========================================================  ==========

Each is kept factored with inner dimension ``d_head``; the readouts below stream over blocks of
rows and never hold more than a bounded block of a ``V × V`` product. QK circuits are the scores
before division by ``attn_scale``; biases are not part of any circuit.

With a normalisation (``normalization_type``), the weights read are those of
:func:`~circuits.layer_norm.fold_layer_norm`, computed once per model; the input-dependent scale
:math:`1/\sigma` is left out (see :mod:`circuits.layer_norm` for what that approximates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._arrays import FloatArray, checked_product
from .._checks import is_int
from ..config import HeadRef
from ..errors import AnalysisError
from ..factored import FactoredMatrix
from ..layer_norm import folded_weights
from ..model import AttnOnlyTransformer, causal_softmax
from ._heads import check_order, positional_embedding

__all__ = [
    "Entry",
    "attended_offsets",
    "column_top",
    "k_composition_circuit",
    "ov_circuit",
    "positional_pattern",
    "positional_qk_circuit",
    "q_composition_circuit",
    "token_qk_circuit",
    "top_copied_tokens",
    "top_diagonal",
    "top_entries",
    "virtual_ov_circuit",
]

#: Entries of a block of rows computed at once by :func:`top_entries` (≈ 32 MB in float64).
BLOCK_ENTRIES = 1 << 22


class Entry(NamedTuple):
    """One entry of a circuit: indices, value and the labels of its row and column."""

    row: int
    col: int
    value: float
    row_label: str
    col_label: str


# ---------------------------------------------------------------------- circuits
def token_qk_circuit(model: AttnOnlyTransformer, head: HeadRef) -> FactoredMatrix:
    r""":math:`W_E^T W_{QK}^h W_E` (``V × V``): entry ``[q, k]`` is the score of query token q on key token k."""
    model = folded_weights(model)
    return _sandwich(model.W_E.T, _qk(model, head), model.W_E)


def positional_qk_circuit(model: AttnOnlyTransformer, head: HeadRef) -> FactoredMatrix:
    r""":math:`W_P^T W_{QK}^h W_P` (``n_ctx × n_ctx``): the score of query position i on key position j."""
    model = folded_weights(model)
    positions = positional_embedding(model)
    return _sandwich(positions.T, _qk(model, head), positions)


def ov_circuit(model: AttnOnlyTransformer, head: HeadRef) -> FactoredMatrix:
    r""":math:`W_U W_{OV}^h W_E` (``V × V``): entry ``[o, s]`` is what attending to source token s adds to logit o."""
    model = folded_weights(model)
    return _sandwich(model.W_U, _ov(model, head), model.W_E)


def virtual_ov_circuit(
    model: AttnOnlyTransformer, writer: HeadRef, reader: HeadRef
) -> FactoredMatrix:
    r""":math:`W_U W_{OV}^{h_2} W_{OV}^{h_1} W_E` of the virtual head made of ``writer`` h₁ then ``reader`` h₂."""
    model = folded_weights(model)
    check_order(model, writer, reader)
    return _sandwich(model.W_U, _ov(model, reader) @ _ov(model, writer), model.W_E)


def k_composition_circuit(
    model: AttnOnlyTransformer, writer: HeadRef, reader: HeadRef
) -> FactoredMatrix:
    r""":math:`W_E^T W_{QK}^{h_2} W_{OV}^{h_1} W_E`: query token against the key token moved by ``writer`` h₁."""
    model = folded_weights(model)
    check_order(model, writer, reader)
    return _sandwich(model.W_E.T, _qk(model, reader) @ _ov(model, writer), model.W_E)


def q_composition_circuit(
    model: AttnOnlyTransformer, writer: HeadRef, reader: HeadRef
) -> FactoredMatrix:
    r""":math:`W_E^T W_{OV}^{h_1\,T} W_{QK}^{h_2} W_E`: the query token moved by ``writer`` h₁ against the key token."""
    model = folded_weights(model)
    check_order(model, writer, reader)
    return _sandwich(model.W_E.T, _ov(model, writer).T @ _qk(model, reader), model.W_E)


# ---------------------------------------------------------------------- readouts
def top_entries(
    matrix: FactoredMatrix,
    k: int = 10,
    *,
    largest: bool = True,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> list[Entry]:
    """The ``k`` largest (or smallest) entries of ``matrix``, best first, with their labels.

    Computed block of rows by block of rows (``A[rows] @ B``), so memory stays bounded by
    :data:`BLOCK_ENTRIES` entries whatever the shape; the time is that of the full product.
    """
    k = _check_k(k)
    rows, cols = _check_matrix(matrix).shape
    _check_labels(row_labels, rows, "row_labels")
    _check_labels(col_labels, cols, "col_labels")
    sign = 1.0 if largest else -1.0
    block = max(1, BLOCK_ENTRIES // max(cols, 1))
    best_values = np.empty(0)
    best_index = np.empty(0, dtype=np.int64)
    for start in range(0, rows, block):
        values = sign * (matrix.A[start : start + block] @ matrix.B).ravel()
        keep = _top_indices(values, k)
        best_values = np.concatenate([best_values, values[keep]])
        best_index = np.concatenate([best_index, keep + start * cols])
        survivors = _top_indices(best_values, k)
        best_values, best_index = best_values[survivors], best_index[survivors]
    order = np.argsort(-best_values, kind="stable")
    return [
        _entry(int(i // cols), int(i % cols), sign * float(v), row_labels, col_labels)
        for i, v in zip(best_index[order], best_values[order], strict=True)
    ]


def top_diagonal(
    matrix: FactoredMatrix,
    k: int = 10,
    *,
    largest: bool = True,
    labels: Sequence[str] | None = None,
) -> list[Entry]:
    r"""The ``k`` largest (or smallest) diagonal entries :math:`\sum_j A_{tj} B_{jt}`, best first."""
    k = _check_k(k)
    n = min(_check_matrix(matrix).shape)
    _check_labels(labels, n, "labels")
    diagonal = np.einsum("ij,ji->i", matrix.A[:n], matrix.B[:, :n])
    sign = 1.0 if largest else -1.0
    keep = _top_indices(sign * diagonal, k)
    keep = keep[np.argsort(-sign * diagonal[keep], kind="stable")]
    return [_entry(int(t), int(t), float(diagonal[t]), labels, labels) for t in keep]


def column_top(
    matrix: FactoredMatrix,
    col: int,
    k: int = 10,
    *,
    largest: bool = True,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> list[Entry]:
    """The ``k`` largest (or smallest) entries of column ``col``: e.g. for an OV circuit, the
    output tokens whose logits attending to source token ``col`` raises most. Cost ``O(rows · k)``."""
    _check_labels(col_labels, _check_matrix(matrix).shape[1], "col_labels")
    if not (is_int(col) and 0 <= col < matrix.shape[1]):
        raise AnalysisError(
            f"column {col!r} out of range: the matrix has {matrix.shape[1]} columns"
        )
    column = FactoredMatrix(matrix.A, matrix.B[:, [int(col)]])
    return [
        entry._replace(col=int(col), col_label=_label(col_labels, int(col)))
        for entry in top_entries(column, k, largest=largest, row_labels=row_labels)
    ]


def top_copied_tokens(
    model: AttnOnlyTransformer,
    head: HeadRef,
    k: int = 10,
    *,
    labels: Sequence[str] | None = None,
) -> list[Entry]:
    r"""The tokens a head copies most: the largest diagonal entries of its OV circuit.

    Entry ``t`` is :math:`(W_U W_{OV} W_E)_{tt}`, how much attending to token t raises t's own logit.
    """
    return top_diagonal(ov_circuit(model, head), k, labels=labels)


def positional_pattern(model: AttnOnlyTransformer, head: HeadRef) -> FloatArray:
    r"""The attention pattern the positional QK term alone would give, ``[n_ctx, n_ctx]``.

    :math:`\operatorname{softmax}_{j \le i}\big((W_P^T W_{QK} W_P)_{ij} / \text{attn\_scale}\big)`:
    which key positions each query position attends to, tokens aside.
    """
    scores = positional_qk_circuit(model, head).AB / model.cfg.attn_scale
    return causal_softmax(scores)


def attended_offsets(model: AttnOnlyTransformer, head: HeadRef) -> np.ndarray[Any, Any]:
    """For each query position i, the offset ``i − j`` of the key position j it attends most
    under :func:`positional_pattern` (1 everywhere but i = 0 for a previous-token head)."""
    pattern = positional_pattern(model, head)
    result: np.ndarray[Any, Any] = np.arange(pattern.shape[0]) - np.argmax(pattern, axis=1)
    return result


# ---------------------------------------------------------------------- internals
def _sandwich(left: FloatArray, middle: FactoredMatrix, right: FloatArray) -> FactoredMatrix:
    """``left · (A B) · right`` as the factors ``(left A, B right)``: the inner dimension stays ``k``."""
    return FactoredMatrix(
        checked_product(left, middle.A, "of the circuit's left factor"),
        checked_product(middle.B, right, "of the circuit's right factor"),
    )


def _qk(model: AttnOnlyTransformer, head: HeadRef) -> FactoredMatrix:
    return model.W_QK(*model.cfg.resolve_head(head))


def _ov(model: AttnOnlyTransformer, head: HeadRef) -> FactoredMatrix:
    return model.W_OV(*model.cfg.resolve_head(head))


def _check_k(k: int) -> int:
    if not (is_int(k) and k >= 1):
        raise AnalysisError(f"k must be an integer ≥ 1, got {k!r}")
    return int(k)


def _check_matrix(matrix: object) -> FactoredMatrix:
    if not isinstance(matrix, FactoredMatrix):
        raise AnalysisError(
            f"expected a FactoredMatrix (a circuit), got {type(matrix).__name__}; a dense matrix M "
            "is FactoredMatrix(M, numpy.eye(M.shape[1]))"
        )
    if matrix.ndim != 2:
        raise AnalysisError(
            f"expected a single matrix, got a stack of shape {matrix.shape}: pick one, M[i]"
        )
    return matrix


def _check_labels(labels: Sequence[str] | None, count: int, name: str) -> None:
    """``labels`` is ``None`` or names each of ``count`` rows (or columns)."""
    if labels is not None and not (hasattr(labels, "__len__") and len(labels) == count):
        size = len(labels) if hasattr(labels, "__len__") else repr(labels)
        raise AnalysisError(f"{name}: expected {count} labels, one per index, got {size}")


def _top_indices(values: FloatArray, k: int) -> np.ndarray[Any, Any]:
    """Indices of the ``k`` largest values (unordered); all of them when there are fewer."""
    if values.size <= k:
        return np.arange(values.size)
    return np.argpartition(-values, k - 1)[:k]


def _label(labels: Sequence[str] | None, index: int) -> str:
    return str(index) if labels is None else str(labels[index])


def _entry(
    row: int, col: int, value: float, rows: Sequence[str] | None, cols: Sequence[str] | None
) -> Entry:
    return Entry(row, col, value, _label(rows, row), _label(cols, col))
