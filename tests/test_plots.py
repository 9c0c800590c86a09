"""Heatmaps show exactly the pattern or circuit entries asked for; matplotlib stays optional."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, FactoredMatrix, plots
from circuits import testing as ct
from circuits.errors import CircuitsError, MissingDependencyError, RenderError

CFG = {"n_layers": 2, "n_heads": 2, "d_model": 6, "d_head": 2, "d_vocab": 9, "n_ctx": 7}
NO_POSITIONS = AttnOnlyTransformer.random({**CFG, "positional_embedding_type": "none"})
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib (extra 'plot') is missing"
)


def shown(figure: object) -> np.ndarray:
    """The array drawn by the (only) heatmap of a figure."""
    image = figure.axes[0].images[0]  # type: ignore[attr-defined]
    return np.ma.filled(image.get_array().astype(float), np.nan)


def model() -> AttnOnlyTransformer:
    return AttnOnlyTransformer.random(CFG, seed=3)


@needs_matplotlib
@given(ct.token_sequences(model(), length=(2, 7), batch=2), st.integers(0, 1))
@settings(max_examples=10)
def test_attention_plot_shows_the_causal_pattern(tokens: np.ndarray, batch: int) -> None:
    _, cache = model().run_with_cache(tokens)
    figure = plots.attention_plot(cache, "1.1", batch=batch)
    values = shown(figure)
    n = tokens.shape[1]
    pattern = cache.pattern(1, 1)[batch]
    lower = np.tril(np.ones((n, n), dtype=bool))
    np.testing.assert_array_equal(values[lower], pattern[lower])
    assert np.all(np.isnan(values[~lower]))
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks == [f"{i}:{t}" for i, t in enumerate(tokens[batch])]


@needs_matplotlib
@given(ct.factored_matrices(rows=(1, 8), inner=(1, 3), cols=(1, 8)), st.data())
@settings(max_examples=10)
def test_circuit_plot_shows_the_chosen_block(matrix: FactoredMatrix, data: st.DataObject) -> None:
    m, n = matrix.shape
    rows = data.draw(st.lists(st.integers(0, m - 1), min_size=1, max_size=4))
    cols = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    expected = matrix.A[rows] @ matrix.B[:, cols]
    np.testing.assert_allclose(shown(plots.circuit_plot(matrix, rows=rows, cols=cols)), expected)
    dense = matrix.A @ matrix.B
    np.testing.assert_allclose(shown(plots.circuit_plot(dense, rows=rows, cols=cols)), expected)
    image = plots.circuit_plot(dense).axes[0].images[0]
    low, high = image.get_clim()
    assert low == -high == -np.abs(dense).max()  # centred at zero


@needs_matplotlib
def test_qk_and_ov_circuit_plots_show_the_token_circuits() -> None:
    net = model()
    tokens = [1, 4, 5]
    names = [f"tok{t}" for t in range(9)]
    W_E, W_P = net.W_E, net.W_P
    assert W_P is not None
    W_QK = net.W_Q[1, 0].T @ net.W_K[1, 0]
    W_OV = net.W_O[1, 0] @ net.W_V[1, 0]
    qk = plots.qk_circuit_plot(net, "1.0", tokens=tokens, labels=names)
    np.testing.assert_allclose(shown(qk), (W_E.T @ W_QK @ W_E)[np.ix_(tokens, tokens)])
    assert [t.get_text() for t in qk.axes[0].get_yticklabels()] == ["tok1", "tok4", "tok5"]
    positional = plots.qk_circuit_plot(net, (1, 0), positional=True)
    np.testing.assert_allclose(shown(positional), W_P.T @ W_QK @ W_P)
    ov = plots.ov_circuit_plot(net, "1.0")
    np.testing.assert_allclose(shown(ov), net.W_U @ W_OV @ W_E)
    assert "OV circuit of head 1.0" in ov.axes[0].get_title()


@needs_matplotlib
def test_plots_draw_into_given_axes() -> None:
    from matplotlib.figure import Figure

    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plots.ov_circuit_plot(model(), "0.1", ax=right) is figure
    assert right.images and not left.images


@needs_matplotlib
def test_save_figure(tmp_path: Path) -> None:
    figure = plots.ov_circuit_plot(model(), "0.0")
    assert plots.save_figure(figure, tmp_path / "ov.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in plots.save_figure(figure, tmp_path / "ov.svg").read_bytes()
    with pytest.raises(RenderError, match=r"ov\.xyz"):
        plots.save_figure(figure, tmp_path / "ov.xyz")
    with pytest.raises(RenderError, match="cannot write"):
        plots.save_figure(figure, tmp_path / "missing" / "ov.png")


BIG = AttnOnlyTransformer.random(
    {"n_layers": 1, "n_heads": 1, "d_model": 4, "d_head": 2, "d_vocab": 600, "n_ctx": 520}
)


@needs_matplotlib
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m, c: plots.circuit_plot(np.zeros((600, 3))), "600 would be shown, at most 512"),
        (lambda m, c: plots.circuit_plot(np.zeros(3)), "expected a matrix"),
        (lambda m, c: plots.circuit_plot(np.eye(3), rows=[3]), r"indices must be in \[0, 3\)"),
        (lambda m, c: plots.circuit_plot(np.eye(3), cols=[]), "at least one"),
        (lambda m, c: plots.circuit_plot(np.eye(3), row_labels=["a"]), "expected 3 names"),
        (lambda m, c: plots.attention_plot(c, "0.0", batch=1), "batch 1 out of range"),
        (lambda m, c: plots.attention_plot(c, "0.0", labels=["a"]), "expected 3 position names"),
        (lambda m, c: plots.attention_plot(c, "4.0"), "layer 4 out of range"),
        (lambda m, c: plots.qk_circuit_plot(NO_POSITIONS, "0.0", positional=True), "positional"),
        (lambda m, c: plots.ov_circuit_plot(BIG, "0.0"), "600 tokens would be shown.*pass tokens="),
        (lambda m, c: plots.qk_circuit_plot(BIG, "0.0", positional=True), "520 positions.*tokens="),
    ],
)  # fmt: skip
def test_bad_requests_get_clear_errors(make: object, message: str) -> None:
    net = model()
    _, cache = net.run_with_cache(np.array([1, 2, 3]))
    with pytest.raises(CircuitsError, match=message):
        make(net, cache)  # type: ignore[operator]


def test_missing_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'circuits\[plot\]'"):
        plots.ov_circuit_plot(model(), "0.0")
    assert issubclass(MissingDependencyError, ImportError)
