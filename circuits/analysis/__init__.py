"""What a researcher runs on a model to find its circuits.

* :mod:`.composition` — Q-, K-, V-composition scores of every pair of heads, their random baseline;
* :mod:`.eigen` — eigenvalue spectra from small cores: copying, QK positivity, prefix matching;
* :mod:`.full_circuits` — token/positional QK, OV, virtual and composition circuits, factored,
  with labelled top-k readouts;
* :mod:`.detection` — behavioural scores on repeated random tokens, head detection on any
  sequences against detection patterns;
* :mod:`.attribution` — direct logit attribution by component, circuit recovery over path terms;
* :mod:`.ablation` — head and path ablation with patterns frozen or recomputed, loss analyses;
* :mod:`.training` — a training run through its checkpoints: losses, ICL score, head scores.

Each name is imported from its submodule on first use.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_namespace

if TYPE_CHECKING:
    from .ablation import (
        ablate_heads,
        ablate_paths,
        frozen_forward,
        head_ablation_effects,
        loss_recovery,
        next_token_loss,
        order_importance,
    )
    from .attribution import Component, circuit_recovery, head_attribution
    from .composition import (
        all_composition_scores,
        composition_baseline,
        composition_scores,
        relative_composition_scores,
    )
    from .detection import (
        behaviour_scores,
        copying_evaluator,
        detect_heads,
        detection_pattern,
        detection_scores,
        repeated_random_tokens,
    )
    from .eigen import (
        copying_scores,
        eigenvalue_positivity,
        k_composition_eigenvalues,
        ov_eigenvalues,
        prefix_matching_scores,
        qk_eigenvalues,
        qk_positivity,
    )
    from .full_circuits import (
        Entry,
        attended_offsets,
        column_top,
        k_composition_circuit,
        ov_circuit,
        positional_pattern,
        positional_qk_circuit,
        q_composition_circuit,
        token_qk_circuit,
        top_copied_tokens,
        top_diagonal,
        top_entries,
        virtual_ov_circuit,
    )
    from .training import TrainingRun, training_run

__all__ = [
    "Component",
    "Entry",
    "TrainingRun",
    "ablate_heads",
    "ablate_paths",
    "all_composition_scores",
    "attended_offsets",
    "behaviour_scores",
    "circuit_recovery",
    "column_top",
    "composition_baseline",
    "composition_scores",
    "copying_evaluator",
    "copying_scores",
    "detect_heads",
    "detection_pattern",
    "detection_scores",
    "eigenvalue_positivity",
    "frozen_forward",
    "head_ablation_effects",
    "head_attribution",
    "k_composition_circuit",
    "k_composition_eigenvalues",
    "loss_recovery",
    "next_token_loss",
    "order_importance",
    "ov_circuit",
    "ov_eigenvalues",
    "positional_pattern",
    "positional_qk_circuit",
    "prefix_matching_scores",
    "q_composition_circuit",
    "qk_eigenvalues",
    "qk_positivity",
    "relative_composition_scores",
    "repeated_random_tokens",
    "token_qk_circuit",
    "top_copied_tokens",
    "top_diagonal",
    "top_entries",
    "training_run",
    "virtual_ov_circuit",
]

# The submodule that defines each public name, imported when the name is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "ablation": (
        "ablate_heads",
        "ablate_paths",
        "frozen_forward",
        "head_ablation_effects",
        "loss_recovery",
        "next_token_loss",
        "order_importance",
    ),
    "attribution": ("Component", "circuit_recovery", "head_attribution"),
    "composition": (
        "all_composition_scores",
        "composition_baseline",
        "composition_scores",
        "relative_composition_scores",
    ),
    "detection": (
        "behaviour_scores",
        "copying_evaluator",
        "detect_heads",
        "detection_pattern",
        "detection_scores",
        "repeated_random_tokens",
    ),
    "eigen": (
        "copying_scores",
        "eigenvalue_positivity",
        "k_composition_eigenvalues",
        "ov_eigenvalues",
        "prefix_matching_scores",
        "qk_eigenvalues",
        "qk_positivity",
    ),
    "full_circuits": (
        "Entry",
        "attended_offsets",
        "column_top",
        "k_composition_circuit",
        "ov_circuit",
        "positional_pattern",
        "positional_qk_circuit",
        "q_composition_circuit",
        "token_qk_circuit",
        "top_copied_tokens",
        "top_diagonal",
        "top_entries",
        "virtual_ov_circuit",
    ),
    "training": ("TrainingRun", "training_run"),
}
if not TYPE_CHECKING:  # keep attribute checks strict for type checkers
    __getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
