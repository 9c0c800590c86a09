"""Directed rounding of exact values to floats, with no global numeric state (internal).

A bound is only a proof if the float it is reported as lies on the safe side of the exact value.
Interval endpoints are converted **exactly** to rationals (an mpmath number is ``±m·2^e``) and the
float is chosen by comparing rationals, so neither round-to-nearest nor ``mpmath.mp.prec`` can push
a lower bound above the exact value.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from typing import Any

from ..errors import VerificationError


def mpf_fraction(value: tuple[int, int, int, int]) -> Fraction:
    """The exact rational ``(−1)^sign · man · 2^exp`` of an mpmath number's ``_mpf_`` tuple."""
    sign, man, exp, _ = value
    if man == 0 and exp != 0:  # mpmath's encodings of ±inf and nan
        raise VerificationError(f"a bound evaluated to a non-finite number ({value!r})")
    exact = Fraction(man) * (Fraction(2) ** exp)
    return -exact if sign else exact


def float_down(exact: Fraction) -> float:
    """The largest float ``≤ exact`` (``-inf`` below the float range)."""
    try:
        out = float(exact)  # correctly rounded to nearest
    except OverflowError:
        return sys.float_info.max if exact > 0 else -math.inf
    return out if Fraction(out) <= exact else math.nextafter(out, -math.inf)


def float_up(exact: Fraction) -> float:
    """The smallest float ``≥ exact`` (``inf`` above the float range)."""
    return -float_down(-exact)


def interval_low(value: Any) -> Fraction:
    """The exact lower end of an mpmath interval (``ivmpf``)."""
    return mpf_fraction(value._mpi_[0])


def interval_high(value: Any) -> Fraction:
    """The exact upper end of an mpmath interval (``ivmpf``)."""
    return mpf_fraction(value._mpi_[1])
