"""Fuzzing at depth: ``tests/test_fuzz.py`` with many examples per test, and the count it tried.

    python benchmarks/fuzz.py                # 2000 examples per test
    python benchmarks/fuzz.py --examples 200

Runs the fuzz tests (random, not derandomised) with ``FUZZ_EXAMPLES`` set and Hypothesis's
statistics on, and prints each test's passing, failing and invalid examples as Hypothesis counted
them, and the total. Exits with pytest's status: non-zero if any input crashed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = re.compile(r"^tests/test_fuzz\.py::(\S+):$")
COUNTS = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per test (2000)")
    args = parser.parse_args()
    env = {**os.environ, "FUZZ_EXAMPLES": str(args.examples), "HYPOTHESIS_PROFILE": "dev"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py",
         "--hypothesis-show-statistics"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    totals = [0, 0, 0]
    test, phase = "?", ""
    print(f"{'test':<50} {'passing':>8} {'failing':>8} {'invalid':>8}")
    for line in result.stdout.splitlines():
        if match := TEST.match(line.strip()):
            test = match.group(1)
        elif "during" in line:
            phase = line
        elif (counts := COUNTS.search(line)) and "generate" in phase:
            numbers = [int(n) for n in counts.groups()]
            totals = [t + n for t, n in zip(totals, numbers, strict=True)]
            print(f"{test:<50} {numbers[0]:>8} {numbers[1]:>8} {numbers[2]:>8}")
    print(f"{'total':<50} {totals[0]:>8} {totals[1]:>8} {totals[2]:>8}")
    print(f"{totals[0] + totals[1]} inputs tried, {totals[1]} crashed, in {seconds:.0f} s")
    if result.returncode:
        print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
