r"""Eigenvalue analysis of heads' circuits, from ``d_head × d_head`` cores only.

A circuit :math:`A B` with ``A``: ``m × k`` and ``B``: ``k × m`` has the same nonzero eigenvalues as
its ``k × k`` core :math:`B A`. So for the ``V × V`` circuits of a head,

* OV circuit :math:`W_U W_O W_V W_E`: core :math:`W_V (W_E W_U) W_O`;
* token QK circuit :math:`W_E^T W_Q^T W_K W_E`: core :math:`W_K (W_E W_E^T) W_Q^T`
  (positional: :math:`W_P` in place of :math:`W_E`);
* K-composition term :math:`W_E^T W_{QK}^{h_2} W_{OV}^{h_1} W_E`: core
  :math:`(W_K^{h_2} W_O^{h_1})\,(W_V^{h_1} W_E W_E^T W_Q^{h_2\,T})`,

and the only products over the vocabulary are the two ``d × d`` Gram matrices :math:`W_E W_U` and
:math:`W_E W_E^T`, each costing one ``d × V × d`` product in the model's dtype (of factors scaled
exactly by powers of two when it could otherwise overflow), shared by every head; the small
products after them are in float64.

The summary of a spectrum is its **positivity** :math:`\operatorname{Re}\sum\lambda / \sum|\lambda|
\in [-1, 1]`: 1 when every eigenvalue is positive (the OV circuit copies, the QK circuit attends
to matching tokens), −1 when every one is negative. Applied to the OV circuit it is the
Framework's copying score; to the K-composition term, the ICL paper's weight-based prefix
matching score. A spectrum of zeros has no positivity (NaN). Scores are invariant under
``attn_scale``, which only rescales a QK circuit.

With a normalisation (``normalization_type``), the weights read are those of
:func:`~circuits.layer_norm.fold_layer_norm`, computed once per model; the input-dependent scale
:math:`1/\sigma` is left out (see :mod:`circuits.layer_norm` for what that approximates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import FloatArray, wide_product
from .._checks import is_int
from ..errors import AnalysisError, NumericalError
from ..layer_norm import folded_weights
from ..model import AttnOnlyTransformer
from ._heads import positional_embedding, writer_reader_tensor

__all__ = [
    "copying_scores",
    "eigenvalue_positivity",
    "k_composition_eigenvalues",
    "ov_eigenvalues",
    "prefix_matching_scores",
    "qk_eigenvalues",
    "qk_positivity",
]

ComplexArray = NDArray[np.complexfloating[Any, Any]]


def eigenvalue_positivity(eigenvalues: Any, axis: int = -1) -> FloatArray:
    r""":math:`\operatorname{Re}\sum_i\lambda_i / \sum_i|\lambda_i|` along ``axis``; NaN for all-zero spectra.

    NaN eigenvalues (undefined entries) give NaN.
    """
    values = np.asarray(eigenvalues)
    if values.dtype.kind not in "biufc" or values.ndim == 0:
        raise AnalysisError(
            f"eigenvalues: expected an array of numbers, got {values.dtype} of shape "
            f"{list(values.shape)}"
        )
    if not (is_int(axis) and -values.ndim <= axis < values.ndim):
        raise AnalysisError(
            f"axis {axis!r} out of range for eigenvalues of shape {list(values.shape)}"
        )
    if np.any(np.isinf(values)):
        raise NumericalError("eigenvalues: an infinite eigenvalue has no positivity")
    numerator = np.real(np.sum(values, axis=axis))
    denominator = np.sum(np.abs(values), axis=axis)
    result: FloatArray = np.full(numerator.shape, np.nan, dtype=numerator.dtype)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def ov_eigenvalues(model: AttnOnlyTransformer) -> ComplexArray:
    r"""Eigenvalues of every head's OV circuit :math:`W_U W_{OV} W_E`, ``[n_layers, n_heads, d_head]``.

    The ``d_head`` eigenvalues of the core :math:`W_V (W_E W_U) W_O`, sorted by decreasing modulus;
    the ``V − d_head`` further eigenvalues of the circuit are 0.
    """
    model = folded_weights(model)
    gram = wide_product(model.W_E, model.W_U)  # d × d, the one product over the vocabulary
    return _sorted_eigenvalues(model.W_V @ gram @ model.W_O)


def copying_scores(model: AttnOnlyTransformer) -> FloatArray:
    r"""The Framework's copying score of every head, ``[n_layers, n_heads]``.

    :math:`\operatorname{Re}\sum\lambda / \sum|\lambda|` over the eigenvalues λ of the OV circuit
    :math:`W_U W_{OV} W_E` (see :func:`ov_eigenvalues`); NaN for a head whose circuit is zero.
    """
    return eigenvalue_positivity(ov_eigenvalues(model))


def qk_eigenvalues(model: AttnOnlyTransformer, *, positional: bool = False) -> ComplexArray:
    r"""Eigenvalues of every head's QK circuit, ``[n_layers, n_heads, d_head]``, by decreasing modulus.

    Token circuit :math:`W_E^T W_{QK} W_E` (``V × V``), or with ``positional`` the positional one
    :math:`W_P^T W_{QK} W_P` (``n_ctx × n_ctx``), from the core :math:`W_K (W W^T) W_Q^T`. Scores
    are these circuits divided by ``attn_scale``.
    """
    model = folded_weights(model)
    embedding = positional_embedding(model) if positional else model.W_E
    gram = wide_product(embedding, embedding.T)
    return _sorted_eigenvalues(model.W_K @ gram @ model.W_Q.swapaxes(-1, -2))


def qk_positivity(model: AttnOnlyTransformer, *, positional: bool = False) -> FloatArray:
    r"""Positivity :math:`\operatorname{Re}\sum\lambda / \sum|\lambda|` of each QK circuit, ``[n_layers, n_heads]``.

    Near 1: the head attends from a token (position) to the same token (position) — a
    duplicate-token head; see :func:`qk_eigenvalues` for the circuits.
    """
    return eigenvalue_positivity(qk_eigenvalues(model, positional=positional))


def k_composition_eigenvalues(model: AttnOnlyTransformer) -> ComplexArray:
    r"""Eigenvalues of :math:`W_E^T W_{QK}^{h_2} W_{OV}^{h_1} W_E` for every pair, ``[L, H, L, H, d_head]``.

    Entry ``[l₁, h₁, l₂, h₂]`` pairs the writing head h₁ with the reading head h₂ of a later layer
    (NaN where ``l₁ ≥ l₂``): the term of h₂'s attention score in which the query is the current
    token and the key is what h₁ moved into the key position. If h₁ is a previous-token head,
    an induction head h₂ makes this term a positive multiple of a "same token" matrix. Core:
    :math:`(W_K^{h_2} W_O^{h_1})(W_V^{h_1} W_E W_E^T W_Q^{h_2\,T})`, every pair from two cross products.
    """
    cfg = model.cfg
    L, H, k = cfg.n_layers, cfg.n_heads, cfg.d_head
    if L < 2:
        return np.full((L, H, L, H, k), np.nan, dtype=complex)
    gram = wide_product(model.W_E, model.W_E.T)
    keys, queries = _stacked(model.W_K[1:]), _stacked(model.W_Q[1:])  # readers: [(L-1)H·k, d]
    outs, values = _stacked(model.W_O[:-1].swapaxes(-1, -2)), _stacked(model.W_V[:-1])  # writers
    n = (L - 1) * H
    # [reader, ·, writer, ·]: W_K^{h₂} W_O^{h₁}, and [writer, ·, reader, ·]
    key_out = wide_product(keys, outs.T).reshape(n, k, n, k)
    value_query = (values @ gram @ queries.T).reshape(n, k, n, k)
    cores = np.einsum("rawb,wbrc->rwac", key_out, value_query)  # [reader, writer, k, k]
    eigenvalues = _sorted_eigenvalues(cores).reshape(L - 1, H, L - 1, H, k)
    return writer_reader_tensor(eigenvalues, L)


def prefix_matching_scores(model: AttnOnlyTransformer) -> FloatArray:
    r"""The ICL paper's weight-based prefix matching, ``[n_layers, n_heads, n_layers, n_heads]``.

    Positivity :math:`\operatorname{Re}\sum\lambda / \sum|\lambda|` of the K-composition term
    :math:`W_E^T W_{QK}^{h_2} W_{OV}^{h_1} W_E` (:func:`k_composition_eigenvalues`); entry
    ``[l₁, h₁, l₂, h₂]``, NaN where ``l₁ ≥ l₂``. Near 1 for a previous-token head h₁ feeding an
    induction head h₂.
    """
    return eigenvalue_positivity(k_composition_eigenvalues(model))


# ---------------------------------------------------------------------- internals
def _sorted_eigenvalues(cores: FloatArray) -> ComplexArray:
    """Eigenvalues of a stack of square cores ``[…, k, k]``, each sorted by decreasing modulus."""
    if not np.all(np.isfinite(cores)):
        raise NumericalError("the eigenvalue cores exceed the range of float64")
    values = np.linalg.eigvals(cores).astype(complex)
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    result: ComplexArray = np.take_along_axis(values, order, axis=-1)
    return result


def _stacked(factors: FloatArray) -> FloatArray:
    """``[L, H, k, d]`` → ``[L·H·k, d]``: every head's rows, head after head."""
    result: FloatArray = factors.reshape(-1, factors.shape[-1])
    return result
