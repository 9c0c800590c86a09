"""The worked example runs end to end and says what the construction promises."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "induction_by_hand.py"


def test_induction_by_hand_example(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("induction_by_hand", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([])
    out = capsys.readouterr().out
    assert "same weights as induction_model(V, n): True" in out
    predicted, expected = re.search(r"prediction: (\d+) — expected (\d+)", out).groups()  # type: ignore[union-attr]
    assert predicted == expected
    assert "without BOS: counterexample [" in out and "Q without BOS: None" in out
    assert "the only nonzero score term of head 1.0" in out
