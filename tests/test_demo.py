"""The demo at every size, its printed certificate, its listed terms, and the heatmap subsampling."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer, composition_scores
from circuits.construct.induction import induction_model
from circuits.demo import composition_ceiling, run_demo
from circuits.errors import RenderError
from circuits.plots import MAX_CELLS, subsample
from circuits.verify import certify_induction

pytest.importorskip("matplotlib")


def demo_lines(tmp_path: Path, **sizes: int) -> list[str]:
    lines: list[str] = []
    run_demo(tmp_path / "demo", out=lines.append, **sizes)  # type: ignore[arg-type]
    return "\n".join(lines).splitlines()


def section(lines: list[str], number: int) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{number}. "))
    end = next((i for i, line in enumerate(lines) if line.startswith(f"{number + 1}. ")), None)
    return lines[start + 2 : end]


# ---------------------------------------------------------------------- subsampling
@given(st.integers(1, 5000), st.integers(2, 600))
def test_subsample_spreads_evenly_over_the_whole_range(size: int, most: int) -> None:
    chosen = subsample(size, most)
    assert len(chosen) == min(size, most)
    assert chosen == sorted(set(chosen)) and chosen[0] == 0 and chosen[-1] == size - 1
    if size <= most:
        assert chosen == list(range(size))
    else:  # gaps differ by at most one: no region is skipped
        gaps = np.diff(chosen)
        ideal = (size - 1) / (most - 1)
        assert gaps.min() >= math.floor(ideal) and gaps.max() <= math.ceil(ideal) + 1


def test_subsample_default_is_the_heatmap_limit() -> None:
    assert len(subsample(MAX_CELLS + 1)) == MAX_CELLS == 512


def test_a_subsampled_heatmap_labels_its_axes_by_the_rows_shown() -> None:
    """Ticks name the token ids drawn (0 … 999), not places in the selection (0 … 511)."""
    from circuits.plots import circuit_plot

    chosen = subsample(1000)
    figure = circuit_plot(np.eye(1000), rows=chosen, cols=chosen)
    axes = figure.axes[0]
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        texts = [label.get_text() for label in labels]
        assert texts[0] == "0" and texts[-1] == "999" and 3 <= len(texts) <= 40
        assert set(texts) <= {str(i) for i in chosen}


@pytest.mark.parametrize(("size", "most"), [(0, 5), (3.5, 5), (10, 1), (10, "4")])
def test_subsample_refuses_bad_sizes(size: object, most: object) -> None:
    with pytest.raises(RenderError, match="subsample"):
        subsample(size, most)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- sizes
def test_demo_runs_to_the_end_above_the_heatmap_limit(tmp_path: Path) -> None:
    """Vocabulary and context both above 512: each circuit heatmap is subsampled and says so."""
    lines = demo_lines(tmp_path, vocab_size=520, n_ctx=520)
    pictures = "\n".join(section(lines, 6))
    assert f"ov_1.0: {MAX_CELLS} evenly spaced of 520" in pictures
    assert f"qk_0.0_positions: {MAX_CELLS} evenly spaced of 520" in pictures
    assert "all 129 positions" in pictures and "axes label a few" in pictures  # 1 + 2·64
    written = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {
        "attention_0.0.svg",
        "attention_1.0.svg",
        "ov_1.0.svg",
        "qk_0.0_positions.svg",
    } <= written
    assert lines[-1].startswith("wrote: ")


@pytest.mark.slow
def test_demo_runs_at_vocabulary_1000_and_context_512(tmp_path: Path) -> None:
    lines = demo_lines(tmp_path, vocab_size=1000, n_ctx=512)
    assert any(line.startswith(f"ov_1.0: {MAX_CELLS} evenly spaced of 1000") for line in lines)
    assert not any(line.startswith("qk_0.0_positions:") for line in lines)  # 512 fit
    assert lines[-1].startswith("wrote: ")


def test_heatmaps_show_every_token_of_the_sequence(tmp_path: Path) -> None:
    lines = demo_lines(tmp_path, vocab_size=12, n_ctx=25)
    sequence = section(lines, 2)[0].split()
    pictures = "\n".join(section(lines, 6))
    assert f"attention heatmaps: all {len(sequence)} positions" in pictures
    assert "label a few" not in pictures  # 23 positions: each labelled
    svg = (tmp_path / "demo" / "attention_1.0.svg").read_text()
    last = f"{len(sequence) - 1}:{sequence[-1]}"  # the tick label of the last position
    assert last in svg


# ---------------------------------------------------------------------- what is printed
@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_no_listed_term_or_score_is_zero(tmp_path: Path, mechanism: str) -> None:
    lines = demo_lines(tmp_path, vocab_size=9, n_ctx=14, mechanism=mechanism)  # type: ignore[arg-type]
    listed = [
        line for line in section(lines, 3) if "→" in line and not line.strip().startswith("(")
    ]
    assert listed
    for line in listed:
        assert float(line.split()[0]) != 0.0, line
    scores = [line for line in section(lines, 4) if "-composition" in line]
    assert scores and all(float(line.split(": ")[1].split()[0]) != 0.0 for line in scores)
    # what is not listed is counted: 8 logit terms (2 layers, 1 head, embed and pos_embed) and
    # 16 QK terms (4 query paths × 4 key paths) in all
    counted = [int(re.search(r"and (\d+) other", line).group(1))  # type: ignore[union-attr]
               for line in section(lines, 3) if "other terms" in line]  # fmt: skip
    heads = [line for line in listed if "query" not in line]
    assert len(heads) + counted[0] == 8 and len(listed) - len(heads) + counted[1] == 16


CERTIFICATE_FORMULA = re.compile(r"^    (\S+) = (.*) = [-+0-9.e]+   \(")


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_every_symbol_of_the_printed_certificate_is_defined(tmp_path: Path, mechanism: str) -> None:
    lines = section(demo_lines(tmp_path, vocab_size=9, n_ctx=14, mechanism=mechanism), 5)  # type: ignore[arg-type]
    (parameters,) = [line for line in lines if line.startswith("  parameters: ")]
    (notation,) = [line for line in lines if line.startswith("  notation: ")]
    defined = set(re.findall(r"(?:^|; )(\S+) = [-+0-9.e]+ \(", parameters.split(": ", 1)[1]))
    assert defined == {"V", "n_ctx", "β₀", "β₁", "γ", "μ"}
    words = re.compile(r"[A-Za-zα-ωΑ-Ω][A-Za-z_α-ωΑ-Ω₀-₉]*")
    letters = {"i", "j", "p", "a", "c"}  # j through t_j, "the token at position j"
    assert "t_j" in notation and all(re.search(rf"\b{x}\b", notation) for x in letters - {"j"})
    body = [line for line in lines[1:] if line and not re.match(r"  \S", line)]
    assert len(body) == 10  # three steps with their quantities, and the bound
    for line in body:
        match = CERTIFICATE_FORMULA.match(line)
        if match:  # a quantity: every symbol of its formula is a parameter or an earlier quantity
            used = set(words.findall(match.group(2))) - {"exp"}
            assert used <= defined, line
            defined.add(match.group(1))
        elif not line.startswith("P(correct"):  # a reason: Greek letters and position letters
            reason = line.split(": ", 1)[1]
            greek = set(re.findall(r"[α-ωΑ-Ω][₀-₉]?", reason))
            assert greek <= defined, line
            assert set(re.findall(r"\b[ijpac]\b", reason)) <= letters, line
    assert not re.search(r"beta_|epsilon|Delta|\bmu\b|gamma\b", "\n".join(body))


def test_the_printed_certificate_is_the_certificate(tmp_path: Path) -> None:
    lines = section(demo_lines(tmp_path, vocab_size=9, n_ctx=14), 5)
    assert "\n".join(lines).strip() == str(certify_induction(vocab_size=9, n_ctx=14)).strip()


# ---------------------------------------------------------------------- the composition ceiling
@pytest.mark.parametrize("vocab_size", [8, 12])
def test_the_k_circuit_composes_at_its_ceiling_one_over_root_vocabulary(vocab_size: int) -> None:
    """The previous-token head moves each of the V tokens through its own direction: 1/√V."""
    model = induction_model(vocab_size=vocab_size, n_ctx=10)
    ceiling = composition_ceiling(model, "K", "0.0", "1.0")
    assert ceiling == pytest.approx(1 / math.sqrt(vocab_size))
    assert composition_scores(model, "K")[0, 0, 1, 0] == pytest.approx(ceiling)


@pytest.mark.parametrize("seed", range(4))
def test_no_score_exceeds_its_ceiling(seed: int) -> None:
    cfg = {"n_layers": 2, "n_heads": 2, "d_model": 10, "d_head": 3, "d_vocab": 6, "n_ctx": 5}
    model = AttnOnlyTransformer.random(cfg, seed=seed)
    for kind in "QKV":
        scores = composition_scores(model, kind)
        for writer in ("0.0", "0.1"):
            for reader in ("1.0", "1.1"):
                score = scores[0, int(writer[-1]), 1, int(reader[-1])]
                ceiling = composition_ceiling(model, kind, writer, reader)
                assert score <= ceiling + 1e-12 and ceiling <= 1.0


def test_ceiling_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(RenderError, match="unknown composition kind 'X'"):
        composition_ceiling(induction_model(vocab_size=5, n_ctx=6), "X", "0.0", "1.0")
