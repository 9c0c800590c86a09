r"""Residual layouts: the residual stream as a direct sum of named blocks of labelled directions.

A :class:`Block` is a named subspace whose directions carry labels, written ``name[value]``:
``tok[7]`` (token 7), ``pos[3]`` (position 3), ``prev[7]`` (the previous token was 7). A one-hot
block has one coordinate per label, and direction ``name[v]`` is a standard basis vector. A *coded*
block has fewer coordinates than labels: direction ``name[v]`` is column ``v`` of a code matrix
``C [dim, n_labels]`` (unit columns, nearly orthogonal when the code is good).

A :class:`ResidualLayout` stacks blocks, in order, into the residual stream
:math:`\mathbb{R}^{d} = \bigoplus_b \mathbb{R}^{\dim b}`; the coordinates of block ``b`` are the slice
``layout.slice(b)``. It builds vectors from labels, embeds block coordinates into the stream,
projects the stream onto a block, and reads a block back as one score per label
(:math:`C^T x_b`, exact for one-hot blocks).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .._arrays import FloatArray, as_real_array, frozen
from ..errors import LayoutError

__all__ = ["Block", "Direction", "ResidualLayout"]

_NAME = re.compile(r"^[A-Za-z_]\w*$")
_LABEL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\[\s*(.*?)\s*\]\s*$")


def _parse_value(text: str) -> Hashable:
    """``"7"`` → ``7``, ``"-1"`` → ``-1``; anything else stays a string."""
    try:
        return int(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Direction:
    """A labelled direction ``block[value]`` of a residual layout (no magnitude)."""

    block: str
    value: Hashable

    @classmethod
    def parse(cls, label: str | Direction) -> Direction:
        """``"tok[7]"`` → ``Direction("tok", 7)`` (integer values become ``int``)."""
        if isinstance(label, Direction):
            return label
        match = _LABEL.match(label) if isinstance(label, str) else None
        if match is None:
            raise LayoutError(
                f"not a direction label: {label!r}; expected 'block[value]', e.g. 'tok[7]'"
            )
        return cls(match.group(1), _parse_value(match.group(2)))

    def __str__(self) -> str:
        return f"{self.block}[{self.value}]"


def _labels(name: object, values: object) -> tuple[Hashable, ...]:
    """The labels of block ``name`` as a tuple, or a LayoutError if they are not a collection."""
    if not isinstance(values, Iterable):
        raise LayoutError(f"block {name!r}: labels are a collection of values, got {values!r}")
    return tuple(values)


@dataclass(frozen=True, eq=False)
class Block:
    """A named block of the residual stream whose directions are labelled by ``values``.

    ``code`` is ``None`` for a one-hot block (``dim = len(values)``, direction ``v`` is the basis
    vector of coordinate ``values.index(v)``), or a ``[dim, len(values)]`` array whose column ``j``
    is the direction of label ``values[j]``.
    """

    name: str
    values: tuple[Hashable, ...]
    code: FloatArray | None = None
    description: str = ""
    _index: dict[Hashable, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise LayoutError(f"block name must be an identifier, got {self.name!r}")
        values = _labels(self.name, self.values)
        try:
            index = {value: i for i, value in enumerate(values)}
        except TypeError:
            raise LayoutError(
                f"block {self.name!r}: labels must be hashable, got {values!r}"
            ) from None
        if not values:
            raise LayoutError(f"block {self.name!r} has no labels")
        if len(index) != len(values):
            raise LayoutError(f"block {self.name!r} has repeated labels")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_index", index)
        if self.code is not None:
            code = as_real_array(self.code, f"code of block {self.name!r}", (None, len(values)))
            if code.shape[0] < 1:
                raise LayoutError(f"code of block {self.name!r} has no rows")
            zero = np.flatnonzero(~code.any(axis=0))
            if zero.size:
                raise LayoutError(
                    f"code of block {self.name!r}: the direction of label {values[zero[0]]!r} "
                    "is zero"
                )
            object.__setattr__(self, "code", frozen(code))

    @classmethod
    def one_hot(cls, name: str, values: Iterable[Hashable], description: str = "") -> Block:
        """A block with one coordinate per label."""
        return cls(name, _labels(name, values), None, description)

    @classmethod
    def coded(
        cls, name: str, values: Iterable[Hashable], code: Any, description: str = ""
    ) -> Block:
        """A block whose label ``values[j]`` is the direction ``code[:, j]``."""
        return cls(name, _labels(name, values), code, description)

    @property
    def dim(self) -> int:
        """Number of coordinates the block occupies."""
        return len(self.values) if self.code is None else int(self.code.shape[0])

    @property
    def is_one_hot(self) -> bool:
        """True when every label has its own coordinate."""
        return self.code is None

    def index(self, value: Hashable) -> int:
        """Position of label ``value`` in :attr:`values`."""
        try:
            return self._index[value]
        except (KeyError, TypeError):
            shown = f"{self.values[0]!r}, …, {self.values[-1]!r}"
            raise LayoutError(
                f"block {self.name!r} has no label {value!r} (its {len(self.values)} labels: {shown})"
            ) from None

    def contains(self, value: Hashable) -> bool:
        """Whether ``value`` labels a direction of this block."""
        try:
            return value in self._index
        except TypeError:
            return False

    def code_matrix(self) -> FloatArray:
        """``[dim, len(values)]``: the direction of every label (the identity for one-hot)."""
        if self.code is None:
            return np.eye(len(self.values))
        return self.code

    def vector(self, value: Hashable) -> FloatArray:
        """Block coordinates ``[dim]`` of direction ``name[value]``."""
        j = self.index(value)
        if self.code is None:
            out = np.zeros(self.dim)
            out[j] = 1.0
            return out
        column: FloatArray = self.code[:, j].copy()
        return column

    @cached_property
    def pinv(self) -> FloatArray:
        r"""The pseudo-inverse :math:`C^+` ``[len(values), dim]`` of the code (identity for one-hot)."""
        if self.code is None:
            return np.eye(len(self.values))
        return frozen(np.linalg.pinv(self.code))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible summary: name, dim, number of labels, coding, description."""
        return {
            "name": self.name,
            "dim": self.dim,
            "labels": len(self.values),
            "code": "one-hot" if self.code is None else "coded",
            "description": self.description,
        }


@dataclass(frozen=True, eq=False)
class ResidualLayout:
    r"""The residual stream as the direct sum of ``blocks``, in order.

    >>> layout = ResidualLayout.of(Block.one_hot("tok", range(3)), Block.one_hot("pos", range(2)))
    >>> layout.d_model, layout.slice("pos")
    (5, slice(3, 5, None))
    >>> layout.vector("tok[2]", "pos[0]").tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0]
    """

    blocks: tuple[Block, ...]
    _offsets: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks)
        if not blocks or not all(isinstance(b, Block) for b in blocks):
            raise LayoutError("a layout needs at least one Block")
        offsets: dict[str, int] = {}
        start = 0
        for block in blocks:
            if block.name in offsets:
                raise LayoutError(f"block name {block.name!r} used twice in one layout")
            offsets[block.name] = start
            start += block.dim
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def of(cls, *blocks: Block) -> ResidualLayout:
        """The layout stacking ``blocks`` in the order given."""
        return cls(tuple(blocks))

    def __add__(self, other: ResidualLayout) -> ResidualLayout:
        """The direct sum: the blocks of ``self`` followed by those of ``other``."""
        if not isinstance(other, ResidualLayout):
            return NotImplemented
        return ResidualLayout(self.blocks + other.blocks)

    # ------------------------------------------------------------------ structure
    @property
    def d_model(self) -> int:
        """Total number of coordinates, :math:`\\sum_b \\dim b`."""
        return sum(block.dim for block in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        """Block names, in stream order."""
        return tuple(block.name for block in self.blocks)

    def block(self, name: str) -> Block:
        """The block called ``name``."""
        if name not in self._offsets:
            raise LayoutError(
                f"the layout has no block {name!r}; its blocks are {list(self.names)}"
            )
        return self.blocks[self.names.index(name)]

    def slice(self, name: str) -> slice:
        """The coordinates of block ``name`` in the stream."""
        block = self.block(name)
        start = self._offsets[name]
        return slice(start, start + block.dim)

    def axis_labels(self) -> list[str]:
        """One label per coordinate: ``tok[7]`` in one-hot blocks, ``tok#3`` (coordinate 3) in coded ones."""
        labels: list[str] = []
        for block in self.blocks:
            if block.is_one_hot:
                labels += [f"{block.name}[{value}]" for value in block.values]
            else:
                labels += [f"{block.name}#{i}" for i in range(block.dim)]
        return labels

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible description (each block's summary and its offset)."""
        return {
            "d_model": self.d_model,
            "blocks": [
                {**block.to_dict(), "offset": self._offsets[block.name]} for block in self.blocks
            ],
        }

    # ------------------------------------------------------------------ vectors
    def direction(self, label: str | Direction) -> Direction:
        """A label parsed and checked against the layout."""
        direction = Direction.parse(label)
        self.block(direction.block).index(direction.value)
        return direction

    def vector(
        self, *labels: str | Direction, weights: Mapping[str | Direction, float] | None = None
    ) -> FloatArray:
        r"""The stream vector :math:`\sum_\ell w_\ell\, e_\ell` over the labels given.

        Each positional label has weight 1; ``weights`` adds labels with their own weights.
        """
        x = np.zeros(self.d_model)
        items = [(label, 1.0) for label in labels] + list((weights or {}).items())
        for label, weight in items:
            direction = self.direction(label)
            x[self.slice(direction.block)] += float(weight) * self.block(direction.block).vector(
                direction.value
            )
        return x

    def embed(self, name: str, coords: Any) -> FloatArray:
        """Block coordinates ``[..., dim]`` placed in the stream ``[..., d_model]`` (zeros elsewhere)."""
        block = self.block(name)
        array = as_real_array(coords, f"coordinates of block {name!r}")
        if array.ndim < 1 or array.shape[-1] != block.dim:
            raise LayoutError(
                f"block {name!r} has {block.dim} coordinates, got an array of shape {list(array.shape)}"
            )
        out = np.zeros((*array.shape[:-1], self.d_model), dtype=array.dtype)
        out[..., self.slice(name)] = array
        return out

    def project(self, x: Any, name: str) -> FloatArray:
        """The coordinates ``x[..., slice(name)]`` of the stream in block ``name``."""
        array = self._stream(x)
        projected: FloatArray = array[..., self.slice(name)]
        return projected

    def read(self, x: Any, name: str) -> FloatArray:
        r"""One score per label of block ``name``: :math:`C^T x_b` ``[..., n_labels]``.

        For a one-hot block this is exactly the block's coordinates; for a coded block it is the
        matched filter (the inner product with every label's direction).
        """
        coords = self.project(x, name)
        block = self.block(name)
        if block.is_one_hot:
            return coords
        read: FloatArray = coords @ block.code_matrix()
        return read

    def describe(self, x: Any, *, top: int = 5, atol: float = 1e-9) -> list[tuple[str, float]]:
        """The ``top`` labels with the largest read-out ``|score|`` above ``atol``, over all blocks."""
        array = self._stream(x)
        if array.ndim != 1:
            raise LayoutError(
                f"describe() takes one stream vector [d_model], got {list(array.shape)}"
            )
        scored: list[tuple[str, float]] = []
        for block in self.blocks:
            scores = self.read(array, block.name)
            for j in np.argsort(-np.abs(scores), kind="stable")[:top]:
                if abs(scores[j]) > atol:
                    scored.append((f"{block.name}[{block.values[j]}]", float(scores[j])))
        scored.sort(key=lambda item: -abs(item[1]))
        return scored[:top]

    def _stream(self, x: Any) -> FloatArray:
        array = as_real_array(x, "stream vector", copy=False)
        if array.ndim < 1 or array.shape[-1] != self.d_model:
            raise LayoutError(
                f"stream vector: expected shape [..., {self.d_model}], got {list(array.shape)}"
            )
        return array
