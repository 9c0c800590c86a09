r"""The attention-only transformer, exactly as the Framework writes it (column vectors).

.. math::

    x^0_i &= W_E[:, t_i] + W_P[:, i] \qquad \text{(standard positions)} \\
    s^h_{ij} &= (W_Q^h x_i + b_Q^h)^T (W_K^h x_j + b_K^h) / \text{attn\_scale}, \quad j \le i \\
    A^h &= \operatorname{softmax}_j(s^h) \\
    x^{l+1}_i &= x^l_i + \sum_h W_O^h \sum_j A^h_{ij} (W_V^h x^l_j + b_V^h) + b_O^l \\
    \text{logits}_i &= W_U x^L_i + b_U

With shortformer positions, :math:`W_P` is added only to the inputs of queries and keys of every
layer, never to the residual stream or the values. With a normalisation (``normalization_type``),
the heads of layer :math:`l` read :math:`\mathrm{LN}^l(x^l_i)` instead of :math:`x^l_i` (shortformer
positions are added after it) and the unembedding reads :math:`\mathrm{LN}^{\text{final}}(x^L_i)`,
as in TransformerLens; :meth:`AttnOnlyTransformer.normalize` gives the formula. Activations are stored batch-first
(``[batch, pos, d_model]``); weights follow the column convention of the Framework.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._arrays import (
    FloatArray,
    all_finite,
    as_real_array,
    common_dtype,
    float_dtype,
    frozen,
    to_numpy,
)
from ._checks import is_int, random_generator
from .config import TransformerConfig
from .errors import CircuitsError, ConfigError, NumericalError, ShapeError, TokenError, WeightError
from .factored import FactoredMatrix
from .tl_format import from_transformer_lens_dict, to_transformer_lens_dict

__all__ = [
    "ActivationCache",
    "AttnOnlyTransformer",
    "as_cache",
    "causal_softmax",
    "token_ids",
    "validate_tokens",
]

IntArray = NDArray[np.intp]

#: Weight names, in the order ``parameters()`` lists them.
WEIGHT_NAMES = (
    "W_E", "W_P", "W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_U", "b_U",
    "w_LN", "b_LN", "w_LN_final", "b_LN_final",
)  # fmt: skip
#: Weights that default to zeros (biases) or ones (normalisation weights) when not given.
_DEFAULTS = {
    "b_Q": 0.0, "b_K": 0.0, "b_V": 0.0, "b_O": 0.0, "b_U": 0.0,
    "w_LN": 1.0, "b_LN": 0.0, "w_LN_final": 1.0, "b_LN_final": 0.0,
}  # fmt: skip


def weight_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every weight in the column convention (``W_P`` only with positions).

    A normalisation with weights adds ``w_LN`` ``[L, d]`` (layer ``l``'s ``ln1.w``) and
    ``w_LN_final`` ``[d]``; ``"LN"`` also the biases ``b_LN`` and ``b_LN_final``.
    """
    L, H, d, k, V, n = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_vocab, cfg.n_ctx
    shapes: dict[str, tuple[int, ...]] = {
        "W_E": (d, V),
        "W_Q": (L, H, k, d),
        "W_K": (L, H, k, d),
        "W_V": (L, H, k, d),
        "W_O": (L, H, d, k),
        "b_Q": (L, H, k),
        "b_K": (L, H, k),
        "b_V": (L, H, k),
        "b_O": (L, d),
        "W_U": (V, d),
        "b_U": (V,),
    }
    if cfg.positional_embedding_type != "none":
        shapes["W_P"] = (d, n)
    if cfg.normalization_weights:
        shapes.update(w_LN=(L, d), w_LN_final=(d,))
    if cfg.normalization_type == "LN":
        shapes.update(b_LN=(L, d), b_LN_final=(d,))
    return {name: shapes[name] for name in WEIGHT_NAMES if name in shapes}


def causal_softmax(scores: FloatArray) -> FloatArray:
    r"""Row-wise softmax over keys ``j ≤ i`` of ``scores[..., i, j]``; entries ``j > i`` are 0.

    :math:`A_{ij} = e^{s_{ij} - m_i} / \sum_{j' \le i} e^{s_{ij'} - m_i}` with
    :math:`m_i = \max_{j \le i} s_{ij}`: subtracting the row maximum keeps every exponent ≤ 0, so
    scores of any finite size (1e6 and beyond) give finite patterns. A score of :math:`+\infty` or
    NaN (weights that overflow the dtype) is a :class:`~circuits.errors.NumericalError`; a score
    of :math:`-\infty` weighs 0, as does any score far below its row's maximum. Computed in place
    in one array the size of the scores.
    """
    values = as_real_array(scores, "scores", finite=False, copy=False)
    if values.ndim < 2 or not 1 <= values.shape[-2] <= values.shape[-1]:
        raise ShapeError(
            f"scores: expected shape [..., q, k] with 1 ≤ q ≤ k (every query has a key), got "
            f"{list(values.shape)}"
        )
    n_q, n_k = values.shape[-2:]
    allowed = np.tril(np.ones((n_q, n_k), dtype=bool), k=n_k - n_q)
    weights = np.where(allowed, values, -np.inf)
    top = weights.max(axis=-1, keepdims=True)
    if not np.all(np.isfinite(top)):  # +inf or NaN somewhere in the row, or no finite score
        raise NumericalError("attention scores are not finite (the weights overflow this dtype)")
    with np.errstate(over="ignore"):  # a difference beyond the range is -inf: weight exactly 0
        np.subtract(weights, top, out=weights)
    np.exp(weights, out=weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    result: FloatArray = weights
    return result


def token_ids(value: Any, name: str, d_vocab: int | None = None) -> IntArray:
    """``value`` as an array of token ids (any shape): integers ``≥ 0``, and ``< d_vocab`` if given.

    Raises :class:`~circuits.errors.TokenError` naming ``name`` and the first bad id.
    """
    try:
        array = to_numpy(value, name)
    except WeightError as error:
        raise TokenError(str(error)) from None
    if array.dtype.kind not in "iu":
        raise TokenError(f"{name}: expected integer token ids, got dtype {array.dtype}")
    bad = array < 0 if d_vocab is None else (array < 0) | (array >= d_vocab)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        problem = "is negative" if d_vocab is None else f"is outside the vocabulary [0, {d_vocab})"
        raise TokenError(f"{name}: id {int(array[where])} at index {where} {problem}")
    return array.astype(np.intp)


def validate_tokens(tokens: Any, cfg: TransformerConfig) -> tuple[IntArray, bool]:
    """Check ``tokens`` (``[batch, pos]`` or ``[pos]``) and return them batched, with a flag.

    Raises :class:`~circuits.errors.TokenError` naming the problem: not integers, wrong rank,
    empty, longer than ``n_ctx``, or an id outside ``[0, d_vocab)``.
    """
    try:
        array = to_numpy(tokens, "tokens")
    except WeightError as error:
        raise TokenError(str(error)) from None
    if array.dtype.kind in "USV":
        raise TokenError(f"tokens: expected integer token ids, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise TokenError(f"tokens: expected shape [batch, pos] or [pos], got {list(array.shape)}")
    if array.size == 0:
        raise TokenError(f"tokens: empty sequence (shape {list(array.shape)})")
    if array.shape[-1] > cfg.n_ctx:
        raise TokenError(
            f"tokens: {array.shape[-1]} positions exceed the context n_ctx={cfg.n_ctx}"
        )
    ids = token_ids(array, "tokens", cfg.d_vocab)
    return (ids, True) if ids.ndim == 2 else (ids[None, :], False)


class AttnOnlyTransformer:
    """An attention-only transformer: config, weights (column convention) and the forward pass.

    Weights are validated at construction (shape, real dtype, finiteness) and stored read-only.
    They keep their dtype when every weight is float32 or every weight is float64; otherwise
    everything is float64. Absent biases are zeros, absent normalisation weights ones. ``bos_token`` names the start-of-sequence
    token id, if the model has one; ``metadata`` is free-form JSON-compatible information (e.g.
    head roles), saved with the model.
    """

    def __init__(
        self,
        cfg: TransformerConfig | Mapping[str, Any],
        *,
        W_E: Any,
        W_U: Any,
        W_P: Any = None,
        W_Q: Any = None,
        W_K: Any = None,
        W_V: Any = None,
        W_O: Any = None,
        b_Q: Any = None,
        b_K: Any = None,
        b_V: Any = None,
        b_O: Any = None,
        b_U: Any = None,
        w_LN: Any = None,
        b_LN: Any = None,
        w_LN_final: Any = None,
        b_LN_final: Any = None,
        bos_token: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg if isinstance(cfg, TransformerConfig) else TransformerConfig.from_dict(cfg)
        given = {
            "W_E": W_E, "W_P": W_P, "W_Q": W_Q, "W_K": W_K, "W_V": W_V, "W_O": W_O,
            "b_Q": b_Q, "b_K": b_K, "b_V": b_V, "b_O": b_O, "W_U": W_U, "b_U": b_U,
            "w_LN": w_LN, "b_LN": b_LN, "w_LN_final": w_LN_final, "b_LN_final": b_LN_final,
        }  # fmt: skip
        self._weights = _validate_weights(self.cfg, given)
        self.bos_token = _validate_bos(bos_token, self.cfg)
        self.metadata: Mapping[str, Any] = MappingProxyType(_validate_metadata(metadata))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def random(
        cls,
        cfg: TransformerConfig | Mapping[str, Any],
        *,
        seed: int = 0,
        biases: bool = False,
        dtype: Any = np.float64,
    ) -> AttnOnlyTransformer:
        """A model with Gaussian weights, scaled so that scores and logits are of order one.

        ``W_E, W_P ~ N(0, 1)``; ``W_Q, W_K, W_V, W_U ~ N(0, 1/d_model)``; ``W_O ~ N(0, 1/d_head)``;
        with ``biases``, every bias ``~ N(0, 1/4)``. Normalisation weights are ``1 + N(0, 1/16)``
        (their biases count as biases). Reproducible from ``seed``.
        """
        config = cfg if isinstance(cfg, TransformerConfig) else TransformerConfig.from_dict(cfg)
        rng, dtype = random_generator(seed), float_dtype(dtype)
        std = {"W_E": 1.0, "W_P": 1.0, "W_O": config.d_head**-0.5}
        weights = {
            name: (rng.standard_normal(shape) * std.get(name, config.d_model**-0.5)).astype(dtype)
            for name, shape in weight_shapes(config).items()
            if not name.startswith(("b_", "w_"))
        }
        for name, shape in weight_shapes(config).items():
            if name.startswith("w_"):
                weights[name] = (1 + 0.25 * rng.standard_normal(shape)).astype(dtype)
        if biases:
            for name, shape in weight_shapes(config).items():
                if name.startswith("b_"):
                    weights[name] = (0.5 * rng.standard_normal(shape)).astype(dtype)
        return cls(config, **weights)

    def replace(self, **changes: Any) -> AttnOnlyTransformer:
        """A copy with some weights (or ``cfg``, ``bos_token``, ``metadata``) replaced."""
        values: dict[str, Any] = {
            **self.parameters(),
            "bos_token": self.bos_token,
            "metadata": self.metadata,
            "cfg": self.cfg,
        }
        unknown = sorted(set(changes) - set(values) - set(WEIGHT_NAMES))
        if unknown:
            raise ConfigError(f"replace(): unknown fields {unknown}")
        values.update(changes)
        return AttnOnlyTransformer(values.pop("cfg"), **values)

    @classmethod
    def from_transformer_lens(
        cls, state_dict: Mapping[str, Any], **overrides: Any
    ) -> AttnOnlyTransformer:
        """A model from a TransformerLens state dict (row convention; see ``circuits.tl_format``).

        Shapes are inferred; ``overrides`` sets config fields (``n_ctx``, ``attn_scale``,
        ``positional_embedding_type``, ``normalization_type``, ``eps``) and may also give
        ``bos_token`` and ``metadata``. Values can be anything with ``__array__`` (torch tensors
        included). A state dict does not say everything: ``"LNPre"`` and ``"RMSPre"`` leave no key,
        and the positional type is a guess; :meth:`from_hooked_transformer` reads them from the
        model's config instead.
        """
        bos_token = overrides.pop("bos_token", None)
        metadata = overrides.pop("metadata", None)
        cfg, weights = from_transformer_lens_dict(state_dict, overrides)
        return cls(cfg, **weights, bos_token=bos_token, metadata=metadata)

    @classmethod
    def from_hooked_transformer(
        cls,
        model: Any,
        *,
        bos_token: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AttnOnlyTransformer:
        """A model from a TransformerLens ``HookedTransformer`` (its config and its weights).

        Duck-typed: ``model`` needs ``cfg`` (a ``HookedTransformerConfig``) and ``state_dict()``;
        torch is imported only by the object itself. Every config field is checked
        (:func:`circuits.tl_format.hooked_transformer_overrides`): a model with MLPs, rotary or
        ALiBi positions, grouped-query attention, soft-capping, a non-causal mask, or any other
        option not modelled here is refused with an
        :class:`~circuits.errors.UnsupportedModelError` naming the field and its value.
        ``bos_token`` defaults to the tokenizer's BOS id when the model prepends one.
        """
        from .errors import UnsupportedModelError
        from .tl_format import hooked_transformer_overrides

        cfg, state_dict = getattr(model, "cfg", None), getattr(model, "state_dict", None)
        if cfg is None or not callable(state_dict):
            raise UnsupportedModelError(
                "expected a TransformerLens HookedTransformer (with .cfg and .state_dict()), got "
                f"{type(model).__name__}"
            )
        overrides = hooked_transformer_overrides(cfg)
        if bos_token is None and getattr(cfg, "default_prepend_bos", False):
            bos_token = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
        return cls.from_transformer_lens(
            state_dict(), **overrides, bos_token=bos_token, metadata=metadata
        )

    def to_transformer_lens(self) -> dict[str, FloatArray]:
        """The TransformerLens state dict of this model (numpy arrays, row convention).

        Exact inverse of :meth:`from_transformer_lens`; positional types other than ``standard``
        and a non-default ``attn_scale`` are not part of a state dict and must be passed back as
        overrides.
        """
        return to_transformer_lens_dict(self.cfg, self._weights)

    # ------------------------------------------------------------------ weights
    def parameters(self) -> dict[str, FloatArray]:
        """Every weight by name (read-only arrays, column convention)."""
        return dict(self._weights)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The floating dtype every weight and activation has."""
        return self._weights["W_E"].dtype

    @property
    def W_E(self) -> FloatArray:
        """Token embedding ``[d_model, d_vocab]``: column ``t`` embeds token ``t``."""
        return self._weights["W_E"]

    @property
    def W_Q(self) -> FloatArray:
        """Query weights ``[n_layers, n_heads, d_head, d_model]``."""
        return self._weights["W_Q"]

    @property
    def W_K(self) -> FloatArray:
        """Key weights ``[n_layers, n_heads, d_head, d_model]``."""
        return self._weights["W_K"]

    @property
    def W_V(self) -> FloatArray:
        """Value weights ``[n_layers, n_heads, d_head, d_model]``."""
        return self._weights["W_V"]

    @property
    def W_O(self) -> FloatArray:
        """Output weights ``[n_layers, n_heads, d_model, d_head]``."""
        return self._weights["W_O"]

    @property
    def b_Q(self) -> FloatArray:
        """Query biases ``[n_layers, n_heads, d_head]``."""
        return self._weights["b_Q"]

    @property
    def b_K(self) -> FloatArray:
        """Key biases ``[n_layers, n_heads, d_head]``."""
        return self._weights["b_K"]

    @property
    def b_V(self) -> FloatArray:
        """Value biases ``[n_layers, n_heads, d_head]``."""
        return self._weights["b_V"]

    @property
    def b_O(self) -> FloatArray:
        """Output biases ``[n_layers, d_model]``."""
        return self._weights["b_O"]

    @property
    def W_U(self) -> FloatArray:
        """Unembedding ``[d_vocab, d_model]``: logits ``= W_U x + b_U``."""
        return self._weights["W_U"]

    @property
    def b_U(self) -> FloatArray:
        """Unembedding bias ``[d_vocab]``."""
        return self._weights["b_U"]

    @property
    def w_LN(self) -> FloatArray | None:
        """Normalisation weights ``[n_layers, d_model]`` of each layer's input (``ln1.w``), or ``None``."""
        return self._weights.get("w_LN")

    @property
    def b_LN(self) -> FloatArray | None:
        """LayerNorm biases ``[n_layers, d_model]`` of each layer's input (``ln1.b``), or ``None``."""
        return self._weights.get("b_LN")

    @property
    def w_LN_final(self) -> FloatArray | None:
        """Normalisation weight ``[d_model]`` before the unembedding (``ln_final.w``), or ``None``."""
        return self._weights.get("w_LN_final")

    @property
    def b_LN_final(self) -> FloatArray | None:
        """LayerNorm bias ``[d_model]`` before the unembedding (``ln_final.b``), or ``None``."""
        return self._weights.get("b_LN_final")

    @property
    def W_P(self) -> FloatArray | None:
        """Positional embedding ``[d_model, n_ctx]``, or ``None`` without positions."""
        return self._weights.get("W_P")

    def W_QK(self, layer: int | str, head: int | None = None) -> FactoredMatrix:
        r""":math:`W_{QK}^h = W_Q^{hT} W_K^h` (``d_model × d_model``, rank ≤ ``d_head``), factored.

        The score of query ``x_i`` on key ``x_j`` is :math:`x_i^T W_{QK} x_j / \text{attn\_scale}`
        (biases aside). ``head`` may be given as ``(layer, head)`` or as a name ``"l.h"``.
        """
        layer, head = self.cfg.resolve_head(layer, head)
        return FactoredMatrix(self.W_Q[layer, head].T, self.W_K[layer, head])

    def W_OV(self, layer: int | str, head: int | None = None) -> FactoredMatrix:
        r""":math:`W_{OV}^h = W_O^h W_V^h` (``d_model × d_model``, rank ≤ ``d_head``), factored."""
        layer, head = self.cfg.resolve_head(layer, head)
        return FactoredMatrix(self.W_O[layer, head], self.W_V[layer, head])

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"AttnOnlyTransformer(n_layers={c.n_layers}, n_heads={c.n_heads}, d_model={c.d_model}, "
            f"d_head={c.d_head}, d_vocab={c.d_vocab}, n_ctx={c.n_ctx}, "
            f"positions={c.positional_embedding_type!r}, "
            + (f"normalization={c.normalization_type!r}, " if c.normalized else "")
            + f"dtype={self.dtype})"
        )

    def _repr_svg_(self) -> str | None:
        """The circuit diagram, shown by Jupyter (``None`` without Graphviz's ``dot``)."""
        from .render import model_svg  # the display layer sits above the model

        return model_svg(self)

    # ------------------------------------------------------------------ forward pass
    def forward(self, tokens: Any) -> FloatArray:
        """Logits ``[batch, pos, d_vocab]`` for tokens ``[batch, pos]`` (``[pos]`` gives ``[pos, d_vocab]``)."""
        batched_tokens, batched = validate_tokens(tokens, self.cfg)
        logits, _ = self._run(batched_tokens, keep=False)
        return logits if batched else logits[0]

    __call__ = forward

    def run_with_cache(self, tokens: Any) -> tuple[FloatArray, ActivationCache]:
        """Logits (as :meth:`forward`) and an :class:`ActivationCache` of every activation.

        The cache always keeps the batch axis, even for unbatched tokens.
        """
        batched_tokens, batched = validate_tokens(tokens, self.cfg)
        logits, cache = self._run(batched_tokens, keep=True)
        assert cache is not None
        return (logits if batched else logits[0]), cache

    def embed(self, tokens: IntArray) -> FloatArray:
        """The stream entering layer 0, ``W_E[:, t_i] (+ W_P[:, i])``, ``[batch, pos, d_model]``."""
        x: FloatArray = self.W_E.T[tokens]
        if self.cfg.positional_embedding_type == "standard":
            assert self.W_P is not None
            x = x + self.W_P[:, : tokens.shape[1]].T
        return x

    def _run(self, tokens: IntArray, *, keep: bool) -> tuple[FloatArray, ActivationCache | None]:
        # overflow is detected (causal_softmax, final check) and reported as NumericalError
        with np.errstate(over="ignore", invalid="ignore"):
            logits, cache, bounded = self._run_unchecked(tokens, keep=keep)
        if not (bounded or all_finite(logits)):
            raise NumericalError("logits are not finite (the weights overflow this dtype)")
        return logits, cache

    def _run_unchecked(
        self, tokens: IntArray, *, keep: bool
    ) -> tuple[FloatArray, ActivationCache | None, bool]:
        cfg = self.cfg
        B, n = tokens.shape
        H, k = cfg.n_heads, cfg.d_head
        shortformer = cfg.positional_embedding_type == "shortformer"
        pos = self.W_P[:, :n].T if shortformer and self.W_P is not None else None  # [n, d]
        x = self.embed(tokens)  # [B, n, d]
        resid, scales, scores_all, patterns_all, z_all = [x], [], [], [], []
        for layer in range(cfg.n_layers):
            read, scale = self.normalize(x, layer)  # what the heads read, [B, n, d]
            qk_in = read if pos is None else read + pos
            q = _per_head(qk_in, self.W_Q[layer], self.b_Q[layer])  # [B, H, n, k]
            key = _per_head(qk_in, self.W_K[layer], self.b_K[layer])
            v = _per_head(read, self.W_V[layer], self.b_V[layer])
            scores = (q @ key.transpose(0, 1, 3, 2)) / cfg.attn_scale  # [B, H, n, n]
            pattern = causal_softmax(scores)
            z = pattern @ v  # [B, H, n, k]
            # "concatenate heads, then W_O": [B, n, H·k] @ [H·k, d]
            W_O_cat = self.W_O[layer].transpose(1, 0, 2).reshape(cfg.d_model, H * k)
            x = x + z.transpose(0, 2, 1, 3).reshape(B, n, H * k) @ W_O_cat.T + self.b_O[layer]
            if keep:
                resid.append(x)
                scales.append(scale)
                scores_all.append(scores)
                patterns_all.append(pattern)
                z_all.append(z)
        read, scale = self.normalize(x, cfg.n_layers)
        flat, bounded = self._unembed(read.reshape(B * n, cfg.d_model))  # [B·n, V]
        logits = flat.reshape(B, n, cfg.d_vocab)
        if not keep:
            return logits, None, bounded
        cache = ActivationCache(
            model=self,
            tokens=tokens,
            _resid=tuple(resid),
            _scales=(*scales, scale) if cfg.normalized else (),
            _scores=tuple(scores_all),
            _patterns=tuple(patterns_all),
            _z=tuple(z_all),
        )
        return logits, cache, bounded

    def _unembed(self, read: FloatArray) -> tuple[FloatArray, bool]:
        r"""``read @ W_Uᵀ + b_U`` for ``read`` ``[N, d_model]``, and whether it is proved finite.

        One GEMM of ``[read | 1]`` by ``[W_U | b_U]ᵀ``: the bias rides in the product, so the
        ``[N, d_vocab]`` logits (the largest array of the pass) are written once and never read
        again. Every logit and every partial sum of it is at most
        :math:`\|[x \mid 1]\|_2 \max_t \|[W_U \mid b_U]_t\|_2` (Cauchy–Schwarz), so below half
        the dtype's range none can overflow, and no pass over the logits has to check them.
        """
        unembedding, largest_row = self._augmented_unembedding
        x = np.empty((read.shape[0], read.shape[1] + 1), dtype=unembedding.dtype)
        x[:, :-1] = read
        x[:, -1] = 1
        logits: FloatArray = x @ unembedding.T
        with np.errstate(over="ignore", invalid="ignore"):
            norm = float(np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64).max()))
            bounded = norm * largest_row < float(np.finfo(unembedding.dtype).max) / 2
        return logits, bool(bounded)

    @cached_property
    def _augmented_unembedding(self) -> tuple[FloatArray, float]:
        """``[W_U | b_U]`` ``[d_vocab, d_model + 1]`` and the largest norm of its rows (float64)."""
        W = np.concatenate([self.W_U, self.b_U[:, None]], axis=1)
        return W, float(np.sqrt(np.einsum("ij,ij->i", W, W, dtype=np.float64).max()))

    def normalize(self, x: FloatArray, layer: int) -> tuple[FloatArray, FloatArray]:
        r"""What the heads of ``layer`` read from the stream ``x`` ``[..., d]`` (``layer = n_layers``:
        the unembedding), and the normalisation scale :math:`\sigma` ``[...]``.

        :math:`\mathrm{LN}(x) = w \odot (x - \bar{x}) / \sigma + b` with
        :math:`\sigma = \sqrt{\overline{(x - \bar{x})^2} + \epsilon}` (means over the
        ``d_model`` entries; RMS variants do not subtract :math:`\bar{x}`), computed in
        TransformerLens's order. Without normalisation: ``x`` itself and :math:`\sigma = 1`.
        """
        cfg = self.cfg
        if not cfg.normalized:
            return x, np.ones(x.shape[:-1], dtype=x.dtype)
        centred = x - x.mean(axis=-1, keepdims=True) if cfg.centred else x
        scale = np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + cfg.eps)
        out: FloatArray = centred / scale
        if cfg.normalization_weights:
            final = layer == cfg.n_layers
            out = out * (self._weights["w_LN_final"] if final else self._weights["w_LN"][layer])
            if cfg.normalization_type == "LN":
                out = out + (self._weights["b_LN_final"] if final else self._weights["b_LN"][layer])
        return out, scale[..., 0]


@dataclass(frozen=True, eq=False)
class ActivationCache:
    """Every activation of one forward pass; arrays are batch-first ``[batch, …]``.

    Heads may be given as ``(layer, head)`` or as a name ``"l.h"``.
    """

    model: AttnOnlyTransformer
    tokens: IntArray  # [batch, pos]
    _resid: tuple[FloatArray, ...]  # n_layers + 1 × [batch, pos, d_model]
    _scales: tuple[FloatArray, ...]  # n_layers + 1 × [batch, pos] with normalisation, else ()
    _scores: tuple[FloatArray, ...]  # n_layers × [batch, n_heads, q, k]
    _patterns: tuple[FloatArray, ...]  # n_layers × [batch, n_heads, q, k]
    _z: tuple[FloatArray, ...]  # n_layers × [batch, n_heads, pos, d_head]

    def resid(self, layer: int) -> FloatArray:
        """The stream entering ``layer``, ``[batch, pos, d_model]``; ``resid(n_layers)`` is the last."""
        if not (is_int(layer) and 0 <= layer <= self.model.cfg.n_layers):
            raise ConfigError(f"resid({layer!r}): layer must be in [0, {self.model.cfg.n_layers}]")
        return self._resid[layer]

    def scale(self, layer: int) -> FloatArray:
        r"""The normalisation scale :math:`\sigma` ``[batch, pos]`` of the stream read by ``layer``'s
        heads (``layer = n_layers``: by the unembedding); ones without normalisation.

        TransformerLens's ``blocks.{layer}.ln1.hook_scale`` (``ln_final.hook_scale``).
        """
        cfg = self.model.cfg
        if not (is_int(layer) and 0 <= layer <= cfg.n_layers):
            raise ConfigError(f"scale({layer!r}): layer must be in [0, {cfg.n_layers}]")
        if not self._scales:
            return np.ones(self.tokens.shape, dtype=self.model.dtype)
        return self._scales[layer]

    def scores(self, layer: int | str, head: int | None = None) -> FloatArray:
        """Attention scores ``[batch, q, k]``: scaled by ``1/attn_scale``, before mask and softmax.

        Entries above the diagonal (``k > q``) are computed but never used.
        """
        layer, head = self.model.cfg.resolve_head(layer, head)
        return self._scores[layer][:, head]

    def pattern(self, layer: int | str, head: int | None = None) -> FloatArray:
        """Attention pattern ``A[batch, q, k]``: rows sum to one, zero above the diagonal."""
        layer, head = self.model.cfg.resolve_head(layer, head)
        return self._patterns[layer][:, head]

    def z(self, layer: int | str, head: int | None = None) -> FloatArray:
        r"""Mixed values :math:`z_i = \sum_j A_{ij} (W_V x_j + b_V)`, ``[batch, pos, d_head]``."""
        layer, head = self.model.cfg.resolve_head(layer, head)
        return self._z[layer][:, head]

    def head_output(self, layer: int | str, head: int | None = None) -> FloatArray:
        r"""What a head writes, :math:`W_O \sum_j A_{ij}(W_V x_j + b_V)`, ``[batch, pos, d_model]``.

        ``b_O`` is excluded: it belongs to the layer, not to any head.
        """
        layer, head = self.model.cfg.resolve_head(layer, head)
        out: FloatArray = self._z[layer][:, head] @ self.model.W_O[layer, head].T
        return out


def as_model(model: object, error: type[CircuitsError] = ConfigError) -> AttnOnlyTransformer:
    """``model`` itself if it is an :class:`AttnOnlyTransformer`, else ``error`` saying what it is."""
    if not isinstance(model, AttnOnlyTransformer):
        raise error(f"expected an AttnOnlyTransformer, got {type(model).__name__}")
    return model


def as_cache(cache: object, name: str = "cache") -> ActivationCache:
    """``cache`` itself if it is an :class:`ActivationCache`, else a ConfigError naming ``name``."""
    if not isinstance(cache, ActivationCache):
        raise ConfigError(
            f"{name}: expected an ActivationCache (from model.run_with_cache), "
            f"got {type(cache).__name__}"
        )
    return cache


def _per_head(x: FloatArray, W: FloatArray, b: FloatArray) -> FloatArray:
    """``W^h x_i + b^h`` for all heads at once: ``[B, n, d]``, ``[H, k, d]`` → ``[B, H, n, k]``."""
    B, n, d = x.shape
    H, k, _ = W.shape
    out = (x @ W.reshape(H * k, d).T).reshape(B, n, H, k).transpose(0, 2, 1, 3)
    result: FloatArray = out + b[None, :, None, :]
    return result


def _validate_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON round-tripped copy of ``metadata`` (it is saved with the model): no NaN or ∞."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"metadata must be JSON-serialisable: {error}") from None
    return copied


def _validate_bos(bos_token: object, cfg: TransformerConfig) -> int | None:
    if bos_token is None:
        return None
    if not is_int(bos_token):
        raise ConfigError(f"bos_token must be an integer token id or None, got {bos_token!r}")
    token: int = int(bos_token)  # type: ignore[call-overload]
    if not 0 <= token < cfg.d_vocab:
        raise ConfigError(f"bos_token {token} is outside the vocabulary [0, {cfg.d_vocab})")
    return token


def _validate_weights(cfg: TransformerConfig, given: Mapping[str, Any]) -> dict[str, FloatArray]:
    """Check every weight's shape, dtype and finiteness; fill absent biases with zeros and absent
    normalisation weights with ones."""
    shapes = weight_shapes(cfg)
    extra = sorted(
        name for name, value in given.items() if value is not None and name not in shapes
    )
    if extra:
        raise ConfigError(f"{_unused_weights_reason(cfg, extra)}: {extra} given")
    arrays = {}
    for name, shape in shapes.items():
        value = given.get(name)
        if value is None:
            if name in _DEFAULTS or cfg.n_layers == 0:
                continue
            raise ConfigError(f"weight {name} is required (shape {list(shape)})")
        arrays[name] = to_numpy(value, name)
    dtype = common_dtype(*arrays.values())
    weights = {
        name: frozen(as_real_array(arrays[name], name, shape, dtype=dtype))
        if name in arrays
        else frozen(np.full(shape, _DEFAULTS.get(name, 0.0), dtype=dtype))
        for name, shape in shapes.items()
    }
    return weights


def _unused_weights_reason(cfg: TransformerConfig, names: list[str]) -> str:
    """Why weights ``names`` have no place in a model of configuration ``cfg``."""
    if "W_P" in names:
        return "W_P given, but positional_embedding_type is 'none'"
    return f"normalization_type {cfg.normalization_type!r} has no such weights"
