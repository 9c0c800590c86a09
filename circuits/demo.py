"""``circuits demo``: build the canonical induction circuit, run it, analyse it, prove it, draw it.

The steps, each printed:

1. :func:`~circuits.construct.induction.induction_model` builds the K-composition induction
   circuit (previous-token head 0.0, induction head 1.0) by hand;
2. it runs on a repeated random sequence ``[BOS] r r`` and predicts the second copy;
3. the path expansion of its logits, its terms ranked by their contribution to the right token;
4. the composition scores of its heads against the random baseline and against their ceiling;
5. the certificate: a proved lower bound on P(correct next token) over every sequence of the
   family;
6. the circuit diagram (SVG) and heatmaps of attention and circuits written into the output folder.

Terms and scores that round to zero at the printed precision are counted, not listed. Every size
the construction builds runs to the end: a circuit heatmap over more than
:data:`~circuits.plots.MAX_CELLS` tokens or positions shows evenly spaced ones and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import checked_int
from .analysis import all_composition_scores, composition_baseline, repeated_random_tokens
from .construct.induction import Mechanism, induction_model
from .errors import MissingDependencyError, RenderError
from .factored import FactoredMatrix
from .model import ActivationCache, AttnOnlyTransformer
from .paths import PathTerm, path_expansion
from .plots import (
    MAX_CELLS,
    MAX_TICKS,
    attention_plot,
    ov_circuit_plot,
    qk_circuit_plot,
    save_figure,
    subsample,
)
from .qk_paths import qk_expansion
from .render import (
    circuit_diagram,
    composition_edges,
    head_roles,
    head_subspaces,
    save_diagram,
)
from .verify import certify_induction

__all__ = ["PRINTED_ZERO", "composition_ceiling", "run_demo"]

Printer = Callable[[str], None]

#: Values below this in magnitude print as 0.000: the demo counts such terms instead of listing them.
PRINTED_ZERO = 0.0005


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
    tokens, top = _run(model, seed, out)
    _section(out, "4. Composition scores")
    composition = all_composition_scores(model)
    _composition(model, composition, out)
    _section(out, "5. Certificate")
    out(str(certify_induction(model)))
    _section(out, "6. Pictures")
    graph = circuit_diagram(
        model, composition=composition, highlight=[top], title=f"{mechanism}-composition induction"
    )
    saved = save_diagram(graph, out_dir / "circuit.svg")
    if saved.note:
        out(f"note: {saved.note}")
    _, full = model.run_with_cache(tokens)  # the heatmaps show every token, the last included
    written = [saved.path, *_plots(model, full, out_dir, out)]
    out("wrote: " + ", ".join(str(path) for path in written))
    return written


def _section(out: Printer, title: str) -> None:
    out(f"\n{title}\n{'-' * len(title)}")


def _listed(values: Sequence[float]) -> int:
    """How many of ``values`` (largest magnitude first) print as something other than 0.000."""
    return sum(1 for value in values if abs(value) >= PRINTED_ZERO)


def _zero_note(out: Printer, count: int, what: str) -> None:
    if count:
        out(f"  (and {count} {what} contributing 0.000: |mean| < {PRINTED_ZERO})")


def _run(
    model: AttnOnlyTransformer, seed: int, out: Printer
) -> tuple[np.ndarray[Any, np.dtype[np.intp]], PathTerm]:
    """Steps 2 and 3, on all but the last token (whose next token is unknown); returns the whole
    sequence and the term contributing most to the right tokens."""
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
    shown = _listed([value for _, value in ranked])
    for term, value in ranked[:shown]:
        out(f"  {value:9.3f}  {' → '.join(term.path)}  ({term.kind})")
    _zero_note(out, len(ranked) - shown, "other terms")
    _qk_terms(model, cache, half, out)
    return tokens, ranked[0][0]


def _qk_terms(model: AttnOnlyTransformer, cache: ActivationCache, half: int, out: Printer) -> None:
    """The QK terms of the induction head, ranked by their score at the keys it should attend to."""
    n = cache.tokens.shape[1]
    mask = np.zeros((1, n, n), dtype=bool)
    queries = np.arange(half + 1, n)
    mask[0, queries, queries - half + 1] = True  # the key after the earlier copy of the query
    ranked = qk_expansion(model, "1.0").contributions(cache).ranked(mask)
    out("the scores of head 1.0 at the keys it should attend to, by term (Q-, K-composition):")
    shown = _listed([value for _, value in ranked])
    for term, value in ranked[:shown]:
        query, key = (" → ".join(side) for side in term.key)
        out(f"  {value:9.3f}  query {query}  ·  key {key}  ({term.kind})")
    _zero_note(out, len(ranked) - shown, "other terms")


#: The reading map of each kind of composition, from a reading head's factored W_QK and W_OV.
_READERS: dict[str, Callable[[AttnOnlyTransformer, str], FactoredMatrix]] = {
    "Q": lambda model, head: model.W_QK(head).T,
    "K": lambda model, head: model.W_QK(head),
    "V": lambda model, head: model.W_OV(head),
}


def composition_ceiling(model: AttnOnlyTransformer, kind: str, writer: str, reader: str) -> float:
    r"""The largest composition score the pair could have with these two maps' spectra.

    For a reading map M (:math:`W_{QK}^T`, :math:`W_{QK}` or :math:`W_{OV}` of ``reader``, by
    ``kind``) and the writer's :math:`W = W_{OV}`,
    :math:`\|MW\|_F \le \min(\|M\|_2 \|W\|_F, \|M\|_F \|W\|_2)`, so the score is at most
    :math:`\min(\|M\|_2/\|M\|_F,\ \|W\|_2/\|W\|_F)`: :math:`1/\sqrt r` when a map of rank r has
    equal singular values. A score at its ceiling is a perfect composition.
    """
    if kind not in _READERS:
        raise RenderError(f"unknown composition kind {kind!r}; expected one of Q, K, V")
    ratios = []
    for matrix in (_READERS[kind](model, reader), model.W_OV(writer)):
        squares = _squared_singular_values(matrix)
        total = float(np.sum(squares))
        ratios.append(float(np.sqrt(squares.max() / total)) if total > 0 else float("nan"))
    return min(ratios)


def _squared_singular_values(matrix: FactoredMatrix) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The squared singular values of ``A B`` from its two ``k × k`` Gram matrices.

    With :math:`A^T A = U w U^T`, they are the eigenvalues of the symmetric
    :math:`w^{1/2} U^T (B B^T) U w^{1/2}`; no ``d × d`` matrix and no QR of a ``d × k`` one.
    """
    w, u = np.linalg.eigh(matrix.A.T @ matrix.A)
    root = u * np.sqrt(np.clip(w, 0.0, None))
    core = root.T @ (matrix.B @ matrix.B.T) @ root
    squares: np.ndarray[Any, np.dtype[np.float64]] = np.clip(np.linalg.eigvalsh(core), 0.0, None)
    return squares


def _composition(model: AttnOnlyTransformer, composition: dict[str, Any], out: Printer) -> None:
    """Each composing pair's score against chance and against its ceiling; zero scores counted."""
    baseline = composition_baseline(model)
    out(f"chance: the score of unrelated heads, 1/√d_model = {baseline:.3f}")
    out("ceiling: the most the two maps' singular values allow; a perfect composition through r")
    out("  equal dimensions scores only 1/√r")
    edges = composition_edges(model, composition, 0.0)
    shown = _listed([score for *_, score in edges])
    for kind, writer, reader, score in edges[:shown]:
        ceiling = composition_ceiling(model, kind, writer, reader)
        out(f"  {kind}-composition {writer} → {reader}: {score:.3f} (ceiling {ceiling:.3f} = "
            f"1/√{1 / ceiling**2:.3g}, {score / ceiling:.0%} of it; chance {baseline:.3f})")  # fmt: skip
    zero = [f"{kind} {writer} → {reader}" for kind, writer, reader, _ in edges[shown:]]
    if zero:
        out(f"  (and 0.000, below {PRINTED_ZERO}: {', '.join(zero)})")


def _plots(
    model: AttnOnlyTransformer, cache: ActivationCache, out_dir: Path, out: Printer
) -> list[Path]:
    """The heatmaps; a circuit larger than :data:`MAX_CELLS` is shown on evenly spaced rows."""
    written = []
    tokens = subsample(model.cfg.d_vocab)
    positions = subsample(model.cfg.n_ctx)
    try:
        for name in model.cfg.head_names():
            written.append(
                save_figure(attention_plot(cache, name), out_dir / f"attention_{name}.svg")
            )
        ov = ov_circuit_plot(model, "1.0", tokens=tokens)
        written.append(save_figure(ov, out_dir / "ov_1.0.svg"))
        qk = qk_circuit_plot(model, "0.0", tokens=positions, positional=True)
        written.append(save_figure(qk, out_dir / "qk_0.0_positions.svg"))
    except MissingDependencyError as error:
        out(f"note: no plots ({error})")
        return written
    length = cache.tokens.shape[1]
    labelled = "" if length <= MAX_TICKS else " (too many to label each: the axes label a few)"
    out(f"attention heatmaps: all {length} positions of the sequence above, the last included"
        + labelled)  # fmt: skip
    for what, chosen, size in (("ov_1.0", tokens, model.cfg.d_vocab),
                               ("qk_0.0_positions", positions, model.cfg.n_ctx)):  # fmt: skip
        if len(chosen) < size:
            out(f"{what}: {len(chosen)} evenly spaced of {size} (a heatmap shows at most "
                f"{MAX_CELLS}), first and last included")  # fmt: skip
    return written
