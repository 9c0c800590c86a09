"""The documentation runs: every ```python block of README.md and docs/*.md, checked by Sybil.

Each page is one namespace, its blocks run in order. A block that starts with ``>>>`` is a doctest
whose quoted outputs are compared with what the code prints (``NUMBER``: a float matches to the
digits written; ``ELLIPSIS``: ``...`` stands for any text; whitespace is normalised); any other
block is run as a script. numpy scalars print as ``0.5`` rather than ``np.float64(0.5)`` (numpy's
legacy printing), so the same page passes under numpy 1.26 and 2. Each page runs in a fresh
temporary directory, so the files it writes go nowhere else. See docs/testing.md.
"""

from __future__ import annotations

import doctest
import os
import shutil
import tempfile
from typing import Any

import numpy as np
from sybil import Sybil
from sybil.evaluators.doctest import NUMBER
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | NUMBER


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_cwd"] = os.getcwd()
    namespace["_tmp"] = tempfile.mkdtemp(prefix="circuits-docs-")
    namespace["_printoptions"] = np.get_printoptions()
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        np.set_printoptions(legacy="1.25")
    os.chdir(namespace["_tmp"])


def _teardown(namespace: dict[str, Any]) -> None:
    os.chdir(namespace["_cwd"])
    shutil.rmtree(namespace["_tmp"], ignore_errors=True)
    np.set_printoptions(**namespace["_printoptions"])


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=OPTIONS), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
