"""Every benchmark stays runnable: each script's ``--quick`` mode runs to the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("bench_*.py"))


def test_benchmarks_exist() -> None:
    assert BENCHMARKS, "no benchmark scripts found"


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.stem)
def test_benchmark_quick_mode_runs(script: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "×" in result.stdout, "a benchmark prints ratios against its baseline"
