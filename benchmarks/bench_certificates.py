"""Benchmark: certificates of the induction circuits — speed, strength, and compressed codes.

    python benchmarks/bench_certificates.py           # the full run (a minute or two)
    python benchmarks/bench_certificates.py --quick   # small sizes, seconds

1. **Speed.** A certificate at n_ctx = 10⁶, vocabulary 10⁵ (target: under 10 ms), against two
   baselines timed in the same run: the same bound evaluated in plain floats (no interval
   enclosure), and the exact worst case at n_ctx = 1024 (n²/2 position pairs).
2. **Strength.** At vocabulary 1000, n_ctx 1024 and default scales: the certified bound (target
   ≥ 0.999), the exact worst case, and their gap (target ≤ 1e-5), for both mechanisms.
3. **Compressed codes.** Vocabulary 1000 in ``d_code`` dimensions (K-composition): coherence μ,
   certified bound, and accuracy of the model on random family sequences and on adversarial ones
   (every filler the token whose code is closest to the repeated token's).
"""

from __future__ import annotations

import argparse

import numpy as np
import sympy as sp
from bench_foundation import best_of  # the sibling script: timing helper

from circuits import LayoutError, induction_model
from circuits.verify import SYMBOLS, certify_induction, exact_worst_case, target_probabilities
from circuits.verify.certificate import _derivation


def speed(repeat: int, exact_ctx: int) -> None:
    print("1. speed")
    big = {"vocab_size": 100_000, "n_ctx": 1_000_000}
    certify_induction(**big)  # build and cache the symbolic derivation once
    t_cert = best_of(lambda: certify_induction(**big), repeat)
    _, _, bound, _ = _derivation("K")
    plain = sp.lambdify(list(SYMBOLS.values()), bound, modules="math")
    args = (1e5, 1e6, 20.0, 20.0, 20.0, 0.0)
    t_float = best_of(lambda: plain(*args), repeat)
    t_exact = best_of(lambda: exact_worst_case(vocab_size=1000, n_ctx=exact_ctx), 3)
    print(
        f"   certificate at n_ctx 1e6, vocabulary 1e5: {1e3 * t_cert:.3f} ms (target < 10 ms: "
        f"{'ok' if t_cert < 0.01 else 'MISSED'}); bound {certify_induction(**big).bound:.9f}"
    )
    print(
        f"   same bound in plain floats: {1e3 * t_float:.4f} ms  "
        f"(the interval enclosure costs ×{t_cert / t_float:.0f})"
    )
    print(
        f"   exact worst case at n_ctx {exact_ctx}: {1e3 * t_exact:.1f} ms  "
        f"(×{t_exact / t_cert:.0f} the certificate above, at a far longer context)"
    )


def strength() -> None:
    print("2. strength at vocabulary 1000, n_ctx 1024, default scales")
    for mechanism in ("K", "Q"):
        c = certify_induction(vocab_size=1000, n_ctx=1024, mechanism=mechanism)  # type: ignore[arg-type]
        w = exact_worst_case(vocab_size=1000, n_ctx=1024, mechanism=mechanism)  # type: ignore[arg-type]
        gap = w.probability - c.bound
        print(
            f"   {mechanism}: bound {c.bound:.12f} (≥ 0.999: {c.bound >= 0.999}), exact worst "
            f"{w.probability:.12f}, gap {gap:.2e} (≤ 1e-5: {0 <= gap <= 1e-5}); P(wrong): "
            f"certified ≤ {c.error_bound:.6e}, exact {w.error:.6e}"
        )


def family_batch(
    rng: np.random.Generator, vocab: int, n_ctx: int, size: int, code: np.ndarray | None
) -> np.ndarray:
    """Family sequences of full length; with ``code``, every filler is the token whose code is
    nearest the repeated token's, so every key after a filler looks like a match (K-composition)."""
    rows = []
    for _ in range(size):
        a, c = rng.choice(np.arange(1, vocab), size=2, replace=False)
        tokens = rng.choice(np.setdiff1d(np.arange(1, vocab), [a]), size=n_ctx)
        p = int(rng.integers(1, n_ctx - 2))
        if code is not None:
            near = code.T @ code[:, a]
            near[[0, a, c]] = -np.inf
            tokens[:] = int(np.argmax(near))
        tokens[0], tokens[p], tokens[p + 1], tokens[-1] = 0, a, c, a
        rows.append(tokens)
    return np.array(rows)


def compressed(dims: list[int], n_ctx: int, size: int) -> None:
    print(f"3. compressed codes: vocabulary 1000, n_ctx {n_ctx}, {size} sequences per cell")
    print("   code        d_code  d_model  coherence  certified   accuracy  adversarial  min P")
    rng = np.random.default_rng(0)
    for kind in ("structured", "random"):
        for d in dims:
            try:
                model = induction_model(1000, n_ctx, code=kind, d_code=d)  # type: ignore[arg-type]
            except LayoutError as error:  # a Reed–Solomon code needs some room
                print(f"   {kind:<11} {d:>6}  ({error})")
                continue
            cert = certify_induction(model)
            code = model.W_E[:d]  # the token block comes first in the layout
            results = []
            for adversarial in (False, True):
                tokens = family_batch(rng, 1000, n_ctx, size, code if adversarial else None)
                p, right = target_probabilities(
                    model, tokens, tokens[np.arange(size), _after(tokens)]
                )
                results.append((float(right.mean()), float(p.min())))
            print(
                f"   {kind:<11} {d:>6}  {model.cfg.d_model:>7}  {cert.values['coherence']:9.3f}  "
                f"{cert.bound:9.6f}  {results[0][0]:9.4f}  {results[1][0]:11.4f}  "
                f"{min(r[1] for r in results):.4f}"
            )


def _after(tokens: np.ndarray) -> np.ndarray:
    """The position after the earlier occurrence of each row's last token."""
    earlier = tokens[:, :-1] == tokens[:, -1:]
    return np.argmax(earlier, axis=1) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    speed(repeat=20 if args.quick else 200, exact_ctx=256 if args.quick else 1024)
    strength()
    dims = [64] if args.quick else [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    compressed(dims, n_ctx=32 if args.quick else 64, size=32 if args.quick else 256)


if __name__ == "__main__":
    main()
