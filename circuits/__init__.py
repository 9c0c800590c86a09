"""circuits: the symbolic and analytic study of attention-only transformers.

The data flows one way through the package::

    weights (factored, config) → model → io
"""

from .config import TransformerConfig, head_name, parse_head
from .errors import (
    CircuitsError,
    ConfigError,
    HeadError,
    ModelFileError,
    NumericalError,
    ShapeError,
    TokenError,
    WeightError,
)
from .factored import FactoredMatrix
from .io import load, save
from .model import ActivationCache, AttnOnlyTransformer, causal_softmax

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "AttnOnlyTransformer",
    "CircuitsError",
    "ConfigError",
    "FactoredMatrix",
    "HeadError",
    "ModelFileError",
    "NumericalError",
    "ShapeError",
    "TokenError",
    "TransformerConfig",
    "WeightError",
    "causal_softmax",
    "head_name",
    "load",
    "parse_head",
    "save",
]
