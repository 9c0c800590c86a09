"""The strategies the property tests rely on draw every case they claim to cover.

A strategy that silently stops drawing a case (models without biases, a positional type, a
non-default ``attn_scale``, a dtype, a special character) turns every test built on it into a
test of fewer inputs, and nothing else fails. ``hypothesis.find`` searches each strategy for an
example of each case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import test_io
import test_model
import test_render
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st

from circuits import AttnOnlyTransformer
from circuits import testing as ct
from circuits.config import POSITIONAL_EMBEDDING_TYPES

SEARCH = settings(
    max_examples=500,
    database=None,
    derandomize=True,
    phases=[Phase.generate],  # the first example found is enough: no shrinking
    suppress_health_check=list(HealthCheck),
)


def has_biases(model: AttnOnlyTransformer) -> bool:
    return any(np.any(b) for b in (model.b_Q, model.b_K, model.b_V, model.b_O, model.b_U))


def default_scale(model: AttnOnlyTransformer) -> bool:
    return math.isclose(model.cfg.attn_scale, math.sqrt(model.cfg.d_head), rel_tol=1e-12)


def dtype_is(dtype: Any) -> Callable[[AttnOnlyTransformer], bool]:
    return lambda model: model.W_E.dtype == dtype


def positions_are(kind: str) -> Callable[[AttnOnlyTransformer], bool]:
    return lambda model: model.cfg.positional_embedding_type == kind


MODEL_CASES: dict[str, Callable[[AttnOnlyTransformer], bool]] = {
    "with biases": has_biases,
    "without biases": lambda model: not has_biases(model),
    "attn_scale = √d_head": default_scale,
    "attn_scale ≠ √d_head": lambda model: not default_scale(model),
    "a head": lambda model: model.cfg.n_layers > 0,
    **{f"{kind} positions": positions_are(kind) for kind in POSITIONAL_EMBEDDING_TYPES},
}

MODEL_STRATEGIES: dict[str, tuple[st.SearchStrategy[AttnOnlyTransformer], tuple[str, ...]]] = {
    "circuits.testing.models()": (ct.models(), ("float64",)),
    "circuits.testing.models(dtype=float32)": (ct.models(dtype=np.float32), ("float32",)),
    "test_model.models()": (test_model.models(), ("float64",)),
    "test_model.model_and_tokens()": (test_model.model_and_tokens().map(lambda c: c[0]), ()),
    "test_io.models()": (test_io.models(), ("float32", "float64")),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
@pytest.mark.parametrize("strategy", sorted(MODEL_STRATEGIES))
def test_model_strategies_draw_every_case(strategy: str, case: str) -> None:
    find(MODEL_STRATEGIES[strategy][0], MODEL_CASES[case], settings=SEARCH)


@pytest.mark.parametrize(
    ("strategy", "dtype"),
    [(name, dtype) for name, (_, dtypes) in MODEL_STRATEGIES.items() for dtype in dtypes],
)
def test_model_strategies_draw_their_dtypes(strategy: str, dtype: str) -> None:
    find(MODEL_STRATEGIES[strategy][0], dtype_is(np.dtype(dtype)), settings=SEARCH)


@pytest.mark.parametrize("char", ["<", ">", "&", '"', "'", "\n"])
def test_the_label_strategy_draws_every_special_character(char: str) -> None:
    find(test_render.LABEL_CHARS, lambda text: char in text, settings=SEARCH)
