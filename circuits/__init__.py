"""circuits: the symbolic and analytic study of attention-only transformers.

The data flows one way through the package::

    weights (factored, config) → model → io
"""

from .analysis import (
    all_composition_scores,
    behaviour_scores,
    composition_baseline,
    composition_scores,
    copying_scores,
    detect_heads,
    ov_circuit,
    positional_qk_circuit,
    prefix_matching_scores,
    relative_composition_scores,
    token_qk_circuit,
    virtual_ov_circuit,
)
from .config import TransformerConfig, head_name, parse_head
from .errors import (
    AnalysisError,
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
    "AnalysisError",
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
    "all_composition_scores",
    "behaviour_scores",
    "causal_softmax",
    "composition_baseline",
    "composition_scores",
    "copying_scores",
    "detect_heads",
    "head_name",
    "load",
    "ov_circuit",
    "parse_head",
    "positional_qk_circuit",
    "prefix_matching_scores",
    "relative_composition_scores",
    "save",
    "token_qk_circuit",
    "virtual_ov_circuit",
]
