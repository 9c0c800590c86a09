r"""Train a clean induction circuit — one previous-token head, one induction head — with checkpoints.

Two zoo models come from this script (``--preset``):

* ``attn2l-clean-induction`` — the flagship: 2 layers × 1 head, vocabulary 32 (token 0 is BOS),
  context 16, ``d_model`` 64, ``d_head`` 8, standard positions, no biases, no weight decay;
* ``attn2l-tiny-induction`` — small enough to enumerate: vocabulary 8, context 8, ``d_model`` 32,
  ``d_head`` 8; attention-score noise, fillers from sub-alphabets and a composition penalty in
  training make its circuit one ``circuits.verify.certify`` proves (see :func:`loss_of`).

The model is the library's (``circuits.AttnOnlyTransformer``, the torch module of
``train_induction.py``), started from ``AttnOnlyTransformer.random(cfg, seed)`` scaled by
``init_scale`` and trained with AdamW (warm-up, cosine decay to a tenth) on a cross-entropy whose
targets are those of the **induction family**. A batch holds ``BOS`` + uniform random tokens and,
for a share ``repeat_share`` of its rows, ``BOS`` + ``r`` + ``r`` + random tokens with ``r`` a run of
distinct tokens of random length. At position ``i`` the target is

* ``t_{p+1}`` when ``t_i`` occurred exactly once before, at ``p ≥ 1`` — the prefix ``t_0 … t_i`` is
  then a member of the family and ``t_{p+1}`` its right answer (this holds at the last position
  too, which has no next token);
* the next token ``t_{i+1}`` when ``t_i`` occurs for the first time (a uniformly random token
  there, so the loss on unrepeated tokens stays at chance);
* none (ignored) when ``t_i`` occurred twice or more, where the family does not say.

Every prefix of a uniformly random sequence whose last token occurred exactly once is a uniform
member of the family of its length, so the loss covers the family at every length.

Run with the ``train`` extra (``pip install -e '.[train]'``)::

    python examples/train_clean_induction.py --preset flagship   # circuits/zoo/attn2l-clean-induction.*
    python examples/train_clean_induction.py --preset tiny       # circuits/zoo/attn2l-tiny-induction.*

The run is seeded and single-threaded by default: the same preset and torch version give the same
weights bit for bit (``--check-rerun K`` retrains the first ``K`` steps and compares the bytes of
the weights with the first run's at that step). Checkpoints are exported at the steps of
``checkpoints`` (``zoo.steps(name)``, ``zoo.load(name, step=…)``), the last one being the model
itself. The card (``<name>.json``) holds the config, the training log and the figures of
:func:`measure`, computed with the numpy model on sequences drawn by samplers of their own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import torch
except ImportError:  # the script's only extra dependency: say how to get it
    sys.exit("train_clean_induction.py needs PyTorch: pip install -e '.[train]'")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_induction import TorchAttnOnly, learning_rate, progress_bar

import circuits

ZOO_DIR = Path(__file__).resolve().parent.parent / "circuits" / "zoo"
BOS = 0
IGNORE = -100


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines the trained weights (and where checkpoints are taken)."""

    name: str = "attn2l-clean-induction"
    seed: int = 0
    steps: int = 5000
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    init_scale: float = 0.3
    n_heads: int = 1
    d_model: int = 64
    d_head: int = 32
    d_vocab: int = 32
    n_ctx: int = 32
    repeat_share: float = 0.5
    narrow_share: float = 0.0
    logit_scale: float = 1.0
    score_noise: float = 1.0
    composition_penalty: float = 0.0
    checkpoints: tuple[int, ...] = ()

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

    def checkpoint_steps(self) -> tuple[int, ...]:
        """The steps exported as checkpoints: ``checkpoints`` and the last step, sorted."""
        return tuple(sorted({*self.checkpoints, self.steps}))


PRESETS: dict[str, TrainingConfig] = {
    "flagship": TrainingConfig(
        seed=2,
        n_ctx=16,
        d_head=8,
        weight_decay=0.0,
        score_noise=0.0,
        composition_penalty=0.01,
        checkpoints=(*range(0, 501, 50), 600, 800, 1200, 2000, 3000),
    ),
    "tiny": TrainingConfig(
        name="attn2l-tiny-induction",
        steps=4000,
        d_model=32,
        d_head=8,
        d_vocab=8,
        n_ctx=8,
        score_noise=2.0,
        narrow_share=0.5,
        composition_penalty=0.01,
        checkpoints=(*range(0, 1001, 100), 1200, 1500, 2000, 3000),
    ),
}


#: The context on which the card's certificate is computed (cost grows as n⁴V²).
CERTIFY_N_CTX = {"flagship": 6, "tiny": 8}


# ---------------------------------------------------------------------------------------- data
def family_targets(tokens: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per position, the target of the module doc: ``t_{p+1}``, the next token, or ``IGNORE``."""
    B, n = tokens.shape
    targets = np.full((B, n), IGNORE, dtype=np.int64)
    for row in range(B):
        seen: dict[int, list[int]] = {}
        for i in range(1, n):
            earlier = seen.setdefault(int(tokens[row, i]), [])
            if len(earlier) == 1:
                targets[row, i] = tokens[row, earlier[0] + 1]
            elif not earlier and i + 1 < n:
                targets[row, i] = tokens[row, i + 1]
            earlier.append(i)
    return targets


def make_batch(
    rng: np.random.Generator, cfg: TrainingConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Tokens ``[batch, n_ctx]`` (BOS, random tokens, some rows with a repeated run) and targets."""
    B, n, V = cfg.batch_size, cfg.n_ctx, cfg.d_vocab
    tokens = rng.integers(1, V, size=(B, n))
    for row in range(B):
        if rng.random() < cfg.narrow_share:
            alphabet = rng.choice(np.arange(1, V), size=int(rng.integers(2, V)), replace=False)
            tokens[row] = rng.choice(alphabet, size=n)
    tokens[:, 0] = BOS
    longest = min((n - 1) // 2, V - 1)
    for row in range(B):
        if rng.random() < cfg.repeat_share:
            s = int(rng.integers(1, longest + 1))
            run = rng.choice(np.arange(1, V), size=s, replace=False)
            tokens[row, 1 : 1 + s] = run
            tokens[row, 1 + s : 1 + 2 * s] = run
    return tokens, family_targets(tokens)


# ---------------------------------------------------------------------------------------- training
def loss_of(
    model: TorchAttnOnly,
    batch: tuple[NDArray[np.int64], NDArray[np.int64]],
    cfg: TrainingConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``logit_scale × logits`` over the positions that have a target.

    With ``cfg`` (training): attention scores are perturbed by N(0, score_noise²), and
    ``composition_penalty × (‖W_Q¹ W_OV⁰‖² + ‖W_U W_OV⁰‖²)`` (Frobenius) is added: what layer 0
    writes should reach the layer-1 keys, not the layer-1 queries nor the logits.
    """
    tokens, targets = map(torch.from_numpy, batch)
    scale, noise = (1.0, 0.0) if cfg is None else (cfg.logit_scale, cfg.score_noise)
    logits = scale * model(tokens, noise, generator)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )
    if cfg is not None and cfg.composition_penalty:
        w = model.weights
        written = torch.einsum("hdk,hke->de", w["W_O"][0], w["W_V"][0])  # Σ_h W_OV^{0.h}
        queried = torch.einsum("hkd,de->hke", w["W_Q"][1], written)
        penalty = queried.square().sum() + (w["W_U"] @ written).square().sum()
        loss = loss + cfg.composition_penalty * penalty
    return loss


def weights_digest(model: TorchAttnOnly) -> str:
    """SHA-256 of the weights' bytes, in a fixed order: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for name in sorted(model.weights):
        digest.update(name.encode())
        digest.update(model.weights[name].detach().numpy().tobytes())
    return digest.hexdigest()


def train(
    cfg: TrainingConfig, *, progress: bool = True, stop: int | None = None
) -> tuple[TorchAttnOnly, dict[str, Any], dict[int, circuits.AttnOnlyTransformer]]:
    """Train (up to step ``stop``, default ``cfg.steps``); return the model, log and checkpoints."""
    torch.use_deterministic_algorithms(True)
    init = circuits.AttnOnlyTransformer.random(cfg.model_config(), seed=cfg.seed)
    model = TorchAttnOnly(init, cfg.init_scale)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    held_out = make_batch(np.random.default_rng(cfg.seed + 10_000), replace(cfg, batch_size=512))
    wanted = set(cfg.checkpoint_steps())
    last = cfg.steps if stop is None else stop
    checkpoints: dict[int, circuits.AttnOnlyTransformer] = {}
    log: list[dict[str, float]] = []
    every = max(1, cfg.steps // 40)
    start, smoothed = time.perf_counter(), float("nan")
    for step in range(last + 1):
        if step in wanted:
            checkpoints[step] = model.export(metadata={"name": cfg.name, "step": step})
        if step % every == 0 or step in wanted:
            with torch.no_grad():
                held = loss_of(model, held_out).item()
            log.append({"step": step, "train_loss": smoothed, "held_out_loss": held})
        if step == last:
            break
        loss = loss_of(model, make_batch(rng, cfg), cfg, generator)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, cfg)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        smoothed = loss.item() if step == 0 else 0.98 * smoothed + 0.02 * loss.item()
        if progress and ((step + 1) % 20 == 0 or step + 1 == last):
            progress_bar(step, last, start, f"loss {smoothed:.4f}")
    summary = {
        "seconds": round(time.perf_counter() - start, 1),
        "final": log[-1],
        "curve": log,
        "weights_sha256": weights_digest(model),
    }
    return model, summary, checkpoints


# ---------------------------------------------------------------------------------------- measure
def family_sample(
    rng: np.random.Generator, V: int, L: int, count: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``count`` uniform members of the induction family of length ``L`` and their right answers.

    Drawn directly (not as prefixes of random sequences): ``p`` uniform in ``1 … L−2``, ``a``
    uniform, every other position a uniform ordinary token other than ``a``.
    """
    tokens = np.empty((count, L), dtype=np.intp)
    a = rng.integers(1, V, size=count)
    offsets = rng.integers(1, V - 1, size=(count, L))  # an ordinary token other than a
    tokens[:] = (a[:, None] - 1 + offsets) % (V - 1) + 1
    tokens[:, 0] = BOS
    p = rng.integers(1, L - 1, size=count)
    rows = np.arange(count)
    tokens[rows, p] = a
    tokens[:, L - 1] = a
    return tokens, tokens[rows, p + 1]


def measure(
    model: circuits.AttnOnlyTransformer, seed: int = 1, count: int = 2000, certify_n_ctx: int = 0
) -> dict[str, Any]:
    """The card's figures, from the numpy model in float64 (module doc).

    Family accuracy per length on :func:`family_sample`; the second-copy and first-copy loss on
    ``[BOS] r r`` for every run length ``2 … (n_ctx−1)/2``; the previous-token head's attention on
    ``i−1`` per position on random sequences; where the family has at most 2·10⁶ candidate
    sequences, the exact accuracy by ``circuits.verify.brute_force``; with ``certify_n_ctx``, the
    bounds ``circuits.verify.certify`` proves on sequences of at most that many tokens.
    """
    from circuits.analysis import repeated_random_tokens
    from circuits.verify import brute_force, certify

    wide = model.replace(**{k: v.astype(np.float64) for k, v in model.parameters().items()})
    V, n = wide.cfg.d_vocab, wide.cfg.n_ctx
    rng = np.random.default_rng(seed)
    by_length: dict[str, float] = {}
    for L in range(3, n + 1):
        tokens, right = family_sample(rng, V, L, count)
        logits = wide.forward(tokens)[:, -1]
        by_length[str(L)] = float(np.mean(logits.argmax(-1) == right))
    second_copy: dict[str, float] = {}
    first_copy: dict[str, float] = {}
    for s in range(2, (n - 1) // 2 + 1):
        tokens = repeated_random_tokens(wide, seq_len=s, n_samples=count // 4, seed=seed + s)
        logp = _log_softmax(wide.forward(tokens))
        nll = -np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], -1)[..., 0]
        first_copy[str(s)] = float(nll[:, 1:s].mean())
        second_copy[str(s)] = float(nll[:, s + 1 : 2 * s].mean())
    random_tokens = rng.integers(1, V, size=(count // 4, n))
    random_tokens[:, 0] = BOS
    _, cache = wide.run_with_cache(random_tokens)
    prev = cache.pattern(0, 0)  # [batch, query, key]
    queries = np.arange(1, n)
    on_previous = prev[:, queries, queries - 1]
    argmax_right = prev[:, queries].argmax(-1) == queries - 1
    figures: dict[str, Any] = {}
    if sum((V - 1) ** (L - 1) for L in range(3, n + 1)) <= 2_000_000:
        exact = brute_force(wide, progress=False)
        figures["exhaustive"] = {
            "family_size": int(exact.probabilities.size),
            "accuracy": 1 - exact.n_failures / exact.probabilities.size,
            "failures": int(exact.n_failures),
            "least_probability": float(exact.min_probability),
        }
    if certify_n_ctx:
        started = time.perf_counter()
        proof = certify(model, n_ctx=certify_n_ctx)
        figures["certificate"] = {
            "n_ctx": certify_n_ctx,
            "bound": proof.bound,
            "accuracy_bound": proof.accuracy_bound,
            "proved": proof.proved,
            "family_size": proof.family_size,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return {
        **figures,
        "family_accuracy_by_length": by_length,
        "family_accuracy_min": min(by_length.values()),
        "second_copy_loss_by_run": second_copy,
        "second_copy_loss_max": max(second_copy.values()),
        "first_copy_loss_by_run": first_copy,
        "previous_token_attention_by_position": {
            str(i): float(on_previous[:, k].mean()) for k, i in enumerate(queries)
        },
        "previous_token_attention_min": float(on_previous.mean(0).min()),
        "previous_token_argmax_right": float(argmax_right.mean()),
        "samples": {"family_per_length": count, "repeated_per_run": count // 4, "seed": seed},
    }


def _log_softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# ---------------------------------------------------------------------------------------- export
def export(
    model: TorchAttnOnly,
    cfg: TrainingConfig,
    summary: dict[str, Any],
    checkpoints: dict[int, circuits.AttnOnlyTransformer],
    out: Path,
    certify_n_ctx: int = 0,
) -> dict[str, Any]:
    """Write ``<out>/<name>.safetensors``, its card ``<name>.json`` and the checkpoints."""
    roles = {"previous_token": ["0.0"], "induction": ["1.0"]}
    final = model.export(metadata={"name": cfg.name, "step": cfg.steps, "head_roles": roles})
    figures = measure(final, certify_n_ctx=certify_n_ctx)
    out.mkdir(parents=True, exist_ok=True)
    circuits.save(final, out / f"{cfg.name}.safetensors")
    folder = out / "checkpoints" / cfg.name
    folder.mkdir(parents=True, exist_ok=True)
    for step, checkpoint in checkpoints.items():
        circuits.save(checkpoint, folder / f"step-{step:06d}.safetensors")
    training = {**asdict(cfg), "optimizer": "AdamW", "torch": torch.__version__}
    info = {
        "name": cfg.name,
        "description": "2-layer attention-only transformer, one head per layer, trained on the "
        "induction family: a previous-token head (0.0) and an induction head (1.0).",
        "bos_token": BOS,
        "training": {**training, "threads": torch.get_num_threads()},
        "measured": figures,
        "log": summary,
    }
    (out / f"{cfg.name}.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="flagship")
    for name, value in asdict(TrainingConfig()).items():
        if name not in ("name", "checkpoints"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="directory of the export")
    parser.add_argument("--check-rerun", type=int, default=0, metavar="K")
    parser.add_argument(
        "--certify-n-ctx", type=int, default=None, help="certify on ≤ N tokens (preset's)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    torch.set_num_threads(args.pop("threads"))
    out, quiet, rerun = args.pop("out"), args.pop("quiet"), args.pop("check_rerun")
    preset_name = args.pop("preset")
    preset = PRESETS[preset_name]
    certify_n_ctx = args.pop("certify_n_ctx")
    if certify_n_ctx is None:
        certify_n_ctx = CERTIFY_N_CTX[preset_name]
    cfg = replace(preset, **{k: v for k, v in args.items() if v is not None})
    model, summary, checkpoints = train(cfg, progress=not quiet)
    if rerun:
        first, _, _ = train(cfg, progress=False, stop=rerun)
        second, _, _ = train(cfg, progress=False, stop=rerun)
        same = weights_digest(first) == weights_digest(second)
        summary["rerun_check"] = {"steps": rerun, "identical": same}
        if not same:
            sys.exit(f"two runs of {rerun} steps differ")
    figures = export(model, cfg, summary, checkpoints, out, certify_n_ctx)
    keys = ("family_accuracy_min", "second_copy_loss_max", "previous_token_attention_min")
    print(json.dumps({"seconds": summary["seconds"], **{k: figures[k] for k in keys}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
