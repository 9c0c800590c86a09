"""Benchmark: circuit analysis of a GPT-2-small-sized attention-only model, in float32.

    python benchmarks/bench_analysis.py           # d_model 768, 12 heads, d_head 64, V 50257, 2 layers
    python benchmarks/bench_analysis.py --quick   # small sizes, seconds

Every timing is the best of a few calls and is printed with its ratio to a baseline measured in
the same run: one dense ``d_model × vocab × d_model`` product ``W_E W_U`` (the unavoidable cost of
anything that looks at every token), and for the composition scores the dense per-pair formula
(``d × d`` maps multiplied and normed pair by pair, as a direct implementation would), timed on a
few pairs and scaled to all of them. Peak memory is what ``tracemalloc`` sees numpy allocate
during one call (the model's weights excluded), and the process's peak resident size at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from bench_foundation import best_of  # the sibling script: timing helper

from circuits import AttnOnlyTransformer, TransformerConfig
from circuits.analysis import (
    all_composition_scores,
    composition_scores,
    copying_scores,
    detect_heads,
    prefix_matching_scores,
    qk_eigenvalues,
    top_copied_tokens,
)

FULL = {"n_layers": 2, "n_heads": 12, "d_model": 768, "d_head": 64, "d_vocab": 50257, "n_ctx": 1024}
QUICK = {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_head": 16, "d_vocab": 2000, "n_ctx": 256}


def peak_bytes(fn: Callable[[], Any]) -> int:
    """The peak of memory allocated (and traced) during one call of ``fn``."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def float32_model(sizes: dict[str, int], seed: int = 0) -> AttnOnlyTransformer:
    """Gaussian float32 weights generated directly in float32 (no float64 copy of W_E, W_U)."""
    cfg = TransformerConfig(**sizes)
    rng = np.random.default_rng(seed)
    L, H, d, k, V, n = (
        sizes[key] for key in ("n_layers", "n_heads", "d_model", "d_head", "d_vocab", "n_ctx")
    )

    def gaussian(shape: tuple[int, ...], std: float) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    return AttnOnlyTransformer(
        cfg,
        W_E=gaussian((d, V), 1.0), W_P=gaussian((d, n), 1.0), W_U=gaussian((V, d), d**-0.5),
        W_Q=gaussian((L, H, k, d), d**-0.5), W_K=gaussian((L, H, k, d), d**-0.5),
        W_V=gaussian((L, H, k, d), d**-0.5), W_O=gaussian((L, H, d, k), k**-0.5),
        bos_token=0,
    )  # fmt: skip


def dense_pair_scores(model: AttnOnlyTransformer, pairs: int) -> None:
    """The direct formula for ``pairs`` writer/reader pairs: d × d maps, their products, norms."""
    for index in range(pairs):
        h1, h2 = index % model.cfg.n_heads, (index // model.cfg.n_heads) % model.cfg.n_heads
        ov = model.W_O[0, h1] @ model.W_V[0, h1]
        qk = model.W_Q[1, h2].T @ model.W_K[1, h2]
        np.linalg.norm(qk @ ov) / (np.linalg.norm(qk) * np.linalg.norm(ov))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, default=5, help="calls per timing (best is kept)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat
    model = float32_model(sizes)
    L, H = sizes["n_layers"], sizes["n_heads"]
    print(f"{model}")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}, load average {load}")
    print("(timings on a shared machine scale with its load: compare the ratios)\n")

    baseline = best_of(lambda: model.W_E @ model.W_U, max(1, repeat // 2))
    print(
        f"baseline: one dense d_model × vocab × d_model product W_E W_U: {baseline * 1e3:.1f} ms\n"
    )

    n_pairs = 3 * (L - 1) * H * H * L // 2  # every writer/reader pair of layers, three kinds
    sample = min(12, n_pairs)
    dense_per_pair = best_of(lambda: dense_pair_scores(model, sample), 1) / sample
    dense_all = dense_per_pair * 3 * H * H * (L * (L - 1) // 2)

    rows: list[tuple[str, Callable[[], Any], float, str]] = [
        (
            "all three composition tensors",
            lambda: all_composition_scores(model),
            dense_all,
            "dense per pair",
        ),
        (
            "K-composition scores alone",
            lambda: composition_scores(model, "K"),
            dense_all / 3,
            "dense per pair",
        ),
        ("copying scores, all heads", lambda: copying_scores(model), baseline, "W_E W_U"),
        ("token QK spectra, all heads", lambda: qk_eigenvalues(model), baseline, "W_E W_U"),
        ("prefix matching, all pairs", lambda: prefix_matching_scores(model), baseline, "W_E W_U"),
        (
            "top-10 copied tokens, one head",
            lambda: top_copied_tokens(model, "1.0"),
            baseline,
            "W_E W_U",
        ),
        ("detect_heads (16 × [BOS] r r, |r|=64)", lambda: detect_heads(model), baseline, "W_E W_U"),
    ]
    print(f"{'analysis':40s} {'time':>10s} {'ratio':>9s}  {'to':14s} {'peak memory':>12s}")
    for name, fn, reference, against in rows:
        seconds = best_of(fn, repeat)
        peak = peak_bytes(fn)
        print(
            f"{name:40s} {seconds * 1e3:8.1f} ms {seconds / reference:8.3f}×  {against:14s}"
            f" {peak / 2**20:9.1f} MiB"
        )
    print(
        f"\n(dense per-pair composition: {dense_per_pair * 1e3:.1f} ms a pair, "
        f"{dense_all:.2f} s for all {3 * H * H * (L * (L - 1) // 2)} pairs and kinds)"
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB on Linux
    weights = sum(w.nbytes for w in model.parameters().values()) / 2**20
    print(f"process peak resident size: {maxrss:.0f} MiB (weights: {weights:.0f} MiB)")


if __name__ == "__main__":
    main()
