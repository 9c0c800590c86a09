"""Benchmark: factored OV-circuit spectra and norms against dense numpy; forward-pass throughput.

    python benchmarks/bench_foundation.py           # d_model 768, d_head 64, vocabulary 50257
    python benchmarks/bench_foundation.py --quick   # small sizes, seconds

The OV circuit ``W_U W_OV W_E`` is ``V × V``. At ``V = 50257`` its dense form takes 20 GB in
float64 and a dense eigendecomposition O(V³) flops, so the dense baseline is timed at smaller
vocabularies and extrapolated with its exponent (V² for forming the matrix and its norm, V³ for the
eigenvalues); the factored version is timed at the full size. Every ratio compares timings taken in
the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from circuits import AttnOnlyTransformer, FactoredMatrix


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The smallest wall time of ``repeat`` calls (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ov_circuit(rng: np.random.Generator, d: int, k: int, V: int) -> tuple[np.ndarray, ...]:
    W_E = rng.standard_normal((d, V))
    W_U = rng.standard_normal((V, d)) / np.sqrt(d)
    W_O = rng.standard_normal((d, k)) / np.sqrt(k)
    W_V = rng.standard_normal((k, d)) / np.sqrt(d)
    return W_U, W_O, W_V, W_E


def factored_ov(
    W_U: np.ndarray, W_O: np.ndarray, W_V: np.ndarray, W_E: np.ndarray
) -> FactoredMatrix:
    """``W_U W_OV W_E`` as ``(W_U W_O)(W_V W_E)``: ``V × k`` times ``k × V``."""
    return W_U @ FactoredMatrix(W_O, W_V) @ W_E


def dense_row(d: int, k: int, size: int, repeat: int) -> tuple[float, float, float, float]:
    """Dense and factored timings (eig, norm) of one OV circuit with vocabulary ``size``."""
    W_U, W_O, W_V, W_E = ov_circuit(np.random.default_rng(size), d, k, size)
    fm = factored_ov(W_U, W_O, W_V, W_E)
    dense = fm.AB
    top = np.sort(np.abs(np.linalg.eigvals(dense)))[::-1][:k]
    assert np.allclose(np.sort(np.abs(fm.eigenvalues())), np.sort(top), rtol=1e-6, atol=1e-8)
    assert np.isclose(fm.norm(), np.linalg.norm(dense), rtol=1e-10)
    return (
        best_of(lambda: np.linalg.eigvals(W_U @ (W_O @ (W_V @ W_E))), 1),
        best_of(lambda: np.linalg.norm(W_U @ (W_O @ (W_V @ W_E))), repeat),
        best_of(lambda: factored_ov(W_U, W_O, W_V, W_E).eigenvalues(), repeat),
        best_of(lambda: factored_ov(W_U, W_O, W_V, W_E).norm(), repeat),
    )


def bench_ov(d: int, k: int, V: int, dense_sizes: list[int], repeat: int) -> None:
    print(f"OV circuit W_U W_OV W_E, d_model={d}, d_head={k}, vocabulary={V}")
    weights = ov_circuit(np.random.default_rng(0), d, k, V)
    t_fact_eig = best_of(lambda: factored_ov(*weights).eigenvalues(), repeat)
    t_fact_norm = best_of(lambda: factored_ov(*weights).norm(), repeat)
    print(
        f"  factored at V={V}: eigenvalues {t_fact_eig * 1e3:.1f} ms, norm {t_fact_norm * 1e3:.1f} ms"
    )
    print(f"  the dense V×V matrix would take {V * V * 8 / 2**30:.1f} GiB (float64)")
    print("  vocab   dense eig   factored eig   ratio   dense norm   factored norm   ratio")
    for size in dense_sizes:
        d_eig, d_norm, f_eig, f_norm = dense_row(d, k, size, repeat)
        print(
            f"  {size:5d}  {d_eig:9.3f} s  {f_eig * 1e3:10.2f} ms  {d_eig / f_eig:6.0f}×"
            f"  {d_norm:9.3f} s  {f_norm * 1e3:11.2f} ms  {d_norm / f_norm:6.0f}×"
        )
    eig_at_v, norm_at_v = d_eig * (V / size) ** 3, d_norm * (V / size) ** 2
    print(
        f"  dense extrapolated to V={V} (eig ∝ V³, norm ∝ V²): eig ≈ {eig_at_v / 3600:.1f} h = "
        f"{eig_at_v / t_fact_eig:.1e}× factored; norm ≈ {norm_at_v:.0f} s = "
        f"{norm_at_v / t_fact_norm:.1e}× factored"
    )


def bench_forward(cfg: dict[str, int], batch: int, pos: int, repeat: int, dtype: Any) -> None:
    model = AttnOnlyTransformer.random(cfg, dtype=dtype)
    tokens = np.random.default_rng(1).integers(0, cfg["d_vocab"], (batch, pos))
    t_forward = best_of(lambda: model.forward(tokens), repeat)
    resid = np.zeros((batch, pos, cfg["d_model"]), dtype)
    t_unembed = best_of(lambda: resid @ model.W_U.T, repeat)
    print(
        f"forward pass, {cfg['n_layers']} layers × {cfg['n_heads']} heads, d_model={cfg['d_model']},"
        f" vocabulary={cfg['d_vocab']}, {np.dtype(dtype).name}, batch {batch} × {pos} tokens:\n"
        f"  {t_forward * 1e3:8.1f} ms = {batch * pos / t_forward:9.0f} tokens/s;"
        f" {t_forward / t_unembed:.2f}× the unembedding matmul alone ({t_unembed * 1e3:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        bench_ov(d=64, k=8, V=2000, dense_sizes=[200, 400], repeat=2)
        cfg = {
            "n_layers": 2,
            "n_heads": 4,
            "d_model": 64,
            "d_head": 16,
            "d_vocab": 500,
            "n_ctx": 64,
        }
        bench_forward(cfg, batch=2, pos=64, repeat=2, dtype=np.float64)
        return
    bench_ov(d=768, k=64, V=50257, dense_sizes=[1000, 2000, 4000], repeat=3)
    cfg = {
        "n_layers": 2,
        "n_heads": 12,
        "d_model": 768,
        "d_head": 64,
        "d_vocab": 50257,
        "n_ctx": 1024,
    }
    for dtype in (np.float32, np.float64):
        bench_forward(cfg, batch=8, pos=256, repeat=3, dtype=dtype)


if __name__ == "__main__":
    main()
