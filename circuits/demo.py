"""``circuits demo``: build an induction circuit, run it, analyse it, and draw it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .analysis import all_composition_scores, composition_baseline, repeated_random_tokens
from .errors import MissingDependencyError, RenderError
from .model import ActivationCache, AttnOnlyTransformer
from .plots import attention_plot, ov_circuit_plot, save_figure
from .render import circuit_diagram, head_roles, save_diagram

__all__ = ["run_demo"]

Printer = Callable[[str], None]


def _demo_model(seed: int) -> AttnOnlyTransformer:
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 32, "d_head": 8, "d_vocab": 20, "n_ctx": 41}
    return AttnOnlyTransformer.random(cfg, seed=seed)


def run_demo(out_dir: Path, *, seed: int = 0, out: Printer = print) -> list[Path]:
    """Print the demo's report and write its pictures into ``out_dir``; return the files written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RenderError(f"{out_dir}: cannot create the directory ({error.strerror})") from None
    model = _demo_model(seed)
    out(f"model: {model!r}")
    tokens = repeated_random_tokens(model, n_samples=1, seed=seed)
    logits, cache = model.run_with_cache(tokens)
    half = (tokens.shape[1] - (model.bos_token is not None)) // 2
    predicted = logits[0, -half:-1].argmax(-1) == tokens[0, -half + 1 :]
    out(f"repeated sequence of {tokens.shape[1]} tokens: {_preview(tokens[0])}")
    out(f"next token predicted correctly on the second copy: {predicted.mean():.1%}")
    composition = all_composition_scores(model)
    baseline = composition_baseline(model)
    out(f"\ncomposition scores (chance level ≈ {baseline:.3f}):")
    for kind, scores in composition.items():
        for l1, h1, l2, h2 in np.argwhere(np.isfinite(scores)):
            out(f"  {kind}  {l1}.{h1} → {l2}.{h2}  {scores[l1, h1, l2, h2]:.3f}")
    written = [_diagram(model, composition, out_dir / "circuit.svg", out)]
    written += _plots(model, cache, out_dir, out)
    out("\nwrote: " + ", ".join(str(path) for path in written))
    return written


def _preview(tokens: np.ndarray, limit: int = 16) -> str:
    shown = " ".join(str(t) for t in tokens[:limit])
    return shown + (" …" if len(tokens) > limit else "")


def _diagram(
    model: AttnOnlyTransformer, composition: dict[str, np.ndarray], path: Path, out: Printer
) -> Path:
    graph = circuit_diagram(model, composition=composition, title="the demo model")
    saved = save_diagram(graph, path)
    if saved.note:
        out(f"note: {saved.note}")
    return saved.path


def _plots(
    model: AttnOnlyTransformer, cache: ActivationCache, out_dir: Path, out: Printer
) -> list[Path]:
    written: list[Path] = []
    try:
        for name in model.cfg.head_names():
            figure = attention_plot(cache, name)
            written.append(save_figure(figure, out_dir / f"attention_{name}.svg"))
        for name in head_roles(model) or model.cfg.head_names()[-1:]:
            written.append(save_figure(ov_circuit_plot(model, name), out_dir / f"ov_{name}.svg"))
    except MissingDependencyError as error:
        out(f"note: no plots ({error})")
    return written
