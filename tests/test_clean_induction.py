"""The clean induction models of the zoo do the task, on sequences these tests draw themselves.

No torch: the shipped weights run in the library's numpy model (float64). The samplers here are
not the training script's: family members come from uniformly random sequences kept when their
last token occurred exactly once before (rejection), repeated sequences from permutations, and
the small model's family is enumerated in full with ``itertools``. Each test asserts the goal's
threshold, and that the figure the model's card states was measured, not copied: the card's
value must agree with the one measured here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import circuits
from circuits import zoo

FLAGSHIP = "attn2l-clean-induction"
TINY = "attn2l-tiny-induction"
BOS = 0


def wide(name: str) -> circuits.AttnOnlyTransformer:
    return zoo.load(name, dtype=np.float64)


def family_by_rejection(
    rng: np.random.Generator, V: int, L: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniform members of the family of length ``L`` and their answers ``t_{p+1}``."""
    kept: list[np.ndarray] = []
    while sum(len(k) for k in kept) < count:
        draws = rng.integers(1, V, size=(8 * count, L))
        draws[:, 0] = BOS
        earlier = (draws[:, 1 : L - 1] == draws[:, L - 1 : L]).sum(axis=1)
        kept.append(draws[earlier == 1])
    tokens = np.concatenate(kept)[:count]
    p = 1 + np.argmax(tokens[:, 1 : L - 1] == tokens[:, L - 1 : L], axis=1)
    return tokens, tokens[np.arange(count), p + 1]


def last_argmax(model: circuits.AttnOnlyTransformer, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(model.forward(tokens)[:, -1].argmax(-1))


def nll(model: circuits.AttnOnlyTransformer, tokens: np.ndarray) -> np.ndarray:
    """``−log p(t_{i+1})`` at every position but the last, ``[batch, pos−1]``."""
    logits = model.forward(tokens)[:, :-1]
    shifted = logits - logits.max(-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(-1))
    return log_norm - np.take_along_axis(shifted, tokens[:, 1:, None], -1)[..., 0]


# ------------------------------------------------------------------------------ the flagship
@pytest.fixture(scope="module")
def flagship() -> circuits.AttnOnlyTransformer:
    return wide(FLAGSHIP)


def test_flagship_is_one_head_per_layer_without_biases(
    flagship: circuits.AttnOnlyTransformer,
) -> None:
    cfg = flagship.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.positional_embedding_type) == (2, 1, "standard")
    assert flagship.bos_token == BOS
    for name, weight in flagship.parameters().items():
        if name.startswith("b_"):
            assert not np.any(weight), name


def test_flagship_argmax_is_right_on_the_family_at_every_length(
    flagship: circuits.AttnOnlyTransformer,
) -> None:
    rng = np.random.default_rng(2024)
    card = zoo.info(FLAGSHIP)["measured"]["family_accuracy_by_length"]
    V, n = flagship.cfg.d_vocab, flagship.cfg.n_ctx
    assert sorted(map(int, card)) == list(range(3, n + 1))
    for L in range(3, n + 1):
        tokens, right = family_by_rejection(rng, V, L, 1000)
        accuracy = float(np.mean(last_argmax(flagship, tokens) == right))
        assert accuracy >= 0.99, L
        assert card[str(L)] >= 0.99
        assert abs(card[str(L)] - accuracy) <= 0.01, L  # the card states a measurement


def test_flagship_second_copy_loss_is_small_for_every_run_length(
    flagship: circuits.AttnOnlyTransformer,
) -> None:
    rng = np.random.default_rng(7)
    V, n = flagship.cfg.d_vocab, flagship.cfg.n_ctx
    card = zoo.info(FLAGSHIP)["measured"]["second_copy_loss_by_run"]
    assert sorted(map(int, card)) == list(range(2, (n - 1) // 2 + 1))
    for s in range(2, (n - 1) // 2 + 1):
        runs = np.stack([1 + rng.permutation(V - 1)[:s] for _ in range(200)])
        tokens = np.concatenate([np.full((200, 1), BOS), runs, runs], axis=1)
        losses = nll(flagship, tokens)
        second = float(losses[:, s + 1 : 2 * s].mean())  # predicting r_2 … r_s again
        first = float(losses[:, 1:s].mean())
        assert second <= 0.1, s
        assert first > 0.8 * math.log(V - 1 - 1), s  # nothing to copy the first time
        assert card[str(s)] <= 0.1
        assert abs(card[str(s)] - second) <= max(0.02, 0.5 * second), s


def test_flagship_previous_token_head_is_right_at_every_position(
    flagship: circuits.AttnOnlyTransformer,
) -> None:
    rng = np.random.default_rng(11)
    V, n = flagship.cfg.d_vocab, flagship.cfg.n_ctx
    tokens = rng.integers(1, V, size=(256, n))
    tokens[:, 0] = BOS
    family, _ = family_by_rejection(rng, V, n, 256)
    for batch in (tokens, family):
        _, cache = flagship.run_with_cache(batch)
        pattern = cache.pattern(0, 0)
        queries = np.arange(1, n)
        assert np.all(pattern[:, queries].argmax(-1) == queries - 1)
        assert pattern[:, queries, queries - 1].mean(0).min() > 0.75  # most of it, everywhere
    card = zoo.info(FLAGSHIP)["measured"]
    assert card["previous_token_argmax_right"] == 1.0
    assert card["previous_token_attention_min"] > 0.75


def test_flagship_metadata_names_the_two_heads(flagship: circuits.AttnOnlyTransformer) -> None:
    roles = flagship.metadata["head_roles"]
    assert roles == {"previous_token": ["0.0"], "induction": ["1.0"]}
    found = circuits.detect_heads(flagship, seed=3)
    assert found["previous_token"][0][0] == "0.0"
    assert found["induction"][0][0] == "1.0"
    assert dict(found["induction"])["1.0"] > 0.9


# ------------------------------------------------------------------------------ the small model
def enumerate_family(V: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every member of the family up to length ``n`` (right-padded with BOS), lengths, answers."""
    rows, lengths, answers = [], [], []
    for L in range(3, n + 1):
        for body in itertools.product(range(1, V), repeat=L - 1):
            a = body[-1]
            if body[:-1].count(a) != 1:
                continue
            p = 1 + body.index(a)
            rows.append((BOS, *body) + (BOS,) * (n - L))
            lengths.append(L)
            answers.append(body[p])  # t_{p+1}: body[k] is t_{k+1}
    return np.array(rows), np.array(lengths), np.array(answers)


@pytest.fixture(scope="module")
def tiny_exact() -> dict[str, float]:
    """The small model's exact accuracy and least P(correct) over its whole family."""
    model = wide(TINY)
    V, n = model.cfg.d_vocab, model.cfg.n_ctx
    tokens, lengths, answers = enumerate_family(V, n)
    right, least = 0, 1.0
    for L in range(3, n + 1):
        rows = lengths == L
        logits = model.forward(tokens[rows, :L])[:, -1]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        right += int(np.sum(logits.argmax(-1) == answers[rows]))
        least = min(least, float(probs[np.arange(rows.sum()), answers[rows]].min()))
    return {"accuracy": right / len(tokens), "least": least, "size": float(len(tokens))}


def test_tiny_model_is_small_enough_to_enumerate() -> None:
    cfg = zoo.load(TINY).cfg
    assert cfg.d_vocab <= 10 and cfg.n_ctx <= 8
    assert (cfg.n_layers, cfg.positional_embedding_type) == (2, "standard")


def test_tiny_model_is_right_on_nearly_all_of_its_family(tiny_exact: dict[str, float]) -> None:
    assert tiny_exact["accuracy"] >= 0.999
    card = zoo.info(TINY)["measured"]
    assert card["exhaustive"]["family_size"] == tiny_exact["size"]
    assert card["exhaustive"]["accuracy"] == pytest.approx(tiny_exact["accuracy"], abs=1e-12)
    assert card["exhaustive"]["least_probability"] == pytest.approx(tiny_exact["least"], rel=1e-6)


# ------------------------------------------------------------------------------ the script
def training_script(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``examples/train_clean_induction.py`` as a module (it imports its sibling script)."""
    examples = Path(__file__).parent.parent / "examples"
    monkeypatch.syspath_prepend(str(examples))
    path = examples / "train_clean_induction.py"
    spec = importlib.util.spec_from_file_location("train_clean_induction", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_clean_induction", script)  # for its dataclasses
    spec.loader.exec_module(script)
    return script


def test_training_script_reruns_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch: Any
) -> None:
    """A short prefix of ``examples/train_clean_induction.py`` (a peer test: it needs torch):
    two runs give the same weight bytes, checkpoints are taken where asked, the torch forward pass
    is ``AttnOnlyTransformer.forward``, and the export writes the model, its card and checkpoints
    that ``circuits.load`` reads back."""
    script = training_script(monkeypatch)
    torch.set_num_threads(1)
    cfg = dataclasses.replace(
        script.PRESETS["tiny"], steps=8, warmup_steps=2, batch_size=16, checkpoints=(0, 3),
        score_noise=1.0, narrow_share=0.5, name="test-run",
    )  # fmt: skip
    runs = [script.train(cfg, progress=False) for _ in range(2)]
    assert runs[0][1]["weights_sha256"] == runs[1][1]["weights_sha256"]
    for step in (0, 3, 8):
        first, second = (run[2][step].parameters() for run in runs)
        for name in first:
            assert first[name].tobytes() == second[name].tobytes(), (step, name)
    other = script.train(dataclasses.replace(cfg, seed=1), progress=False)
    assert other[1]["weights_sha256"] != runs[0][1]["weights_sha256"]
    model, summary, checkpoints = runs[0]
    tokens, _ = script.make_batch(np.random.default_rng(5), cfg)
    with torch.no_grad():
        reference = model(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(model.export().forward(tokens), reference, rtol=0, atol=1e-5)
    script.export(model, cfg, summary, checkpoints, tmp_path)
    saved = circuits.load(tmp_path / "test-run.safetensors")
    assert saved.metadata["step"] == 8 and saved.bos_token == BOS
    steps = sorted(p.name for p in (tmp_path / "checkpoints" / "test-run").iterdir())
    assert steps == [
        "step-000000.safetensors",
        "step-000003.safetensors",
        "step-000008.safetensors",
    ]
    card = json.loads((tmp_path / "test-run.json").read_text())
    assert card["measured"]["exhaustive"]["family_size"] == 378847


def test_family_targets_of_the_script_follow_the_definition(
    monkeypatch: pytest.MonkeyPatch, torch: Any
) -> None:
    """The training targets: ``t_{p+1}`` after a single earlier occurrence, the next token after a
    first one, nothing after two or more (checked on hand-made rows; needs torch to import)."""
    script = training_script(monkeypatch)
    I = script.IGNORE  # noqa: E741
    tokens = np.array([[0, 3, 5, 3, 3, 5, 2]])
    assert script.family_targets(tokens).tolist() == [[I, 5, 3, 5, I, 3, I]]


def test_tiny_model_certificate_is_tight(tiny_exact: dict[str, float]) -> None:
    """The weights-based certificate on the whole family of the small trained model: sound (below
    the exact figures of the enumeration) and tight (accuracy ≥ 0.9 × the true accuracy; the
    proved P(wrong) within twice the true worst P(wrong))."""
    from circuits.verify import certify

    model = zoo.load(TINY)
    proof = certify(model, n_ctx=model.cfg.n_ctx)
    assert proof.family_size == tiny_exact["size"]
    assert proof.accuracy_bound <= tiny_exact["accuracy"]
    assert proof.bound <= tiny_exact["least"] + 1e-6  # float32 weights run in float64 here
    assert proof.accuracy_bound >= 0.9 * tiny_exact["accuracy"]
    assert proof.error_bound <= 2 * (1 - tiny_exact["least"])
    card = zoo.info(TINY)["measured"]["certificate"]
    assert card["n_ctx"] == model.cfg.n_ctx
    # the card states what this certifier proves (to within changes of its outward rounding)
    assert 0.9 * tiny_exact["accuracy"] <= card["accuracy_bound"]
    assert card["accuracy_bound"] == pytest.approx(proof.accuracy_bound, abs=1e-4)
    assert card["bound"] == pytest.approx(proof.bound, abs=1e-4)


def test_tiny_model_certificate_follows_the_phase_change() -> None:
    """As docs/clean-induction.md says: the proof finds (almost) nothing on the half-trained
    weights, most of the family right after the phase change, and all of it at the end."""
    from circuits.verify import certify

    def proved(step: int) -> float:
        return certify(zoo.load(TINY, step=step), n_ctx=8).accuracy_bound

    assert 0.05 < proved(0) < 0.2  # random weights, provably right by chance on some cases
    assert max(proved(step) for step in (100, 300, 600)) < 0.01
    assert proved(700) > 0.5 and proved(800) > 0.85
    assert proved(900) == proved(zoo.steps(TINY)[-1]) == 1.0


@pytest.mark.parametrize(("preset", "name"), [("flagship", FLAGSHIP), ("tiny", TINY)])
def test_presets_are_the_shipped_runs(
    monkeypatch: pytest.MonkeyPatch, torch: Any, preset: str, name: str
) -> None:
    """``--preset`` reproduces the config recorded on each card, checkpoints included (a peer
    test: the script imports torch)."""
    script = training_script(monkeypatch)
    config = dataclasses.asdict(script.PRESETS[preset])
    config["checkpoints"] = list(config["checkpoints"])
    training = zoo.info(name)["training"]
    assert {key: training[key] for key in config} == config
    assert list(script.PRESETS[preset].checkpoint_steps()) == zoo.steps(name)
