"""The README's tour runs as written, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_tour_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert blocks, "the README has a Python tour"
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # the figures quoted in the tour's comments are what the code prints
    assert "20.000  embed → 1.0 → unembed  (head)" in result.stdout
    assert "P(correct next token) ≥ 0.999999899" in result.stdout
    # without Graphviz's `dot` the diagram falls back to its source
    drawn = "induction.svg" if shutil.which("dot") else "induction.dot"
    assert (tmp_path / drawn).stat().st_size > 0


@pytest.mark.parametrize("command", ["bash dev.sh demo", "bash dev.sh test"])
def test_setup_commands_are_documented_and_run_by_ci(command: str) -> None:
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
