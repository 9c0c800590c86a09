"""Build an induction circuit by hand, look inside it, run it, and prove it right.

    python examples/induction_by_hand.py                 # vocabulary 20, context 16
    python examples/induction_by_hand.py --vocab 200 --n-ctx 64

1. A residual layout ``tok ⊕ pos ⊕ prev ⊕ out`` and two heads defined by what they do to labelled
   directions; the library factors them into W_Q, W_K, W_V, W_O of the smallest d_head.
2. The model runs on a sequence: the heads attend where the construction says, the residual
   stream reads as labels.
3. A certificate bounds P(correct) over every sequence of the family; the exact worst case and
   brute force agree with it; without BOS the checker finds a counterexample by itself.
4. The same builders with sympy symbols: the path expansion in closed form.
5. The pointer (Q-composition) variant, and compressed token codes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import sympy as sp

from circuits import (
    BilinearForm,
    Block,
    CircuitSpec,
    HeadSpec,
    LinearMap,
    ResidualLayout,
    induction_circuit,
    induction_model,
    qk_expansion,
)
from circuits.verify import (
    brute_force,
    certify_induction,
    exact_worst_case,
    find_counterexample,
)


def section(title: str) -> None:
    print(f"\n=== {title}")


def by_hand(vocab: int, n_ctx: int, beta: float, gamma: float) -> CircuitSpec:
    """The K-composition circuit written out with the construction API (what induction_model does)."""
    layout = ResidualLayout.of(
        Block.one_hot("tok", range(vocab), "the current token"),
        Block.one_hot("pos", range(n_ctx), "the current position"),
        Block.one_hot("prev", range(vocab), "the previous token"),
        Block.one_hot("out", range(vocab), "the prediction"),
    )

    def previous(i: int) -> int | None:
        return i - 1 if i >= 1 else None

    previous_token = HeadSpec(
        qk=BilinearForm.from_action(
            layout, "pos", "pos", previous, scale=beta, label="pos[i] · pos[i−1]"
        ),
        ov=LinearMap.from_action(layout, "tok", "prev", label="tok[t] ↦ prev[t]"),
        role="previous-token",
    )
    induction = HeadSpec(
        qk=BilinearForm.from_action(layout, "tok", "prev", scale=beta, label="tok[t] · prev[t]"),
        ov=LinearMap.from_action(layout, "tok", "out", scale=gamma, label="tok[t] ↦ out[t]"),
        role="induction",
    )
    return CircuitSpec(layout, ((previous_token,), (induction,)), vocab, n_ctx, bos_token=0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=20)
    parser.add_argument("--n-ctx", type=int, default=16)
    args = parser.parse_args(argv)
    V, n = args.vocab, args.n_ctx
    length = min(n, V + 1)  # BOS, distinct ordinary tokens, then a repeat of the one at position 3
    if length < 5:
        parser.error("the example sequence needs --vocab ≥ 4 and --n-ctx ≥ 5")

    section("1. build")
    spec = by_hand(V, n, beta=20.0, gamma=20.0)
    model = spec.model()
    print(model)
    for name, head in spec.heads():
        qk, ov = head.factors
        print(
            f"head {name} ({head.role}): QK {head.qk.describe()} rank {qk.rank}; "
            f"OV {head.ov.describe()} rank {ov.rank}"
        )
    same = induction_model(V, n)  # the same weights, plus a record of how it was built
    identical = all(np.array_equal(w, same.parameters()[k]) for k, w in model.parameters().items())
    print("same weights as induction_model(V, n):", identical)

    section("2. run")
    rng = np.random.default_rng(0)
    tokens = np.concatenate([[0], rng.choice(np.arange(1, V), size=length - 2, replace=False), [0]])
    tokens[-1] = tokens[3]  # the last token occurred once before, at position 3
    logits, cache = model.run_with_cache(tokens)
    i = len(tokens) - 1
    print("tokens:", tokens.tolist())
    print(f"head 0.0 at query {i} attends to key", int(cache.pattern(0, 0)[0, i].argmax()))
    print(
        f"head 1.0 at query {i} attends to key",
        int(cache.pattern(1, 0)[0, i].argmax()),
        f"(the token after the earlier {tokens[-1]})",
    )
    top = spec.layout.describe(cache.resid(2)[0, i], top=4)
    print("residual stream at the last position:", ", ".join(f"{k}: {v:.3f}" for k, v in top))
    print("prediction:", int(logits[-1].argmax()), "— expected", int(tokens[4]))

    section("3. prove")
    certificate = certify_induction(same)  # checks the weights against the recorded construction
    print(certificate)
    worst = exact_worst_case(same)
    print(worst)
    tiny = induction_model(4, 6)
    checked = brute_force(tiny, progress=False)
    print(
        f"brute force, vocabulary 4, context 6: {checked.n_sequences} sequences, least P(correct) "
        f"{checked.min_probability:.12g} = exact worst case {exact_worst_case(tiny).probability:.12g}"
    )
    print("without BOS:", find_counterexample(tiny, bos=False))

    section("4. symbolic scales")
    b0, b1, g = sp.symbols("beta_0 beta_1 gamma", positive=True)
    symbolic = induction_circuit(4, 5, beta0=b0, beta1=b1, gamma=g).symbolic()
    twin = symbolic.substitute({b0: 1.0, b1: 1.0, g: 1.0})
    values = symbolic.path_values()
    for term in qk_expansion(twin, "1.0"):
        value = sp.Matrix(term.weight_value(values)).applyfunc(sp.nsimplify)
        if not value.is_zero_matrix:
            print(
                f"the only nonzero score term of head 1.0, query {term.query} key {term.key_path}:"
            )
            sp.pprint(value)

    section("5. variants")
    pointer = induction_model(V, n, mechanism="Q")
    print(
        "Q-composition:",
        pointer.metadata["head_roles"],
        "bound",
        f"{certify_induction(pointer).bound:.9f}",
    )
    print("Q without BOS:", find_counterexample(induction_model(4, 6, mechanism="Q"), bos=False))
    for code in ("structured", "random"):  # 200 tokens in 64 dimensions
        compressed = induction_model(200, n, code=code, d_code=64)
        c = certify_induction(compressed)
        print(
            f"{code} codes, vocabulary 200 in 64 dimensions: coherence "
            f"{c.values['coherence']:.3f}, d_model {compressed.cfg.d_model}, "
            f"certified P(correct) ≥ {c.bound:.6f}"
        )


if __name__ == "__main__":
    main()
