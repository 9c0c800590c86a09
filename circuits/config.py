"""The configuration of an attention-only transformer, and the naming of its heads."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Union, get_args

from ._checks import is_int, is_positive_finite, is_real
from .errors import ConfigError, HeadError

__all__ = [
    "HeadRef",
    "NormalizationType",
    "PositionalEmbeddingType",
    "TransformerConfig",
    "head_name",
    "parse_head",
]

PositionalEmbeddingType = Literal["standard", "shortformer", "none"]
#: TransformerLens's names: ``"LN"`` (LayerNorm with weight and bias), ``"LNPre"`` (without),
#: ``"RMS"`` (RMSNorm with weight), ``"RMSPre"`` (without); ``None``: no normalisation.
NormalizationType = Literal["LN", "LNPre", "RMS", "RMSPre"]
NORMALIZATION_TYPES: tuple[str | None, ...] = (None, *get_args(NormalizationType))

#: A head, as a name ``"l.h"`` or as a pair ``(layer, head)``.
HeadRef = Union[str, "tuple[int, int]"]
POSITIONAL_EMBEDDING_TYPES: tuple[str, ...] = get_args(PositionalEmbeddingType)

_HEAD_NAME = re.compile(r"^\s*(\d+)\s*\.\s*(\d+)\s*$")


@dataclass(frozen=True)
class TransformerConfig:
    r"""Sizes and options of an attention-only transformer.

    ``attn_scale`` divides every attention score (default ``√d_head``). ``positional_embedding_type``
    is ``"standard"`` (``W_P`` added to the residual stream), ``"shortformer"`` (positions feed only
    queries and keys) or ``"none"``. ``normalization_type`` normalises what each layer's heads read
    and what the unembedding reads, as TransformerLens does:
    :math:`\mathrm{LN}(x) = w \odot (x - \bar{x}) / \sqrt{\overline{(x - \bar{x})^2} + \epsilon} + b`
    for ``"LN"``, without ``w, b`` for ``"LNPre"``; ``"RMS"`` and ``"RMSPre"`` do not centre
    (:math:`w \odot x / \sqrt{\overline{x^2} + \epsilon}`). ``eps`` is :math:`\epsilon`.
    """

    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_vocab: int
    n_ctx: int
    attn_scale: float = field(default=-1.0)  # -1: use √d_head
    positional_embedding_type: PositionalEmbeddingType = "standard"
    normalization_type: NormalizationType | None = None
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "d_model", "d_head", "d_vocab", "n_ctx"):
            value = getattr(self, name)
            least = 0 if name == "n_layers" else 1
            if not is_int(value) or value < least:
                raise ConfigError(f"{name} must be an integer ≥ {least}, got {value!r}")
            object.__setattr__(self, name, int(value))
        scale: object = self.attn_scale
        if is_real(scale) and scale == -1.0:
            scale = math.sqrt(self.d_head)
        if not is_positive_finite(scale):
            raise ConfigError(f"attn_scale must be a finite number > 0, got {self.attn_scale!r}")
        object.__setattr__(self, "attn_scale", float(scale))  # type: ignore[arg-type]
        if self.positional_embedding_type not in POSITIONAL_EMBEDDING_TYPES:
            raise ConfigError(
                f"positional_embedding_type must be one of {POSITIONAL_EMBEDDING_TYPES}, "
                f"got {self.positional_embedding_type!r}"
            )
        if self.normalization_type not in NORMALIZATION_TYPES:
            raise ConfigError(
                f"normalization_type must be one of {NORMALIZATION_TYPES}, "
                f"got {self.normalization_type!r}"
            )
        if not is_positive_finite(self.eps):
            raise ConfigError(f"eps must be a finite number > 0, got {self.eps!r}")
        object.__setattr__(self, "eps", float(self.eps))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TransformerConfig:
        """Build a config from a mapping; unknown keys are an error, not silently dropped."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"a config is a TransformerConfig or a mapping of its fields, got {values!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; expected some of {sorted(known)}")
        missing = sorted(
            f.name for f in fields(cls) if f.name not in values and f.name in _REQUIRED
        )
        if missing:
            raise ConfigError(f"config is missing {missing}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return asdict(self)

    @property
    def normalized(self) -> bool:
        """Whether heads and the unembedding read the stream through a normalisation."""
        return self.normalization_type is not None

    @property
    def centred(self) -> bool:
        """Whether the normalisation subtracts the mean (``"LN"``, ``"LNPre"``; not RMS)."""
        return self.normalization_type in ("LN", "LNPre")

    @property
    def normalization_weights(self) -> bool:
        """Whether the normalisation has a weight (``"LN"``, ``"RMS"``) and, for LN, a bias."""
        return self.normalization_type in ("LN", "RMS")

    def heads(self) -> Iterator[tuple[int, int]]:
        """Every head as ``(layer, head)``, layer by layer."""
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                yield layer, head

    def head_names(self) -> list[str]:
        """Every head's name ``"l.h"``, layer by layer."""
        return [head_name(layer, head) for layer, head in self.heads()]

    def resolve_head(self, layer: int | HeadRef, head: int | None = None) -> tuple[int, int]:
        """``(layer, head)`` from two indices, a pair or a name ``"l.h"``, checked against the model."""
        if isinstance(layer, str) and head is not None:
            raise HeadError(
                f"give a head as 'l.h' or as (layer, head), not both: {layer!r}, {head}"
            )
        ref: object = parse_head(layer) if isinstance(layer, str) else layer
        if head is not None:
            ref = (layer, head)
        if not (isinstance(ref, tuple) and len(ref) == 2):
            raise HeadError(f"a head is a name 'l.h' or a pair (layer, head), got {layer!r}")
        index_l, index_h = ref
        if not (is_int(index_l) and 0 <= index_l < self.n_layers):
            raise HeadError(f"layer {index_l!r} out of range: the model has {self.n_layers} layers")
        if not (is_int(index_h) and 0 <= index_h < self.n_heads):
            raise HeadError(f"head {index_h!r} out of range: layers have {self.n_heads} heads")
        return int(index_l), int(index_h)

    def resolve_heads(self, heads: Iterable[HeadRef] | HeadRef) -> list[tuple[int, int]]:
        """Distinct ``(layer, head)`` pairs, in order, from heads given as :meth:`resolve_head` takes
        them; a single name ``"l.h"`` or pair ``(layer, head)`` is one head."""
        single = isinstance(heads, str) or (
            isinstance(heads, tuple) and len(heads) == 2 and all(is_int(i) for i in heads)
        )
        if not single and not isinstance(heads, Iterable):
            raise HeadError(f"heads: expected names 'l.h' or pairs (layer, head), got {heads!r}")
        items: Iterable[Any] = [heads] if single else heads
        return list(dict.fromkeys(self.resolve_head(item) for item in items))


_REQUIRED = {"n_layers", "n_heads", "d_model", "d_head", "d_vocab", "n_ctx"}


def head_name(layer: int, head: int) -> str:
    """The name ``"l.h"`` of head ``head`` in layer ``layer``."""
    if not (is_int(layer) and is_int(head)):
        raise HeadError(f"a head is named by two integers (layer, head), got {layer!r}, {head!r}")
    return f"{layer}.{head}"


def parse_head(name: str) -> tuple[int, int]:
    """``"1.4"`` → ``(1, 4)``."""
    match = _HEAD_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise HeadError(f"not a head name: {name!r}; expected 'layer.head', e.g. '1.4'")
    return int(match.group(1)), int(match.group(2))
