r"""Numeric path algebra with frozen patterns (internal to the path and QK expansions).

The contribution of a path ``(source, h_1, …, h_m)`` to the residual stream is kept in the narrow
basis of the last head that wrote it: as ``z`` with the stream equal to :math:`W_O^{h_m} z_i` at
each position ``i`` (``z`` is ``[batch, pos, d_head]``), or as the stream itself when no head wrote
it. Moving the signal through a further head ``h`` then costs a ``d_head × d_head`` product
:math:`W_V^h W_O^{h_m}` and one mixing by the pattern,

.. math::  z'_i = \sum_j A^h_{ij} \, W_V^h W_O^{h_m} z_j ,

never a product with the ``d_model``-wide stream. A constant signal (a bias) stays constant:
:math:`\sum_j A_{ij} c = (A\mathbb{1})_i c`. Reading a path out at the target logits
:math:`t_{b,i}` is the dot product of ``z`` with :math:`W_O^{h_m\,T} W_U[t_{b,i}]`, computed once
per head for all paths ending there.

With a normalisation, its scales :math:`\sigma^l_{b,i}` are frozen from the cache like the
patterns, so what layer ``l`` reads of a stream is the linear map
:math:`x_i \mapsto \mathrm{diag}(w^l) C x_i / \sigma^l_i` (:math:`C` the centring) plus the
normalisation's bias, a source of its own. Each reading weight :math:`W` becomes
:math:`W \mathrm{diag}(w^l) C`, still applied in the narrow basis, and the result is divided by
:math:`\sigma^l` at each position; the unembedding likewise with the final normalisation.
Sources that enter after the normalisation (its biases, query and key biases, shortformer
positions) are read without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._arrays import FloatArray
from .config import parse_head
from .errors import ConfigError, PathError, ShapeError
from .graph import parse_node
from .layer_norm import read_through_norm
from .model import ActivationCache, AttnOnlyTransformer, as_cache, token_ids

IntArray = NDArray[np.intp]
Owner = tuple[int, int] | None


@dataclass(frozen=True)
class Stream:
    """A path's contribution to the stream: ``W_O^{owner} z`` per position (``z`` if no owner).

    ``z`` is ``[batch or 1, pos or 1, width]``: axes of length 1 broadcast (a bias is the same at
    every position and in every sequence).
    """

    owner: Owner
    z: FloatArray
    normalized: bool = False  # written after the normalisation (read without it)


class PathAlgebra:
    """Streams of paths, their readouts and their query/key projections, for one cache.

    Weights come from ``model``; tokens and patterns from ``cache``, which may come from another
    model of the same configuration (patterns frozen from another run).
    """

    def __init__(self, model: AttnOnlyTransformer, cache: ActivationCache) -> None:
        if as_cache(cache).model.cfg != model.cfg:
            raise ConfigError(
                "the cache was computed by a model of another configuration: "
                f"{cache.model.cfg} ≠ {model.cfg}"
            )
        self.model, self.cache = model, cache
        self.shape: tuple[int, int] = (int(cache.tokens.shape[0]), int(cache.tokens.shape[1]))
        self._memo: dict[tuple[Any, ...], FloatArray] = {}

    def _cached(self, key: tuple[Any, ...], make: Callable[[], FloatArray]) -> FloatArray:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def _through(self, key: tuple[Any, ...], W: FloatArray, owner: Owner) -> FloatArray:
        """``W @ W_O^{owner}`` (or ``W`` without owner), cached under ``key + (owner,)``."""
        if owner is None:
            return W
        return self._cached((*key, owner), lambda: W @ self.model.W_O[owner])

    # ------------------------------------------------------------------ streams
    def source(self, node: str) -> Stream:
        """The stream written by source ``node`` (not ``b_U``, ``b_Q``, ``b_K``)."""
        info = parse_node(node)
        m, n = self.model, self.shape[1]
        if info.weight == "W_E":
            return Stream(None, m.W_E.T[self.cache.tokens])
        if info.weight == "W_P" and m.W_P is not None:
            shortformer = m.cfg.positional_embedding_type == "shortformer"
            return Stream(None, m.W_P[:, :n].T[None], normalized=shortformer)
        if info.weight == "b_LN" and m.b_LN is not None and info.layer is not None:
            return Stream(None, m.b_LN[info.layer][None, None], normalized=True)
        if info.weight == "b_V" and info.layer is not None and info.head is not None:
            return Stream((info.layer, info.head), m.b_V[info.layer, info.head][None, None])
        if info.weight == "b_O" and info.layer is not None:
            return Stream(None, m.b_O[info.layer][None, None])
        raise PathError(f"{node!r} does not write to the residual stream")

    def extend(self, stream: Stream, head: str) -> Stream:
        r"""The stream after head ``head``: :math:`z' = A^h (W_V^h W_O^{owner} z)`."""
        layer, index = parse_head(head)
        y = self.read(stream, "V", layer, index)
        if y.shape[1] == 1:  # constant over positions: A (1 ⊗ y) = (A 1) ⊗ y
            rows = self._cached(
                ("rowsum", layer, index), lambda: self.pattern(layer, index).sum(-1)
            )
            return Stream((layer, index), rows[..., None] * y)
        return Stream((layer, index), self.pattern(layer, index) @ y)

    def pattern(self, layer: int, head: int) -> FloatArray:
        """``A^{l.h}`` of the cache, ``[batch, q, k]``."""
        return self.cache.pattern(layer, head)

    def read(self, stream: Stream, which: str, layer: int, head: int) -> FloatArray:
        """``W_{which}^{l.h}`` applied to what layer ``layer`` reads of the stream (``which`` is
        ``"Q"``, ``"K"`` or ``"V"``), normalisation included."""
        W = {"Q": self.model.W_Q, "K": self.model.W_K, "V": self.model.W_V}[which][layer, head]
        if self._normalizes(stream):
            W = self._cached(
                ("N", which, layer, head), lambda: read_through_norm(self.model, W, layer)
            )
        key = (which, layer, head, self._normalizes(stream))
        result: FloatArray = stream.z @ self._through(key, W, stream.owner).T
        return self._scaled(result, layer, stream)

    def _normalizes(self, stream: Stream) -> bool:
        return self.model.cfg.normalized and not stream.normalized

    def _scaled(self, values: FloatArray, layer: int, stream: Stream) -> FloatArray:
        r"""``values`` divided by the frozen scale :math:`\sigma^l_{b,i}` if the stream is normalised."""
        if not self._normalizes(stream):
            return values
        sigma = self._cached(("sigma", layer), lambda: self.cache.scale(layer)[..., None])
        result: FloatArray = values / sigma
        return result

    def walk(self, prefixes: Sequence[Sequence[str]]) -> Iterator[tuple[int, Stream]]:
        """``(index, stream)`` for every prefix ``(source, h_1, …, h_m)``, sharing common prefixes.

        Prefixes are visited in depth-first order (not in the order given), keeping only the
        streams of the current branch, so each shared prefix is computed once.
        """
        stack: list[tuple[tuple[str, ...], Stream]] = []
        for index in sorted(range(len(prefixes)), key=lambda i: _depth_first_key(prefixes[i])):
            nodes = tuple(prefixes[index])
            while stack and stack[-1][0] != nodes[: len(stack[-1][0])]:
                stack.pop()
            if not stack:
                stack.append((nodes[:1], self.source(nodes[0])))
            while len(stack[-1][0]) < len(nodes):
                done, stream = stack[-1]
                stack.append((nodes[: len(done) + 1], self.extend(stream, nodes[len(done)])))
            yield index, stack[-1][1]

    # ------------------------------------------------------------------ readouts
    def resid(self, stream: Stream) -> FloatArray:
        """The stream in the residual basis, ``W_O^{owner} z`` (``[batch|1, pos|1, d_model]``)."""
        if stream.owner is None:
            return stream.z
        result: FloatArray = stream.z @ self.model.W_O[stream.owner].T
        return result

    def unembedding(self) -> FloatArray:
        r"""What reads the final stream: :math:`W_U`, or :math:`W_U \mathrm{diag}(w) C` through the
        final normalisation (whose scale :meth:`logits` and :meth:`readout` divide by)."""
        if not self.model.cfg.normalized:
            return self.model.W_U
        return self._cached(
            ("N", "U"), lambda: read_through_norm(self.model, self.model.W_U, self.n_layers)
        )

    @property
    def n_layers(self) -> int:
        """The number of layers; ``n_layers`` also names the unembedding's normalisation."""
        return self.model.cfg.n_layers

    def logits(self, stream: Stream) -> FloatArray:
        """The stream read out by the unembedding, ``[batch, pos, d_vocab]``."""
        U = self._through(("U",), self.unembedding(), stream.owner)
        return self.full(self._scaled(stream.z @ U.T, self.n_layers, stream))

    def constant_logits(self, node: str) -> FloatArray:
        r"""What a source read by the unembedding as it is gives the logits, ``[1, 1, d_vocab]``:
        :math:`b_U`, or :math:`W_U b_{LN}` of the final normalisation."""
        m = self.model
        if node == "b_LN_final" and m.b_LN_final is not None:
            return (m.W_U @ m.b_LN_final)[None, None]
        return m.b_U[None, None]

    def readout(self, targets: IntArray) -> Callable[[Stream], FloatArray]:
        """A function giving a stream's contribution to the logits ``targets`` (``[batch, pos]``).

        :math:`W_U[t_{b,i}] \\cdot W_O^{owner} z_{b,i}`; the rows :math:`W_U[t]` are gathered once,
        projected once per owner.
        """
        rows = self.unembedding()[targets]  # [batch, pos, d_model]
        projected: dict[Owner, FloatArray] = {None: rows}

        def read(stream: Stream) -> FloatArray:
            if stream.owner not in projected:
                projected[stream.owner] = rows @ self.model.W_O[stream.owner]
            values: FloatArray = np.einsum("bpr,bpr->bp", *np.broadcast_arrays(
                projected[stream.owner], stream.z))  # fmt: skip
            return self._scaled(values[..., None], self.n_layers, stream)[..., 0]

        return read

    def full(self, values: FloatArray) -> FloatArray:
        """``values`` broadcast to the batch and positions of the cache."""
        shape = (*self.shape, *values.shape[2:])
        return np.ascontiguousarray(np.broadcast_to(values, shape))

    def targets(self, targets: Any) -> IntArray:
        """Validate target token ids: integers ``[batch, pos]`` as the cache's tokens, in range."""
        ids = token_ids(targets, "targets", self.model.cfg.d_vocab)
        if ids.shape != self.shape:
            raise ShapeError(
                f"targets: expected shape {list(self.shape)} (the cache's tokens), got "
                f"{list(ids.shape)}"
            )
        return ids


def _depth_first_key(nodes: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    return nodes[0], tuple(parse_head(h) for h in nodes[1:])
