"""Hand construction of attention-only circuits on named residual subspaces.

* :mod:`.layout` — residual layouts: blocks of labelled directions (``tok[t]``, ``pos[i]``, …);
* :mod:`.codes` — nearly orthogonal token codes and their coherence;
* :mod:`.maps` — OV maps and QK forms defined by their action on labels;
* :mod:`.heads` — rank-revealing factorisation into ``W_Q, W_K, W_V, W_O``, verified;
* :mod:`.assemble` — heads, embeddings and readout assembled into a model (or exact sympy weights);
* :mod:`.induction` — the canonical induction circuits (K-composition and the Q-composition
  pointer variant).
"""

from .assemble import CircuitSpec, SymbolicModel, assemble
from .codes import coherence, random_code, structured_code
from .heads import Factors, HeadSpec, HeadWeights, factorise, head_weights
from .induction import (
    DEFAULT_SCALES,
    InductionParameters,
    induction_circuit,
    induction_model,
    induction_parameters,
)
from .layout import Block, Direction, ResidualLayout
from .maps import BilinearForm, LinearMap, Term

__all__ = [
    "DEFAULT_SCALES",
    "BilinearForm",
    "Block",
    "CircuitSpec",
    "Direction",
    "Factors",
    "HeadSpec",
    "HeadWeights",
    "InductionParameters",
    "LinearMap",
    "ResidualLayout",
    "SymbolicModel",
    "Term",
    "assemble",
    "coherence",
    "factorise",
    "head_weights",
    "induction_circuit",
    "induction_model",
    "induction_parameters",
    "random_code",
    "structured_code",
]
