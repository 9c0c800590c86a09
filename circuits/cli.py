"""The ``circuits`` command (``python -m circuits``): demo, render, analyze, expand, certify,
report, training-run, zoo.

Every verb has ``--help``. MODEL is a file written by ``circuits.save`` or a TransformerLens state
dict (``.npz``, ``.safetensors``). Errors print one line and exit with status 1 (2 for bad
arguments). Each verb imports what it needs when it runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import CircuitsError, HeadError, PathError, TokenError, VerificationError

if TYPE_CHECKING:
    import numpy as np

    from .model import AttnOnlyTransformer

__all__ = ["main"]

Printer = Callable[[str], None]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``circuits VERB: error: …``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


#: Characters that would break an error message across lines (``str.splitlines`` splits on each).
_LINE_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(message: str) -> str:
    """``message`` with line breaks and other control characters written as escapes (``\\n``)."""
    return _LINE_BREAKS.sub(lambda match: repr(match.group())[1:-1], message)


# ---------------------------------------------------------------------- shared pieces
def _load_model(args: argparse.Namespace) -> AttnOnlyTransformer:
    overrides = {
        name: getattr(args, name)
        for name in (
            "n_ctx",
            "attn_scale",
            "positional_embedding_type",
            "normalization_type",
            "eps",
            "bos_token",
        )
        if getattr(args, name) is not None
    }
    return _model(args.model, **overrides)


def _model(name: str, **overrides: object) -> AttnOnlyTransformer:
    """A model file, or the name of a model of :mod:`circuits.zoo` when no such file exists."""
    from . import zoo
    from .io import load

    if not Path(name).exists() and name in zoo.names():
        if overrides:
            raise CircuitsError(f"{sorted(overrides)}: a zoo model carries its own configuration")
        return zoo.load(name)
    return load(name, **overrides)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, columns padded to their widest cell, numbers right-aligned."""
    cells = [list(header)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if c[:1].isdigit() or c[:1] in "-+" else c.ljust(w)
                 for c, w in zip(row, widths, strict=True)]  # fmt: skip
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _number(value: Any) -> float | None:
    """A float for JSON: NaN (an undefined score) becomes ``None``."""
    number = float(value)
    return None if math.isnan(number) else number


# ---------------------------------------------------------------------- verbs
def analyze(args: argparse.Namespace, out: Printer) -> None:
    """Per-head behaviour and copying scores, and the composing pairs of heads."""
    model = _load_model(args)
    report = analysis_report(model, threshold=args.threshold, seq_len=args.seq_len)
    if args.json:
        out(json.dumps(report, indent=2, allow_nan=False))
        return
    out(repr(model))
    rows = [[name, *(h[key] for key in _HEAD_COLUMNS)] for name, h in report["heads"].items()]
    out("\n" + _table(["head", *_HEAD_COLUMNS], rows))
    out(
        f"\ncomposition ≥ {report['composition_threshold']:.3f} "
        f"(chance level ≈ {report['composition_baseline']:.3f}):"
    )
    pairs = report["composition"]
    if not pairs:
        out("  none")
    else:
        out(_table(["kind", "writer", "reader", "score"],
                   [[p["kind"], p["writer"], p["reader"], p["score"]] for p in pairs]))  # fmt: skip


_HEAD_COLUMNS = ("previous_token", "duplicate_token", "induction", "copying", "ov_copying")


def analysis_report(
    model: AttnOnlyTransformer, *, threshold: float | None, seq_len: int | None
) -> dict[str, Any]:
    """The numbers ``circuits analyze`` prints, as a JSON-compatible dict."""
    from .analysis import (
        all_composition_scores,
        behaviour_scores,
        composition_baseline,
        copying_scores,
    )
    from .render import composition_edges, composition_threshold

    heads: dict[str, dict[str, float | None]] = {}
    if model.cfg.n_layers:
        behaviour = behaviour_scores(model, seq_len=seq_len)
        eigen = copying_scores(model)
        for layer, head in model.cfg.heads():
            scores = {key: _number(behaviour[key][layer, head]) for key in _HEAD_COLUMNS[:4]}
            heads[f"{layer}.{head}"] = {**scores, "ov_copying": _number(eigen[layer, head])}
    return {
        "model": {**model.cfg.to_dict(), "bos_token": model.bos_token},
        "heads": heads,
        "composition_baseline": composition_baseline(model),
        "composition_threshold": composition_threshold(model, threshold),
        "composition": [
            {"kind": kind, "writer": writer, "reader": reader, "score": score}
            for kind, writer, reader, score in composition_edges(
                model, all_composition_scores(model), threshold
            )
        ],
    }


def render(args: argparse.Namespace, out: Printer) -> None:
    """Draw a model file as a circuit diagram."""
    from .analysis import all_composition_scores
    from .render import circuit_diagram, save_diagram

    model = _load_model(args)
    paths = [part.split(",") for part in args.highlight]
    for path in paths:
        for node in path:
            _check_head_node(model, node, "--highlight")
    composition = None if args.no_composition else all_composition_scores(model)
    graph = circuit_diagram(
        model, composition=composition, threshold=args.threshold, highlight=paths,
        title=args.title if args.title is not None else Path(args.model).name,
    )  # fmt: skip
    saved = save_diagram(graph, args.out)
    if saved.note:
        print(f"circuits render: {saved.note}", file=sys.stderr)
    out(f"wrote {saved.path}")


def expand(args: argparse.Namespace, out: Printer) -> None:
    """The path expansion of the logits (with --qk HEAD: of that head's attention scores): its
    terms, in LaTeX (--latex prints nothing else), or ranked by their contribution on --tokens,
    averaged over every position or at one --position, to the logit of the next token or of
    --target (for scores: of every key, or of one --key)."""
    import numpy as np

    from .paths import KINDS, path_expansion

    if args.limit < 0:
        raise PathError(f"--limit must be ≥ 0, got {args.limit}")
    if args.order is not None and args.order < 0:
        raise PathError(f"--order must be ≥ 0, got {args.order}")
    model = _load_model(args)
    if args.qk is not None:
        _expand_qk(model, args, out)
        return
    if args.key is not None:
        raise PathError("--key is the key position of an attention score: it needs --qk HEAD")
    expansion = path_expansion(model)
    if args.order is not None:
        expansion = expansion.filter(order=range(args.order + 1))
    if args.latex:
        out("\\text{logits} = " + expansion.latex())
        return
    header: list[str] = ["path", "kind"]
    rows: list[list[object]]
    if args.tokens is None:
        _needs_tokens(args, "--position", "--target")
        rows = [[" → ".join(t.path), t.kind] for t in itertools.islice(expansion, args.limit)]
        total, title = len(expansion), ""
    else:
        tokens = _parse_tokens(args.tokens)
        if args.target is None:  # each position scored on the token that follows it
            inputs, targets, what = tokens[:-1], tokens[1:], "the next token"
        else:
            target = _token(model, args.target, "--target")
            inputs, targets, what = tokens, np.full(tokens.shape, target), f"token {target}"
        _, cache = model.run_with_cache(inputs)
        mask, where = _positions(args.position, inputs.size, args.target is None)
        ranked = expansion.contributions(cache, targets[None]).ranked(mask)
        rows = [[" → ".join(t.path), t.kind, value] for t, value in ranked[: args.limit]]
        header, total = [*header, "mean" if args.position is None else "value"], len(ranked)
        title = f"terms ranked by their contribution to the logit of {what}, {where}:"
    counts = ", ".join(f"{len(expansion.filter(kind=kind))} {kind}" for kind in KINDS)
    out(f"{model!r}\n{len(expansion)} terms: {counts}")
    if title:
        out(title)
    out(_table(header, rows))
    if total > len(rows):
        out(f"… and {total - len(rows)} more (--limit)")


def _expand_qk(model: AttnOnlyTransformer, args: argparse.Namespace, out: Printer) -> None:
    """``expand --qk HEAD``: the terms of that head's attention scores (see :func:`expand`)."""
    import numpy as np

    from .qk_paths import qk_expansion

    name = _head(model, args.qk, "--qk")
    if args.target is not None:
        raise PathError(
            "--target is a token of the logits; an attention score has a --key position"
        )
    expansion = qk_expansion(model, name)
    if args.order is not None:
        order = args.order
        expansion = expansion.filter(where=lambda t: t.query_order + t.key_order <= order)
    if args.latex:
        out(f"s^{{{name}}} = " + expansion.latex())
        return
    header: list[str] = ["query path", "key path", "kind"]
    rows: list[list[object]]
    if args.tokens is None:
        _needs_tokens(args, "--position", "--key")
        rows = [[" → ".join(t.key[0]), " → ".join(t.key[1]), t.kind]
                for t in itertools.islice(expansion, args.limit)]  # fmt: skip
        total, title = len(expansion), ""
    else:
        tokens = _parse_tokens(args.tokens)
        _, cache = model.run_with_cache(tokens)
        n = tokens.size
        mask = np.tril(np.ones((1, n, n), dtype=bool))  # the causal entries, key ≤ query
        query = None if args.position is None else _position(args.position, n, "--position")
        key = None if args.key is None else _position(args.key, n, "--key")
        if query is not None:
            mask[0, np.arange(n) != query] = False
        if key is not None:
            mask[0, :, np.arange(n) != key] = False
        if not mask.any():
            raise PathError(f"--key {key} comes after query {query}: a query sees keys ≤ itself")
        where = {
            (False, False): "averaged over every query and the keys it sees",
            (True, False): f"at query {query}, averaged over its keys",
            (False, True): f"at key {key}, averaged over the queries that see it",
            (True, True): f"at query {query} and key {key}",
        }[query is not None, key is not None]
        ranked = expansion.contributions(cache).ranked(mask)
        rows = [[" → ".join(t.key[0]), " → ".join(t.key[1]), t.kind, value]
                for t, value in ranked[: args.limit]]  # fmt: skip
        header, total = [*header, "mean" if mask.sum() > 1 else "value"], len(ranked)
        title = f"terms ranked by their contribution to the scores of head {name}, {where}:"
    out(f"{model!r}\n{len(expansion)} terms of the scores of head {name}")
    if title:
        out(title)
    out(_table(header, rows))
    if total > len(rows):
        out(f"… and {total - len(rows)} more (--limit)")


def _needs_tokens(args: argparse.Namespace, *options: str) -> None:
    for option in options:
        if getattr(args, option[2:]) is not None:
            raise TokenError(f"{option} needs --tokens, the sequence it points into")


def _position(value: int, size: int, option: str) -> int:
    """A position of a sequence of ``size`` tokens, checked."""
    if not 0 <= value < size:
        raise TokenError(f"{option} {value}: the sequence has positions 0 … {size - 1}")
    return value


def _positions(position: int | None, size: int, next_token: bool) -> tuple[Any, str]:
    """The mask ``[1, size]`` of the positions to average over, and how to say which they are."""
    import numpy as np

    if position is None:
        return None, "averaged over every position"
    if next_token and position == size:  # the last token: nothing follows it
        raise TokenError(
            f"--position {position}: the last token has no next token to score; give --target"
        )
    mask = np.zeros((1, size), dtype=bool)
    mask[0, _position(position, size, "--position")] = True
    return mask, f"at position {position}"


def _token(model: AttnOnlyTransformer, value: int, option: str) -> int:
    if not 0 <= value < model.cfg.d_vocab:
        raise TokenError(
            f"{option} {value}: not a token of this model (its vocabulary is 0 … {model.cfg.d_vocab - 1})"
        )
    return value


def _head(model: AttnOnlyTransformer, name: str, option: str) -> str:
    """``name`` if the model has that head, else a :class:`HeadError` naming it and the heads there are."""
    from .config import parse_head

    try:
        layer, head = parse_head(name)
    except HeadError:
        raise HeadError(
            f"{option}: {name!r} is not a head name; expected 'layer.head', e.g. 1.0"
        ) from None
    cfg = model.cfg
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        heads = f"0.0 … {cfg.n_layers - 1}.{cfg.n_heads - 1}" if cfg.n_layers else "none"
        raise HeadError(
            f"{option}: the model has no head {name}, only {cfg.n_layers} layers of "
            f"{cfg.n_heads} heads ({heads})"
        )
    return name


def _check_head_node(model: AttnOnlyTransformer, node: str, option: str) -> None:
    """A node naming a head (``1.4``) or a head's bias (``b_V[1.4]``, ``b_O[1]``) the model lacks
    is a :class:`HeadError`; other names are left to the path check."""
    from .graph import parse_node

    try:
        info = parse_node(node)
    except CircuitsError:
        return
    if info.owner is not None:
        _head(model, info.owner, option if node == info.owner else f"{option} {node}")
    elif info.layer is not None and not 0 <= info.layer < model.cfg.n_layers:
        raise HeadError(
            f"{option} {node}: the model has no layer {info.layer}, only {model.cfg.n_layers}"
        )


def _parse_tokens(text: str) -> np.ndarray:
    import numpy as np

    try:
        tokens = np.array([int(t) for t in text.replace(",", " ").split()], dtype=np.intp)
    except ValueError:
        raise TokenError(
            f"--tokens: expected token ids separated by spaces, got {text!r}"
        ) from None
    if tokens.size < 2:
        raise TokenError("--tokens: give at least two tokens (each term is scored on the next one)")
    return tokens


def demo(args: argparse.Namespace, out: Printer) -> None:
    """Build the canonical induction circuit, run it on a repeated sequence, print its path
    expansion, composition scores and certificate, and write its diagram and plots into --out."""
    from .demo import run_demo

    run_demo(
        Path(args.out), vocab_size=args.vocab_size, n_ctx=args.n_ctx, mechanism=args.mechanism,
        seed=args.seed, out=out,
    )  # fmt: skip


def certify(args: argparse.Namespace, out: Printer) -> None:
    """Proved bounds on P(correct next token) over every sequence that starts with BOS and whose
    last token occurred exactly once before: the closed form for a canonical induction model (or
    its parameters), the weights-based certifier for any other 2-layer model."""
    from .verify import certify_induction

    parameters = {name: getattr(args, name) for name in _CERTIFY_PARAMETERS}
    if args.model is None:
        if args.weights:
            raise VerificationError("--weights needs MODEL (a model file or a zoo name)")
        _print_certificate(certify_induction(**parameters), args, out)
        return
    coherence, n_ctx = parameters.pop("coherence"), parameters.pop("n_ctx")
    if any(value is not None for value in parameters.values()):
        raise VerificationError("give either MODEL or the parameters (--vocab-size, …), not both")
    model = _model(args.model)
    if "construction" in model.metadata and not args.weights and n_ctx is None:
        try:
            closed_form = certify_induction(model, coherence=coherence)
        except VerificationError as error:  # not the construction it records: use the weights
            out(f"(closed form not applicable: {error}; certifying from the weights)")
        else:
            _print_certificate(closed_form, args, out)
            return
    if coherence is not None:
        raise VerificationError("--coherence belongs to the closed form of canonical models")
    from .verify import certify as certify_weights

    _print_certificate(certify_weights(model, n_ctx=n_ctx), args, out)


def _print_certificate(certificate: object, args: argparse.Namespace, out: Printer) -> None:
    latex = getattr(certificate, "latex", None)
    if args.latex:
        if latex is None:
            raise VerificationError("--latex: a weights-based certificate has no closed form")
        out(latex())
    else:
        out(str(certificate))


def report(args: argparse.Namespace, out: Printer) -> None:
    """Write MODEL's report: one HTML page that works offline — its card, circuit diagram, heads
    with their roles and scores, composition against the random baseline, an interactive
    attention view of a sequence, the top path and QK terms at a position, and the certificate
    where one exists (the closed form for a canonical construction; for any other 2-layer model
    with --certify-n-ctx)."""
    from .reporting import report as make_report

    model = _load_model(args)
    tokens = None if args.tokens is None else [int(t) for t in _parse_tokens(args.tokens)]
    if args.head is not None:
        _head(model, args.head, "--head")
    page = make_report(
        model,
        tokens=tokens,
        position=args.position,
        head=args.head,
        seed=args.seed,
        certify_n_ctx=args.certify_n_ctx,
    )
    out(f"wrote {page.save(args.out)}")


def training_run(args: argparse.Namespace, out: Printer) -> None:
    """The training run of a zoo model through its checkpoints: loss on repeated and unrepeated
    tokens, in-context-learning score, the best previous-token and induction head's scores, their
    K-composition, and the accuracy certify proves on sequences of at most --certify-n-ctx tokens
    (0: none)."""
    from . import zoo
    from .analysis import training_run as measure

    checkpoints = {step: zoo.load(args.model, step=step) for step in zoo.steps(args.model)}
    if not checkpoints:
        raise CircuitsError(f"{args.model!r} ships no checkpoints; try one of {_with_steps()}")
    extra = {}
    if args.certify_n_ctx:
        from .verify import certify as certify_weights

        def certified(model: AttnOnlyTransformer) -> float:
            return certify_weights(model, n_ctx=args.certify_n_ctx, progress=False).accuracy_bound

        extra[f"certified acc (n≤{args.certify_n_ctx})"] = certified
    run = measure(checkpoints, seq_len=args.seq_len, extra=extra)
    out(json.dumps(run.to_dict(), allow_nan=False) if args.json else run.table())


def zoo_list(args: argparse.Namespace, out: Printer) -> None:
    """The models that ship with the library: each name with its size, checkpoints and card (its
    description and the figures measured on it; --json for the whole card)."""
    from . import zoo

    cards = {name: zoo.info(name) for name in zoo.names()}
    if args.json:
        out(json.dumps(_finite_or_null(cards), allow_nan=False))
        return
    for name, card in cards.items():
        cfg = zoo.load(name).cfg
        steps = zoo.steps(name)
        out(
            f"{name}: {cfg.n_layers} layers × {cfg.n_heads} head{'s' if cfg.n_heads > 1 else ''}, "
            f"d_model {cfg.d_model}, "
            f"vocabulary {cfg.d_vocab}, n_ctx {cfg.n_ctx}, BOS {card.get('bos_token')}"
            + (f", {len(steps)} checkpoints ({steps[0]} … {steps[-1]})" if steps else "")
        )
        out(f"  {card.get('description', '')}")
        for key, value in card.get("measured", {}).items():
            if not isinstance(value, dict):
                out(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")


def _finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (a loss not measured yet) as ``None``: valid JSON."""
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _with_steps() -> list[str]:
    from . import zoo

    return [name for name in zoo.names() if zoo.steps(name)]


_CERTIFY_PARAMETERS = ("vocab_size", "n_ctx", "mechanism", "beta0", "beta1", "gamma", "coherence")


# ---------------------------------------------------------------------- parser
def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model file (.npz or .safetensors) or a zoo name")
    group = parser.add_argument_group("for TransformerLens state dicts (no config inside)")
    group.add_argument("--n-ctx", type=int, help="context length (of a state dict without W_pos)")
    group.add_argument("--attn-scale", type=float, help="score divisor (default √d_head)")
    group.add_argument(
        "--positional-embedding-type", choices=("standard", "shortformer", "none"),
        help="how positions enter (default standard)",
    )  # fmt: skip
    group.add_argument(
        "--normalization-type", choices=("LN", "LNPre", "RMS", "RMSPre"),
        help="LayerNorm before each layer and the unembedding (LN and RMS are seen in the keys; "
        "LNPre and RMSPre, without weights, must be given)",
    )  # fmt: skip
    group.add_argument("--eps", type=float, help="the normalisation's epsilon (default 1e-5)")
    group.add_argument("--bos-token", type=int, help="id of the start-of-sequence token")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``circuits`` command."""
    parser = _Parser(
        prog="circuits",
        description="Build, run, expand, analyse, prove and draw attention-only transformer "
        "circuits. MODEL is a file written by circuits.save or a TransformerLens state dict "
        "(.npz, .safetensors).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    p = verbs.add_parser("demo", help="build an induction circuit, analyse it, draw it",
                         description=demo.__doc__)  # fmt: skip
    p.add_argument("--out", default="circuits-demo", help="directory for the diagrams and plots")
    p.add_argument("--vocab-size", type=int, default=12, help="vocabulary, BOS included (12)")
    p.add_argument("--n-ctx", type=int, default=25, help="context length (25)")
    p.add_argument("--mechanism", choices=("K", "Q"), default="K",
                   help="K-composition (default) or the Q-composition pointer variant")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the repeated sequence (0)")
    p.set_defaults(run=demo)

    p = verbs.add_parser("render", help="draw a model as a circuit diagram",
                         description=render.__doc__)  # fmt: skip
    _model_arguments(p)
    p.add_argument("--out", required=True, help="output file: .svg, .png, .pdf or .dot")
    p.add_argument("--threshold", type=float, default=None,
                   help="draw composition edges with score ≥ this (default: 1.5 × the chance level, 1.5/√d_model)")  # fmt: skip
    p.add_argument("--no-composition", action="store_true", help="no composition edges")
    p.add_argument("--highlight", action="append", default=[], metavar="PATH",
                   help="a path to highlight, as comma-separated nodes, e.g. 0.1,1.0 or "
                   "embed,0.1,1.0,unembed (repeatable)")  # fmt: skip
    p.add_argument("--title", help="title of the diagram (default: the file name)")
    p.set_defaults(run=render)

    p = verbs.add_parser("analyze", help="head behaviours, copying and composition scores",
                         description=analyze.__doc__)  # fmt: skip
    _model_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--threshold", type=float, default=None,
                   help="list composition scores ≥ this (default: 1.5 × the chance level, 1.5/√d_model)")  # fmt: skip
    p.add_argument("--seq-len", type=int, help="length of the repeated random runs")
    p.set_defaults(run=analyze)

    p = verbs.add_parser("expand", help="the path expansion of the logits",
                         description=expand.__doc__)  # fmt: skip
    _model_arguments(p)
    p.add_argument("--latex", action="store_true",
                   help="print the expansion as LaTeX, and nothing else (for a pipe)")  # fmt: skip
    p.add_argument("--order", type=int, help="only terms through at most N heads")
    p.add_argument("--tokens", help="rank terms by contribution on these tokens, e.g. '0 5 3 5'")
    p.add_argument("--position", type=int, metavar="I",
                   help="with --tokens: at position I only, not averaged over every position")  # fmt: skip
    p.add_argument("--target", type=int, metavar="T",
                   help="with --tokens: the logit of token T, not of the next token")  # fmt: skip
    p.add_argument("--qk", metavar="HEAD",
                   help="the terms of the attention scores of HEAD (e.g. 1.0) instead; --position "
                   "is then the query")  # fmt: skip
    p.add_argument("--key", type=int, metavar="J",
                   help="with --qk and --tokens: the score of key position J only")  # fmt: skip
    p.add_argument("--limit", type=int, default=40, help="list at most this many terms (40)")
    p.set_defaults(run=expand)

    p = verbs.add_parser("certify", help="prove a lower bound on an induction circuit's accuracy",
                         description=certify.__doc__)  # fmt: skip
    p.add_argument("model", nargs="?", help="a model file or zoo name (any 2-layer model)")
    group = p.add_argument_group("or the circuit's parameters (see circuits.induction_model)")
    group.add_argument("--vocab-size", type=int, help="vocabulary size, BOS included")
    group.add_argument("--n-ctx", type=int, help="longest sequence (with MODEL: of the family)")
    group.add_argument("--mechanism", choices=("K", "Q"), help="K (default) or Q composition")
    for name in ("beta0", "beta1", "gamma"):
        group.add_argument(f"--{name}", type=float, help=f"the scale {name} (default 20)")
    p.add_argument("--coherence", type=float, help="coherence μ of a compressed token code")
    p.add_argument("--latex", action="store_true", help="print the bound as a LaTeX formula")
    p.add_argument("--weights", action="store_true",
                   help="certify MODEL from its weights even when it is a canonical construction")  # fmt: skip
    p.set_defaults(run=certify)

    p = verbs.add_parser("report", help="an interactive HTML page of a model, offline",
                         description=report.__doc__)  # fmt: skip
    _model_arguments(p)
    p.add_argument("--out", required=True,
                   help="a directory (for report.html) or an .html file")  # fmt: skip
    p.add_argument("--tokens", help="the sequence shown, e.g. '0 5 3 5' (default: BOS and a "
                   "random run repeated)")  # fmt: skip
    p.add_argument("--position", type=int, metavar="I", help="query position of the term tables")
    p.add_argument("--head", help="head of the QK terms and the drawn pattern, e.g. 1.0")
    p.add_argument("--seed", type=int, default=0, help="seed of the default sequence (0)")
    p.add_argument("--certify-n-ctx", type=int, metavar="N",
                   help="certify a non-canonical 2-layer model on sequences of ≤ N tokens "
                   "(can take minutes)")  # fmt: skip
    p.set_defaults(run=report)

    p = verbs.add_parser("training-run", help="a zoo model's training run through its checkpoints",
                         description=training_run.__doc__)  # fmt: skip
    p.add_argument("model", help="a zoo name with checkpoints")
    p.add_argument("--certify-n-ctx", type=int, default=6,
                   help="certify each checkpoint on sequences of ≤ N tokens (6; 0: skip)")  # fmt: skip
    p.add_argument("--seq-len", type=int, help="length of the repeated random runs")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=training_run)

    p = verbs.add_parser("zoo", help="the trained models that ship with the library",
                         description=zoo_list.__doc__)  # fmt: skip
    p.add_argument("--json", action="store_true", help="print every card as JSON")
    p.set_defaults(run=zoo_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``circuits`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args, print)
    except HeadError as error:  # a head the model does not have: a bad argument
        print(f"circuits {args.verb}: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of a pipe (e.g. head) stopped early: nothing to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - never flushed into the closed pipe
        return 1
    except CircuitsError as error:
        print(f"circuits {args.verb}: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"circuits {args.verb}: error: {_one_line(str(error))}", file=sys.stderr)
        return 1
    return 0
