"""Saving and loading models: ``.npz`` and ``.safetensors``, never pickle.

A file written by :func:`save` holds every weight under its library name (column convention,
``W_E``, ``W_Q``, …) and a JSON header with the config, ``bos_token`` and ``metadata``. In
``.npz`` the header is the array ``__circuits__`` (a unicode string); in ``.safetensors`` it is the
metadata entry ``circuits``. :func:`load` also reads a bare TransformerLens state dict saved in
either format (keys ``embed.W_E``, ``blocks.0.attn.W_Q``, …).

Any malformed, truncated or inconsistent file raises :class:`~circuits.errors.ModelFileError`.
:func:`save` is atomic: it writes a temporary file next to the target and renames it into place,
so a failed save leaves any earlier file at ``path`` as it was. The file gets the process's default
permissions (``0o666`` less the umask), like any file the process creates.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from .errors import CircuitsError, ConfigError, ModelFileError
from .model import WEIGHT_NAMES, AttnOnlyTransformer
from .tl_format import check_column_layout

__all__ = ["FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = 1
_HEADER_KEY = "__circuits__"
_SAFETENSORS_META_KEY = "circuits"
_SUFFIXES = (".npz", ".safetensors")
_PROC_STATUS = "/proc/self/status"  # where Linux shows the umask without changing it


def save(model: AttnOnlyTransformer, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (``.npz`` or ``.safetensors``, chosen by suffix); return the path.

    The write is atomic: on any failure an existing file at ``path`` is left intact.
    """
    if not isinstance(model, AttnOnlyTransformer):
        raise ConfigError(f"save: expected an AttnOnlyTransformer, got {type(model).__name__}")
    target = Path(path)
    writer = _WRITERS[_suffix(target)]
    header = json.dumps(_header(model), sort_keys=True)
    arrays = {name: np.ascontiguousarray(a) for name, a in model.parameters().items()}
    try:
        _write_atomically(target, lambda handle: writer(handle, arrays, header))
    except OSError as error:
        raise ModelFileError(f"{target}: cannot write ({error.strerror or error})") from None
    return target


def _write_npz(handle: IO[bytes], arrays: Mapping[str, NDArray[Any]], header: str) -> None:
    entries: dict[str, Any] = {**arrays, _HEADER_KEY: np.array(header)}
    np.savez(handle, **entries)


def _write_safetensors(handle: IO[bytes], arrays: Mapping[str, NDArray[Any]], header: str) -> None:
    from safetensors.numpy import save as encode

    handle.write(encode(dict(arrays), metadata={_SAFETENSORS_META_KEY: header}))


_Writer = Callable[[IO[bytes], Mapping[str, NDArray[Any]], str], None]
_WRITERS: dict[str, _Writer] = {".npz": _write_npz, ".safetensors": _write_safetensors}


def _write_atomically(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a temporary file in ``target``'s folder, flush it to disk, then rename it onto
    ``target``; on any failure remove the temporary file and re-raise."""
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a folder", str(target))
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _default_file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open()`` would give a new file.

    The umask is read from ``/proc/self/status`` where the system has it, since the portable
    way (setting it and setting it back) briefly changes it for every thread of the process.
    """
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            mask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def load(path: str | os.PathLike[str], **overrides: Any) -> AttnOnlyTransformer:
    """Read a model written by :func:`save`, or a TransformerLens state dict.

    ``overrides`` apply only to TransformerLens state dicts (``n_ctx``, ``attn_scale``,
    ``positional_embedding_type``, ``bos_token``), which do not carry a config.
    """
    source = Path(path)
    if source.is_dir():
        raise ModelFileError(f"{source}: is a folder, not a model file")
    if not source.is_file():
        raise ModelFileError(f"{source}: no such file")
    arrays, header = _read_npz(source) if _suffix(source) == ".npz" else _read_safetensors(source)
    try:
        if header is None:
            return AttnOnlyTransformer.from_transformer_lens(arrays, **overrides)
        if overrides:
            raise ModelFileError(f"overrides {sorted(overrides)} apply only to state dicts")
        return _from_header(arrays, header)
    except ModelFileError as error:
        raise ModelFileError(f"{source}: {error}") from None
    except CircuitsError as error:
        raise ModelFileError(f"{source}: inconsistent model: {error}") from None


def _header(model: AttnOnlyTransformer) -> dict[str, Any]:
    return {
        "format": "circuits",
        "version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "bos_token": model.bos_token,
        "metadata": dict(model.metadata),
    }


def _from_header(arrays: Mapping[str, NDArray[Any]], header: str) -> AttnOnlyTransformer:
    try:
        info = json.loads(header)
        version = info["version"]
        config = info["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"unreadable header ({error!r})") from None
    if info.get("format") != "circuits" or version != FORMAT_VERSION:
        raise ModelFileError(f"unsupported format {info.get('format')!r} version {version!r}")
    if not isinstance(config, dict):
        raise ModelFileError("header config is not a mapping")
    check_column_layout(arrays)
    unknown = sorted(set(arrays) - set(WEIGHT_NAMES))
    if unknown:
        raise ModelFileError(f"unknown arrays {unknown}; a model file holds only {WEIGHT_NAMES}")
    return AttnOnlyTransformer(
        config, **arrays, bos_token=info.get("bos_token"), metadata=info.get("metadata") or {}
    )


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ModelFileError(f"{path}: unknown file type {suffix!r}; expected one of {_SUFFIXES}")
    return suffix


def _read_npz(path: Path) -> tuple[dict[str, NDArray[Any]], str | None]:
    if not zipfile.is_zipfile(path):  # np.load would try other formats, pickle among them
        raise ModelFileError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        _check_npy_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile, zlib and numpy raise many types on a corrupt archive
        reason = (
            "it holds pickled Python objects, which circuits never loads"
            if "pickle" in str(error)
            else str(error)
        )
        raise ModelFileError(f"{path}: not a readable .npz file ({reason})") from None
    header = arrays.pop(_HEADER_KEY, None)
    if header is None:
        return arrays, None
    if header.dtype.kind != "U" or header.ndim != 0:
        raise ModelFileError(f"{path}: malformed {_HEADER_KEY} entry")
    return arrays, str(header)


def _check_npy_sizes(path: Path) -> None:
    """Refuse an array whose ``.npy`` header claims more data than its archive member holds:
    ``np.load`` would allocate the claimed size first (terabytes, for a lying header)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                if member.read(6) != b"\x93NUMPY":
                    raise ValueError(f"{info.filename} is not a .npy array")
                member.seek(0)
                major, _ = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(member)
                claimed = math.prod(shape) * dtype.itemsize
                if not dtype.hasobject and claimed > info.file_size - member.tell():
                    raise ValueError(
                        f"{info.filename} claims shape {list(shape)} of {dtype} ({claimed} bytes) "
                        f"but holds {info.file_size - member.tell()} bytes"
                    )


def _read_safetensors(path: Path) -> tuple[dict[str, NDArray[Any]], str | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own, undocumented exception types
        raise ModelFileError(f"{path}: not a readable .safetensors file ({error})") from None
    return arrays, metadata.get(_SAFETENSORS_META_KEY)
