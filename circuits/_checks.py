"""Runtime type checks for scalars that arrive from users (internal)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ConfigError


def is_int(value: object) -> bool:
    """True for Python and numpy integers (``bool`` excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """True for Python and numpy real numbers (``bool`` excluded)."""
    return is_int(value) or isinstance(value, (float, np.floating))


def is_positive_finite(value: object) -> bool:
    """True for a real number that is finite and > 0."""
    return is_real(value) and math.isfinite(float(value)) and float(value) > 0  # type: ignore[arg-type]


def one_or_many(value: object) -> list[Any]:
    """A collection as a list; a string or any other single value as a list of itself."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer ``≥ 0`` (what ``numpy.random.default_rng`` takes), else a
    :class:`ConfigError`."""
    if not (is_int(seed) and seed >= 0):  # type: ignore[operator]
        raise ConfigError(f"seed must be an integer ≥ 0, got {seed!r}")
    value: int = int(seed)  # type: ignore[call-overload]
    return value


def random_generator(seed: object) -> np.random.Generator:
    """``numpy.random.default_rng(seed)`` for a seed accepted by :func:`check_seed`."""
    return np.random.default_rng(check_seed(seed))
