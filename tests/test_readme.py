"""The README's set-up commands are the ones CI runs (its tour is run by Sybil: conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["bash dev.sh demo", "bash dev.sh test"])
def test_setup_commands_are_documented_and_run_by_ci(command: str) -> None:
    assert command in README
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
