r"""Assembling hand-built heads, embeddings and readout into a model.

A :class:`CircuitSpec` is a whole attention-only transformer described on a residual layout:

* token ``t`` embeds as the direction ``tok[t]`` (:math:`W_E[:, t]`), position ``i`` as
  ``pos[i]`` (:math:`W_P[:, i]`, standard positions), in the blocks the spec names;
* layer ``l`` is a tuple of :class:`~circuits.construct.heads.HeadSpec` (QK form, OV map, role);
* the logit of token ``t`` reads the direction ``out[t]``: :math:`W_U[t, :] = e_{\text{out}[t]}^T`
  (for a coded block, the code column: a matched filter).

:meth:`CircuitSpec.model` factors every head with the smallest common ``d_head``
(:func:`~circuits.construct.heads.head_weights`) and returns an
:class:`~circuits.AttnOnlyTransformer` whose metadata records each head's role
(``head_roles``), what it reads and writes (``heads``) and the layout (``layout``).
Scales may be sympy expressions: :meth:`CircuitSpec.symbolic` then gives exact sympy weights
(:class:`SymbolicModel`) and :meth:`CircuitSpec.substitute` puts numbers in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._arrays import FloatArray
from .._checks import is_int, is_real
from ..config import TransformerConfig, head_name
from ..errors import ConfigError, ConstructionError, LayoutError
from ..model import AttnOnlyTransformer
from .heads import HeadSpec, HeadWeights, head_weights, symbolic_head_weights
from .layout import ResidualLayout
from .maps import exact_number

__all__ = ["CircuitSpec", "SymbolicModel", "assemble"]


@dataclass(frozen=True, eq=False)
class CircuitSpec:
    """A hand-built model: layout, heads layer by layer, embedding and readout blocks.

    ``token_block`` must label every token ``0 … vocab_size−1``, ``readout_block`` too, and
    ``position_block`` (``None``: no positional embedding) every position ``0 … n_ctx−1``.
    """

    layout: ResidualLayout
    layers: tuple[tuple[HeadSpec, ...], ...]
    vocab_size: int
    n_ctx: int
    token_block: str = "tok"
    position_block: str | None = "pos"
    readout_block: str = "out"
    bos_token: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layers = _checked_layers(self.layers)
        object.__setattr__(self, "layers", layers)
        for name in ("vocab_size", "n_ctx"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise ConfigError(f"{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        for _, head in self.heads():
            if head.qk.layout is not self.layout:
                raise LayoutError("every head must be built on the spec's layout")
        self._require_labels(self.token_block, self.vocab_size, "token")
        self._require_labels(self.readout_block, self.vocab_size, "token")
        if self.position_block is not None:
            self._require_labels(self.position_block, self.n_ctx, "position")

    def _require_labels(self, name: str, count: int, what: str) -> None:
        block = self.layout.block(name)
        missing = [v for v in range(count) if not block.contains(v)]
        if missing:
            raise LayoutError(
                f"block {name!r} lacks the {what} label(s) {missing[:5]} (needs 0…{count - 1})"
            )

    # ------------------------------------------------------------------ structure
    def heads(self) -> Iterator[tuple[str, HeadSpec]]:
        """Every head with its name ``"l.h"``, layer by layer."""
        for layer, heads in enumerate(self.layers):
            for index, head in enumerate(heads):
                yield head_name(layer, index), head

    @property
    def is_symbolic(self) -> bool:
        """Whether some head has a scale with free sympy symbols."""
        return any(h.qk.is_symbolic or h.ov.is_symbolic for _, h in self.heads())

    def substitute(self, values: Mapping[Any, Any]) -> CircuitSpec:
        """The spec with numeric scales from ``values`` (symbol or symbol name → number)."""
        layers = tuple(tuple(h.substitute(values) for h in layer) for layer in self.layers)
        return replace(self, layers=layers)

    def describe(self) -> dict[str, Any]:
        """JSON-compatible metadata: the spec's own, plus ``head_roles``, ``heads`` and ``layout``."""
        summaries = {name: head.summary() for name, head in self.heads()}
        return {
            **dict(self.metadata),
            "head_roles": {name: s["role"] for name, s in summaries.items() if s["role"]},
            "heads": summaries,
            "layout": self.layout.to_dict(),
        }

    # ------------------------------------------------------------------ embeddings
    def _directions(self, name: str, count: int) -> FloatArray:
        """``[d_model, count]``: column ``v`` is the direction ``name[v]``."""
        block = self.layout.block(name)
        columns: FloatArray = block.code_matrix()[:, [block.index(v) for v in range(count)]]
        out = np.zeros((self.layout.d_model, count))
        out[self.layout.slice(name)] = columns
        return out

    def embedding(self) -> FloatArray:
        """``W_E`` ``[d_model, vocab_size]``: column ``t`` is ``tok[t]``."""
        return self._directions(self.token_block, self.vocab_size)

    def positional_embedding(self) -> FloatArray | None:
        """``W_P`` ``[d_model, n_ctx]``: column ``i`` is ``pos[i]`` (``None`` without positions)."""
        if self.position_block is None:
            return None
        return self._directions(self.position_block, self.n_ctx)

    def unembedding(self) -> FloatArray:
        """``W_U`` ``[vocab_size, d_model]``: row ``t`` reads ``out[t]``."""
        readout: FloatArray = self._directions(self.readout_block, self.vocab_size).T
        return readout

    # ------------------------------------------------------------------ models
    def _config(self, d_head: int, attn_scale: float) -> TransformerConfig:
        return TransformerConfig(
            n_layers=len(self.layers),
            n_heads=max([1] + [len(layer) for layer in self.layers]),
            d_model=self.layout.d_model,
            d_head=d_head,
            d_vocab=self.vocab_size,
            n_ctx=self.n_ctx,
            attn_scale=attn_scale,
            positional_embedding_type="none" if self.position_block is None else "standard",
        )

    def model(self, *, d_head: int | None = None, attn_scale: float = 1.0) -> AttnOnlyTransformer:
        """The numeric model (see :func:`assemble`)."""
        return assemble(self, d_head=d_head, attn_scale=attn_scale)

    def symbolic(self) -> SymbolicModel:
        """Exact sympy weights with the scales kept as symbols (``attn_scale = 1``)."""
        import sympy

        d_head = max([1] + [head.rank for _, head in self.heads()])
        cfg = self._config(d_head, 1.0)
        stacked = _stack(
            self,
            cfg,
            lambda name, head: symbolic_head_weights(head, d_head, name),
            lambda rows, cols: sympy.zeros(rows, cols),
        )
        W_P = self.positional_embedding()
        weights: dict[str, Any] = {
            **stacked,
            "W_E": _exact(self.embedding()),
            "W_U": _exact(self.unembedding()),
            "W_P": None if W_P is None else _exact(W_P),
        }
        return SymbolicModel(cfg, weights, self.bos_token, _json_ready(self.describe()))


def _checked_layers(layers: object) -> tuple[tuple[HeadSpec, ...], ...]:
    """``layers`` as a tuple of tuples of heads, or a ConstructionError."""
    try:
        nested = tuple(tuple(layer) for layer in layers)  # type: ignore[attr-defined]
    except TypeError:
        nested = ((layers,),)
    if not all(isinstance(head, HeadSpec) for layer in nested for head in layer):
        raise ConstructionError(
            "layers: expected a sequence of layers, each a sequence of HeadSpec, got "
            f"{type(layers).__name__}"
        )
    return nested


def _stack(
    spec: CircuitSpec, cfg: TransformerConfig, build: Any, zeros: Any
) -> dict[str, list[list[Any]]]:
    """``W_Q, W_K, W_V, W_O`` as nested lists ``[layer][head]``; absent heads are zeros."""
    k, d = cfg.d_head, cfg.d_model
    empty = HeadWeights(W_Q=zeros(k, d), W_K=zeros(k, d), W_V=zeros(k, d), W_O=zeros(d, k))
    out: dict[str, list[list[Any]]] = {"W_Q": [], "W_K": [], "W_V": [], "W_O": []}
    for layer, heads in enumerate(spec.layers):
        built = [build(head_name(layer, i), head) for i, head in enumerate(heads)]
        built += [empty] * (cfg.n_heads - len(built))
        for key in out:
            out[key].append([getattr(w, key) for w in built])
    return out


def assemble(
    spec: CircuitSpec, *, d_head: int | None = None, attn_scale: float = 1.0
) -> AttnOnlyTransformer:
    r"""The :class:`~circuits.AttnOnlyTransformer` of a numeric spec.

    ``d_head`` defaults to the smallest that represents every head; a head that does not fit a
    given ``d_head`` is a :class:`~circuits.errors.ConstructionError`. Scores are
    :math:`x_q^T W_Q^T W_K x_k / \alpha` with :math:`\alpha` = ``attn_scale``, so the factors
    carry α and :math:`W_Q^T W_K / \alpha` is exactly the QK form whatever α is.
    """
    if not isinstance(spec, CircuitSpec):
        raise ConstructionError(f"expected a CircuitSpec, got {type(spec).__name__}")
    if spec.is_symbolic:
        raise ConstructionError(
            "the spec has symbolic scales: give numbers with spec.substitute({...}) first, "
            "or take exact weights with spec.symbolic()"
        )
    needed = max([1] + [head.rank for _, head in spec.heads()])
    cfg = spec._config(needed if d_head is None else d_head, attn_scale)
    stacked = _stack(
        spec,
        cfg,
        lambda name, head: head_weights(head, cfg.d_head, attn_scale=attn_scale, name=name),
        lambda rows, cols: np.zeros((rows, cols)),
    )
    weights = {key: np.array(value, dtype=np.float64) for key, value in stacked.items()}
    if cfg.n_layers == 0:
        weights = {}
    return AttnOnlyTransformer(
        cfg,
        W_E=spec.embedding(),
        W_P=spec.positional_embedding(),
        W_U=spec.unembedding(),
        bos_token=spec.bos_token,
        metadata=spec.describe(),
        **weights,
    )


def _exact(array: FloatArray) -> Any:
    """A numeric matrix as a sympy matrix (integral entries as integers)."""
    import sympy

    return sympy.Matrix(*array.shape, lambda i, j: exact_number(array[i, j]))


def _json_ready(value: Any) -> Any:
    """Sympy scales in metadata become strings."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True, eq=False)
class SymbolicModel:
    """Exact sympy weights of a hand-built model, laid out like ``AttnOnlyTransformer.parameters()``.

    ``weights["W_Q"][l][h]`` (etc.) are sympy matrices whose entries may contain the scales'
    symbols; ``W_E``, ``W_P``, ``W_U`` are integer (or code) matrices. There are no biases and
    ``cfg.attn_scale`` is 1. :func:`circuits.symbolic.weight_values` turns
    :meth:`parameters` into the values of the path expansion's symbols.
    """

    cfg: TransformerConfig
    weights: Mapping[str, Any]
    bos_token: int | None
    metadata: Mapping[str, Any]

    def parameters(self) -> dict[str, Any]:
        """Every weight by name (``W_P`` absent without positions)."""
        return {k: v for k, v in self.weights.items() if v is not None}

    @property
    def free_symbols(self) -> set[Any]:
        """The sympy symbols the weights depend on."""
        found: set[Any] = set()
        for name in ("W_Q", "W_K", "W_V", "W_O"):
            for layer in self.weights[name]:
                for matrix in layer:
                    found |= matrix.free_symbols
        return found

    def path_values(self) -> dict[str, Any]:
        """Symbol name → exact sympy weight, the ``values`` of the path expansion's terms.

        ``term.weight_value(symbolic_model.path_values())`` (a term of
        :func:`~circuits.path_expansion` or :func:`~circuits.qk_expansion` of a numeric twin such
        as ``symbolic_model.substitute({...})``) is then an exact sympy matrix in the scales.
        """
        from ..symbolic import weight_values

        return weight_values(self.parameters(), self.cfg)

    def W_QK(self, layer: int | str, head: int | None = None) -> Any:
        r""":math:`W_Q^T W_K` of a head, exact."""
        layer, head = self.cfg.resolve_head(layer, head)
        return self.weights["W_Q"][layer][head].T * self.weights["W_K"][layer][head]

    def W_OV(self, layer: int | str, head: int | None = None) -> Any:
        r""":math:`W_O W_V` of a head, exact."""
        layer, head = self.cfg.resolve_head(layer, head)
        return self.weights["W_O"][layer][head] * self.weights["W_V"][layer][head]

    def substitute(self, values: Mapping[Any, Any]) -> AttnOnlyTransformer:
        """The numeric model with the symbols replaced by ``values`` (symbol or name → number)."""
        if not isinstance(values, Mapping):
            raise ConstructionError(
                f"values: expected a mapping of symbols to numbers, got {values!r}"
            )
        by_name = {str(k): v for k, v in values.items()}
        wrong = sorted(name for name, v in by_name.items() if not is_real(v))
        if wrong:
            raise ConstructionError(f"values: the symbols {wrong} need real numbers")
        subs = {s: by_name[str(s)] for s in self.free_symbols if str(s) in by_name}
        missing = sorted(str(s) for s in self.free_symbols if str(s) not in by_name)
        if missing:
            raise ConstructionError(f"no values given for the symbols {missing}")

        def numeric(matrix: Any) -> FloatArray:
            return np.array(matrix.subs(subs).evalf(), dtype=np.float64)

        heads = {
            name: np.array([[numeric(m) for m in layer] for layer in self.weights[name]])
            for name in ("W_Q", "W_K", "W_V", "W_O")
        }
        W_P = self.weights.get("W_P")
        return AttnOnlyTransformer(
            self.cfg,
            W_E=numeric(self.weights["W_E"]),
            W_U=numeric(self.weights["W_U"]),
            W_P=None if W_P is None else numeric(W_P),
            bos_token=self.bos_token,
            metadata=_substituted_metadata(self.metadata, subs),
            **heads,
        )


#: Metadata fields of a record that name things rather than hold numbers.
_NAME_FIELDS = frozenset({"name", "mechanism", "code"})


def _substituted_metadata(metadata: Mapping[str, Any], subs: Mapping[Any, Any]) -> dict[str, Any]:
    """``metadata`` with each record's symbolic scales (stored as strings) evaluated at ``subs``.

    A record is a mapping value of ``metadata``; a field is replaced when its string parses as an
    expression whose symbols are all in ``subs``, so a substituted model records the numbers it
    was built with (and certificates can rebuild it).
    """
    by_name = {str(symbol): value for symbol, value in subs.items()}
    out: dict[str, Any] = {}
    for key, record in metadata.items():
        if isinstance(record, Mapping):
            record = {
                field_: _evaluated(value, by_name) if field_ not in _NAME_FIELDS else value
                for field_, value in record.items()
            }
        out[key] = record
    return out


def _evaluated(value: Any, by_name: Mapping[str, Any]) -> Any:
    """A string expression in the substituted symbols as a number; anything else unchanged."""
    import sympy as sp

    if not isinstance(value, str):
        return value
    try:
        expr = sp.sympify(value, locals={name: sp.Symbol(name) for name in by_name})
    except (sp.SympifyError, TypeError, SyntaxError):
        return value
    names = {str(s) for s in getattr(expr, "free_symbols", ())}
    if not names or not names <= set(by_name):
        return value
    return float(expr.subs({sp.Symbol(n): by_name[n] for n in names}))
