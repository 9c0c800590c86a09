"""TransformerLens import/export and save/load: exact round trips, and clean errors on bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer, ConfigError, ModelFileError, TransformerConfig

CFG = {"n_layers": 2, "n_heads": 3, "d_model": 8, "d_head": 4, "d_vocab": 11, "n_ctx": 6}


@st.composite
def models(draw: st.DrawFn) -> AttnOnlyTransformer:
    cfg = TransformerConfig(
        n_layers=draw(st.integers(0, 3)),
        n_heads=draw(st.integers(1, 3)),
        d_model=draw(st.integers(1, 8)),
        d_head=draw(st.integers(1, 4)),
        d_vocab=draw(st.integers(1, 10)),
        n_ctx=draw(st.integers(1, 6)),
        attn_scale=draw(st.sampled_from([-1.0, 1.0, 7.5])),
        positional_embedding_type=draw(st.sampled_from(["standard", "shortformer", "none"])),
    )
    model = AttnOnlyTransformer.random(
        cfg,
        seed=draw(st.integers(0, 2**16)),
        biases=draw(st.booleans()),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
    )
    bos = draw(st.none() | st.integers(0, cfg.d_vocab - 1))
    return model.replace(bos_token=bos, metadata={"roles": {"0.0": "previous-token"}, "n": 1})


def assert_same_model(a: AttnOnlyTransformer, b: AttnOnlyTransformer) -> None:
    assert a.cfg == b.cfg
    assert a.bos_token == b.bos_token
    assert dict(a.metadata) == dict(b.metadata)
    pa, pb = a.parameters(), b.parameters()
    assert pa.keys() == pb.keys()
    for name in pa:
        assert pa[name].dtype == pb[name].dtype, name
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def tl_overrides(model: AttnOnlyTransformer) -> dict[str, Any]:
    """What a state dict cannot carry: positional type, a non-default scale, n_ctx without W_P,
    and head sizes of a model without layers."""
    sizes = (
        {"n_heads": model.cfg.n_heads, "d_head": model.cfg.d_head} if not model.cfg.n_layers else {}
    )
    return {
        **sizes,
        "positional_embedding_type": model.cfg.positional_embedding_type,
        "attn_scale": model.cfg.attn_scale,
        "n_ctx": model.cfg.n_ctx,
        "bos_token": model.bos_token,
        "metadata": model.metadata,
    }


@given(models())
def test_transformer_lens_round_trip_is_exact(model: AttnOnlyTransformer) -> None:
    state_dict = model.to_transformer_lens()
    assert_same_model(
        AttnOnlyTransformer.from_transformer_lens(state_dict, **tl_overrides(model)), model
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models(), st.sampled_from([".npz", ".safetensors", ".NPZ"]))
def test_save_load_round_trip_is_exact(
    tmp_path: Path, model: AttnOnlyTransformer, suffix: str
) -> None:
    path = circuits.save(model, tmp_path / f"model{suffix}")
    assert_same_model(circuits.load(path), model)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models(), st.sampled_from([".npz", ".safetensors"]))
def test_state_dict_files_load_as_models(
    tmp_path: Path, model: AttnOnlyTransformer, suffix: str
) -> None:
    """A bare TransformerLens state dict saved by numpy or safetensors loads with overrides."""
    path = tmp_path / f"state_dict{suffix}"
    state_dict = model.to_transformer_lens()
    if suffix == ".npz":
        np.savez(path, **state_dict)
    else:
        from safetensors.numpy import save_file

        save_file(state_dict, str(path))
    assert_same_model(circuits.load(path, **tl_overrides(model)), model)


def tl_row_forward(sd: dict[str, np.ndarray], tokens: np.ndarray, n_layers: int) -> np.ndarray:
    """TransformerLens's forward pass, written in its own row convention (the reference)."""
    n = len(tokens)
    x = sd["embed.W_E"][tokens] + sd["pos_embed.W_pos"][:n]
    for layer in range(n_layers):
        p = f"blocks.{layer}.attn."
        q = np.einsum("pd,hdk->hpk", x, sd[p + "W_Q"]) + sd[p + "b_Q"][:, None]
        k = np.einsum("pd,hdk->hpk", x, sd[p + "W_K"]) + sd[p + "b_K"][:, None]
        v = np.einsum("pd,hdk->hpk", x, sd[p + "W_V"]) + sd[p + "b_V"][:, None]
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        scores = np.where(np.tril(np.ones((n, n), bool)), scores, -np.inf)
        pattern = np.exp(scores - scores.max(-1, keepdims=True))
        pattern /= pattern.sum(-1, keepdims=True)
        x = x + np.einsum("hpk,hkd->pd", pattern @ v, sd[p + "W_O"]) + sd[p + "b_O"]
    return np.asarray(x @ sd["unembed.W_U"] + sd["unembed.b_U"])


def test_import_matches_transformer_lens_row_convention() -> None:
    """The transposes are right: our forward pass on imported weights equals TL's own arithmetic."""
    rng = np.random.default_rng(0)
    L, H, d, k, V, n = 2, 3, 8, 4, 11, 6
    sd = {
        "embed.W_E": rng.standard_normal((V, d)),
        "pos_embed.W_pos": rng.standard_normal((n, d)),
        "unembed.W_U": rng.standard_normal((d, V)) / np.sqrt(d),
        "unembed.b_U": rng.standard_normal(V),
    }
    for layer in range(L):
        p = f"blocks.{layer}.attn."
        for name in ("W_Q", "W_K", "W_V"):
            sd[p + name] = rng.standard_normal((H, d, k)) / np.sqrt(d)
            sd[p + "b" + name[1:]] = rng.standard_normal((H, k))
        sd[p + "W_O"] = rng.standard_normal((H, k, d)) / np.sqrt(k)
        sd[p + "b_O"] = rng.standard_normal(d)
        sd[p + "mask"] = np.tril(np.ones((n, n), bool))  # buffers are ignored
        sd[p + "IGNORE"] = np.array(-1e5)
    model = AttnOnlyTransformer.from_transformer_lens(sd)
    assert model.cfg == TransformerConfig(L, H, d, k, V, n)
    tokens = rng.integers(0, V, n)
    np.testing.assert_allclose(model.forward(tokens), tl_row_forward(sd, tokens, L), atol=1e-10)
    # our W_OV is the transpose of TL's OV = W_V W_O; our W_QK equals TL's QK = W_Q W_Kᵀ
    np.testing.assert_allclose(
        model.W_OV(1, 2).AB, (sd["blocks.1.attn.W_V"][2] @ sd["blocks.1.attn.W_O"][2]).T
    )
    np.testing.assert_allclose(
        model.W_QK(0, 1).AB, sd["blocks.0.attn.W_Q"][1] @ sd["blocks.0.attn.W_K"][1].T
    )


class ArrayLike:
    """Anything with ``__array__`` (a stand-in for framework tensors)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)


def test_absent_biases_are_zero_and_array_likes_are_read() -> None:
    model = AttnOnlyTransformer.random(CFG, biases=True)
    sd = {
        key: ArrayLike(value)
        for key, value in model.to_transformer_lens().items()
        if ".b_" not in key
    }
    loaded = AttnOnlyTransformer.from_transformer_lens(sd)
    assert not loaded.b_Q.any() and not loaded.b_O.any() and not loaded.b_U.any()
    np.testing.assert_array_equal(loaded.W_Q, model.W_Q)


def test_torch_tensors_are_read(torch: Any) -> None:
    model = AttnOnlyTransformer.random(CFG, dtype=np.float32)
    sd = {key: torch.from_numpy(value) for key, value in model.to_transformer_lens().items()}
    sd["unembed.W_U"] = sd["unembed.W_U"].to(torch.bfloat16)
    loaded = AttnOnlyTransformer.from_transformer_lens(sd)
    np.testing.assert_array_equal(loaded.W_Q, model.W_Q)


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda sd: sd.update({"blocks.0.ln2.w": np.ones(8)}), ModelFileError, "unexpected keys"),
        (lambda sd: sd.update({"blocks.0.ln1.w": np.ones(8)}), ModelFileError, r"no \['blocks.1.ln1.w', 'ln_final.w'\]"),
        (lambda sd: sd.update({"ln_final.b": np.ones(8)}), ModelFileError, "biases without weights"),
        (lambda sd: sd.pop("embed.W_E"), ModelFileError, "no 'embed.W_E'"),
        (lambda sd: sd.pop("blocks.1.attn.W_K"), ModelFileError, "no 'blocks.1.attn.W_K'"),
        (lambda sd: sd.pop("blocks.0.attn.b_V"), ModelFileError, "no 'blocks.0.attn.b_V'"),
        (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("blocks.0.")], ModelFileError, "skips layers"),
        (lambda sd: sd.update({"blocks.1.attn.W_Q": np.ones((3, 8, 5))}), ModelFileError, "disagree on shape"),
        (lambda sd: sd.update({"unembed.W_U": np.ones(8)}), ModelFileError, "unembed.W_U: expected 2"),
        (lambda sd: sd.update({f"blocks.{i}.attn.W_O": np.ones((3, 4, 7)) for i in range(2)}), circuits.ShapeError, "W_O"),
        (lambda sd: sd.pop("pos_embed.W_pos"), ConfigError, "n_ctx"),
    ],
)  # fmt: skip
def test_bad_state_dicts_get_a_clear_error(edit: Any, error: type, message: str) -> None:
    sd: dict[str, Any] = AttnOnlyTransformer.random(CFG).to_transformer_lens()
    edit(sd)
    with pytest.raises(error, match=message):
        AttnOnlyTransformer.from_transformer_lens(sd)


def test_unknown_override_is_rejected() -> None:
    sd = AttnOnlyTransformer.random(CFG).to_transformer_lens()
    with pytest.raises(ConfigError, match="unknown config keys"):
        AttnOnlyTransformer.from_transformer_lens(sd, d_mlp=4)


# ---------------------------------------------------------------------- malformed files
@pytest.fixture(params=[".npz", ".safetensors"])
def saved(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return circuits.save(AttnOnlyTransformer.random(CFG), tmp_path / f"model{request.param}")


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, 0.9, -1])
def test_truncated_files_raise_model_file_error(saved: Path, keep: float) -> None:
    data = saved.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    saved.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match=saved.name):
        circuits.load(saved)


def test_garbage_files_raise_model_file_error(saved: Path) -> None:
    saved.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match="not a readable"):
        circuits.load(saved)


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, W_E=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="pickled Python objects, which circuits never loads"):
        circuits.load(path)


def test_text_named_npz_is_not_offered_to_the_unpickler(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("not an archive\n" * 10)
    with pytest.raises(ModelFileError, match=r"not a zip archive\)$"):
        circuits.load(path)


def _rewrite_npz(path: Path, **changes: Any) -> None:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"W_E": np.ones((3, 3))}, r"inconsistent model: W_E: expected shape \[8, 11\]"),
        ({"W_Q": None}, "W_Q is required"),
        ({"__circuits__": np.array("{not json")}, "unreadable header"),
        ({"__circuits__": np.array('{"format": "other", "version": 1, "config": {}}')}, "unsupported format"),
        ({"__circuits__": np.array('{"format": "circuits", "version": 9, "config": {}}')}, "version 9"),
        ({"__circuits__": np.array([1, 2])}, "malformed __circuits__"),
        ({"W_U": np.full((11, 8), np.nan)}, "non-finite"),
    ],
)  # fmt: skip
def test_inconsistent_npz_raises_model_file_error(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = circuits.save(AttnOnlyTransformer.random(CFG), tmp_path / "model.npz")
    _rewrite_npz(path, **changes)
    with pytest.raises(ModelFileError, match=message):
        circuits.load(path)


def test_path_problems(tmp_path: Path) -> None:
    model = AttnOnlyTransformer.random(CFG)
    with pytest.raises(ModelFileError, match="no such file"):
        circuits.load(tmp_path / "missing.npz")
    with pytest.raises(ModelFileError, match=r"unknown file type '\.pt'"):
        circuits.save(model, tmp_path / "model.pt")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ModelFileError, match="unknown file type"):
        circuits.load(tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="cannot write"):
        circuits.save(model, tmp_path / "no" / "such" / "dir.npz")
    path = circuits.save(model, tmp_path / "model.npz")
    with pytest.raises(ModelFileError, match="apply only to state dicts"):
        circuits.load(path, n_ctx=3)
    with zipfile.ZipFile(path, "a") as archive:  # an extra, unknown array
        archive.writestr("W_X.npy", b"")
    with pytest.raises(ModelFileError):
        circuits.load(path)
