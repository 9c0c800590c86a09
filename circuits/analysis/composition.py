r"""Q-, K- and V-composition scores between heads, and the random-matrix baseline.

For a head :math:`h_1` writing in layer :math:`l_1` and a head :math:`h_2` reading in a later layer
:math:`l_2`, with :math:`\|\cdot\|` the Frobenius norm,

.. math::

    C_Q = \frac{\|W_{QK}^{h_2\,T} W_{OV}^{h_1}\|}{\|W_{QK}^{h_2}\|\,\|W_{OV}^{h_1}\|}, \qquad
    C_K = \frac{\|W_{QK}^{h_2} W_{OV}^{h_1}\|}{\|W_{QK}^{h_2}\|\,\|W_{OV}^{h_1}\|}, \qquad
    C_V = \frac{\|W_{OV}^{h_2} W_{OV}^{h_1}\|}{\|W_{OV}^{h_2}\|\,\|W_{OV}^{h_1}\|}.

These are TransformerLens's ``all_composition_scores`` (whose row-convention ``OV`` is the
transpose of our :math:`W_{OV}`), except that undefined pairs (:math:`l_1 \ge l_2`) are NaN here,
not 0.

**How it is computed.** Each reading map is a product :math:`L R` of a ``d × k`` and a ``k × d``
factor (:math:`K^T Q` for Q, :math:`Q^T K` for K, :math:`O V` for V) and each writing map is
:math:`O_1 V_1`. With ``k × k`` roots of the Gram matrices, :math:`R_L^T R_L = L^T L` and
:math:`R_1^T R_1 = V_1 V_1^T` (so that :math:`\|L X\| = \|R_L X\|` and
:math:`\|X V_1\| = \|X R_1^T\|` for every X),

.. math::

    \|L R\,O_1 V_1\| = \|\tilde R\,\tilde O_1\|,\qquad \tilde R = R_L R \ (k\times d),\quad
    \tilde O_1 = O_1 R_1^T \ (d\times k),

so every numerator is the Frobenius norm of one ``k × k`` block of a single cross product
:math:`[\tilde R_{\text{all heads}}]\,[\tilde O_{\text{all heads}}]`, and the denominators are
:math:`\|\tilde R\|` and :math:`\|\tilde O_1\|`. No ``d × d`` matrix is ever formed.

**Baseline.** If either head's row and column spaces are uniformly random (Haar-distributed
orientation, any singular values), :math:`E[C^2] = 1/d_\text{model}` exactly: for
:math:`Y = U Y_0 U'^T` with Haar :math:`U`, :math:`E\|XY\|^2 = \|X\|^2\|Y_0\|^2/d`. So
:math:`1/\sqrt{d_\text{model}}` is the root-mean-square score of unrelated heads; a Monte Carlo
estimate of the mean score of heads with Gaussian factors of the model's shapes is also offered.

With a normalisation (``normalization_type``), the weights read are those of
:func:`~circuits.layer_norm.fold_layer_norm`, computed once per model; the input-dependent scale
:math:`1/\sigma` is left out (see :mod:`circuits.layer_norm` for what that approximates).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import numpy as np

from .._arrays import FloatArray, unit_scaled
from .._checks import is_int, random_generator
from ..errors import AnalysisError
from ..layer_norm import folded_weights
from ..model import AttnOnlyTransformer
from ._heads import writer_reader_tensor

__all__ = [
    "CompositionKind",
    "all_composition_scores",
    "composition_baseline",
    "composition_scores",
    "relative_composition_scores",
]

CompositionKind = Literal["Q", "K", "V"]
COMPOSITION_KINDS: tuple[str, ...] = get_args(CompositionKind)

#: Random heads drawn at once by the Monte Carlo baseline.
_CHUNK = 64


def composition_scores(model: AttnOnlyTransformer, kind: str) -> FloatArray:
    r"""Composition scores ``[n_layers, n_heads, n_layers, n_heads]`` of one ``kind`` (Q, K or V).

    Entry ``[l₁, h₁, l₂, h₂]`` is :math:`\|M^{h_2} W_{OV}^{h_1}\| / (\|M^{h_2}\|\,\|W_{OV}^{h_1}\|)`
    with :math:`M = W_{QK}^T` (Q), :math:`W_{QK}` (K) or :math:`W_{OV}` (V) of the reading head
    h₂; NaN where ``l₁ ≥ l₂`` or where a head's map is zero. Biases play no part.
    """
    return all_composition_scores(model, kinds=(kind,))[_check_kind(kind)]


def all_composition_scores(
    model: AttnOnlyTransformer, kinds: tuple[str, ...] = COMPOSITION_KINDS
) -> dict[str, FloatArray]:
    """The :func:`composition_scores` of several kinds (default all three), from one cross product.

    Returns a dict from kind (``"Q"``, ``"K"``, ``"V"``) to ``[n_layers, n_heads, n_layers, n_heads]``.
    """
    model = folded_weights(model)
    kinds = _check_kinds(kinds)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    if L < 2:
        return {kind: np.full((L, H, L, H), np.nan, dtype=model.dtype) for kind in kinds}
    writers = _whiten_writer(model.W_O[:-1], model.W_V[:-1])  # layers 0…L-2: [L-1, H, d, s]
    readers = np.stack([_whitened_readers(model, kind) for kind in kinds])  # [K, L-1, H, r, d]
    scores = _pair_scores(
        readers.reshape(-1, *readers.shape[-2:]), writers.reshape(-1, *writers.shape[-2:])
    ).reshape(len(kinds), L - 1, H, L - 1, H)  # [kind, l₂ - 1, h₂, l₁, h₁]
    return {kind: writer_reader_tensor(scores[i], L) for i, kind in enumerate(kinds)}


def composition_baseline(
    model: AttnOnlyTransformer, *, n_samples: int | None = None, seed: int = 0
) -> float:
    r"""The score two unrelated heads of this model's shapes would get.

    Without ``n_samples``: :math:`1/\sqrt{d_\text{model}}`, the exact root-mean-square score when
    either head's orientation in the residual stream is uniformly random (any singular values,
    any kind). With ``n_samples``: the Monte Carlo mean score of ``n_samples`` independent pairs
    of heads whose four factors (``d_model × d_head`` and ``d_head × d_model``) have i.i.d.
    standard normal entries.
    """
    d, k = model.cfg.d_model, model.cfg.d_head
    if n_samples is None:
        return 1.0 / math.sqrt(d)
    if not (is_int(n_samples) and n_samples >= 1):
        raise AnalysisError(f"n_samples must be an integer ≥ 1 or None, got {n_samples!r}")
    rng = random_generator(seed)
    total = 0.0
    for start in range(0, n_samples, _CHUNK):  # bounded memory at real sizes
        size = min(_CHUNK, n_samples - start)
        left, reading, out, value = (
            rng.standard_normal((size, *shape)) for shape in ((d, k), (k, d), (d, k), (k, d))
        )
        readers = _unit(_whiten_reader(left, reading))
        writers = _unit(_whiten_writer(out, value))
        total += float(np.sum(np.sqrt(np.sum((readers @ writers) ** 2, axis=(1, 2)))))
    return total / n_samples


def relative_composition_scores(
    model: AttnOnlyTransformer, kind: str, *, n_samples: int | None = None, seed: int = 0
) -> FloatArray:
    """:func:`composition_scores` divided by :func:`composition_baseline` (1 = chance level)."""
    scores = composition_scores(model, kind)
    relative: FloatArray = scores / composition_baseline(model, n_samples=n_samples, seed=seed)
    return relative


# ---------------------------------------------------------------------- internals
def _check_kinds(kinds: Any) -> tuple[str, ...]:
    """The distinct kinds asked for, at least one."""
    try:
        chosen = tuple(dict.fromkeys(_check_kind(kind) for kind in kinds))
    except TypeError:
        chosen = ()
    if not chosen:
        raise AnalysisError(
            f"kinds: expected a non-empty collection of {COMPOSITION_KINDS}, got {kinds!r}"
        )
    return chosen


def _check_kind(kind: object) -> str:
    name = kind.upper() if isinstance(kind, str) else kind
    if name not in COMPOSITION_KINDS:
        raise AnalysisError(f"composition kind must be one of {COMPOSITION_KINDS}, got {kind!r}")
    return str(name)


def _whitened_readers(model: AttnOnlyTransformer, kind: str) -> FloatArray:
    r""":math:`R_L R` of the heads of layers 1…L-1, ``[L-1, n_heads, r, d]``; the reading map is :math:`L R`.

    Q: :math:`W_{QK}^T = K^T Q`; K: :math:`W_{QK} = Q^T K`; V: :math:`W_{OV} = O V`.
    """
    Q, K = model.W_Q[1:], model.W_K[1:]
    left, reading = {
        "Q": (K.swapaxes(-1, -2), Q),
        "K": (Q.swapaxes(-1, -2), K),
        "V": (model.W_O[1:], model.W_V[1:]),
    }[kind]
    return _whiten_reader(left, reading)


def _whiten_reader(left: FloatArray, reading: FloatArray) -> FloatArray:
    r""":math:`R_L\,\text{reading}` with :math:`R_L^T R_L = L^T L`, so :math:`\|L X\| = \|R_L X\|` for any X.

    Each factor is first scaled exactly by a power of two (scores do not depend on the scale of
    either), so that no product overflows the dtype.
    """
    result: FloatArray = _gram_root(_scaled(left)) @ _scaled(reading)
    return result


def _whiten_writer(out: FloatArray, value: FloatArray) -> FloatArray:
    r""":math:`O R_V^T` with :math:`R_V^T R_V = V V^T`, so :math:`\|X O V\| = \|X O R_V^T\|` for any X.

    Factors scaled as in :func:`_whiten_reader`.
    """
    root = _gram_root(_scaled(value).swapaxes(-1, -2)).swapaxes(-1, -2)
    result: FloatArray = _scaled(out) @ root
    return result


def _scaled(factors: FloatArray) -> FloatArray:
    """Each matrix of a stack ``[…, a, b]`` divided by the power of two just above its largest entry."""
    return unit_scaled(factors, axes=(-2, -1))[0]


def _gram_root(factor: FloatArray) -> FloatArray:
    r"""A ``k × k`` root R of the Gram matrix, :math:`R^T R = F^T F`, for each ``d × k`` factor F.

    The Gram matrix is formed in float64 (exact products for float32 factors) and factored by
    Cholesky; a rank-deficient factor falls back to the symmetric root :math:`S^{1/2} U^T` of
    :math:`F^T F = U S U^T`. Far cheaper than a QR of the ``d × k`` factor.
    """
    wide = factor.astype(np.float64)
    gram = wide.swapaxes(-1, -2) @ wide
    try:
        root = np.linalg.cholesky(gram).swapaxes(-1, -2)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(gram)
        root = np.sqrt(np.clip(values, 0.0, None))[..., :, None] * vectors.swapaxes(-1, -2)
    result: FloatArray = root.astype(factor.dtype)
    return result


def _pair_scores(readers: FloatArray, writers: FloatArray) -> FloatArray:
    r""":math:`\|R_a O_b\| / (\|R_a\|\,\|O_b\|)` for every pair, ``[n_readers, n_writers]``.

    ``readers`` is ``[n_readers, r, d]``, ``writers`` ``[n_writers, d, s]`` (whitened factors). Both
    are scaled to unit norm first (no overflow at any scale), then the ``r × s`` blocks of one
    product of the stacked factors hold every score.
    """
    readers, writers = _unit(readers), _unit(writers)
    n_r, r, d = readers.shape
    n_w, _, s = writers.shape
    cross = readers.reshape(n_r * r, d) @ writers.transpose(1, 0, 2).reshape(d, n_w * s)
    scores: FloatArray = np.sqrt(np.sum(cross.reshape(n_r, r, n_w, s) ** 2, axis=(1, 3)))
    return scores


def _unit(factors: FloatArray) -> FloatArray:
    """Each matrix of a stack ``[…, a, b]`` divided by its Frobenius norm (norm taken in float64);
    a zero matrix becomes NaN, so that every score it enters is NaN."""
    norms = np.sqrt(np.sum(np.square(factors, dtype=np.float64), axis=(-2, -1)))[..., None, None]
    result: FloatArray = np.full(factors.shape, np.nan, dtype=factors.dtype)
    np.divide(factors, norms, out=result, where=norms > 0, casting="unsafe")
    return result
