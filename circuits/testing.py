r"""Hypothesis strategies and assertions for property tests of attention-only circuits.

A property test states something that must hold for *every* model, sequence or basis, and lets
`Hypothesis <https://hypothesis.readthedocs.io>`_ search for a counterexample::

    from hypothesis import given
    from circuits import testing as ct

    @given(ct.models(ct.configs(n_layers=2)), ct.data())
    def test_my_analysis_ignores_the_residual_basis(model, data):
        M = data.draw(ct.invertible_matrices(model.cfg.d_model))
        ...

The strategies draw sizes and structure through Hypothesis (so failures shrink to small cases) and
weights from a Hypothesis-drawn seed (so every failure is reproducible). Sizes are given as an
``int`` (fixed) or an inclusive ``(low, high)`` range.

This module needs Hypothesis, a development dependency (``pip install 'circuits[dev]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "circuits.testing needs Hypothesis, a development dependency of circuits: "
        "install it with `pip install 'circuits[dev]'` (or `pip install hypothesis`)"
    ) from _missing

from ._arrays import FloatArray, as_real_array, float_dtype
from ._checks import checked_int, is_int, is_positive_finite, is_real
from .config import NORMALIZATION_TYPES, POSITIONAL_EMBEDDING_TYPES, HeadRef, TransformerConfig
from .errors import ConfigError, ShapeError, TokenError, WeightError
from .factored import FactoredMatrix
from .model import ActivationCache, AttnOnlyTransformer, IntArray, as_cache, token_ids
from .paths import path_expansion
from .qk_paths import qk_expansion

__all__ = [
    "Size",
    "assert_attends",
    "assert_path_expansion_exact",
    "assert_qk_expansion_exact",
    "assert_same_logits",
    "assert_terms_sum_to",
    "change_head_bases",
    "change_residual_basis",
    "configs",
    "data",
    "factored_matrices",
    "induction_positions",
    "induction_sequences",
    "induction_target",
    "invertible_matrices",
    "models",
    "orthogonal_matrices",
    "previous_token_positions",
    "repeated_sequences",
    "seeds",
    "token_sequences",
]

#: A size: a fixed ``int`` or an inclusive ``(low, high)`` range.
Size = int | tuple[int, int]
T = TypeVar("T")
ModelSource = AttnOnlyTransformer | TransformerConfig

#: ``st.data()``, re-exported so that a test needs only this module.
data = st.data


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``numpy.random.default_rng``: integers in ``[0, 2³²)``."""
    return st.integers(0, 2**32 - 1)


def _bounds(size: Size, name: str, least: int = 0) -> tuple[int, int]:
    """``(low, high)`` from an int or a range, checked: ``least ≤ low ≤ high``."""
    pair: object = (size, size) if is_int(size) else size
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(is_int(s) for s in pair)):
        raise ConfigError(f"{name}: expected an int or a (low, high) pair of ints, got {size!r}")
    low, high = int(pair[0]), int(pair[1])
    if not least <= low <= high:
        raise ConfigError(f"{name}: expected sizes with {least} ≤ low ≤ high, got {size!r}")
    return low, high


def _sizes(size: Size, name: str, least: int = 0) -> st.SearchStrategy[int]:
    low, high = _bounds(size, name, least)
    return st.integers(low, high)


def _as_strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


# ---------------------------------------------------------------------- configs and models
#: ``-1`` is the config's stand-in for ``√d_head``.
_ATTN_SCALES = st.just(-1.0) | st.floats(0.25, 8.0)


def configs(
    *,
    n_layers: Size = (0, 2),
    n_heads: Size = (1, 3),
    d_model: Size = (1, 8),
    d_head: Size = (1, 4),
    d_vocab: Size = (1, 10),
    n_ctx: Size = (1, 8),
    positional_embedding_types: Sequence[str] = POSITIONAL_EMBEDDING_TYPES,
    attn_scale: float | st.SearchStrategy[float] | None = None,
    normalization_types: Sequence[str | None] = (None,),
    eps: float | st.SearchStrategy[float] = 1e-5,
) -> st.SearchStrategy[TransformerConfig]:
    """Configs with every size drawn from its range.

    ``attn_scale``: a number, a strategy of numbers, or ``None`` to draw either TransformerLens's
    default ``√d_head`` or another scale in ``[1/4, 8]`` (so a forward pass that ignores the
    config's scale fails). ``normalization_types``: those to draw from (default: none);
    ``eps``: the normalisation's ε, a number or a strategy.
    """
    _check_subset(
        positional_embedding_types, POSITIONAL_EMBEDDING_TYPES, "positional_embedding_types"
    )
    _check_subset(normalization_types, NORMALIZATION_TYPES, "normalization_types")
    return st.builds(
        TransformerConfig,
        n_layers=_sizes(n_layers, "n_layers", 0),
        n_heads=_sizes(n_heads, "n_heads", 1),
        d_model=_sizes(d_model, "d_model", 1),
        d_head=_sizes(d_head, "d_head", 1),
        d_vocab=_sizes(d_vocab, "d_vocab", 1),
        n_ctx=_sizes(n_ctx, "n_ctx", 1),
        attn_scale=_ATTN_SCALES if attn_scale is None else _as_strategy(attn_scale),
        positional_embedding_type=st.sampled_from(list(positional_embedding_types)),
        normalization_type=st.sampled_from(list(normalization_types)),
        eps=_as_strategy(eps),
    )


def _check_subset(values: Sequence[Any], allowed: Sequence[Any], name: str) -> None:
    unknown = [value for value in values if value not in allowed]
    if unknown or not values:
        raise ConfigError(f"{name}: expected a non-empty subset of {allowed}, got {list(values)}")


def models(
    cfg: TransformerConfig | Mapping[str, Any] | st.SearchStrategy[TransformerConfig] | None = None,
    *,
    biases: bool | None = None,
    dtype: Any = np.float64,
) -> st.SearchStrategy[AttnOnlyTransformer]:
    """Random models (:meth:`AttnOnlyTransformer.random`) of the given or drawn config.

    ``cfg`` is a config, a mapping, a strategy of configs, or ``None`` for :func:`configs` with its
    defaults. ``biases``: ``True`` or ``False`` for all examples, ``None`` to draw it too.
    """
    if cfg is None:
        cfg = configs()
    elif isinstance(cfg, Mapping):
        cfg = TransformerConfig.from_dict(cfg)
    return st.builds(
        _random_model,
        _as_strategy(cfg),
        seeds(),
        st.booleans() if biases is None else st.just(biases),
        st.just(float_dtype(dtype)),
    )


def _random_model(
    cfg: TransformerConfig, seed: int, biases: bool, dtype: Any
) -> AttnOnlyTransformer:
    return AttnOnlyTransformer.random(cfg, seed=seed, biases=biases, dtype=dtype)


def _config(source: ModelSource) -> TransformerConfig:
    if not isinstance(source, (AttnOnlyTransformer, TransformerConfig)):
        raise ConfigError(
            f"expected an AttnOnlyTransformer or a TransformerConfig, got {type(source).__name__}"
        )
    return source.cfg if isinstance(source, AttnOnlyTransformer) else source


# ---------------------------------------------------------------------- token sequences
def token_sequences(
    source: ModelSource, *, length: Size | None = None, batch: int | None = None
) -> st.SearchStrategy[IntArray]:
    """Token ids for a model (or config): ``[pos]``, or ``[batch, pos]`` when ``batch`` is given.

    ``length`` defaults to ``(1, n_ctx)``; every id is in ``[0, d_vocab)``.
    """
    cfg = _config(source)
    low, high = _bounds((1, cfg.n_ctx) if length is None else length, "length", 1)
    if high > cfg.n_ctx:
        raise TokenError(f"length: at most n_ctx={cfg.n_ctx} positions, asked for {high}")
    rows = 1 if batch is None else batch
    if not (is_int(rows) and rows >= 1):
        raise ShapeError(f"batch: expected an integer ≥ 1, got {batch!r}")

    @st.composite
    def draw_tokens(draw: st.DrawFn) -> IntArray:
        n = draw(st.integers(low, high))
        ids = st.integers(0, cfg.d_vocab - 1)
        values = draw(st.lists(st.lists(ids, min_size=n, max_size=n), min_size=rows, max_size=rows))
        array = np.array(values, dtype=np.intp)
        return array if batch is not None else array[0]

    return draw_tokens()


def _bos(source: ModelSource, bos_token: int | None) -> int | None:
    token = bos_token
    if token is None and isinstance(source, AttnOnlyTransformer):
        token = source.bos_token
    if token is not None and not (is_int(token) and 0 <= token < _config(source).d_vocab):
        raise ConfigError(
            f"bos_token {token!r} is outside the vocabulary [0, {_config(source).d_vocab})"
        )
    return token


def _non_bos_tokens(cfg: TransformerConfig, bos: int | None) -> st.SearchStrategy[int]:
    ids = st.integers(0, cfg.d_vocab - 1)
    return ids if bos is None else ids.filter(lambda t: t != bos)


def repeated_sequences(
    source: ModelSource, *, half_length: Size | None = None, bos_token: int | None = None
) -> st.SearchStrategy[IntArray]:
    """``[BOS] + r + r`` for random tokens ``r`` (the ICL paper's repeated random sequences).

    BOS is ``bos_token``, else the model's ``bos_token``; without either there is no BOS. The
    tokens of ``r`` are never BOS. ``half_length`` (the length of ``r``) defaults to as long as
    ``n_ctx`` allows.
    """
    cfg = _config(source)
    bos = _bos(source, bos_token)
    room = (cfg.n_ctx - (bos is not None)) // 2
    low, high = _bounds((1, room) if half_length is None else half_length, "half_length", 1)
    if high > room:
        raise TokenError(
            f"half_length: a repeated sequence of halves {high} does not fit n_ctx={cfg.n_ctx}"
        )
    _require_vocab(cfg, bos, 1)
    prefix = [] if bos is None else [bos]
    halves = st.lists(_non_bos_tokens(cfg, bos), min_size=low, max_size=high)
    return halves.map(lambda r: np.array(prefix + r + r, dtype=np.intp))


def _require_vocab(cfg: TransformerConfig, bos: int | None, needed: int) -> None:
    available = cfg.d_vocab - (bos is not None)
    if available < needed:
        raise ConfigError(
            f"d_vocab={cfg.d_vocab} leaves {available} non-BOS tokens; these sequences need {needed}"
        )


def induction_sequences(
    source: ModelSource, *, length: Size | None = None, bos_token: int | None = None
) -> st.SearchStrategy[IntArray]:
    """Sequences ``BOS, t_1, …, t_{n−1}`` whose last token occurs exactly once before.

    That earlier occurrence is at some ``j ≥ 1``; an induction circuit must predict ``t_{j+1}``
    (see :func:`induction_target`). BOS is ``bos_token``, else the model's, else token 0; it never
    occurs after position 0. ``length`` ``n`` defaults to ``(3, n_ctx)``, or to 3 when the
    vocabulary has a single ordinary token (``BOS, a, a`` is then the only member of the family).
    """
    cfg = _config(source)
    bos = _bos(source, bos_token)
    bos = 0 if bos is None else bos
    longest = 3 if cfg.d_vocab == 2 else cfg.n_ctx
    low, high = _bounds((3, longest) if length is None else length, "length", 3)
    if high > cfg.n_ctx:
        raise TokenError(f"length: at most n_ctx={cfg.n_ctx} positions, asked for {high}")
    _require_vocab(cfg, bos, 1 if high == 3 else 2)

    @st.composite
    def draw_sequence(draw: st.DrawFn) -> IntArray:
        n = draw(st.integers(low, high))
        last = draw(_non_bos_tokens(cfg, bos))
        earlier = draw(st.integers(1, n - 2))
        others = _non_bos_tokens(cfg, bos).filter(lambda t: t != last)
        middle = draw(st.lists(others, min_size=n - 3, max_size=n - 3))
        middle.insert(earlier - 1, last)
        return np.array([bos, *middle, last], dtype=np.intp)

    return draw_sequence()


def induction_target(tokens: Any) -> int:
    """The token an induction head predicts after ``tokens`` (``[pos]``).

    With ``j`` the most recent earlier position holding the last token, this is ``tokens[j + 1]``;
    a :class:`~circuits.errors.TokenError` if the last token does not occur before.
    """
    sequence = _sequence(tokens)
    key = int(induction_positions(sequence)[-1])
    if key < 0:
        raise TokenError(f"tokens: the last token {int(sequence[-1])} does not occur earlier")
    return int(sequence[key])


def _sequence(tokens: Any) -> IntArray:
    array = _tokens(tokens)
    if array.ndim != 1:
        raise TokenError(f"tokens: expected a non-empty [pos] array of ids, got {array!r}")
    return array


def _tokens(tokens: Any) -> IntArray:
    """Token ids ``[pos]`` or ``[batch, pos]``, non-empty."""
    array = token_ids(tokens, "tokens")
    if array.ndim not in (1, 2) or array.size == 0:
        raise TokenError(
            f"tokens: expected a non-empty [pos] or [batch, pos] array of ids, got {array!r}"
        )
    return array


def previous_token_positions(tokens: Any) -> IntArray:
    """For each query ``i`` the key ``i − 1`` a previous-token head attends to (``−1`` at ``i = 0``).

    ``tokens`` is ``[pos]`` or ``[batch, pos]``; the result has its shape.
    """
    array = _tokens(tokens)
    positions = np.arange(array.shape[-1], dtype=np.intp) - 1
    result: IntArray = np.broadcast_to(positions, array.shape).copy()
    return result


def induction_positions(tokens: Any) -> IntArray:
    """For each query ``i``, the key ``j + 1`` an induction head attends to, else ``−1``.

    ``j < i`` is the most recent earlier position with ``tokens[j] == tokens[i]``. ``tokens`` is
    ``[pos]`` or ``[batch, pos]``; the result has its shape.
    """
    array = _tokens(tokens)
    if array.ndim == 2:
        stacked: IntArray = np.stack([induction_positions(row) for row in array])
        return stacked
    sequence = _sequence(array)
    out = np.full(sequence.shape, -1, dtype=np.intp)
    last_seen: dict[int, int] = {}
    for i, token in enumerate(sequence.tolist()):
        if token in last_seen:
            out[i] = last_seen[token] + 1
        last_seen[token] = i
    return out


# ---------------------------------------------------------------------- matrices and bases
def _gaussian(shape: tuple[int, ...], seed: int) -> FloatArray:
    values: FloatArray = np.random.default_rng(seed).standard_normal(shape)
    return values


def _orthogonal(n: int, seed: int) -> FloatArray:
    q, r = np.linalg.qr(_gaussian((n, n), seed))
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    result: FloatArray = q * signs
    return result


def orthogonal_matrices(n: int) -> st.SearchStrategy[FloatArray]:
    """Haar-random orthogonal ``n × n`` matrices ``Q`` (``QᵀQ = I``), from a drawn seed."""
    size = checked_int(n, "n", 1)
    return seeds().map(lambda seed: _orthogonal(size, seed))


def invertible_matrices(
    n: int, *, leading: tuple[int, ...] = (), condition: float = 4.0
) -> st.SearchStrategy[FloatArray]:
    """Random invertible ``n × n`` matrices ``U diag(s) Vᵀ`` with ``s ∈ [1, condition]``.

    ``U, V`` are random orthogonal, so the condition number is at most ``condition``. With
    ``leading`` dimensions, a stack of independent such matrices of shape ``leading + (n, n)``.
    """
    checked_int(n, "n", 1)
    if not (is_real(condition) and 1 <= condition < np.inf):
        raise ConfigError(f"condition: expected a finite number ≥ 1, got {condition!r}")
    if not (isinstance(leading, tuple) and all(is_int(s) and s >= 0 for s in leading)):
        raise ConfigError(f"leading: expected a tuple of sizes ≥ 0, got {leading!r}")

    def one(rng: np.random.Generator) -> FloatArray:
        u, v = (_orthogonal(n, int(rng.integers(2**32))) for _ in range(2))
        result: FloatArray = (u * rng.uniform(1.0, condition, n)) @ v.T
        return result

    def build(seed: int) -> FloatArray:
        rng = np.random.default_rng(seed)
        stack = [one(rng) for _ in range(int(np.prod(leading)))]
        return np.array(stack, dtype=np.float64).reshape(*leading, n, n)

    return seeds().map(build)


def factored_matrices(
    *, rows: Size = (1, 6), inner: Size = (1, 4), cols: Size | None = (1, 6), scale: float = 1.0
) -> st.SearchStrategy[FactoredMatrix]:
    """Products ``AB`` of Gaussian factors ``A`` (``rows × inner``), ``B`` (``inner × cols``).

    ``cols=None`` makes the product square (``cols = rows``). Entries are ``N(0, scale²)``.
    """
    if not is_positive_finite(scale):
        raise ConfigError(f"scale: expected a finite number > 0, got {scale!r}")
    row_sizes = _sizes(rows, "rows", 1)
    inner_sizes = _sizes(inner, "inner", 1)
    col_sizes = None if cols is None else _sizes(cols, "cols", 1)

    @st.composite
    def draw_matrix(draw: st.DrawFn) -> FactoredMatrix:
        m, k = draw(row_sizes), draw(inner_sizes)
        n = m if col_sizes is None else draw(col_sizes)
        seed = draw(seeds())
        rng = np.random.default_rng(seed)
        return FactoredMatrix(
            scale * rng.standard_normal((m, k)), scale * rng.standard_normal((k, n))
        )

    return draw_matrix()


def change_residual_basis(model: AttnOnlyTransformer, M: Any) -> AttnOnlyTransformer:
    r"""The same function written in the residual basis :math:`x \mapsto Mx` (``M`` invertible).

    Writers map as :math:`W \to MW` (``W_E``, ``W_P``, ``W_O``, ``b_O``), readers as
    :math:`W \to W M^{-1}` (``W_Q``, ``W_K``, ``W_V``, ``W_U``). Then :math:`W_{QK} \to M^{-T} W_{QK}
    M^{-1}`, :math:`W_{OV} \to M W_{OV} M^{-1}`, and every score, pattern and logit is unchanged.
    """
    d = model.cfg.d_model
    matrix = as_real_array(M, "M", (d, d))
    inverse = _inverse(matrix, "M")
    return model.replace(
        W_E=matrix @ model.W_E,
        W_P=None if model.W_P is None else matrix @ model.W_P,
        W_O=matrix @ model.W_O,
        b_O=model.b_O @ matrix.T,
        W_Q=model.W_Q @ inverse,
        W_K=model.W_K @ inverse,
        W_V=model.W_V @ inverse,
        W_U=model.W_U @ inverse,
    )


def change_head_bases(model: AttnOnlyTransformer, G: Any, N: Any) -> AttnOnlyTransformer:
    r"""Change every head's internal bases: ``G`` for queries and keys, ``N`` for values.

    ``G`` and ``N`` are ``[n_layers, n_heads, d_head, d_head]`` (invertible). Queries map as
    :math:`W_Q \to G W_Q`, keys as :math:`W_K \to G^{-T} W_K` (biases alike), values as
    :math:`W_V \to N W_V`, :math:`b_V \to N b_V`, and :math:`W_O \to W_O N^{-1}`; hence
    :math:`W_{QK} = W_Q^T W_K` and :math:`W_{OV} = W_O W_V` are unchanged.
    """
    c = model.cfg
    shape = (c.n_layers, c.n_heads, c.d_head, c.d_head)
    g, n = as_real_array(G, "G", shape), as_real_array(N, "N", shape)
    g_inv_t = _inverse(g, "G").swapaxes(-1, -2)

    def apply(matrix: FloatArray, bias: FloatArray) -> FloatArray:
        out: FloatArray = np.einsum("lhij,lhj->lhi", matrix, bias)
        return out

    return model.replace(
        W_Q=g @ model.W_Q,
        b_Q=apply(g, model.b_Q),
        W_K=g_inv_t @ model.W_K,
        b_K=apply(g_inv_t, model.b_K),
        W_V=n @ model.W_V,
        b_V=apply(n, model.b_V),
        W_O=model.W_O @ _inverse(n, "N"),
    )


def _inverse(matrix: FloatArray, name: str) -> FloatArray:
    """The inverse of ``matrix`` (or of each in a stack); a WeightError if one is singular."""
    try:
        inverse: FloatArray = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        raise WeightError(
            f"{name}: a basis change must be invertible, this matrix is singular"
        ) from None
    return inverse


# ---------------------------------------------------------------------- assertions
def _deviation(actual: FloatArray, expected: FloatArray, atol: float, rtol: float) -> str | None:
    """``None`` if ``|actual − expected| ≤ atol + rtol·|expected|`` everywhere, else a description."""
    for name, tolerance in (("atol", atol), ("rtol", rtol)):
        if not (is_real(tolerance) and 0 <= tolerance < np.inf):
            raise ConfigError(f"{name}: expected a finite number ≥ 0, got {tolerance!r}")
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)} differs from {list(expected.shape)}"
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    if np.all(excess <= 0):
        return None
    where = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), excess.shape))
    return (
        f"largest error at index {where}: {float(actual[where])!r} vs {float(expected[where])!r} "
        f"(|difference| {abs(actual[where] - expected[where]):.3g} > "
        f"atol {atol:g} + rtol {rtol:g}·|expected|)"
    )


def assert_terms_sum_to(
    terms: Iterable[Any], total: Any, *, atol: float = 1e-10, rtol: float = 1e-10
) -> None:
    """Assert that ``Σ terms == total`` to ``atol + rtol·|total|``: a decomposition is exact."""
    expected = as_real_array(total, "total")
    summed = np.zeros_like(expected)
    if not isinstance(terms, Iterable):
        raise ConfigError(f"terms: expected a collection of arrays, got {terms!r}")
    for index, term in enumerate(terms):
        value = as_real_array(term, f"term {index}")
        try:
            fits = np.broadcast_shapes(value.shape, expected.shape) == expected.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(
                f"term {index}: shape {list(value.shape)} does not fit the total's "
                f"{list(expected.shape)}"
            )
        summed = summed + value
    problem = _deviation(summed, expected, atol, rtol)
    if problem is not None:
        raise AssertionError(f"the terms do not sum to the total: {problem}")


def assert_path_expansion_exact(
    model: AttnOnlyTransformer,
    tokens: Any,
    *,
    atol: float = 1e-9,
    rtol: float = 1e-9,
    **filters: Any,
) -> None:
    r"""Assert that the terms of :func:`~circuits.paths.path_expansion` sum to the logits.

    :math:`\text{logits} = \sum_\text{paths} (A^{h_m} \cdots A^{h_1} P_0) \otimes
    (W_U W_{OV}^{h_m} \cdots W_{OV}^{h_1} W_0)`, each term evaluated on its own with the patterns
    of ``model.run_with_cache(tokens)``. ``filters`` (``order=``, ``through=``, ``source=``, …, as
    :meth:`PathExpansion.filter <circuits.paths.PathExpansion.filter>` takes them) narrow the
    expansion: the assertion then states that the terms left out contribute nothing.
    """
    _, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model).filter(**filters)
    try:
        assert_terms_sum_to(
            (term.evaluate(cache) for term in expansion),
            model.forward(cache.tokens),
            atol=atol,
            rtol=rtol,
        )
    except AssertionError as error:
        raise AssertionError(f"path expansion of {len(expansion)} terms: {error}") from None


def assert_qk_expansion_exact(
    model: AttnOnlyTransformer,
    tokens: Any,
    heads: Iterable[HeadRef] | None = None,
    *,
    atol: float = 1e-9,
    rtol: float = 1e-9,
    **filters: Any,
) -> None:
    r"""Assert that the terms of :func:`~circuits.qk_paths.qk_expansion` sum to each head's scores.

    :math:`s^h = \sum_{p, q} P_p \otimes P_q \otimes \alpha^{-1} W_p^T W_{QK}^h W_q` (plus the
    bias terms) equals ``cache.scores(h)`` for every head of ``heads`` (default: all). ``filters``
    (``kind=``, ``query_order=``, …) narrow each expansion, as in :func:`assert_path_expansion_exact`.
    """
    _, cache = model.run_with_cache(tokens)
    for layer, index in model.cfg.resolve_heads(model.cfg.head_names() if heads is None else heads):
        expansion = qk_expansion(model, layer, index).filter(**filters)
        try:
            assert_terms_sum_to(
                (term.evaluate(cache) for term in expansion),
                cache.scores(layer, index),
                atol=atol,
                rtol=rtol,
            )
        except AssertionError as error:
            raise AssertionError(
                f"QK expansion of head {layer}.{index} ({len(expansion)} terms): {error}"
            ) from None


def assert_same_logits(
    first: AttnOnlyTransformer,
    second: AttnOnlyTransformer,
    tokens: Any,
    *,
    atol: float = 1e-9,
    rtol: float = 1e-9,
) -> None:
    """Assert that two models compute the same logits on ``tokens``: they are the same function."""
    problem = _deviation(second.forward(tokens), first.forward(tokens), atol, rtol)
    if problem is not None:
        raise AssertionError(f"the models' logits differ: {problem}")


def assert_attends(
    cache: ActivationCache,
    head: HeadRef,
    expected: Any | Callable[[IntArray], Any],
    *,
    at_least: float = 0.9,
) -> None:
    """Assert that ``head`` puts attention ``A[b, i, key] ≥ at_least`` on the expected keys.

    ``expected`` holds one key position per query (shape of ``cache.tokens``, or ``[pos]``, the same
    for every sequence; ``−1`` = no expectation), or is a function of the tokens ``[batch, pos]``
    returning them, such as :func:`previous_token_positions` or :func:`induction_positions`.
    """
    layer, index = as_cache(cache).model.cfg.resolve_head(head)
    if not (is_real(at_least) and 0 <= at_least <= 1):
        raise ConfigError(f"at_least: expected an attention weight in [0, 1], got {at_least!r}")
    tokens = cache.tokens
    keys = np.asarray(expected(tokens) if callable(expected) else expected)
    if keys.shape == tokens.shape[1:]:
        keys = np.broadcast_to(keys, tokens.shape)
    if keys.shape != tokens.shape or keys.dtype.kind not in "iu":
        raise ShapeError(
            f"expected: integer key positions of shape {list(tokens.shape)}, "
            f"got {keys.dtype} array of shape {list(keys.shape)}"
        )
    query_positions = np.arange(tokens.shape[1])
    if np.any(keys > query_positions):
        raise ShapeError("expected: a key position after its query (attention is causal)")
    pattern = cache.pattern(layer, index)
    batch, queries = np.nonzero(keys >= 0)
    weights = pattern[batch, queries, keys[batch, queries]]
    if weights.size and weights.min() < at_least:
        worst = int(np.argmin(weights))
        b, i = int(batch[worst]), int(queries[worst])
        raise AssertionError(
            f"head {layer}.{index}: query {i} of sequence {b} gives attention "
            f"{weights[worst]:.4g} to key {int(keys[b, i])} (expected ≥ {at_least:g}); "
            f"its largest attention is {pattern[b, i].max():.4g} on key {int(pattern[b, i].argmax())}"
        )
