"""The library's exception types.

Every error the library raises on bad input is a :class:`CircuitsError`, so a caller can catch
them all at once; each subclass also derives from the builtin it refines (``ValueError``,
``TypeError``, ``OSError``) so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "CircuitsError",
    "ConfigError",
    "ConstructionError",
    "HeadError",
    "LayoutError",
    "MissingDependencyError",
    "ModelFileError",
    "NumericalError",
    "PathError",
    "RenderError",
    "ShapeError",
    "TokenError",
    "UnsupportedModelError",
    "VerificationError",
    "WeightError",
    "ZooError",
]


class CircuitsError(Exception):
    """Base class of every error raised by ``circuits``."""


class ConfigError(CircuitsError, ValueError):
    """A model configuration is invalid (a non-positive size, an unknown option, …)."""


class ShapeError(CircuitsError, ValueError):
    """An array does not have the shape its role requires."""


class WeightError(CircuitsError, ValueError):
    """A weight has an unusable value: not finite, not real, or of an unsupported dtype."""


class TokenError(CircuitsError, ValueError):
    """A token sequence is unusable: wrong rank, non-integer, out of range or too long."""


class NumericalError(CircuitsError, ArithmeticError):
    """A computation left the range of finite floating-point numbers."""


class ModelFileError(CircuitsError, OSError):
    """A model file is missing, malformed, truncated or inconsistent."""


class HeadError(CircuitsError, IndexError):
    """A head is named that the model does not have (layer or head index out of range)."""


class AnalysisError(CircuitsError, ValueError):
    """An analysis is asked for something undefined for this model (unknown kind, heads in the
    wrong layer order, sequences that do not fit the context, …)."""


class PathError(CircuitsError, ValueError):
    """A node, path or term is asked for that the computation graph of the model does not have."""


class RenderError(CircuitsError, ValueError):
    """A diagram or plot is asked for with unusable options (unknown file type, bad threshold, …)."""


class MissingDependencyError(CircuitsError, ImportError):
    """An optional dependency (matplotlib for plots) is not installed; the message says how to get it."""


class LayoutError(CircuitsError, ValueError):
    """A residual layout is inconsistent, or a block or labelled direction is named that it lacks."""


class ConstructionError(CircuitsError, ValueError):
    """A hand-built circuit cannot be realised: a map needs more than ``d_head`` dimensions, its
    factors do not reproduce it, or a symbolic scale is left where numbers are needed."""


class UnsupportedModelError(CircuitsError, ValueError):
    """A model (e.g. a TransformerLens ``HookedTransformer``) uses a feature the library does not
    model: MLPs, rotary or ALiBi positions, grouped-query attention, soft-capping, …"""


class VerificationError(CircuitsError, ValueError):
    """A certificate or exhaustive check is asked for a model or family it does not cover."""


class ZooError(CircuitsError, LookupError):
    """A model is asked of the zoo that it does not ship (the message lists the names it has)."""
