"""Verification: certificates (closed-form and for any 2-layer model), exact worst cases, exhaustive checks.

Each name is imported from its submodule on first use (sympy and mpmath load with the
certificates only).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_namespace

if TYPE_CHECKING:
    from .certificate import SYMBOLS, Certificate, DerivationStep, certify_induction
    from .general import ModelCertificate, certify
    from .search import (
        BruteForceResult,
        Counterexample,
        SearchResult,
        adversarial_search,
        brute_force,
        family_targets,
        find_counterexample,
        target_probabilities,
    )
    from .worst_case import PairProbabilities, WorstCase, exact_worst_case, pair_probabilities

__all__ = [
    "SYMBOLS",
    "BruteForceResult",
    "Certificate",
    "Counterexample",
    "DerivationStep",
    "ModelCertificate",
    "PairProbabilities",
    "SearchResult",
    "WorstCase",
    "adversarial_search",
    "brute_force",
    "certify",
    "certify_induction",
    "exact_worst_case",
    "family_targets",
    "find_counterexample",
    "pair_probabilities",
    "target_probabilities",
]

# The submodule that defines each public name, imported when the name is first used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "certificate": ("SYMBOLS", "Certificate", "DerivationStep", "certify_induction"),
    "general": ("ModelCertificate", "certify"),
    "search": (
        "BruteForceResult",
        "Counterexample",
        "SearchResult",
        "adversarial_search",
        "brute_force",
        "family_targets",
        "find_counterexample",
        "target_probabilities",
    ),
    "worst_case": ("PairProbabilities", "WorstCase", "exact_worst_case", "pair_probabilities"),
}
if not TYPE_CHECKING:  # keep attribute checks strict for type checkers
    __getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS)
