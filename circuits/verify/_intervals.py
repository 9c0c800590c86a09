r"""Interval arithmetic on numpy float64 arrays, rounded outward (internal).

A :class:`Box` holds arrays ``lo ≤ hi`` that enclose real numbers. Every operation returns an
enclosure of the exact real result, whatever the rounding of numpy's own arithmetic:

- ``+``, ``−``, ``×``, ``÷`` of floats are correctly rounded to nearest (IEEE 754), so the exact
  result is within half an ulp and one :func:`numpy.nextafter` step outward encloses it;
- a dot product of length ``n`` computed in any order (BLAS blocking and FMA included) is within
  :math:`γ_n \sum |a_i b_i|`, :math:`γ_n = nu/(1-nu)`, :math:`u = 2^{-53}` (Higham, *Accuracy and
  Stability of Numerical Algorithms*, §3.1), plus :math:`n·2^{-1074}` for underflow;
- :math:`e^x` is **not** taken from the platform's ``exp`` (whose accuracy no standard fixes):
  it is :math:`2^k e^r` with :math:`|r| ≤ 0.36`, the Taylor polynomial of degree 14 evaluated by
  Horner's rule with its rounding error bounded a priori, plus the Lagrange remainder, so no
  global state and no library accuracy is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import factorial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._rounding import float_down, float_up

Array = NDArray[Any]  # float64 bounds (and boolean masks beside them)

_U = 2.0**-53
_TINY = 2.0**-1074
_LN2_EXACT = Fraction("0.6931471805599453094172321214581765680755")  # ln 2 to 40 digits
_LN2_ERROR = Fraction(1, 10**40)
_LN2_HEAD = float(Fraction(int(_LN2_EXACT * 2**32), 2**32))  # 32 bits: k·L₁ is exact for |k| < 2^21
_LN2_TAIL = (
    float_down(_LN2_EXACT - _LN2_ERROR - Fraction(_LN2_HEAD)),
    float_up(_LN2_EXACT + _LN2_ERROR - Fraction(_LN2_HEAD)),
)
_INV_LN2 = 1.4426950408889634
_DEGREE = 14
_COEFFS = [float(Fraction(1, factorial(m))) for m in range(_DEGREE + 1)]
# |r| ≤ 0.36 after reduction: the Taylor remainder 0.36^15/15! · e^0.36 < 1e-18 (absolute)
_REMAINDER = 1e-18
_HORNER = 1.01 * (2 * _DEGREE + 2) * _U * 1.44 / 0.69  # γ_{2N+2} e^0.36 / e^-0.36, rounded up


def down(x: Array) -> Array:
    """The next float below each entry (an enclosure's lower end after one rounding)."""
    return np.nextafter(x, -np.inf)


def up(x: Array) -> Array:
    """The next float above each entry."""
    return np.nextafter(x, np.inf)


def gamma(n: int) -> float:
    """:math:`γ_n` rounded up: the relative error bound of a length-``n`` dot product."""
    return float(up(np.float64(1.01 * n * _U / (1 - n * _U))))


@dataclass(frozen=True)
class Box:
    """Arrays ``lo ≤ hi`` enclosing exact real values, entry by entry."""

    lo: Array
    hi: Array

    @staticmethod
    def exact(x: object) -> Box:
        """A degenerate box around floats that are exact (weights as stored)."""
        a = np.asarray(x, dtype=np.float64)
        return Box(a, a)

    @property
    def mid(self) -> Array:
        return self.lo + 0.5 * (self.hi - self.lo)

    @property
    def radius(self) -> Array:
        """An upper bound on ``max(hi − mid, mid − lo)``."""
        m = self.mid
        return np.maximum(up(self.hi - m), up(m - self.lo))

    def __getitem__(self, index: object) -> Box:
        return Box(self.lo[index], self.hi[index])  # type: ignore[call-overload]

    def __add__(self, other: Box) -> Box:
        return Box(down(self.lo + other.lo), up(self.hi + other.hi))

    def __neg__(self) -> Box:
        return Box(-self.hi, -self.lo)

    def __sub__(self, other: Box) -> Box:
        return self + (-other)

    def __mul__(self, other: Box) -> Box:
        products = (self.lo * other.lo, self.lo * other.hi, self.hi * other.lo, self.hi * other.hi)
        return Box(down(np.minimum.reduce(products)), up(np.maximum.reduce(products)))

    def scaled(self, divisor: float) -> Box:
        """``self / divisor`` for a float ``divisor > 0``."""
        return Box(down(self.lo / divisor), up(self.hi / divisor))

    def union(self, other: Box) -> Box:
        return Box(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi))


def matmul(x: Box, m: Array) -> Box:
    """An enclosure of ``x @ m`` for a box ``x [..., n]`` and an exact matrix ``m [n, e]``.

    Midpoint-radius form: ``c @ m ± (|r| @ |m| + γ_n (|c| @ |m|) + rounding)``.
    """
    n = m.shape[0]
    c, r = x.mid, x.radius
    abs_m = np.abs(m)
    centre = c @ m
    spread = (r @ abs_m) * (1 + gamma(n)) + gamma(n) * (np.abs(c) @ abs_m) * (1 + gamma(n))
    spread = up(up(spread) + n * _TINY)
    return Box(down(centre - spread), up(centre + spread))


def matmul_boxes(x: Box, y: Box) -> Box:
    """An enclosure of ``x @ y`` for two boxes: ``x @ y_c`` (:func:`matmul`) plus
    ``(|x_c| + x_r) @ y_r`` for the spread of ``y``, rounded up."""
    centre = matmul(x, y.mid)
    n = x.lo.shape[-1]
    spread = up(up(np.abs(x.mid) + x.radius) @ y.radius * (1 + 4 * n * _U))
    spread = up(spread + n * _TINY)
    return Box(down(centre.lo - spread), up(centre.hi + spread))


def dot(x: Box, y: Box) -> Box:
    """``Σ_m x[..., m] y[..., m]`` over the last axis, enclosed (coordinate-wise products)."""
    products = x * y
    total_lo, total_hi = products.lo.sum(axis=-1), products.hi.sum(axis=-1)
    n = x.lo.shape[-1]
    slack = gamma(n) * np.maximum(np.abs(products.lo), np.abs(products.hi)).sum(axis=-1) + n * _TINY
    slack = up(slack * (1 + gamma(n)))
    return Box(down(total_lo - slack), up(total_hi + slack))


def sum_down(x: Array, axis: int) -> Array:
    """A lower bound on the exact sum of nonnegative ``x`` along ``axis``."""
    n = x.shape[axis]
    s = x.sum(axis=axis)
    return np.maximum(down(s * (1 - gamma(n))), 0.0)


def sum_up(x: Array, axis: int) -> Array:
    """An upper bound on the exact sum of nonnegative ``x`` along ``axis``."""
    n = x.shape[axis]
    return up(up(x.sum(axis=axis) * (1 + gamma(n))) + n * _TINY)


def _exp_reduced(r: Array, lower: bool) -> Array:
    r"""A bound on :math:`e^r` for exact ``r`` with ``|r| ≤ 0.36``, from below or above.

    Horner's rule in floating point is within :math:`γ_{2N+2} \sum_m c_m |r|^m ≤ γ_{2N+2}
    e^{0.36}` of the exact polynomial (Higham, Thm 5.1; the coefficients' own rounding
    included), which is at least :math:`e^{-0.36}`: a relative error below ``_HORNER``.
    """
    value = np.full_like(r, _COEFFS[_DEGREE])
    for m in range(_DEGREE - 1, -1, -1):
        value *= r
        value += _COEFFS[m]
    if lower:
        return down(value * (1.0 - _HORNER) - _REMAINDER)
    return up(value * (1.0 + _HORNER) + _REMAINDER)


def exp_bound(x: Array, lower: bool) -> Array:
    r"""A float ``≤ e^x`` (``lower``) or ``≥ e^x`` for every entry of the float array ``x``.

    :math:`x = k \ln 2 + r`, with :math:`\ln 2 = L_1 + L_2`, :math:`L_1` of 32 bits so that
    :math:`k L_1` and :math:`x - k L_1` are exact (Sterbenz), and :math:`k L_2` enclosed.
    """
    x = np.asarray(x, dtype=np.float64)
    clipped = np.clip(x, -746.0, 709.0)
    k = np.rint(clipped * _INV_LN2)
    head = clipped - k * _LN2_HEAD  # exact
    tail_lo, tail_hi = k * _LN2_TAIL[0], k * _LN2_TAIL[1]
    tail_min, tail_max = down(np.minimum(tail_lo, tail_hi)), up(np.maximum(tail_lo, tail_hi))
    # e^r is increasing, so the end of r's enclosure that the bound needs is used
    r = down(head - tail_max) if lower else up(head - tail_min)
    scaled = np.ldexp(_exp_reduced(r, lower), k.astype(np.int64))
    if lower:
        out = np.maximum(np.nextafter(scaled, 0.0), 0.0)
        return np.where(x < -745.0, 0.0, out)  # e^x ≥ e^709 above 709
    out = np.nextafter(scaled, np.inf)
    out = np.where(x < -746.0, _TINY, out)
    return np.where(x > 709.0, np.inf, out)
