"""``circuits demo``: build the canonical induction circuit, run it, analyse it, prove it, draw it.

The steps, each printed:

1. :func:`~circuits.construct.induction.induction_model` builds the K-composition induction
   circuit (previous-token head 0.0, induction head 1.0) by hand;
2. it runs on a repeated random sequence ``[BOS] r r`` and predicts the second copy;
3. the path expansion of its logits, its terms ranked by their contribution to the right token;
4. the composition scores of its heads against the random baseline;
5. the certificate: a proved lower bound on P(correct next token) over every sequence of the
   family;
6. the circuit diagram (SVG) and heatmaps of attention and circuits written into the output folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._checks import checked_int
from .analysis import all_composition_scores, composition_baseline, repeated_random_tokens
from .construct.induction import Mechanism, induction_model
from .errors import MissingDependencyError, RenderError
from .model import ActivationCache, AttnOnlyTransformer
from .paths import PathTerm, path_expansion
from .plots import attention_plot, ov_circuit_plot, qk_circuit_plot, save_figure
from .qk_paths import qk_expansion
from .render import (
    circuit_diagram,
    composition_edges,
    head_roles,
    head_subspaces,
    save_diagram,
)
from .verify import certify_induction

__all__ = ["run_demo"]

Printer = Callable[[str], None]


def run_demo(
    out_dir: Path,
    *,
    vocab_size: int = 12,
    n_ctx: int = 25,
    mechanism: Mechanism = "K",
    seed: int = 0,
    out: Printer = print,
) -> list[Path]:
    """Print the demo's report and write its pictures into ``out_dir``; return the files written."""
    checked_int(seed, "seed", 0)  # before anything is printed or written
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RenderError(f"{out_dir}: cannot create the directory ({error.strerror})") from None
    model = induction_model(vocab_size=vocab_size, n_ctx=n_ctx, mechanism=mechanism)
    _section(out, f"1. The {mechanism}-composition induction circuit, built by hand")
    out(repr(model))
    for name, role in head_roles(model).items():
        out(f"  head {name}: {', '.join(role)}; " + "; ".join(head_subspaces(model).get(name, [])))
    cache, top = _run(model, seed, out)
    _section(out, "4. Composition scores")
    composition = all_composition_scores(model)
    out(f"chance level (random heads of these shapes) ≈ {composition_baseline(model):.3f}")
    for kind, writer, reader, score in composition_edges(model, composition, 0.0):
        out(f"  {kind}-composition {writer} → {reader}: {score:.3f}")
    _section(out, "5. Certificate")
    out(str(certify_induction(model)))
    _section(out, "6. Pictures")
    graph = circuit_diagram(
        model, composition=composition, highlight=[top], title=f"{mechanism}-composition induction"
    )
    saved = save_diagram(graph, out_dir / "circuit.svg")
    if saved.note:
        out(f"note: {saved.note}")
    written = [saved.path, *_plots(model, cache, out_dir, out)]
    out("wrote: " + ", ".join(str(path) for path in written))
    return written


def _section(out: Printer, title: str) -> None:
    out(f"\n{title}\n{'-' * len(title)}")


def _run(model: AttnOnlyTransformer, seed: int, out: Printer) -> tuple[ActivationCache, PathTerm]:
    """Steps 2 and 3; returns the cache and the term contributing most to the right tokens."""
    tokens = repeated_random_tokens(model, n_samples=1, seed=seed)
    logits, cache = model.run_with_cache(tokens[:, :-1])
    half = (tokens.shape[1] - 1) // 2
    second = np.arange(tokens.shape[1] - 1) >= half + 1  # queries whose next token is predictable
    right = logits[0].argmax(-1) == tokens[0, 1:]
    _section(out, "2. A repeated random sequence")
    out(" ".join(str(t) for t in tokens[0]))
    out(f"next token right on the second copy: {right[second].mean():.0%} ({second.sum()} tokens)")
    out(f"  on the first copy (nothing to copy yet): {right[1:half].mean():.0%}")
    _section(out, "3. The path expansion of the logits")
    expansion = path_expansion(model)
    out(f"{len(expansion)} terms; contribution to the right logit on the second copy, mean:")
    ranked = expansion.contributions(cache, tokens[:, 1:]).ranked(second[None, :])
    for term, value in ranked[:5]:
        out(f"  {value:9.3f}  {' → '.join(term.path)}  ({term.kind})")
    _qk_terms(model, cache, half, out)
    return cache, ranked[0][0]


def _qk_terms(model: AttnOnlyTransformer, cache: ActivationCache, half: int, out: Printer) -> None:
    """The QK terms of the induction head, ranked by their score at the keys it should attend to."""
    n = cache.tokens.shape[1]
    mask = np.zeros((1, n, n), dtype=bool)
    queries = np.arange(half + 1, n)
    mask[0, queries, queries - half + 1] = True  # the key after the earlier copy of the query
    ranked = qk_expansion(model, "1.0").contributions(cache).ranked(mask)
    out("the scores of head 1.0 at the keys it should attend to, by term (Q-, K-composition):")
    for term, value in ranked[:3]:
        query, key = (" → ".join(side) for side in term.key)
        out(f"  {value:9.3f}  query {query}  ·  key {key}  ({term.kind})")


def _plots(
    model: AttnOnlyTransformer, cache: ActivationCache, out_dir: Path, out: Printer
) -> list[Path]:
    written = []
    try:
        for name in model.cfg.head_names():
            written.append(
                save_figure(attention_plot(cache, name), out_dir / f"attention_{name}.svg")
            )
        written.append(save_figure(ov_circuit_plot(model, "1.0"), out_dir / "ov_1.0.svg"))
        positions = qk_circuit_plot(model, "0.0", positional=True)
        written.append(save_figure(positions, out_dir / "qk_0.0_positions.svg"))
    except MissingDependencyError as error:
        out(f"note: no plots ({error})")
    return written
