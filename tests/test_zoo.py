"""The model zoo: names, loading, training information, errors; only the training script needs torch."""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import circuits
from circuits import zoo

NAME = "attn2l-induction"


def test_names_lists_the_shipped_models() -> None:
    names = zoo.names()
    assert NAME in names
    assert names == sorted(names)
    shipped = {entry.name for entry in resources.files("circuits.zoo").iterdir()}
    for name in names:
        assert {f"{name}.safetensors", f"{name}.json"} <= shipped


def test_model_matches_its_training_config() -> None:
    model, info = zoo.load(NAME), zoo.info(NAME)
    training = info["training"]
    cfg = model.cfg
    assert (cfg.n_layers, cfg.positional_embedding_type) == (2, "standard")
    for field in ("n_heads", "d_model", "d_head", "d_vocab", "n_ctx"):
        assert getattr(cfg, field) == training[field], field
    assert cfg.attn_scale == pytest.approx(np.sqrt(cfg.d_head))
    assert model.bos_token == info["bos_token"]
    assert model.metadata["name"] == NAME
    assert model.dtype == np.float32


def test_model_has_no_biases() -> None:
    model = zoo.load(NAME)
    for name, weight in model.parameters().items():
        if name.startswith("b_"):
            assert not np.any(weight), name


def test_weights_file_is_small() -> None:
    path = resources.files("circuits.zoo") / f"{NAME}.safetensors"
    with resources.as_file(path) as file:
        assert Path(file).stat().st_size < 1_000_000


def test_training_log_summary() -> None:
    log = zoo.info(NAME)["log"]
    final = log["final"]
    assert final["step"] == zoo.info(NAME)["training"]["steps"]
    assert final["loss_copied"] < 0.25 * final["loss_random"]
    assert [row["step"] for row in log["curve"]] == sorted(row["step"] for row in log["curve"])
    assert log["export_max_abs_logit_error"] < 1e-4


def test_load_casts_to_the_requested_dtype() -> None:
    stored = zoo.load(NAME)
    wide = zoo.load(NAME, dtype=np.float64)
    assert wide.dtype == np.float64
    for name, weight in stored.parameters().items():
        np.testing.assert_array_equal(wide.parameters()[name], weight.astype(np.float64))
    assert (wide.bos_token, dict(wide.metadata)) == (stored.bos_token, dict(stored.metadata))


def test_float32_and_float64_forward_agree() -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, size=(3, 64))
    narrow = zoo.load(NAME).forward(tokens)
    wide = zoo.load(NAME, dtype=np.float64).forward(tokens)
    np.testing.assert_allclose(narrow, wide, atol=1e-4 * np.abs(wide).max())


def test_info_is_a_fresh_copy() -> None:
    info = zoo.info(NAME)
    info["training"]["seed"] = "changed"
    info.clear()
    assert zoo.info(NAME)["training"]["seed"] != "changed"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = zoo.load(NAME)
    again = circuits.load(circuits.save(model, tmp_path / "copy.safetensors"))
    for name, weight in model.parameters().items():
        np.testing.assert_array_equal(again.parameters()[name], weight)
    assert again.cfg == model.cfg
    assert (again.bos_token, dict(again.metadata)) == (model.bos_token, dict(model.metadata))


@pytest.mark.parametrize("bad", ["attn2l", "ATTN2L-INDUCTION", "../io", "__init__", "", None, 3])
def test_unknown_names_raise_zoo_error(bad: object) -> None:
    for function in (zoo.load, zoo.info):
        with pytest.raises(circuits.errors.ZooError, match="available") as caught:
            function(bad)  # type: ignore[arg-type]
        assert isinstance(caught.value, circuits.CircuitsError)
        assert isinstance(caught.value, LookupError)
        assert repr(bad) in str(caught.value)


def test_training_script_is_the_library_model_and_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch: Any
) -> None:
    """A few steps of ``examples/train_induction.py`` (a peer test: it needs torch): the torch
    forward pass equals ``AttnOnlyTransformer.forward`` on the exported weights, two runs give
    identical weights, and the export loads back with its roles and training record."""
    script = Path(__file__).parent.parent / "examples" / "train_induction.py"
    spec = importlib.util.spec_from_file_location("train_induction", script)
    assert spec is not None and spec.loader is not None
    train_induction = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_induction", train_induction)  # for its dataclasses
    spec.loader.exec_module(train_induction)
    torch.set_num_threads(1)
    cfg = train_induction.TrainingConfig(
        steps=6, batch_size=4, warmup_steps=2, n_heads=2, d_model=16, d_head=4, d_vocab=12,
        n_ctx=16, min_copy=2, max_copy=5,
    )  # fmt: skip
    runs = [train_induction.train(cfg, progress=False) for _ in range(2)]
    weights = [run[0].export().parameters() for run in runs]
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    model, summary = runs[0]
    tokens, _ = train_induction.make_batch(np.random.default_rng(5), cfg)
    with torch.no_grad():
        reference = model(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(model.export().forward(tokens), reference, rtol=0, atol=1e-5)
    roles = train_induction.export(model, cfg, summary, tmp_path, 0.3)
    saved = circuits.load(tmp_path / f"{NAME}.safetensors")
    assert saved.metadata["head_roles"] == roles
    assert saved.bos_token == 0
    assert summary["export_max_abs_logit_error"] < 1e-5


# ------------------------------------------------------------------------------ checkpoints
CHECKPOINTED = ("attn2l-clean-induction", "attn2l-tiny-induction")


@pytest.mark.parametrize("name", CHECKPOINTED)
def test_checkpoints_span_the_run_and_end_at_the_model(name: str) -> None:
    steps = zoo.steps(name)
    assert 10 <= len(steps) <= 20
    assert steps == sorted(set(steps)) and steps[0] == 0
    assert steps[-1] == zoo.info(name)["training"]["steps"]
    final, last = zoo.load(name), zoo.load(name, step=steps[-1])
    for weight, array in final.parameters().items():
        np.testing.assert_array_equal(last.parameters()[weight], array)
    for step in (steps[0], steps[len(steps) // 2]):
        checkpoint = zoo.load(name, step=step, dtype=np.float64)
        assert checkpoint.metadata["step"] == step
        assert checkpoint.cfg == final.cfg and checkpoint.dtype == np.float64
    first = zoo.load(name, step=steps[0]).parameters()["W_E"]
    assert not np.array_equal(first, final.parameters()["W_E"])  # the run did change the weights


def test_a_model_without_checkpoints_has_no_steps() -> None:
    assert zoo.steps(NAME) == []
    with pytest.raises(circuits.errors.ZooError, match=r"steps: \[\]"):
        zoo.load(NAME, step=0)


@pytest.mark.parametrize("bad", [-1, 1, 10**9, "0", 0.0, True, None])
def test_unknown_steps_raise_zoo_error(bad: object) -> None:
    name = CHECKPOINTED[1]
    if bad is None:  # step=None is the trained model, not an error
        assert zoo.load(name, step=None).metadata["step"] == zoo.steps(name)[-1]
        return
    with pytest.raises(circuits.errors.ZooError, match="no checkpoint") as caught:
        zoo.load(name, step=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(caught.value) and str(zoo.steps(name)[1]) in str(caught.value)


def test_unknown_names_raise_zoo_error_for_steps() -> None:
    with pytest.raises(circuits.errors.ZooError, match="available"):
        zoo.steps("no-such-model")


def test_package_data_is_small() -> None:
    root = resources.files("circuits.zoo")
    with resources.as_file(root) as folder:
        files = [p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert {p.suffix for p in files} <= {".py", ".json", ".safetensors"}
    assert sum(p.stat().st_size for p in files) < 20_000_000
