"""Benchmark: the weights-based certifier ``circuits.verify.certify`` against brute force.

    python benchmarks/bench_certify.py           # the full run (several minutes)
    python benchmarks/bench_certify.py --quick   # small sizes, seconds

For each model the proof's time is printed beside brute force on the same family: the forward
pass on every sequence, in batches. Brute force is timed where the family is small enough and
extrapolated elsewhere from its measured cost per sequence (family size × that cost): a proof's
value is its tightness per unit of work. Also printed: the bound against the exact worst case
(canonical models) and the bound under Gaussian perturbation of every weight.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from circuits import AttnOnlyTransformer, induction_model
from circuits.verify import brute_force, certify, exact_worst_case


def timed(run: object) -> tuple[float, object]:
    start = time.perf_counter()
    out = run()  # type: ignore[operator]
    return time.perf_counter() - start, out


def per_sequence_cost(model: AttnOnlyTransformer, length: int, batch: int = 4096) -> float:
    """Seconds per family sequence of the forward pass at full length, in batches."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, model.cfg.d_vocab, size=(batch, length))
    tokens[:, 0] = 0
    seconds, _ = timed(lambda: model.forward(tokens))
    return seconds / batch


def compare(name: str, model: AttnOnlyTransformer, exhaustive: bool) -> None:
    t_proof, cert = timed(lambda: certify(model))
    line = f"   {name}: proof {t_proof:.2f} s, bound {cert.bound:.10g}, accuracy ≥ {cert.accuracy_bound:.4g}"  # type: ignore[attr-defined]
    if exhaustive:
        t_brute, result = timed(lambda: brute_force(model, progress=False))
        line += f"; brute force {t_brute:.2f} s (×{t_brute / t_proof:.3g} the proof), least {result.min_probability:.10g}"  # type: ignore[attr-defined]
    else:
        cost = per_sequence_cost(model, model.cfg.n_ctx)
        estimate = cost * cert.family_size  # type: ignore[attr-defined]
        line += (
            f"; brute force ≈ {estimate:.3g} s for {cert.family_size:.3g} sequences "  # type: ignore[attr-defined]
            f"({cost * 1e6:.2f} µs each, measured): the proof is ×{t_proof / estimate:.3g} of it"
        )
    print(line)


def perturbed(model: AttnOnlyTransformer, eta: float, seed: int = 0) -> AttnOnlyTransformer:
    """Every weight plus Gaussian noise of size η × the weight's largest entry."""
    rng = np.random.default_rng(seed)
    return model.replace(
        **{
            name: w + eta * float(np.abs(w).max()) * rng.standard_normal(w.shape)
            for name, w in model.parameters().items()
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    quick = parser.parse_args().quick
    print("1. cost against brute force")
    compare("K, vocabulary 6, n_ctx 6", induction_model(6, 6), exhaustive=True)
    if quick:
        compare("K, vocabulary 16, n_ctx 8", induction_model(16, 8), exhaustive=False)
    else:
        compare("K, vocabulary 64, n_ctx 16", induction_model(64, 16), exhaustive=False)
    print("2. strength on the canonical models")
    size = (12, 16) if quick else (50, 64)
    for mechanism in ("K", "Q"):
        model = induction_model(*size, mechanism=mechanism)  # type: ignore[arg-type]
        t, cert = timed(lambda m=model: certify(m))
        worst = exact_worst_case(model)
        print(
            f"   {mechanism}, vocabulary {size[0]}, n_ctx {size[1]}: P(wrong) ≤ {cert.error_bound:.6g}"  # type: ignore[attr-defined]
            f" against an exact {worst.error:.6g}: ×{cert.error_bound / worst.error:.6f} (goal ≤ 2×); {t:.1f} s"  # type: ignore[attr-defined]
        )
    print("3. perturbed canonical K model: every weight + N(0, (η·max|w|)²)")
    base = induction_model(*size)
    for eta in (1e-3, 3e-3):
        t, cert = timed(lambda e=eta: certify(perturbed(base, e)))
        print(
            f"   η = {eta:g}: bound {cert.bound:.10g}, accuracy ≥ {cert.accuracy_bound:.6g}; {t:.1f} s"
        )  # type: ignore[attr-defined]
    small = induction_model(12, 16)
    for eta in (3e-3, 1e-2):
        model = perturbed(small, eta)
        cert = certify(model)
        worst, right = sampled(model, 2000)
        print(
            f"   vocabulary 12, n_ctx 16, η = {eta:g}: bound {cert.bound:.7g}, accuracy ≥ "  # type: ignore[attr-defined]
            f"{cert.accuracy_bound:.3g}; sampled: least P(correct) {worst:.7g}, {right:.1%} right"  # type: ignore[attr-defined]
        )
    print("4. trained models of the zoo")
    from circuits import zoo

    for name, n_ctx in (("attn2l-tiny-induction", None), ("attn2l-clean-induction", 6),
                        ("attn2l-clean-induction", None)):  # fmt: skip
        trained = zoo.load(name)
        t, cert = timed(lambda m=trained, n=n_ctx: certify(m, n_ctx=n))
        print(
            f"   {name}, sequences of ≤ {cert.n_ctx} tokens: bound {cert.bound:.5g}, accuracy ≥ "  # type: ignore[attr-defined]
            f"{cert.accuracy_bound:.4g} ({cert.proved} of {cert.family_size}); {t:.1f} s"  # type: ignore[attr-defined]
        )


def sampled(model: AttnOnlyTransformer, count: int, seed: int = 0) -> tuple[float, float]:
    """The least P(correct) and the fraction right over ``count`` random sequences of the family."""
    rng = np.random.default_rng(seed)
    V, n, bos = model.cfg.d_vocab, model.cfg.n_ctx, model.bos_token
    ordinary = np.array([t for t in range(V) if t != bos])
    worst, right = 1.0, 0
    for _ in range(count):
        length = int(rng.integers(3, n + 1))
        p, a = int(rng.integers(1, length - 1)), int(rng.choice(ordinary))
        sequence = np.concatenate([[bos], rng.choice(ordinary[ordinary != a], length - 1)])
        sequence[p] = sequence[-1] = a
        logits = model(sequence)[-1]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        worst = min(worst, float(probabilities[sequence[p + 1]]))
        right += int(np.argmax(logits) == sequence[p + 1])
    return worst, right / count


if __name__ == "__main__":
    main()
