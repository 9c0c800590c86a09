"""Conversion and validation of user-supplied arrays (internal).

Every array that enters the library passes through :func:`as_real_array`, so that bad input
fails here, with a message naming the argument, instead of deep inside numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import NumericalError, ShapeError, WeightError

FloatArray = NDArray[np.floating[Any]]

#: Floating dtypes kept as given; everything else real is promoted to float64.
KEPT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def all_finite(values: np.ndarray[Any, Any]) -> bool:
    """Whether every entry of ``values`` is finite, in one read of the array when it is.

    A NaN or an infinity makes the sum non-finite, so a finite sum settles it; a non-finite sum
    (which finite entries can also give, by overflow) is settled entry by entry.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(values.sum()):
            return True
    return bool(np.all(np.isfinite(values)))


def to_numpy(value: Any, name: str) -> NDArray[Any]:
    """``np.asarray`` that also accepts framework tensors (``torch`` included) and never pickles."""
    if hasattr(value, "detach") and hasattr(
        value, "cpu"
    ):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise WeightError(f"{name}: cannot be read as an array ({error})") from None
    if array.dtype == object:
        raise WeightError(f"{name}: expected a numeric array, got an array of Python objects")
    return array


def float_dtype(dtype: Any) -> np.dtype[Any]:
    """``dtype`` as one of the dtypes weights are kept in (float32, float64), else a WeightError."""
    try:
        resolved: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise WeightError(f"dtype: {dtype!r} is not a numpy dtype") from None
    if resolved not in KEPT_DTYPES:
        raise WeightError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def real_dtype(array: NDArray[Any], name: str) -> np.dtype[Any]:
    """The floating dtype an array is computed in: float32/float64 kept, other reals -> float64."""
    if array.dtype in KEPT_DTYPES:
        return array.dtype
    if array.dtype.kind in "biuf":
        return np.dtype(np.float64)
    raise WeightError(f"{name}: expected a real array, got dtype {array.dtype}")


def as_real_array(
    value: Any,
    name: str,
    shape: Sequence[int | None] | None = None,
    *,
    dtype: np.dtype[Any] | None = None,
    finite: bool = True,
    copy: bool = True,
) -> FloatArray:
    """Validate ``value`` as a real floating array of the given ``shape`` (``None`` = any size).

    The dtype is kept when it is float32 or float64 (or forced to ``dtype`` when given). With
    ``copy`` the result is a fresh array the caller owns; without, it may share memory with
    ``value``.
    """
    array = to_numpy(value, name)
    target = dtype if dtype is not None else real_dtype(array, name)
    if array.dtype.kind not in "biuf":
        raise WeightError(f"{name}: expected a real array, got dtype {array.dtype}")
    if shape is not None:
        check_shape(array, name, shape)
    out: FloatArray = np.array(array, dtype=target) if copy else np.asarray(array, dtype=target)
    if finite and not np.all(np.isfinite(out)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise WeightError(f"{name}: contains a non-finite value {out[bad]!r} at index {bad}")
    return out


def check_shape(array: NDArray[Any], name: str, shape: Sequence[int | None]) -> None:
    """Raise :class:`ShapeError` unless ``array.shape`` matches ``shape`` (``None`` = any)."""
    expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if array.ndim != len(shape) or any(
        s is not None and s != actual for s, actual in zip(shape, array.shape, strict=True)
    ):
        raise ShapeError(f"{name}: expected shape {expected}, got {list(array.shape)}")


def checked_product(left: FloatArray, right: FloatArray, what: str) -> FloatArray:
    """``left @ right``; a :class:`NumericalError` naming ``what`` if it leaves the dtype's range."""
    with np.errstate(over="ignore", invalid="ignore"):
        product: FloatArray = left @ right
    if not np.all(np.isfinite(product)):
        hint = " (float64 has a wider range)" if product.dtype == np.float32 else ""
        raise NumericalError(f"the product {what} exceeds the range of {product.dtype}{hint}")
    return product


def unit_scaled(array: FloatArray, axes: tuple[int, ...] | None = None) -> tuple[FloatArray, Any]:
    """``array / 2^e`` and ``e``, with ``2^e`` the power of two just above ``max |array|``.

    The scaling is exact and leaves every entry below 1 in magnitude, so products of scaled
    arrays cannot overflow; ``axes`` scales each sub-array over those axes separately (``e`` then
    keeps them as length-1 axes). A zero array is left as it is (``e = 0``).
    """
    exponent = _exponent(array, axes)
    scaled: FloatArray = np.ldexp(array, -exponent)
    return scaled, exponent


def scaled_pair(
    left: FloatArray, right: FloatArray, terms: int
) -> tuple[FloatArray, FloatArray, int]:
    """Two factors ready to be multiplied in their dtype, and the exponent ``e`` to scale back by.

    With ``2^a``, ``2^b`` just above the largest entries of ``left`` and ``right``, a sum of
    ``terms`` products of their entries is below ``terms · 2^(a+b)``. When that fits the dtype,
    with its full precision below it, the factors are returned as they are (``e = 0``);
    otherwise scaled exactly to ``left / 2^a`` and ``right / 2^b`` (copies), with ``e = a + b``.
    """
    a, b = _exponent(left, None), _exponent(right, None)
    info = np.finfo(left.dtype)
    if info.minexp + info.nmant < a + b < info.maxexp - terms.bit_length():
        return left, right, 0
    return np.ldexp(left, -a), np.ldexp(right, -b), int(a + b)


def wide_product(left: FloatArray, right: FloatArray) -> FloatArray:
    """``left @ right`` in float64, multiplied in the factors' dtype without overflow or loss to
    subnormal numbers (see :func:`scaled_pair`)."""
    scaled_left, scaled_right, exponent = scaled_pair(left, right, left.shape[-1])
    product = (scaled_left @ scaled_right).astype(np.float64)
    with np.errstate(over="ignore"):  # only beyond float64, where callers check
        result: FloatArray = np.ldexp(product, exponent)
    return result


def _exponent(array: FloatArray, axes: tuple[int, ...] | None) -> Any:
    """The exponent ``e`` of the power of two just above ``max |array|`` (over ``axes``), computed
    without a temporary copy of the array."""
    keep = axes is not None
    peak = np.maximum(
        array.max(axis=axes, keepdims=keep, initial=0.0),
        -array.min(axis=axes, keepdims=keep, initial=0.0),
    )
    return np.frexp(peak)[1]


def common_dtype(*arrays: NDArray[Any]) -> np.dtype[Any]:
    """float32 if every array is float32, else float64 (the library's default)."""
    if all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def frozen(array: FloatArray) -> FloatArray:
    """A read-only view of ``array`` (weights and factors are immutable once validated)."""
    view: FloatArray = array.view()
    view.setflags(write=False)
    return view
