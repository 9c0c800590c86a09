"""Shared test configuration: Hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (the default of ``bash dev.sh test``) keeps the suite to a few minutes
on two cores; ``nightly`` digs much deeper; ``dev`` sits in between.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("nightly", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
