"""Benchmark: the forward pass against its floor, the one GEMM it cannot avoid, and TransformerLens.

    python benchmarks/bench_forward.py            # GPT-2-small shapes, float32, 7 rounds
    python benchmarks/bench_forward.py --quick    # small shapes, a few seconds

Shapes (default): 2 layers × 12 heads, d_model 768, d_head 64, vocabulary 50257, 4 × 256 tokens,
float32, with and without LayerNorm. The floor, measured in the same run: the unembedding GEMM
``x @ W_Uᵀ`` alone (one GEMM ``[1024, 768] × [768, 50257]``), which every forward pass must do and which
dominates it. Rows: ``forward`` (logits only), ``run_with_cache``, and TransformerLens's
``HookedTransformer`` on the same weights when torch and TransformerLens are installed. The methods
take turns in every round so that a shared machine's changing load weighs on all alike; each time
is the least over the rounds (the median moved by 30 % between runs here, the floor included).
The goal: ``forward`` within 1.2× the floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import circuits

GOAL = 1.2


def shapes(quick: bool) -> dict[str, int]:
    """The model and batch sizes measured."""
    if quick:
        return {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_head": 16, "d_vocab": 2000,
                "n_ctx": 64, "batch": 4}  # fmt: skip
    return {"n_layers": 2, "n_heads": 12, "d_model": 768, "d_head": 64, "d_vocab": 50257,
            "n_ctx": 256, "batch": 4}  # fmt: skip


def model_of(size: dict[str, int], normalization: str | None) -> circuits.AttnOnlyTransformer:
    """A random float32 model of the given sizes."""
    cfg = circuits.TransformerConfig(
        **{k: v for k, v in size.items() if k != "batch"}, normalization_type=normalization
    )
    return circuits.AttnOnlyTransformer.random(cfg, seed=0, biases=True, dtype=np.float32)


def peer(model: circuits.AttnOnlyTransformer) -> Callable[[Any], Any] | None:
    """TransformerLens's forward pass on the model's weights, or ``None`` if it is not installed."""
    try:
        import torch
        import transformer_lens
    except ImportError:
        return None
    c = model.cfg
    cfg = transformer_lens.HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, d_head=c.d_head, n_heads=c.n_heads,
        d_vocab=c.d_vocab, n_ctx=c.n_ctx, attn_only=True, normalization_type=c.normalization_type,
        dtype=torch.float32,
    )  # fmt: skip
    reference = transformer_lens.HookedTransformer(cfg)
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.to_transformer_lens().items()
    }
    reference.load_state_dict(state, strict=False)
    reference.eval()

    def run(tokens: Any) -> Any:
        with torch.inference_mode():
            return reference(torch.from_numpy(tokens))

    return run


def measure(methods: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """The least seconds of each method over ``rounds`` rounds in which they take turns: on a
    shared machine the least time is the one least disturbed, for the floor and the rest alike."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for run in methods.values():  # warm-up: caches, allocator, lazy imports
        run()
    for _ in range(rounds):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, three rounds")
    args = parser.parse_args(argv)
    size = shapes(args.quick)
    rounds = 3 if args.quick else 11
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, size["d_vocab"], (size["batch"], size["n_ctx"]))
    results = {}
    print(f"shapes {size}, float32, least of {rounds} rounds")
    for normalization in (None, "LN"):
        model = model_of(size, normalization)
        stream = rng.standard_normal((size["batch"], size["n_ctx"], size["d_model"])).astype(
            np.float32
        )
        W_U = model.W_U
        methods: dict[str, Callable[[], Any]] = {
            "floor: x @ W_U.T": lambda s=stream, w=W_U: s @ w.T,
            "forward": lambda m=model: m.forward(tokens),
            "run_with_cache": lambda m=model: m.run_with_cache(tokens),
        }
        reference = peer(model)
        if reference is not None:
            methods["TransformerLens forward"] = lambda r=reference: r(tokens)
        times = measure(methods, rounds)
        floor = times["floor: x @ W_U.T"]
        print(f"\nnormalization_type={normalization!r}")
        for name, seconds in times.items():
            print(f"  {name:28s} {seconds * 1e3:9.1f} ms   {seconds / floor:5.2f}× the floor")
        verdict = "reached" if times["forward"] / floor <= GOAL else "NOT reached"
        print(f"  goal forward ≤ {GOAL}× the floor: {verdict}")
        results[str(normalization)] = times
    return results


if __name__ == "__main__":
    main()
