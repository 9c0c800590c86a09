"""Draw the pictures of docs/diagrams.md into docs/images/ (run from anywhere).

python examples/draw_diagrams.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import circuits
from circuits import plots, render
from circuits.analysis import all_composition_scores
from circuits.paths import path_expansion

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "docs" / "images"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for mechanism in ("K", "Q"):
        model = circuits.induction_model(vocab_size=8, n_ctx=12, mechanism=mechanism)
        graph = render.circuit_diagram(
            model,
            composition=all_composition_scores(model),
            highlight=[["1.0"]],
            title=f"{mechanism}-composition induction circuit",
        )
        written.append(render.save_diagram(graph, OUT / f"induction_{mechanism}.svg").path)

    random = circuits.AttnOnlyTransformer.random(
        {"n_layers": 2, "n_heads": 3, "d_model": 12, "d_head": 3, "d_vocab": 10, "n_ctx": 8}, seed=7
    )
    virtual = path_expansion(random).term("embed", "0.2", "1.1")
    graph = render.circuit_diagram(
        random,
        composition=all_composition_scores(random),
        threshold=0.33,
        roles={"0.2": "writer", "1.1": "reader"},
        highlight=[virtual, ["pos_embed", "1.0"]],
        title="a random model: composition scores ≥ 0.33, two paths highlighted",
    )
    written.append(render.save_diagram(graph, OUT / "random_model.svg").path)

    model = circuits.induction_model(vocab_size=8, n_ctx=12)
    tokens = np.array([0, 3, 5, 2, 7, 3, 5, 2])
    _, cache = model.run_with_cache(tokens)
    figures = {
        "attention_1.0.png": plots.attention_plot(cache, "1.0"),
        "ov_1.0.png": plots.ov_circuit_plot(model, "1.0"),
        "qk_0.0_positions.png": plots.qk_circuit_plot(model, "0.0", positional=True),
    }
    for name, figure in figures.items():
        written.append(plots.save_figure(figure, OUT / name))
    print("wrote", *written, sep="\n  ")


if __name__ == "__main__":
    main()
