"""The LaTeX that docs/paths.md shows as rendered equations is the library's own output: each
``$$…$$`` block is printed here by the expansion it stands for and compared character for
character (the Python blocks of the docs are run by Sybil; these equations are not code)."""

from __future__ import annotations

import re
from pathlib import Path

import circuits
from circuits import AttnOnlyTransformer, TransformerConfig

PAGE = Path(__file__).parent.parent / "docs" / "paths.md"


def _model(n_layers: int, biases: bool = False) -> AttnOnlyTransformer:
    cfg = TransformerConfig(n_layers, 2, 8, 4, 6, 5, positional_embedding_type="none")
    return AttnOnlyTransformer.random(cfg, seed=0, biases=biases)


def test_every_equation_of_the_paths_page_is_printed_by_the_library() -> None:
    shown = re.findall(r"^\$\$(.*)\$\$$", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    printed = [
        *(rf"\text{{logits}} = {circuits.path_expansion(_model(L)).latex()}" for L in (0, 1, 2)),
        circuits.path_expansion(_model(1, biases=True)).filter(source="bias").latex(),
        rf"s^{{1.0}} = {circuits.qk_expansion(_model(2), '1.0').latex()}",
    ]
    assert shown == printed
