"""Shared test configuration: Hypothesis profiles, the peer tests, and CI's ban on missing-dependency skips.

``HYPOTHESIS_PROFILE=ci`` (the default of ``bash dev.sh test``) keeps the suite to a few minutes
on two cores; ``nightly`` digs much deeper; ``dev`` sits in between.

**Peer tests** need PyTorch and TransformerLens (the ``peer`` leg of ``bash dev.sh test`` installs
``torch==2.13.0`` and ``transformer-lens==2.18.0``). A test that takes the ``torch`` or
``transformer_lens`` fixture is marked ``peer`` automatically (``@pytest.mark.peer`` marks one by
hand); the other legs deselect them with ``-m "not peer"``, so they never skip there.

**In CI** (environment variable ``CI`` set), a test skipped for a missing dependency fails
instead: every dependency of every test is installed in some leg, and a silent skip would hide a
broken leg. A skip counts as one when its reason says ``could not import`` (``pytest.importorskip``),
``no module named``, ``is missing`` or ``not installed``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("nightly", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

PEER_FIXTURES = frozenset({"torch", "transformer_lens"})
MISSING_DEPENDENCY = re.compile(
    r"could not import|no module named|is missing|not installed", re.IGNORECASE
)


@pytest.fixture(scope="session")
def torch() -> Any:
    """PyTorch (the peer leg's CPU build); a test that takes it is a peer test."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def transformer_lens() -> Any:
    """TransformerLens with ``HookedTransformer``; a test that takes it is a peer test."""
    module = pytest.importorskip("transformer_lens")
    if not hasattr(module, "HookedTransformer"):  # removed in TransformerLens 4
        pytest.skip("TransformerLens's HookedTransformer is missing (the peer leg pins 2.18.0)")
    return module


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PEER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.peer)


def _fail_missing_dependency(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (os.environ.get("CI") and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if MISSING_DEPENDENCY.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped for a missing dependency, which CI does not allow: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    _fail_missing_dependency(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _fail_missing_dependency(outcome.get_result())
