"""The ``circuits`` command (``python -m circuits``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from .errors import CircuitsError
from .model import AttnOnlyTransformer

__all__ = ["main"]


def demo(args: argparse.Namespace) -> None:
    """Build a small random model and report its heads' low-rank circuits and attention."""
    cfg = {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_head": 16, "d_vocab": 128, "n_ctx": 64}
    model = AttnOnlyTransformer.random(cfg, seed=args.seed)
    print(model)
    rng = np.random.default_rng(args.seed)
    half = rng.integers(0, cfg["d_vocab"], size=cfg["n_ctx"] // 2)
    tokens = np.concatenate([half, half])
    _, cache = model.run_with_cache(tokens)
    print("\nhead   rank(W_OV)  ‖W_OV‖_F  ‖W_QK‖_F  tr(W_OV)  mean attn to self  to previous")
    for layer, head in model.cfg.heads():
        ov, qk = model.W_OV(layer, head), model.W_QK(layer, head)
        pattern = cache.pattern(layer, head)[0]
        self_attn = float(np.mean(np.diag(pattern)))
        prev_attn = float(np.mean(np.diag(pattern, k=-1)))
        print(
            f"{layer}.{head}    {ov.rank:>5}     {ov.norm():8.3f}  {qk.norm():8.3f}  {ov.trace():8.3f}"
            f"  {self_attn:17.3f}  {prev_attn:11.3f}"
        )
    ov_circuit = model.W_U @ model.W_OV(1, 0) @ model.W_E
    print(
        f"\nOV circuit W_U W_OV^1.0 W_E: {ov_circuit}, leading eigenvalues "
        + ", ".join(f"{z:.3f}" for z in ov_circuit.eigenvalues()[:3])
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``circuits`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="circuits", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo_parser = verbs.add_parser("demo", help="build a small model and report on its circuits")
    demo_parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo_parser.set_defaults(run=demo)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except CircuitsError as error:
        print(f"circuits: error: {error}", file=sys.stderr)
        return 1
    return 0
