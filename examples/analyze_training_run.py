"""The training run of a zoo model through its shipped checkpoints: the ICL paper's picture.

Prints the table of ``circuits.analysis.training_run`` (the same as ``circuits training-run
NAME``) with the accuracy ``circuits.verify.certify`` proves at each step on short sequences,
and draws one figure of six panels against the training step into ``--out``:

    python examples/analyze_training_run.py                         # attn2l-clean-induction
    python examples/analyze_training_run.py attn2l-tiny-induction --certify-n-ctx 8

Needs matplotlib (``pip install -e '.[plots]'``) for the figure; no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from circuits import zoo
from circuits.analysis import TrainingRun, training_run
from circuits.verify import certify

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def measure(name: str, certify_n_ctx: int) -> TrainingRun:
    """``training_run`` over every shipped checkpoint of ``name``, with the certified accuracy."""
    checkpoints = {step: zoo.load(name, step=step) for step in zoo.steps(name)}
    extra = {}
    if certify_n_ctx:
        extra["certified_accuracy"] = lambda m: certify(m, n_ctx=certify_n_ctx).accuracy_bound
    return training_run(checkpoints, extra=extra)


def card_summary(name: str) -> str:
    """The figures of the model's card (measured by the training script), as Markdown lines."""
    card = zoo.info(name)["measured"]
    by_length = card["family_accuracy_by_length"]
    worst_length = min(by_length, key=lambda length: by_length[length])
    second = card["second_copy_loss_by_run"]
    first = card["first_copy_loss_by_run"]
    lines = [
        f"**{name}**",
        "",
        "| figure | measured |",
        "|---|---|",
        f"| argmax right on the family, lowest over lengths 3…{max(map(int, by_length))} "
        f"| {by_length[worst_length]:.4f} (length {worst_length}; "
        f"{card['samples']['family_per_length']} sequences per length) |",
        f"| second-copy loss on `[BOS] r r`, highest over run lengths 2…{max(map(int, second))} "
        f"| {max(second.values()):.4f} nats |",
        f"| first-copy loss, lowest over run lengths | {min(first.values()):.3f} nats |",
        f"| previous-token head 0.0: attention on `i−1`, lowest mean over positions "
        f"| {card['previous_token_attention_min']:.4f} |",
        f"| … its argmax on `i−1`, share of (sequence, position) pairs "
        f"| {card['previous_token_argmax_right']:.4f} |",
    ]
    if "exhaustive" in card:
        exact = card["exhaustive"]
        lines.append(
            f"| exhaustive: accuracy over all {exact['family_size']} family sequences "
            f"| {exact['accuracy']:.6f} ({exact['failures']} wrong); least P(correct) "
            f"{exact['least_probability']:.5f} |"
        )
    if "certificate" in card:
        proof = card["certificate"]
        lines.append(
            f"| `certify(model, n_ctx={proof['n_ctx']})` | bound {proof['bound']:.5g}, "
            f"accuracy ≥ {proof['accuracy_bound']:.6f} ({proof['proved']} of "
            f"{proof['family_size']} sequences proved) in {proof['seconds']} s |"
        )
    return "\n".join(lines)


def draw(run: TrainingRun, name: str, certify_n_ctx: int, path: Path) -> Path:
    """Six panels against the training step (symlog axis: step 0 is shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = run.steps
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
    chance = float(np.log(zoo.load(name).cfg.d_vocab - 1))
    panels = axes.ravel()
    panels[0].plot(steps, run.loss_unrepeated, "o-", label="first copy (unrepeated)")
    panels[0].plot(steps, run.loss_repeated, "o-", label="second copy (repeated)")
    panels[0].axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    panels[0].set(title="loss on [BOS] r r (nats)")
    panels[0].legend(fontsize=8)
    panels[1].plot(steps, run.icl_score, "o-", color="C2")
    panels[1].axhline(0, color="grey", lw=0.8)
    panels[1].set(title="in-context learning score (late − early)")
    for layer, role, panel, title in (
        (0, run.previous_token, panels[2], "previous-token score"),
        (1, run.prefix_matching, panels[3], "prefix-matching score"),
    ):
        for other in range(role.shape[1]):
            for head in range(role.shape[2]):
                style = "o-" if other == layer else "x:"
                panel.plot(steps, role[:, other, head], style, label=f"{other}.{head}")
        panel.set(title=title, ylim=(-0.02, 1.02))
        panel.legend(fontsize=8)
    for h0 in range(run.k_composition.shape[1]):
        for h1 in range(run.k_composition.shape[2]):
            panels[4].plot(steps, run.k_composition[:, h0, h1], "o-", label=f"0.{h0} → 1.{h1}")
    panels[4].axhline(run.k_composition_baseline, color="grey", lw=0.8, ls="--", label="random")
    panels[4].set(title="K-composition into layer 1")
    panels[4].legend(fontsize=8)
    if "certified_accuracy" in run.extra:
        panels[5].plot(steps, run.extra["certified_accuracy"], "o-", color="C3")
        panels[5].set(
            title=f"certified accuracy (certify, n_ctx {certify_n_ctx})", ylim=(-0.02, 1.02)
        )
    for panel in panels:
        panel.set_xscale("symlog", linthresh=max(1, int(steps[1])))
        panel.set_xlim(0, int(steps[-1]) * 1.1)
        panel.grid(alpha=0.3)
    for panel in axes[1]:
        panel.set_xlabel("training step")
    fig.suptitle(f"{name}: the training run through its {len(steps)} checkpoints")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", default="attn2l-clean-induction")
    parser.add_argument("--certify-n-ctx", type=int, default=6)
    parser.add_argument("--out", type=Path, default=DOCS_IMAGES)
    parser.add_argument("--json", action="store_true", help="print the measures as JSON")
    parser.add_argument("--card", action="store_true", help="print the card's figures and stop")
    args = parser.parse_args(argv)
    if args.card:
        print(card_summary(args.name))
        return 0
    run = measure(args.name, args.certify_n_ctx)
    print(json.dumps(run.to_dict()) if args.json else run.table())
    path = draw(run, args.name, args.certify_n_ctx, args.out / f"training_run_{args.name}.png")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
