"""Benchmark: start-up — ``import circuits`` and ``circuits --help`` against the interpreter itself.

    python benchmarks/bench_startup.py           # 21 runs of each command
    python benchmarks/bench_startup.py --quick   # 3 runs, a few seconds

Each command runs in a fresh interpreter; its time is the median wall time of the runs, the
commands taking turns so that a shared machine's changing load weighs on all alike. The baselines,
measured in the same run: ``python -c pass`` (the interpreter alone) and ``python -c "import
numpy"`` (the floor of anything that touches an array). The goal: ``import circuits`` and
``circuits --help`` under 0.3 s, with sympy, networkx, graphviz and the other heavy dependencies
loaded only by the first name that needs them (the last rows show what that first use costs).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 0.3  # seconds


def commands() -> dict[str, list[str]]:
    """Label → command line; the first two are the baselines."""
    python = [sys.executable]
    rows = {
        "python -c pass": [*python, "-c", "pass"],
        "python -c 'import numpy'": [*python, "-c", "import numpy"],
        "import circuits": [*python, "-c", "import circuits"],
        "python -m circuits --help": [*python, "-m", "circuits", "--help"],
    }
    script = shutil.which("circuits", path=str(Path(sys.executable).parent))
    if script is not None:
        rows["circuits --help (console script)"] = [*python, script, "--help"]
    rows["from circuits import AttnOnlyTransformer"] = [
        *python, "-c", "from circuits import AttnOnlyTransformer",
    ]  # fmt: skip
    rows["first use of circuits.path_expansion (sympy, networkx)"] = [
        *python, "-c", "import circuits; circuits.path_expansion",
    ]  # fmt: skip
    return rows


def wall_time(argv: list[str]) -> float:
    """Seconds for one run of ``argv``, which must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def medians(rows: dict[str, list[str]], runs: int) -> dict[str, float]:
    """The median wall time of each command over ``runs`` rounds of all of them in turn."""
    times: dict[str, list[float]] = {label: [] for label in rows}
    for argv in rows.values():  # one warm-up round: the file cache, compiled bytecode
        wall_time(argv)
    for _ in range(runs):
        for label, argv in rows.items():
            times[label].append(wall_time(argv))
    return {label: statistics.median(values) for label, values in times.items()}


def report(times: dict[str, float]) -> None:
    bare, numpy = times["python -c pass"], times["python -c 'import numpy'"]
    print(f"  {'command':<56} {'median':>9}  {'÷ pass':>7}  {'÷ numpy':>7}")
    for label, seconds in times.items():
        goal = ""
        if label in ("import circuits", "python -m circuits --help") or "console" in label:
            goal = f"goal < {GOAL} s: {'met' if seconds < GOAL else 'MISSED'}"
        print(
            f"  {label:<56} {seconds * 1e3:6.0f} ms  {seconds / bare:6.2f}×  "
            f"{seconds / numpy:6.2f}×  {goal}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each command")
    args = parser.parse_args()
    runs = 3 if args.quick else 21
    print(f"start-up, median of {runs} runs of each command, Python {sys.version.split()[0]}")
    report(medians(commands(), runs))


if __name__ == "__main__":
    main()
