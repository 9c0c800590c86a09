"""Find, explain and check the induction circuit of the trained model that ships with the library.

    python examples/analyze_trained.py                 # report; pictures into build/trained-model
    python examples/analyze_trained.py --out docs/images

1. Detect: behavioural head scores on ``[BOS] r r`` name a previous-token head and induction heads.
2. Weights: K-composition, prefix matching and copying single out the same heads.
3. Behaviour: the loss on the second copy of a random run is far below the first.
4. Paths: with patterns frozen, the one-head paths through the induction heads carry the logits;
   in the QK expansion of each induction head, the K-composition term sets its attention; removing
   the previous-token head kills induction only when layer 1 may recompute its attention.
5. The hand-built K-composition circuit (``circuits.induction_model``) through the same analyses.
6. Pictures: circuit diagram, attention patterns, QK / OV / K-composition circuits, loss curves.

Everything runs on float64 copies of the shipped float32 weights; no torch is needed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import circuits
from circuits import zoo
from circuits.analysis import (
    ablate_heads,
    circuit_recovery,
    composition_baseline,
    composition_scores,
    copying_scores,
    detect_heads,
    k_composition_circuit,
    next_token_loss,
    order_importance,
    positional_pattern,
    prefix_matching_scores,
    repeated_random_tokens,
)

NAME = "attn2l-induction"
IntArray = np.ndarray[Any, np.dtype[np.intp]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def section(title: str) -> None:
    print(f"\n=== {title}")


def repeated(model: circuits.AttnOnlyTransformer, seed: int) -> tuple[IntArray, int]:
    """``[BOS] r r`` sequences and the run length ``s``."""
    tokens = repeated_random_tokens(model, n_samples=16, seed=seed)
    return tokens, (tokens.shape[1] - 1) // 2


def copy_masks(tokens: IntArray, s: int) -> tuple[BoolArray, BoolArray]:
    """Positions predicting ``r[1:]`` in the first copy (1 … s−1) and in the second (s+1 … 2s−1)."""
    first = np.zeros(tokens.shape, dtype=bool)
    second = np.zeros(tokens.shape, dtype=bool)
    first[:, 1:s] = True
    second[:, s + 1 : 2 * s] = True
    return first, second


def roles_of(model: circuits.AttnOnlyTransformer) -> tuple[str, list[str]]:
    """The best previous-token head and every head with an induction score above 0.3."""
    found = detect_heads(model, seed=0)
    return found["previous_token"][0][0], [h for h, s in found["induction"] if s > 0.3]


# ------------------------------------------------------------------------------ 1. detect
def report_detection(model: circuits.AttnOnlyTransformer) -> None:
    found = detect_heads(model, seed=0)
    uniform = math.log(model.cfg.n_ctx) / model.cfg.n_ctx
    print(f"uniform causal attention would score about {uniform:.3f}")
    for behaviour, ranked in found.items():
        print(f"{behaviour:>16}: " + "  ".join(f"{h} {s:.3f}" for h, s in ranked[:5]))
    print("roles recorded in the metadata:", dict(model.metadata.get("head_roles", {})))


# ------------------------------------------------------------------------------ 2. weights
def report_weights(model: circuits.AttnOnlyTransformer, prev: str, induction: list[str]) -> None:
    kinds = {kind: composition_scores(model, kind) for kind in ("Q", "K", "V")}
    print(f"random-matrix baseline 1/√d_model = {composition_baseline(model):.3f}")
    print("writer → reader   " + "   ".join(f"{kind}-comp" for kind in kinds))
    for writer in (f"0.{h}" for h in range(model.cfg.n_heads)):
        for reader in induction:
            w, r = circuits.parse_head(writer), circuits.parse_head(reader)
            row = "   ".join(f"{kinds[k][w + r]:6.3f}" for k in kinds)
            mark = "  <- previous-token → induction" if writer == prev else ""
            print(f"  {writer} → {reader}       {row}{mark}")
    prefix, copying = prefix_matching_scores(model), copying_scores(model)
    p = circuits.parse_head(prev)
    print("prefix matching (positive eigenvalues of W_Eᵀ W_QK^ind W_OV^prev W_E):")
    print("  " + "  ".join(f"{h} {prefix[p + circuits.parse_head(h)]:.3f}" for h in induction))
    print("copying Σλ/Σ|λ| of W_U W_OV W_E:")
    print("  " + "  ".join(f"{h} {copying[circuits.parse_head(h)]:.3f}" for h in induction))


# ------------------------------------------------------------------------------ 3. behaviour
def position_losses(model: circuits.AttnOnlyTransformer, tokens: IntArray) -> list[float]:
    """Mean next-token loss at each position but the last."""
    logits = model(tokens)
    marks = np.eye(tokens.shape[1], dtype=bool)
    return [next_token_loss(logits, tokens, positions=marks[i]) for i in range(tokens.shape[1] - 1)]


def in_context_losses(
    model: circuits.AttnOnlyTransformer, tokens: IntArray, s: int
) -> tuple[float, float]:
    first, second = copy_masks(tokens, s)
    logits = model(tokens)
    return (
        next_token_loss(logits, tokens, positions=first),
        next_token_loss(logits, tokens, positions=second),
    )


def report_behaviour(model: circuits.AttnOnlyTransformer, tokens: IntArray, s: int) -> None:
    first, second = in_context_losses(model, tokens, s)
    chance = math.log(model.cfg.d_vocab - 1)
    print(f"[BOS] r r with |r| = {s}: loss on the first copy {first:.3f} (chance {chance:.3f}),")
    print(f"on the second copy {second:.3f}: {first / second:.1f}× lower")
    for order, loss, gain in order_importance(model, tokens, positions=copy_masks(tokens, s)[1]):
        print(
            f"  paths of order ≤ {order}: loss {loss:.3f} on the second copy (order {order} adds {gain:+.3f})"
        )


# ------------------------------------------------------------------------------ 4. paths
def report_paths(
    model: circuits.AttnOnlyTransformer, tokens: IntArray, s: int, prev: str, induction: list[str]
) -> None:
    _, second = copy_masks(tokens, s)
    _, cache = model.run_with_cache(tokens)
    targets = np.concatenate([tokens[:, 1:], tokens[:, -1:]], axis=1)
    expansion = circuits.path_expansion(model)
    contributions = expansion.contributions(cache, targets)
    print("largest mean contributions to the correct logit on the second copy:")
    for term, value in contributions.ranked(mask=second)[:6]:
        print(f"  {' → '.join(term.path):32} {value:+.3f}")
    chosen = {(h,) for h in induction}
    share = circuit_recovery(
        contributions,
        lambda t: t.path[0] == "embed" and t.heads in chosen,
        baseline=expansion.filter(order=0),
        mask=second,
    )
    print(
        f"share of the logit over the direct paths' carried by embed → induction head → unembed: {share:.1%}"
    )
    print("QK expansion: share of each head's score margin (target key vs the others):")
    queries = np.arange(2, tokens.shape[1])
    for head, keys in [(prev, (queries, queries - 1))] + [
        (h, induction_keys(s)) for h in induction
    ]:
        shares = qk_margin_shares(model, cache, head, keys)
        top = ", ".join(f"{label} {value:.0%}" for label, value in shares[:3])
        print(f"  {head}: {top}")
    report_ablation(model, tokens, s, prev)


def induction_keys(s: int) -> tuple[IntArray, IntArray]:
    """Queries of the second copy, and for each the key after the earlier occurrence of its token."""
    queries = np.arange(s + 1, 2 * s + 1)
    return queries, queries - s + 1


def score_margin(scores: np.ndarray[Any, Any], keys: tuple[IntArray, IntArray]) -> float:
    """Mean over ``queries`` of (score of the query's target key) − (mean score of its other keys
    ``j ≤ i``), for ``keys = (queries, targets)``."""
    queries, targets = keys
    others = np.tril(np.ones((scores.shape[-1],) * 2, dtype=bool))[queries]
    others[np.arange(queries.size), targets] = False
    at_target = scores[:, queries, targets]
    elsewhere = np.where(others, scores[:, queries, :], 0.0).sum(-1) / others.sum(-1)
    return float(np.mean(at_target - elsewhere))


def qk_margin_shares(
    model: circuits.AttnOnlyTransformer,
    cache: circuits.ActivationCache,
    head: str,
    keys: tuple[IntArray, IntArray],
) -> list[tuple[str, float]]:
    """Each QK term's share of the score margin of ``head``, largest first, labelled by kind."""
    total = score_margin(cache.scores(head), keys)
    shares = []
    for term, values in circuits.qk_expansion(model, head).contributions(cache):
        label = f"{term.kind}[q: {'→'.join(term.query[:-1])}, k: {'→'.join(term.key_path[:-1])}]"
        shares.append((label, score_margin(values, keys) / total))
    return sorted(shares, key=lambda pair: -abs(pair[1]))


def report_ablation(
    model: circuits.AttnOnlyTransformer, tokens: IntArray, s: int, prev: str
) -> None:
    first_loss, full = in_context_losses(model, tokens, s)
    _, second = copy_masks(tokens, s)
    print(f"ablating the previous-token head {prev} (zero): loss on the second copy {full:.3f} →")
    for patterns in ("frozen", "recomputed"):
        logits = ablate_heads(model, tokens, [prev], patterns=patterns)
        loss = next_token_loss(logits, tokens, positions=second)
        lost = (loss - full) / (first_loss - full)
        print(
            f"  {loss:.3f} with layer-1 patterns {patterns} ({lost:.0%} of the in-context gain lost)"
        )


# ------------------------------------------------------------------------------ 5. hand-built
def compare_with_hand_built(model: circuits.AttnOnlyTransformer, seed: int) -> None:
    built = circuits.induction_model(model.cfg.d_vocab, model.cfg.n_ctx)
    print(f"{'':34}{'trained':>12}{'hand-built':>12}")
    rows: dict[str, list[str]] = {}
    for candidate in (model, built):
        tokens, s = repeated(candidate, seed)
        prev, induction = roles_of(candidate)
        head = induction[0]
        _, cache = candidate.run_with_cache(tokens)
        found = {k: dict(v) for k, v in detect_heads(candidate, seed=0).items()}
        w, r = circuits.parse_head(prev), circuits.parse_head(head)
        values = {
            "d_model / d_head": f"{candidate.cfg.d_model}/{candidate.cfg.d_head}",
            "previous-token score": f"{found['previous_token'][prev]:.3f}",
            "induction score": f"{found['induction'][head]:.3f}",
            "K-composition / baseline": f"{composition_scores(candidate, 'K')[w + r] / composition_baseline(candidate):.2f}",
            "prefix matching": f"{prefix_matching_scores(candidate)[w + r]:.3f}",
            "top singular value of W_QK^ind": f"{candidate.W_QK(head).singular_values[0]:.1f}",
            "score margin at the target key": f"{score_margin(cache.scores(head), induction_keys(s)):.1f}",
            "loss on the second copy": f"{in_context_losses(candidate, tokens, s)[1]:.2e}",
        }
        for name, value in values.items():
            rows.setdefault(name, []).append(value)
    for name, (trained, hand) in rows.items():
        print(f"{name:34}{trained:>12}{hand:>12}")


# ------------------------------------------------------------------------------ 6. pictures
def draw(
    model: circuits.AttnOnlyTransformer, out: Path, prev: str, induction: list[str], seed: int
) -> None:
    from circuits import render

    out.mkdir(parents=True, exist_ok=True)
    graph = render.circuit_diagram(
        model,
        composition={"K": composition_scores(model, "K")},
        threshold=0.2,
        highlight=[["embed", induction[0], "unembed"]],
        title=f"attn2l-induction: K-composition ≥ 0.2, the path through {induction[0]} highlighted",
    )
    written = [render.save_diagram(graph, out / "trained_circuit.svg").path]
    try:
        written += draw_plots(model, out, prev, induction[0], seed)
    except circuits.errors.MissingDependencyError as error:
        print(f"(no plots: {error})")
    print("wrote", *written, sep="\n  ")


def draw_plots(
    model: circuits.AttnOnlyTransformer, out: Path, prev: str, head: str, seed: int
) -> list[Path]:
    from circuits import plots

    short = repeated_random_tokens(model, seq_len=12, n_samples=1, seed=seed)  # readable heatmaps
    _, cache = model.run_with_cache(short)
    shown = list(range(1, 25))
    figures = {
        f"trained_attention_{prev}.png": plots.attention_plot(cache, prev),
        f"trained_attention_{head}.png": plots.attention_plot(cache, head),
        f"trained_positional_pattern_{prev}.png": plots.circuit_plot(
            positional_pattern(model, prev), rows=list(range(24)), cols=list(range(24)),
            title=f"head {prev} on positions alone: softmax of W_Pᵀ W_QK W_P / attn_scale",
            xlabel="key position", ylabel="query position",
        ),
        f"trained_ov_{head}.png": plots.ov_circuit_plot(model, head, tokens=shown),
        f"trained_k_composition_{prev}_{head}.png": plots.circuit_plot(
            k_composition_circuit(model, prev, head), rows=shown, cols=shown,
            title=f"K-composition W_Eᵀ W_QK^{head} W_OV^{prev} W_E",
            xlabel="key's previous token", ylabel="query token",
        ),
        "trained_losses.png": loss_figure(model, repeated(model, seed)[0]),
    }  # fmt: skip
    return [plots.save_figure(figure, out / name) for name, figure in figures.items()]


def loss_figure(model: circuits.AttnOnlyTransformer, tokens: IntArray) -> Any:
    """Training curves from the zoo's log, and the loss at each position of ``[BOS] r r``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    curve = zoo.info(NAME)["log"]["curve"]
    steps = [row["step"] for row in curve]
    for key, label in (("loss_copied", "repeated tokens"), ("loss_random", "random tokens")):
        left.plot(steps, [row[key] for row in curve], marker=".", label=label)
    left.set(xlabel="training step", ylabel="held-out loss", title="training: the induction bump")
    left.legend()
    losses = position_losses(model, tokens)
    right.plot(range(len(losses)), losses, marker=".")
    right.axvline((tokens.shape[1] - 1) / 2, color="grey", linestyle=":")
    right.set(xlabel="position", ylabel="loss", title="[BOS] r r: loss by position")
    return figure


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build") / "trained-model")
    parser.add_argument("--seed", type=int, default=1, help="seed of the repeated sequences")
    args = parser.parse_args(argv)
    model = zoo.load(NAME, dtype=np.float64)
    info = zoo.info(NAME)
    print(model, "bos_token", model.bos_token)
    final = info["log"]["final"]
    print(f"trained {info['training']['steps']} steps; held-out loss {final['loss_copied']:.3f} on "
          f"repeated tokens, {final['loss_random']:.3f} on random ones")  # fmt: skip
    tokens, s = repeated(model, args.seed)
    section("1. Detection on [BOS] r r")
    report_detection(model)
    prev, induction = roles_of(model)
    section(f"2. Weights: previous-token head {prev}, induction heads {', '.join(induction)}")
    report_weights(model, prev, induction)
    section("3. Behaviour: in-context loss")
    report_behaviour(model, tokens, s)
    section("4. Which paths carry induction")
    report_paths(model, tokens, s, prev, induction)
    section("5. Trained vs hand-built (circuits.induction_model, same vocabulary and context)")
    compare_with_hand_built(model, args.seed)
    section("6. Pictures")
    draw(model, args.out, prev, induction, args.seed)


if __name__ == "__main__":
    main()
