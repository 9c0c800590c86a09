"""Symbolic scales: the path expansion of a hand-built model in closed form.

With sympy symbols for β₀, β₁, γ, every term of the path expansion (logits) and of the QK
expansion (scores) of the induction circuits is an exact sympy matrix: the intended terms have the
intended structure and every other term is identically zero (one-hot codes).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import sympy as sp

from circuits import AttnOnlyTransformer, path_expansion, qk_expansion
from circuits.construct import SymbolicModel, induction_circuit
from circuits.construct.induction import Mechanism

B0, B1, G = sp.symbols("beta_0 beta_1 gamma", positive=True)
V, N = 4, 5


@cache
def symbolic(mechanism: Mechanism) -> SymbolicModel:
    return induction_circuit(V, N, mechanism=mechanism, beta0=B0, beta1=B1, gamma=G).symbolic()


def _twin(mechanism: Mechanism) -> AttnOnlyTransformer:
    """A numeric model with the same configuration, for the expansion's list of terms."""
    return symbolic(mechanism).substitute({B0: 1.0, B1: 2.0, G: 3.0})


def _exact(term_value: sp.MatrixBase) -> sp.Matrix:
    return sp.Matrix(term_value).applyfunc(lambda e: sp.nsimplify(sp.expand(e)))


def _shift(n: int, offset: int) -> sp.Matrix:
    """``S[i, i + offset] = 1`` (query i, key i + offset)."""
    return sp.Matrix(n, n, lambda i, j: 1 if j == i + offset else 0)


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_the_only_logit_term_is_the_copying_ov_term(mechanism: Mechanism) -> None:
    values = symbolic(mechanism).path_values()
    terms = {
        term.path: _exact(term.weight_value(values)) for term in path_expansion(_twin(mechanism))
    }
    assert len(terms) == 8  # (1 + H)^L paths from each of embed and pos_embed
    copying = terms.pop(("embed", "1.0", "unembed"))
    assert copying == G * sp.eye(V)  # W_U W_OV^{1.0} W_E = γ I: token t raises the logit of t
    for path, value in terms.items():
        assert value.is_zero_matrix, path


def test_k_composition_scores_in_closed_form() -> None:
    values = symbolic("K").path_values()
    twin = _twin("K")
    previous = {
        (t.query, t.key_path): _exact(t.weight_value(values)) for t in qk_expansion(twin, "0.0")
    }
    positional = previous.pop((("pos_embed", "0.0"), ("pos_embed", "0.0")))
    assert positional == B0 * _shift(N, -1)  # W_Pᵀ W_QK^{0.0} W_P: query i looks at key i − 1
    assert all(v.is_zero_matrix for v in previous.values())

    induction = {
        (t.query, t.key_path): _exact(t.weight_value(values)) for t in qk_expansion(twin, "1.0")
    }
    assert len(induction) == 16
    k_term = induction.pop((("embed", "1.0"), ("embed", "0.0", "1.0")))
    assert k_term == B1 * sp.eye(V)  # W_Eᵀ W_QK^{1.0} W_OV^{0.0} W_E = β₁ I
    for key, value in induction.items():
        assert value.is_zero_matrix, key


def test_q_composition_scores_in_closed_form() -> None:
    values = symbolic("Q").path_values()
    twin = _twin("Q")
    duplicate = {
        (t.query, t.key_path): _exact(t.weight_value(values)) for t in qk_expansion(twin, "0.0")
    }
    assert duplicate.pop((("embed", "0.0"), ("embed", "0.0"))) == B0 * sp.eye(V)
    assert duplicate.pop((("pos_embed", "0.0"), ("pos_embed", "0.0"))) == -B0 * sp.eye(N)
    assert all(v.is_zero_matrix for v in duplicate.values())

    pointer = {
        (t.query, t.key_path): _exact(t.weight_value(values)) for t in qk_expansion(twin, "1.0")
    }
    q_term = pointer.pop((("pos_embed", "0.0", "1.0"), ("pos_embed", "1.0")))
    assert q_term == B1 * _shift(N, 1)  # W_Pᵀ W_OV^{0.0ᵀ} W_QK^{1.0} W_P: pointer j asks for j + 1
    for key, value in pointer.items():
        assert value.is_zero_matrix, key


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_symbolic_weights_substitute_to_the_numeric_model(mechanism: Mechanism) -> None:
    sym = symbolic(mechanism)
    assert sym.free_symbols == {B0, B1, G}
    numeric = induction_circuit(V, N, mechanism=mechanism, beta0=1.5, beta1=2.5, gamma=3.5).model()
    twin = sym.substitute({"beta_0": 1.5, "beta_1": 2.5, "gamma": 3.5})
    tokens = np.array([0, 2, 3, 1, 2])
    np.testing.assert_allclose(twin(tokens), numeric(tokens), atol=1e-12)
    for head in ("0.0", "1.0"):
        np.testing.assert_allclose(
            np.array(sym.W_QK(head).subs({B0: 1.5, B1: 2.5}), dtype=float),
            numeric.W_QK(head).AB,
            atol=1e-12,
        )


def test_exact_weights_hold_no_floats() -> None:
    """Numeric scales of 1 and the score scale α = 1 enter as exact integers, not as 1.0."""
    beta0, beta1, gamma = sp.symbols("beta_0 beta_1 gamma", positive=True)
    symbolic = induction_circuit(4, 5, beta0=beta0, beta1=beta1, gamma=gamma).symbolic()
    values = symbolic.path_values()
    floats = [name for name, value in values.items()
              if isinstance(value, sp.MatrixBase) and value.atoms(sp.Float)]  # fmt: skip
    assert floats == []
    assert isinstance(values["alpha"], sp.Integer) and values["alpha"] == 1
    twin = symbolic.substitute({beta0: 1.0, beta1: 2.0, gamma: 3.0})
    k_term = qk_expansion(twin, "1.0").term(["embed"], ["embed", "0.0"])
    assert k_term.weight_value(values) == beta1 * sp.eye(4)  # structurally, without simplify
