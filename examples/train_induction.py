r"""Train a 2-layer attention-only transformer until an induction head forms, and export it.

The model is exactly the library's (``circuits.AttnOnlyTransformer``): column convention, standard
positions, no LayerNorm, no MLP, no biases, ``attn_scale = √d_head``. Its weights start as
``AttnOnlyTransformer.random(cfg, seed=seed)`` scaled by ``init_scale`` and are trained with AdamW
on next-token prediction,

.. math::

    \mathcal{L} = -\frac{1}{B(n-1)} \sum_{b,i<n-1} \log \operatorname{softmax}(\text{logits}_{b,i})[t_{b,i+1}],

over synthetic sequences: a start-of-sequence token ``0`` at position 0, uniform random tokens
``1 … d_vocab−1`` elsewhere, and from a random start on, a random segment (length 4–24) repeated
periodically to the end. A token of a repeat is predictable only by finding the earlier
occurrence of the current token and copying its successor: the job of an induction head. Starts
and lengths vary, so no fixed positional offset does it.

Run with the project's ``train`` extra (``pip install -e '.[train]'``)::

    python examples/train_induction.py              # writes circuits/zoo/attn2l-induction.*

The run is seeded and reproducible: the same arguments, thread count and torch version give the same
weights bit for bit. Training takes three to four minutes on one CPU thread. The export is checked:
logits of ``AttnOnlyTransformer.forward`` on the saved float32 weights must match the torch
model's (the largest difference is logged). Head roles are written into the model's metadata
only as found by ``circuits.detect_heads`` on the exported weights. The log keeps, every
``steps/20`` steps, the moving average (factor 0.98) of the training loss and the loss of a
held-out batch on repeated and on random targets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import torch
except ImportError:  # the script's only extra dependency: say how to get it
    sys.exit("train_induction.py needs PyTorch: pip install -e '.[train]'")

import circuits

NAME = "attn2l-induction"
ZOO_DIR = Path(__file__).resolve().parent.parent / "circuits" / "zoo"
BOS = 0


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines the trained weights."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    init_scale: float = 0.1
    n_heads: int = 4
    d_model: int = 64
    d_head: int = 16
    d_vocab: int = 64
    n_ctx: int = 64
    min_copy: int = 4
    max_copy: int = 24

    def model_config(self) -> circuits.TransformerConfig:
        """The library config of the model this run trains (2 layers, standard positions)."""
        return circuits.TransformerConfig(
            n_layers=2,
            n_heads=self.n_heads,
            d_model=self.d_model,
            d_head=self.d_head,
            d_vocab=self.d_vocab,
            n_ctx=self.n_ctx,
        )


# ---------------------------------------------------------------------------------------- data
def make_batch(
    rng: np.random.Generator, cfg: TrainingConfig
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """A batch ``[batch, n_ctx]`` of sequences, and the mask of targets that a repeat makes predictable.

    Row ``b``: ``BOS``, then random tokens up to a start ``s``, then a random segment of length
    ``m`` repeated until the end (``t_i = t_{i-m}`` for ``i ≥ s + m``), with ``s`` and ``m`` drawn
    per row. ``mask[b, i]`` is true when token ``i+1`` repeats an earlier one, i.e. when the next
    token follows from the earlier occurrence of the current one.
    """
    B, n = cfg.batch_size, cfg.n_ctx
    tokens = rng.integers(1, cfg.d_vocab, size=(B, n))
    tokens[:, 0] = BOS
    mask = np.zeros((B, n - 1), dtype=bool)
    for row in range(B):
        m = int(rng.integers(cfg.min_copy, cfg.max_copy + 1))
        s = int(rng.integers(1, n - 2 * m + 1))
        for i in range(s + m, n):
            tokens[row, i] = tokens[row, i - m]
        mask[row, s + m : n - 1] = True
    return tokens, mask


# ---------------------------------------------------------------------------------------- model
class TorchAttnOnly(torch.nn.Module):
    r"""The library's forward pass in torch, on the library's weight shapes (column convention).

    :math:`x^0_i = W_E[:, t_i] + W_P[:, i]`; per layer
    :math:`x \leftarrow x + \sum_h W_O^h\, \operatorname{softmax}_{j \le i}((W_Q^h x_i)^T W_K^h x_j / \sqrt{k})\, W_V^h x_j`;
    logits :math:`= W_U x^L`.
    """

    def __init__(self, init: circuits.AttnOnlyTransformer, scale: float = 1.0) -> None:
        super().__init__()
        self.cfg = init.cfg
        self.weights = torch.nn.ParameterDict(
            {
                name: torch.nn.Parameter(
                    torch.tensor(scale * init.parameters()[name], dtype=torch.float32)
                )
                for name in _TRAINED
            }
        )

    def forward(
        self, tokens: torch.Tensor, noise: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Logits ``[B, n, V]``; ``noise > 0`` adds N(0, noise²) to every attention score (training)."""
        w, cfg = self.weights, self.cfg
        n = tokens.shape[1]
        x = w["W_E"].T[tokens] + w["W_P"][:, :n].T  # [B, n, d]
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        for layer in range(cfg.n_layers):
            q = torch.einsum("bnd,hkd->bhnk", x, w["W_Q"][layer])
            k = torch.einsum("bnd,hkd->bhnk", x, w["W_K"][layer])
            v = torch.einsum("bnd,hkd->bhnk", x, w["W_V"][layer])
            scores = (q @ k.transpose(-1, -2)) / cfg.attn_scale
            if noise:
                scores = scores + noise * torch.randn(scores.shape, generator=generator)
            pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            x = x + torch.einsum("bhnk,hdk->bnd", pattern @ v, w["W_O"][layer])
        logits: torch.Tensor = x @ w["W_U"].T
        return logits

    def export(self, metadata: dict[str, Any] | None = None) -> circuits.AttnOnlyTransformer:
        """The trained weights as a float32 ``AttnOnlyTransformer`` (bos_token 0)."""
        arrays = {n: p.detach().numpy().astype(np.float32) for n, p in self.weights.items()}
        return circuits.AttnOnlyTransformer(self.cfg, **arrays, bos_token=BOS, metadata=metadata)


_TRAINED = ("W_E", "W_P", "W_Q", "W_K", "W_V", "W_O", "W_U")


def token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``-log p(t_{i+1} | t_{≤i})`` for every position but the last, ``[batch, n_ctx-1]``."""
    logp = logits[:, :-1].log_softmax(dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


# ---------------------------------------------------------------------------------------- training
def learning_rate(step: int, cfg: TrainingConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr/10`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


_BARS: dict[float, Any] = {}


def progress_bar(step: int, total: int, start: float, text: str) -> None:
    """Advance the run's progress bar (tqdm; one per run, named by its start time) to ``step + 1``
    of ``total`` steps, showing ``text``; drawn on stderr only when it is a terminal."""
    if not sys.stderr.isatty():
        return
    from tqdm import tqdm

    bar = _BARS.setdefault(start, None) or tqdm(total=total, desc="training", unit="step")
    _BARS[start] = bar
    bar.update(step + 1 - bar.n)
    bar.set_postfix_str(text)
    if step + 1 == total:
        bar.close()
        del _BARS[start]


def evaluate(model: TorchAttnOnly, cfg: TrainingConfig, seed: int) -> dict[str, float]:
    """Mean loss on predictable (copied) and on unpredictable targets of a held-out batch."""
    tokens, mask = make_batch(np.random.default_rng(seed), cfg)
    with torch.no_grad():
        losses = token_losses(model(torch.from_numpy(tokens)), torch.from_numpy(tokens)).numpy()
    return {
        "loss_copied": float(losses[mask].mean()),
        "loss_random": float(losses[~mask].mean()),
    }


def train(cfg: TrainingConfig, *, progress: bool = True) -> tuple[TorchAttnOnly, dict[str, Any]]:
    """Train from ``AttnOnlyTransformer.random(…, seed)`` on batches drawn with ``seed``."""
    init = circuits.AttnOnlyTransformer.random(cfg.model_config(), seed=cfg.seed)
    model = TorchAttnOnly(init, cfg.init_scale)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    eval_seed = cfg.seed + 10_000
    log: list[dict[str, float]] = []
    every = max(1, cfg.steps // 20)
    start, smoothed = time.perf_counter(), float("nan")
    for step in range(cfg.steps):
        tokens = torch.from_numpy(make_batch(rng, cfg)[0])
        loss = token_losses(model(tokens), tokens).mean()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, cfg)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        smoothed = loss.item() if step == 0 else 0.98 * smoothed + 0.02 * loss.item()
        if (step + 1) % every == 0 or step == 0:
            log.append(
                {"step": step + 1, "train_loss": smoothed, **evaluate(model, cfg, eval_seed)}
            )
        if progress and ((step + 1) % 10 == 0 or step + 1 == cfg.steps):
            progress_bar(step, cfg.steps, start, f"loss {smoothed:.3f}")
    summary = {
        "seconds": round(time.perf_counter() - start, 1),
        "final": log[-1],
        "chance_loss": math.log(cfg.d_vocab - 1),
        "curve": log,
    }
    return model, summary


# ---------------------------------------------------------------------------------------- export
def export_error(
    model: TorchAttnOnly, exported: circuits.AttnOnlyTransformer, cfg: TrainingConfig, seed: int
) -> float:
    """Max |logits| difference between torch and ``AttnOnlyTransformer.forward`` on a batch."""
    tokens, _ = make_batch(np.random.default_rng(seed), cfg)
    with torch.no_grad():
        reference = model(torch.from_numpy(tokens)).numpy()
    return float(np.abs(exported.forward(tokens) - reference).max())


def head_roles(model: circuits.AttnOnlyTransformer, threshold: float) -> dict[str, list[str]]:
    """Heads whose ``circuits.detect_heads`` score exceeds ``threshold``, by role, best first."""
    found = circuits.detect_heads(model, seed=0)
    return {
        role: [name for name, score in found[role] if score > threshold]
        for role in ("previous_token", "induction")
    }


def export(
    model: TorchAttnOnly, cfg: TrainingConfig, summary: dict[str, Any], out: Path, threshold: float
) -> dict[str, Any]:
    """Write ``<out>/attn2l-induction.safetensors`` (with head roles) and its ``.json``; return roles."""
    roles = head_roles(model.export(), threshold)
    rule = f"circuits.detect_heads(model, seed=0) score > {threshold}"
    exported = model.export(metadata={"name": NAME, "head_roles": roles, "head_roles_rule": rule})
    summary["export_max_abs_logit_error"] = export_error(model, exported, cfg, cfg.seed + 20_000)
    out.mkdir(parents=True, exist_ok=True)
    circuits.save(exported, out / f"{NAME}.safetensors")
    training = {**asdict(cfg), "optimizer": "AdamW", "torch": torch.__version__}
    info = {
        "name": NAME,
        "description": "2-layer attention-only transformer trained on sequences with repeated "
        "random segments; it forms a previous-token head and induction heads.",
        "bos_token": BOS,
        "training": {**training, "threads": torch.get_num_threads()},
        "log": summary,
    }
    (out / f"{NAME}.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return roles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(TrainingConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="directory of the export")
    parser.add_argument(
        "--role-threshold", type=float, default=0.3, help="detection score naming a head's role"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    out, threshold, quiet = args.pop("out"), args.pop("role_threshold"), args.pop("quiet")
    cfg = TrainingConfig(**args)
    model, summary = train(cfg, progress=not quiet)
    roles = export(model, cfg, summary, out, threshold)
    report = {"final": summary["final"], "head_roles": roles}
    print(json.dumps({**report, "export_error": summary["export_max_abs_logit_error"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
