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


def checked_int(value: object, name: str, least: int, error: type[Exception] = ConfigError) -> int:
    """``value`` as an int if it is an integer ``≥ least``, else ``error`` naming ``name``."""
    if not (is_int(value) and value >= least):  # type: ignore[operator]
        raise error(f"{name} must be an integer ≥ {least}, got {value!r}")
    number: int = int(value)  # type: ignore[call-overload]
    return number


def random_generator(seed: object) -> np.random.Generator:
    """``numpy.random.default_rng(seed)`` for an integer ``seed ≥ 0``, else a ConfigError."""
    return np.random.default_rng(checked_int(seed, "seed", 0))
