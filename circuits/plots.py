r"""Heatmaps of attention patterns and of QK / OV circuits (needs the optional extra ``plot``).

* :func:`attention_plot` — the pattern :math:`A^h_{ij}` of one head on one sequence, queries as
  rows, keys as columns, the masked upper triangle left blank;
* :func:`circuit_plot` — any matrix, factored or dense, on a colour scale centred at zero; of a
  :class:`~circuits.FactoredMatrix` only the block of the chosen rows and columns is formed;
* :func:`qk_circuit_plot` and :func:`ov_circuit_plot` — the token circuits
  :math:`W_E^T W_{QK}^h W_E` (or the positional :math:`W_P^T W_{QK}^h W_P`) and
  :math:`W_U W_{OV}^h W_E` of a head, on chosen tokens;
* :func:`subsample` — evenly spaced indices, to choose rows of a matrix too large to show.

Each returns a :class:`matplotlib.figure.Figure` (drawn into ``ax`` when one is given). Figures
are made without ``pyplot``, so nothing needs a display; :func:`save_figure` writes one to a file.
Install matplotlib with ``pip install 'circuits[plot]'``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import FloatArray, as_real_array
from ._checks import is_int
from .analysis import ov_circuit, positional_qk_circuit, token_qk_circuit
from .config import HeadRef
from .errors import MissingDependencyError, RenderError
from .factored import FactoredMatrix
from .model import ActivationCache, AttnOnlyTransformer, as_cache

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MAX_CELLS",
    "MAX_TICKS",
    "attention_plot",
    "circuit_plot",
    "ov_circuit_plot",
    "qk_circuit_plot",
    "save_figure",
    "subsample",
]

#: The most rows (or columns) a heatmap shows; larger matrices need ``rows=`` / ``cols=``.
MAX_CELLS = 512
#: The most rows (or columns) a heatmap labels one by one; beyond that, a few evenly spaced.
MAX_TICKS = 40
_FEW_TICKS = 9
INSTALL_HINT = "plots need matplotlib, an optional extra: pip install 'circuits[plot]'"


def _figure_and_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure with one axes (made without pyplot)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    if ax is not None:
        owner: Any = ax.get_figure()
        return owner, ax
    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def _heatmap(
    values: FloatArray,
    *,
    ax: Axes | None,
    title: str,
    xlabel: str,
    ylabel: str,
    xticks: Sequence[str],
    yticks: Sequence[str],
    cmap: str,
    centred: bool,
) -> Figure:
    rows, cols = values.shape
    size = (min(2.5 + 0.3 * cols, 12.0), min(2.0 + 0.3 * rows, 12.0))
    figure, axes = _figure_and_axes(ax, size)
    finite = values[np.isfinite(values)]
    extent = float(np.abs(finite).max()) if finite.size else 1.0
    low, high = (-extent, extent) if centred else (0.0, 1.0)
    image = axes.imshow(
        values, cmap=cmap, aspect="auto", interpolation="nearest", vmin=low, vmax=high
    )
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    for axis, labels, count in ((axes.xaxis, xticks, cols), (axes.yaxis, yticks, rows)):
        # every row labelled, or a few evenly spaced: always by its own label (token id, position),
        # never by its place in a selection
        shown = range(count) if count <= MAX_TICKS else subsample(count, _FEW_TICKS)
        axis.set_ticks(list(shown), labels=[labels[i] for i in shown], fontsize=8)
    axes.tick_params(axis="x", labelrotation=90)
    return figure


def attention_plot(
    cache: ActivationCache,
    head: HeadRef,
    *,
    batch: int = 0,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of the pattern ``A[batch, i, j]`` of ``head``: query ``i`` down, key ``j`` across.

    ``labels`` name the positions (default: the token ids); entries above the diagonal, which
    the causal mask sets to zero, are left blank.
    """
    layer, index = as_cache(cache).model.cfg.resolve_head(head)
    if not (is_int(batch) and 0 <= batch < cache.tokens.shape[0]):
        raise RenderError(f"batch {batch!r} out of range: the cache holds {cache.tokens.shape[0]}")
    pattern = cache.pattern(layer, index)[batch].copy()
    n = pattern.shape[0]
    pattern[np.triu_indices(n, k=1)] = np.nan
    names = [str(t) for t in cache.tokens[batch]] if labels is None else _list(labels, "labels")
    if len(names) != n:
        raise RenderError(f"labels: expected {n} position names, got {len(names)}")
    ticks = [f"{i}:{name}" for i, name in enumerate(names)]
    return _heatmap(
        pattern, ax=ax, title=f"attention of head {layer}.{index}", xlabel="key position",
        ylabel="query position", xticks=ticks, yticks=ticks, cmap="Blues", centred=False,
    )  # fmt: skip


def circuit_plot(
    matrix: FactoredMatrix | Any,
    *,
    rows: Sequence[int] | None = None,
    cols: Sequence[int] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Heatmap of ``matrix[rows][:, cols]`` on a red–blue scale centred at zero.

    Of a :class:`~circuits.FactoredMatrix` only the chosen ``len(rows) × len(cols)`` block is
    formed. At most :data:`MAX_CELLS` rows and columns are shown: choose them for larger matrices.
    ``row_labels`` / ``col_labels`` name every row / column of the whole matrix.
    """
    shape = matrix.shape if isinstance(matrix, FactoredMatrix) else np.shape(matrix)
    if len(shape) != 2:
        raise RenderError(f"circuit_plot: expected a matrix, got shape {list(shape)}")
    row_index = _selection(rows, shape[0], "rows")
    col_index = _selection(cols, shape[1], "cols")
    if isinstance(matrix, FactoredMatrix):
        block = matrix[row_index, col_index]
        values = block.AB if isinstance(block, FactoredMatrix) else block
    else:
        values = as_real_array(matrix, "matrix", copy=False)[np.ix_(row_index, col_index)]
    return _heatmap(
        values, ax=ax, title=title, xlabel=xlabel, ylabel=ylabel,
        xticks=_labels(col_labels, col_index, "col_labels", shape[1]),
        yticks=_labels(row_labels, row_index, "row_labels", shape[0]),
        cmap="RdBu_r", centred=True,
    )  # fmt: skip


def _selection(chosen: Sequence[int] | None, size: int, name: str) -> list[int]:
    index = list(range(size)) if chosen is None else _list(chosen, name)
    if not index:
        raise RenderError(f"{name}: choose at least one")
    if not all(is_int(i) and 0 <= i < size for i in index):
        raise RenderError(f"{name}: indices must be in [0, {size}), as integers; got {index}")
    if len(index) > MAX_CELLS:
        raise RenderError(
            f"{name}: {len(index)} would be shown, at most {MAX_CELLS}: pass {name}= to choose some"
        )
    return [int(i) for i in index]


def subsample(size: int, most: int = MAX_CELLS) -> list[int]:
    """``most`` evenly spaced indices of ``range(size)``, first and last included (all when it fits).

    For heatmaps of matrices larger than :data:`MAX_CELLS`: pass the result as ``tokens=``,
    ``rows=`` or ``cols=``.
    """
    if not (is_int(size) and size >= 1):
        raise RenderError(f"subsample: size must be an integer ≥ 1, got {size!r}")
    if not (is_int(most) and most >= 2):
        raise RenderError(f"subsample: most must be an integer ≥ 2, got {most!r}")
    if size <= most:
        return list(range(size))
    chosen = np.round(np.linspace(0, size - 1, most)).astype(int)
    return [int(i) for i in chosen]


def _require_choice(tokens: Sequence[int] | None, size: int, what: str) -> None:
    """A circuit over more than :data:`MAX_CELLS` tokens or positions needs ``tokens=``."""
    if tokens is None and size > MAX_CELLS:
        raise RenderError(
            f"{size} {what} would be shown, at most {MAX_CELLS}: pass tokens= to choose some"
        )


def _labels(names: Sequence[str] | None, index: list[int], what: str, size: int) -> list[str]:
    if names is None:
        return [str(i) for i in index]
    given = _list(names, what)
    if len(given) != size:
        raise RenderError(f"{what}: expected {size} names, got {len(given)}")
    return [str(given[i]) for i in index]


def _list(values: object, name: str) -> list[Any]:
    """A collection as a list (a string is a collection of characters), else a RenderError."""
    if not isinstance(values, Iterable):
        raise RenderError(f"{name}: expected a collection, got {values!r}")
    return list(values)


def qk_circuit_plot(
    model: AttnOnlyTransformer,
    head: HeadRef,
    *,
    tokens: Sequence[int] | None = None,
    positional: bool = False,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    r"""The QK circuit of ``head``: :math:`W_E^T W_{QK} W_E` on ``tokens`` (query down, key across),
    or with ``positional`` :math:`W_P^T W_{QK} W_P` on positions ``tokens``."""
    layer, index = model.cfg.resolve_head(head)
    circuit = (positional_qk_circuit if positional else token_qk_circuit)(model, (layer, index))
    what = "position" if positional else "token"
    _require_choice(tokens, circuit.shape[0], f"{what}s")
    return circuit_plot(
        circuit, rows=tokens, cols=tokens, row_labels=labels, col_labels=labels,
        title=f"{what} QK circuit of head {layer}.{index}", xlabel=f"key {what}",
        ylabel=f"query {what}", ax=ax,
    )  # fmt: skip


def ov_circuit_plot(
    model: AttnOnlyTransformer,
    head: HeadRef,
    *,
    tokens: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    r"""The OV circuit :math:`W_U W_{OV} W_E` of ``head`` on ``tokens``: output token down,
    attended (source) token across; a copying head shows a positive diagonal."""
    layer, index = model.cfg.resolve_head(head)
    _require_choice(tokens, model.cfg.d_vocab, "tokens")
    return circuit_plot(
        ov_circuit(model, (layer, index)), rows=tokens, cols=tokens, row_labels=labels,
        col_labels=labels, title=f"OV circuit of head {layer}.{index}",
        xlabel="attended token", ylabel="output logit", ax=ax,
    )  # fmt: skip


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix: ``.png``, ``.svg``, ``.pdf``, …)."""
    target = Path(path)
    try:
        figure.savefig(target)
    except ValueError as error:  # matplotlib's answer to an unknown format
        raise RenderError(f"{target}: {error}") from None
    except OSError as error:
        raise RenderError(f"{target}: cannot write ({error.strerror or error})") from None
    return target
