"""Benchmark: the path expansion at the scale of a GPT-2-small-sized attention-only model.

    python benchmarks/bench_paths.py            # 2 layers × 12 heads, d_model 768, 8 × 128 tokens
    python benchmarks/bench_paths.py --quick    # small sizes, seconds

The headline figure: the target-logit contributions of all 169 token paths (``(1 + 12)²``) of a
2-layer, 12-head model on 8 × 128 tokens, as a ratio to one forward pass measured in the same run
(goal ≤ 10×). It is given for two vocabulary sizes, since the forward pass pays for the
unembedding (``batch · pos · d_model · d_vocab``) and the path contributions never do: GPT-2's
50 257 tokens, and 1 000 tokens where the unembedding is cheap and the ratio is hardest to meet.
Further rows: every term of the expansion (token, positional), the same contributions computed
term by term without sharing prefixes, the full logits rebuilt from the terms, one head's QK
expansion, and listing the 13⁴ paths of a 4-layer, 12-head model. Timings are the best of a few
calls, each call alternating with a forward pass so that a shared machine's changing load
weighs on both alike; every result is also checked against the forward pass.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from circuits import AttnOnlyTransformer, path_expansion, qk_expansion

FULL = {"n_layers": 2, "n_heads": 12, "d_model": 768, "d_head": 64, "n_ctx": 128}
QUICK = {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_head": 16, "n_ctx": 32}


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The smallest wall time of ``repeat`` calls (seconds), and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


class Timer:
    """Times a function against the baseline, calling them alternately so that both see the
    same machine load; each is the best of ``repeat`` calls."""

    def __init__(self, baseline: Callable[[], Any], repeat: int) -> None:
        self.baseline, self.repeat = baseline, repeat

    def row(self, label: str, fn: Callable[[], str | None], repeat: int | None = None) -> float:
        """Print ``label``, the time of ``fn``, its ratio to the baseline and the note ``fn``
        returns (a check of its result); return the ratio."""
        base, own, note = [], [], None
        for _ in range(repeat or self.repeat):
            base.append(best_of(self.baseline, 1)[0])
            seconds, note = best_of(fn, 1)
            own.append(seconds)
        ratio = min(own) / min(base)
        print(f"  {label:<58} {min(own) * 1e3:9.1f} ms  {ratio:7.2f}×  {note or ''}")
        return ratio


def bench_vocab(sizes: dict[str, int], vocab: int, batch: int, repeat: int, dtype: Any) -> float:
    """All benchmark rows for one vocabulary size; returns the headline ratio."""
    cfg = {**sizes, "d_vocab": vocab}
    model = AttnOnlyTransformer.random(cfg, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, vocab, (batch, sizes["n_ctx"] + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # next-token targets
    forward, logits = best_of(lambda: model.forward(inputs), repeat)
    _, cache = model.run_with_cache(inputs)
    at_targets = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    expansion = path_expansion(model)
    tokens_only = expansion.filter(source="embed")
    qk = qk_expansion(model, sizes["n_layers"] - 1, 0)
    k_terms = qk.filter(kind="K")
    timer = Timer(lambda: model.forward(inputs), repeat)

    def check(values: Any, expected: Any, what: str = "error") -> str:
        return f"{what} {np.abs(values - expected).max():.1e}"

    print(f"\nd_vocab {vocab}: one forward pass on {batch} × {sizes['n_ctx']} tokens "
          f"{forward * 1e3:.1f} ms (the baseline, 1×)")  # fmt: skip
    timer.row(
        "forward pass keeping the cache (patterns)", lambda: model.run_with_cache(inputs) and None
    )
    headline = timer.row(
        f"{len(tokens_only)} token-path target contributions (shared prefixes)",
        lambda: tokens_only.contributions(cache, targets) and "← goal ≤ 10×",
    )
    timer.row(
        f"all {len(expansion)} terms' target contributions",
        lambda: check(expansion.contributions(cache, targets).total(), at_targets, "Σ error"),
    )
    timer.row(
        f"{len(tokens_only)} token paths one at a time (no sharing)",
        lambda: [t.evaluate(cache, targets) for t in tokens_only] and None,
        1,
    )
    timer.row(
        "full logits rebuilt from every term", lambda: check(expansion.evaluate(cache), logits), 1
    )
    timer.row(
        f"QK head {qk.name}: {len(k_terms)} K-composition score terms",
        lambda: k_terms.contributions(cache) and None,
    )
    timer.row(
        f"QK head {qk.name}: sum of all {len(qk)} score terms",
        lambda: check(qk.evaluate(cache), cache.scores(qk.layer, qk.head)),
    )
    return headline


def bench_listing(sizes: dict[str, int]) -> None:
    """Listing the terms of a 4-layer model with as many heads (13⁴ token paths for 12 heads)."""
    cfg = {**sizes, "n_layers": 4, "d_model": 16, "d_head": 4, "d_vocab": 50, "n_ctx": 8}
    expansion = path_expansion(AttnOnlyTransformer.random(cfg))
    counted, count = best_of(lambda: len(expansion), 3)
    listed, terms = best_of(lambda: sum(1 for term in expansion if term.order >= 0), 1)
    H = sizes["n_heads"]
    print(f"\n4 layers × {H} heads: len() = {count} = 2·{1 + H}⁴ in {counted * 1e3:.2f} ms; "
          f"{terms} terms iterated in {listed:.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--float32", action="store_true", help="float32 weights (default float64)")
    parser.add_argument("--repeat", type=int, default=3, help="calls per timing (best is kept)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    vocabs = (2000, 200) if args.quick else (50257, 1000)
    dtype = np.float32 if args.float32 else np.float64
    print(
        f"path expansion benchmark: {sizes}, {np.dtype(dtype).name}; timings best of {args.repeat}"
    )
    ratios = {vocab: bench_vocab(sizes, vocab, 8, args.repeat, dtype) for vocab in vocabs}
    bench_listing(sizes)
    summary = ", ".join(f"{ratio:.2f}× (d_vocab {vocab})" for vocab, ratio in ratios.items())
    print(f"\nheadline: all token-path target contributions = {summary} of one forward pass")


if __name__ == "__main__":
    main()
