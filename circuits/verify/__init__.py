"""Verification of hand-built circuits: certificates, exact worst cases, exhaustive checks."""

from .certificate import SYMBOLS, Certificate, DerivationStep, certify_induction
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
    "PairProbabilities",
    "SearchResult",
    "WorstCase",
    "adversarial_search",
    "brute_force",
    "certify_induction",
    "exact_worst_case",
    "family_targets",
    "find_counterexample",
    "pair_probabilities",
    "target_probabilities",
]
