"""``circuits expand`` aimed at one position and target (logits) or query and key (scores), LaTeX
alone on stdout, and heads the model lacks refused as bad arguments wherever a head is given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import run

from circuits import AttnOnlyTransformer, save
from circuits.paths import path_expansion
from circuits.qk_paths import qk_expansion

CFG = {"n_layers": 2, "n_heads": 4, "d_model": 12, "d_head": 3, "d_vocab": 9, "n_ctx": 10}
TOKENS = [0, 5, 3, 7, 5, 3, 1]


@pytest.fixture(scope="module")
def model() -> AttnOnlyTransformer:
    return AttnOnlyTransformer.random(CFG, seed=3, biases=True)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path, model: AttnOnlyTransformer) -> str:
    return str(save(model, tmp_path / "m.npz"))


def table(out: str, columns: int) -> dict[tuple[str, ...], float]:
    """The rows of a ranked table: the first ``columns`` cells (paths) → the last (the value)."""
    rows = {}
    for line in out.splitlines():
        cells = [c for c in line.split("  ") if c.strip()]
        if "→" in line and len(cells) == columns + 2:
            rows[tuple(c.strip() for c in cells[:columns])] = float(cells[-1])
    return rows


def test_position_and_target_score_one_logit(
    capsys: pytest.CaptureFixture[str], path: str, model: AttnOnlyTransformer
) -> None:
    tokens = " ".join(map(str, TOKENS))
    code, out, err = run(capsys, "expand", path, "--tokens", tokens, "--position", "6",
                         "--target", "2", "--limit", "1000")  # fmt: skip
    assert code == 0 and err == "" and "logit of token 2, at position 6" in out
    rows = table(out, 1)
    assert len(rows) == len(path_expansion(model))
    logits = model.forward(np.array(TOKENS))  # the whole sequence: token 2 after the last one
    assert sum(rows.values()) == pytest.approx(logits[6, 2], abs=1e-3 * len(rows))
    # without --target, position 2 is scored on the token that follows it
    code, out, _ = run(capsys, "expand", path, "--tokens", tokens, "--position", "2",
                       "--limit", "1000")  # fmt: skip
    assert code == 0 and "logit of the next token, at position 2" in out
    assert sum(table(out, 1).values()) == pytest.approx(logits[2, TOKENS[3]], abs=1e-2)


def test_qk_terms_at_one_query_and_key(
    capsys: pytest.CaptureFixture[str], path: str, model: AttnOnlyTransformer
) -> None:
    tokens = " ".join(map(str, TOKENS))
    code, out, _ = run(capsys, "expand", path, "--qk", "1.2", "--tokens", tokens, "--position",
                       "5", "--key", "2", "--limit", "1000")  # fmt: skip
    assert code == 0 and "scores of head 1.2, at query 5 and key 2" in out
    rows = table(out, 2)
    assert len(rows) == len(qk_expansion(model, "1.2"))
    _, cache = model.run_with_cache(np.array(TOKENS))
    expected = float(np.asarray(cache.scores(1, 2))[0, 5, 2])  # the forward pass's own score
    assert sum(rows.values()) == pytest.approx(expected, abs=1e-3 * len(rows))
    code, out, _ = run(capsys, "expand", path, "--qk", "1.2")
    assert code == 0 and "query path" in out and "key path" in out


def test_latex_prints_only_latex(capsys: pytest.CaptureFixture[str], path: str) -> None:
    code, out, _ = run(capsys, "expand", path, "--latex")
    assert code == 0 and out.startswith(r"\text{logits} = ") and out.count("\n") == 1
    code, out, _ = run(capsys, "expand", path, "--latex", "--qk", "1.0")
    assert code == 0 and out.startswith(r"s^{1.0} = ") and out.count("\n") == 1
    assert "AttnOnlyTransformer" not in out and "terms" not in out


def test_latex_goes_through_a_pipe(path: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "circuits", "expand", path, "--latex"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(r"\text{logits} = ") and r"\otimes" in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "{path}", "--out", "{tmp}/m.svg", "--highlight", "1.9"],
         "--highlight: the model has no head 1.9, only 2 layers of 4 heads (0.0 … 1.3)"),
        (["render", "{path}", "--out", "{tmp}/m.svg", "--highlight", "embed,0.1,3.0"],
         "no head 3.0"),
        (["render", "{path}", "--out", "{tmp}/m.svg", "--highlight", "b_V[1.7],unembed"],
         "--highlight b_V[1.7]: the model has no head 1.7"),
        (["render", "{path}", "--out", "{tmp}/m.svg", "--highlight", "b_O[4]"],
         "--highlight b_O[4]: the model has no layer 4"),
        (["expand", "{path}", "--qk", "1.9"], "--qk: the model has no head 1.9"),
        (["expand", "{path}", "--qk", "first"], "'first' is not a head name"),
    ],
)  # fmt: skip
def test_a_head_the_model_lacks_is_a_bad_argument(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, path: str, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *(arg.format(path=path, tmp=tmp_path) for arg in argv))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"circuits {argv[0]}: error: ") and message in err
    assert not (tmp_path / "m.svg").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--position", "3"], "--position needs --tokens"),
        (["--target", "3"], "--target needs --tokens"),
        (["--key", "1"], "--key is the key position of an attention score: it needs --qk"),
        (["--tokens", "0 1 2", "--position", "2"], "the last token has no next token"),
        (["--tokens", "0 1 2", "--position", "7"], "--position 7: the sequence has positions 0 … 1"),
        (["--tokens", "0 1 2", "--target", "9"], "--target 9: not a token of this model"),
        (["--tokens", "0 1 2", "--qk", "1.0", "--target", "1"], "an attention score has a --key"),
        (["--tokens", "0 1 2", "--qk", "1.0", "--position", "0", "--key", "2"],
         "--key 2 comes after query 0"),
        (["--tokens", "0 1 2", "--qk", "1.0", "--key", "3"], "--key 3: the sequence has positions"),
    ],
)  # fmt: skip
def test_bad_positions_and_targets_are_one_line(
    capsys: pytest.CaptureFixture[str], path: str, extra: list[str], message: str
) -> None:
    code, out, err = run(capsys, "expand", path, *extra)
    assert code == 1 and out == "" and err.count("\n") == 1 and message in err
