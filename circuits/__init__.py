"""circuits: the symbolic and analytic study of attention-only transformers.

The data flows one way through the package::

    weights (factored, config) → model → io
    model → graph → symbolic → paths → qk_paths
    model → construct (hand-built circuits) → verify (certificates)

Each public name, and each submodule, is imported on first use: ``import circuits`` loads
neither numpy nor sympy, networkx or graphviz, and ``from circuits import load`` loads only what
:mod:`circuits.io` needs.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_namespace

if TYPE_CHECKING:
    from . import zoo
    from .analysis import (
        ablate_heads,
        all_composition_scores,
        behaviour_scores,
        circuit_recovery,
        composition_baseline,
        composition_scores,
        copying_scores,
        detect_heads,
        head_attribution,
        loss_recovery,
        order_importance,
        ov_circuit,
        positional_qk_circuit,
        prefix_matching_scores,
        relative_composition_scores,
        token_qk_circuit,
        virtual_ov_circuit,
    )
    from .config import TransformerConfig, head_name, parse_head
    from .construct import (
        BilinearForm,
        Block,
        CircuitSpec,
        HeadSpec,
        LinearMap,
        ResidualLayout,
        SymbolicModel,
        assemble,
        induction_circuit,
        induction_model,
    )
    from .errors import (
        AnalysisError,
        CircuitsError,
        ConfigError,
        ConstructionError,
        HeadError,
        LayoutError,
        MissingDependencyError,
        ModelFileError,
        NumericalError,
        PathError,
        RenderError,
        ShapeError,
        TokenError,
        UnsupportedModelError,
        VerificationError,
        WeightError,
        ZooError,
    )
    from .factored import FactoredMatrix
    from .graph import computation_graph, count_paths, iter_paths
    from .io import load, save
    from .layer_norm import center_unembed, center_writing_weights, fold_layer_norm
    from .model import ActivationCache, AttnOnlyTransformer, causal_softmax
    from .paths import PathContributions, PathExpansion, PathTerm, path_expansion
    from .qk_paths import QKContributions, QKExpansion, QKTerm, qk_expansion
    from .reporting import report
    from .symbolic import Kron

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "AnalysisError",
    "AttnOnlyTransformer",
    "BilinearForm",
    "Block",
    "CircuitSpec",
    "CircuitsError",
    "ConfigError",
    "ConstructionError",
    "FactoredMatrix",
    "HeadError",
    "HeadSpec",
    "Kron",
    "LayoutError",
    "LinearMap",
    "MissingDependencyError",
    "ModelFileError",
    "NumericalError",
    "PathContributions",
    "PathError",
    "PathExpansion",
    "PathTerm",
    "QKContributions",
    "QKExpansion",
    "QKTerm",
    "RenderError",
    "ResidualLayout",
    "ShapeError",
    "SymbolicModel",
    "TokenError",
    "TransformerConfig",
    "UnsupportedModelError",
    "VerificationError",
    "WeightError",
    "ZooError",
    "ablate_heads",
    "all_composition_scores",
    "assemble",
    "behaviour_scores",
    "causal_softmax",
    "center_unembed",
    "center_writing_weights",
    "circuit_recovery",
    "composition_baseline",
    "composition_scores",
    "computation_graph",
    "copying_scores",
    "count_paths",
    "detect_heads",
    "fold_layer_norm",
    "head_attribution",
    "head_name",
    "induction_circuit",
    "induction_model",
    "iter_paths",
    "load",
    "loss_recovery",
    "order_importance",
    "ov_circuit",
    "parse_head",
    "path_expansion",
    "positional_qk_circuit",
    "prefix_matching_scores",
    "qk_expansion",
    "relative_composition_scores",
    "report",
    "save",
    "token_qk_circuit",
    "virtual_ov_circuit",
    "zoo",
]

# The submodule that defines each public name, imported when the name is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "analysis": (
        "ablate_heads",
        "all_composition_scores",
        "behaviour_scores",
        "circuit_recovery",
        "composition_baseline",
        "composition_scores",
        "copying_scores",
        "detect_heads",
        "head_attribution",
        "loss_recovery",
        "order_importance",
        "ov_circuit",
        "positional_qk_circuit",
        "prefix_matching_scores",
        "relative_composition_scores",
        "token_qk_circuit",
        "virtual_ov_circuit",
    ),
    "config": ("TransformerConfig", "head_name", "parse_head"),
    "construct": (
        "BilinearForm",
        "Block",
        "CircuitSpec",
        "HeadSpec",
        "LinearMap",
        "ResidualLayout",
        "SymbolicModel",
        "assemble",
        "induction_circuit",
        "induction_model",
    ),
    "errors": (
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
    ),
    "factored": ("FactoredMatrix",),
    "graph": ("computation_graph", "count_paths", "iter_paths"),
    "io": ("load", "save"),
    "layer_norm": ("center_unembed", "center_writing_weights", "fold_layer_norm"),
    "model": ("ActivationCache", "AttnOnlyTransformer", "causal_softmax"),
    "paths": ("PathContributions", "PathExpansion", "PathTerm", "path_expansion"),
    "qk_paths": ("QKContributions", "QKExpansion", "QKTerm", "qk_expansion"),
    "reporting": ("report",),
    "symbolic": ("Kron",),
}
_SUBMODULES = ("cli", "demo", "plots", "render", "testing", "tl_format", "verify", "zoo")
if not TYPE_CHECKING:  # keep attribute checks strict for type checkers
    __getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, _SUBMODULES)
