"""Model files on disk: atomic saves, default permissions, folders, and errors that say which
layout a set of keys is in."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

import circuits
import circuits.io
from circuits import AttnOnlyTransformer, ModelFileError
from circuits.tl_format import to_transformer_lens_dict

CFG = {"n_layers": 2, "n_heads": 3, "d_model": 8, "d_head": 4, "d_vocab": 11, "n_ctx": 6}
SUFFIXES = [".npz", ".safetensors"]
LN_MLP_HINT = "MLP weights, and LayerNorms other than"


def same_weights(a: AttnOnlyTransformer, b: AttnOnlyTransformer) -> bool:
    pa, pb = a.parameters(), b.parameters()
    return (
        a.cfg == b.cfg and pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    )


@pytest.fixture
def restore_umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


# ---------------------------------------------------------------------- atomic save
class FullDisk:
    """A file handle with room for ``room`` bytes: a write beyond that is cut short and fails."""

    def __init__(self, handle: IO[bytes], room: int, on_full: Callable[[], None]) -> None:
        self.handle, self.room, self.on_full = handle, room, on_full

    def write(self, data: bytes) -> int:
        written = self.handle.write(data[: max(self.room, 0)])
        self.room -= written
        if written < len(data):
            self.on_full()
            raise OSError(errno.ENOSPC, "No space left on device")
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def fail_midway(suffix: str, on_full: Callable[[], None]) -> circuits.io._Writer:
    """The real writer for ``suffix``, on a disk that fills up after 100 bytes."""
    real = circuits.io._WRITERS[suffix]

    def writer(handle: IO[bytes], arrays: Mapping[str, Any], header: str) -> None:
        real(FullDisk(handle, 100, on_full), arrays, header)  # type: ignore[arg-type]

    return writer


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_failed_save_leaves_the_old_file_intact(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = AttnOnlyTransformer.random(CFG, seed=1)
    path = circuits.save(old, tmp_path / f"model{suffix}")
    before = path.read_bytes()
    seen: list[list[str]] = []  # the folder's contents when the disk fills up

    def on_full() -> None:
        seen.append(os.listdir(tmp_path))

    monkeypatch.setitem(circuits.io._WRITERS, suffix, fail_midway(suffix, on_full))
    with pytest.raises(ModelFileError, match=r"cannot write \(No space left on device\)"):
        circuits.save(AttnOnlyTransformer.random(CFG, seed=2), path)
    assert len(seen[0]) == 2 and path.name in seen[0]  # the write went to a file beside it
    assert os.listdir(tmp_path) == [path.name]  # … which is gone
    assert path.read_bytes() == before
    assert same_weights(circuits.load(path), old)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_save_that_fails_at_the_rename_leaves_no_temporary_file(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = AttnOnlyTransformer.random(CFG, seed=1)
    path = circuits.save(old, tmp_path / f"model{suffix}")

    def refuse(source: Any, target: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ModelFileError, match="cannot write"):
        circuits.save(AttnOnlyTransformer.random(CFG, seed=2), path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [path.name]
    assert same_weights(circuits.load(path), old)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_save_replaces_an_existing_file(tmp_path: Path, suffix: str) -> None:
    path = circuits.save(AttnOnlyTransformer.random(CFG, seed=1), tmp_path / f"model{suffix}")
    new = AttnOnlyTransformer.random(CFG, seed=2)
    circuits.save(new, path)
    assert os.listdir(tmp_path) == [path.name]
    assert same_weights(circuits.load(path), new)


def test_saving_onto_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(ModelFileError, match=r"model\.npz: cannot write \(it is a folder\)"):
        circuits.save(AttnOnlyTransformer.random(CFG), tmp_path / "model.npz")
    assert os.listdir(tmp_path) == ["model.npz"]


# ---------------------------------------------------------------------- permissions
@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_default_permissions(
    tmp_path: Path, suffix: str, mask: int, mode: int, restore_umask: None
) -> None:
    os.umask(mask)
    path = circuits.save(AttnOnlyTransformer.random(CFG), tmp_path / f"model{suffix}")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    path.chmod(0o400)  # a replaced file gets the default mode too, not the old file's
    circuits.save(AttnOnlyTransformer.random(CFG), path)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_the_umask_is_read_without_proc_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_umask: None
) -> None:
    monkeypatch.setattr(circuits.io, "_PROC_STATUS", str(tmp_path / "missing"))
    os.umask(0o027)
    path = circuits.save(AttnOnlyTransformer.random(CFG), tmp_path / "model.npz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.umask(0o022) == 0o027  # and left as it was


# ---------------------------------------------------------------------- loading
def test_loading_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    for name in ("models", "model.npz"):
        (tmp_path / name).mkdir()
        with pytest.raises(ModelFileError, match=f"{name}: is a folder, not a model file"):
            circuits.load(tmp_path / name)


@pytest.mark.parametrize(
    "extra",
    [
        {"blocks.0.ln2.w": np.ones(8), "blocks.0.ln2.b": np.zeros(8)},
        {"blocks.1.ln1_post.w": np.ones(8)},
        {"blocks.1.mlp.W_in": np.ones((8, 16)), "blocks.1.mlp.b_out": np.zeros(8)},
    ],
)
def test_mlp_and_unsupported_layernorm_keys_get_the_hint(extra: dict[str, Any]) -> None:
    sd = {**AttnOnlyTransformer.random(CFG).to_transformer_lens(), **extra}
    with pytest.raises(ModelFileError, match=LN_MLP_HINT) as info:
        AttnOnlyTransformer.from_transformer_lens(sd)
    assert str(sorted(extra)) in str(info.value)


@pytest.mark.parametrize(
    "extra", [["a", "b"], ["lnx", "blocks.0.attn.W_X"], ["hook_mlp_out", "malnourished.w"]]
)
def test_other_unknown_keys_are_listed_without_the_hint(extra: list[str]) -> None:
    sd: dict[str, Any] = AttnOnlyTransformer.random(CFG).to_transformer_lens()
    sd.update({key: np.ones(8) for key in extra})
    with pytest.raises(ModelFileError, match="unexpected keys") as info:
        AttnOnlyTransformer.from_transformer_lens(sd)
    message = str(info.value)
    assert str(sorted(extra)) in message
    assert "expected embed.W_E" in message
    assert LN_MLP_HINT not in message


def test_many_unknown_keys_are_counted() -> None:
    sd: dict[str, Any] = AttnOnlyTransformer.random(CFG).to_transformer_lens()
    sd.update({f"extra{i:02}": np.ones(8) for i in range(20)})
    with pytest.raises(ModelFileError, match=r"'extra07'\] \(20 in all\)"):
        AttnOnlyTransformer.from_transformer_lens(sd)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_transformer_lens_keys_under_a_circuits_header_name_from_transformer_lens(
    tmp_path: Path, suffix: str
) -> None:
    """A file with a circuits header holds column-convention weights; TL keys there are a mix-up."""
    model = AttnOnlyTransformer.random(CFG)
    path = tmp_path / f"model{suffix}"
    header = json.dumps(circuits.io._header(model))
    state_dict = model.to_transformer_lens()
    if suffix == ".npz":
        np.savez(path, __circuits__=np.array(header), **state_dict)
    else:
        from safetensors.numpy import save_file

        save_file(state_dict, str(path), metadata={"circuits": header})
    with pytest.raises(ModelFileError, match="from_transformer_lens") as info:
        circuits.load(path)
    assert "'blocks.0.attn.W_K'" in str(info.value) and path.name in str(info.value)


def test_transformer_lens_keys_given_as_column_weights_name_from_transformer_lens() -> None:
    model = AttnOnlyTransformer.random(CFG)
    with pytest.raises(ModelFileError, match=r"'blocks\.0\.attn\.W_K'.*from_transformer_lens"):
        to_transformer_lens_dict(model.cfg, model.to_transformer_lens())
