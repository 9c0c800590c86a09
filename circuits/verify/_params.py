"""The induction construction a check is about: from a model or from its parameters (internal)."""

from __future__ import annotations

from typing import Any

from ..construct.induction import InductionParameters, induction_parameters
from ..errors import VerificationError
from ..model import AttnOnlyTransformer


def resolve(model: AttnOnlyTransformer | None, given: dict[str, Any]) -> InductionParameters:
    """Parameters of ``model`` (checked against its weights), or built from ``given``.

    ``given`` holds the keyword arguments of :class:`InductionParameters`; ``None`` values are
    left at their defaults. Giving both a model and parameters is an error.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(chosen) - set(InductionParameters.__dataclass_fields__))
    if unknown:
        raise VerificationError(f"unknown parameters {unknown} of an induction construction")
    if model is not None:
        if chosen:
            raise VerificationError(
                f"give either a model or its parameters, not both (got {sorted(chosen)})"
            )
        return induction_parameters(model)
    if "vocab_size" not in chosen or "n_ctx" not in chosen:
        raise VerificationError("give a model from induction_model, or vocab_size= and n_ctx=")
    return InductionParameters(**chosen)
