"""Fuzzed inputs: every hostile file, state dict, metadata string or command line ends in a
``CircuitsError`` (for the command line: exit status 1 or 2 and one line on stderr), never in
another exception and never in a hang.

``FUZZ_EXAMPLES`` sets the number of examples of each test (default: the Hypothesis profile's);
``benchmarks/fuzz.py`` runs them all at a large count and prints how many inputs were tried.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import circuits
from circuits import AttnOnlyTransformer, CircuitsError
from circuits import testing as ct
from circuits.cli import main as cli_main

F = TypeVar("F", bound=Callable[..., Any])
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or settings().max_examples
SMALL = {"n_layers": 2, "n_heads": 2, "d_model": 4, "d_head": 2, "d_vocab": 5, "n_ctx": 4}


def fuzz(test: F) -> F:
    return settings(  # type: ignore[no-any-return]
        max_examples=EXAMPLES,
        deadline=None,  # a hang shows up as the job's time limit, not as a flaky deadline
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(test)


def ends_cleanly(action: Callable[[], object]) -> None:
    """``action`` returns, or raises a ``CircuitsError``; anything else fails the test."""
    with contextlib.suppress(CircuitsError):
        action()


# ---------------------------------------------------------------------- files
SUFFIXES = st.sampled_from([".npz", ".safetensors"])
FLOATS = st.sampled_from([np.float16, np.float32, np.float64])
ODD_DTYPES = st.sampled_from(
    ["int8", "int64", "uint8", "bool", "complex64", "complex128", "float16", "<U3", "S2", "V4"]
)
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e308, -1e-320])
HOSTILE_TEXT = st.text(
    st.characters(exclude_categories=("Cs",)) | st.sampled_from("<>&\"'\n\\{}$%^_#~\x00\u202e"),
    max_size=30,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE_TEXT, inner, max_size=3),
    max_leaves=8,
)


def saved_bytes(model: AttnOnlyTransformer, suffix: str, tmp_path: Path) -> bytes:
    return circuits.save(model, tmp_path / f"good{suffix}").read_bytes()


def load_bytes(data: bytes, suffix: str, tmp_path: Path, **overrides: Any) -> None:
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    ends_cleanly(lambda: circuits.load(path, **overrides))


@fuzz
@given(st.binary(max_size=2048), SUFFIXES)
def test_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    load_bytes(data, suffix, tmp_path)


@fuzz
@given(ct.models(SMALL), SUFFIXES, st.data())
def test_truncated_and_corrupted_files(
    tmp_path: Path, model: AttnOnlyTransformer, suffix: str, data: st.DataObject
) -> None:
    good = bytearray(saved_bytes(model, suffix, tmp_path))
    edit = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    at = data.draw(st.integers(0, len(good) - 1))
    if edit == "truncate":
        good = good[:at]
    elif edit == "flip":
        for offset in data.draw(st.lists(st.integers(0, len(good) - 1), min_size=1, max_size=8)):
            good[offset] ^= data.draw(st.integers(1, 255))
    else:
        good[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    load_bytes(bytes(good), suffix, tmp_path)


def safetensors_file(header: object, body: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text) if length is None else length) + text + body


TENSOR_ENTRIES = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F64", "F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3"])
        | HOSTILE_TEXT,
        "shape": st.lists(st.integers(0, 2**62) | st.integers(-3, 8), max_size=4),
        "data_offsets": st.lists(st.integers(-2, 2**63) | st.integers(0, 512), max_size=3),
    }
)


@fuzz
@given(
    st.dictionaries(
        st.sampled_from(["embed.W_E", "unembed.W_U", "W_E", "W_Q", "__metadata__", "x"]),
        TENSOR_ENTRIES | JSON_VALUES,
        max_size=4,
    ),
    st.binary(max_size=512),
    st.none() | st.integers(0, 2**64 - 1),
)
def test_lying_safetensors_headers(
    tmp_path: Path, header: dict[str, Any], body: bytes, length: int | None
) -> None:
    load_bytes(safetensors_file(header, body, length), ".safetensors", tmp_path)


def npy_member(header: dict[str, Any], body: bytes) -> bytes:
    text = repr(header).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body


@fuzz
@given(
    st.sampled_from(["W_E", "W_Q", "embed.W_E", "unembed.W_U", "__circuits__"]),
    st.fixed_dictionaries(
        {
            "descr": ODD_DTYPES | st.just("<f8") | st.just("|O") | HOSTILE_TEXT,
            "fortran_order": st.booleans(),
            "shape": st.lists(st.integers(0, 2**62) | st.integers(0, 6), max_size=4).map(tuple),
        }
    ),
    st.binary(max_size=256),
)
def test_lying_npy_headers_in_npz(
    tmp_path: Path, name: str, header: dict[str, Any], body: bytes
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}.npy", npy_member(header, body))
    load_bytes(buffer.getvalue(), ".npz", tmp_path)


@st.composite
def hostile_arrays(draw: st.DrawFn, like: np.ndarray) -> np.ndarray:
    """``like`` with a wrong dtype, a wrong shape or special values."""
    kind = draw(st.sampled_from(["dtype", "shape", "values", "scalar"]))
    if kind == "dtype":
        return np.zeros(like.shape, dtype=draw(ODD_DTYPES))
    if kind == "shape":
        return np.zeros(draw(st.lists(st.integers(0, 5), max_size=5)), dtype=like.dtype)
    if kind == "scalar":
        return np.array(draw(SPECIAL))
    out = like.astype(draw(FLOATS))
    if out.size:
        with np.errstate(all="ignore"):  # 1e308 is inf in float16
            out.flat[draw(st.integers(0, out.size - 1))] = draw(SPECIAL)
    return out


@fuzz
@given(ct.models(SMALL), SUFFIXES, st.booleans(), st.data())
def test_wrong_dtypes_shapes_and_values(
    tmp_path: Path,
    model: AttnOnlyTransformer,
    suffix: str,
    as_state_dict: bool,
    data: st.DataObject,
) -> None:
    arrays = dict(model.to_transformer_lens() if as_state_dict else model.parameters())
    for name in data.draw(
        st.lists(st.sampled_from(sorted(arrays)), min_size=1, max_size=3, unique=True)
    ):
        arrays[name] = data.draw(hostile_arrays(arrays[name]))
    if data.draw(st.booleans()):
        arrays[data.draw(HOSTILE_TEXT.filter(bool))] = np.ones(2)
    header = json.dumps(
        {"format": "circuits", "version": 1, "config": model.cfg.to_dict(), "bos_token": None}
    )
    path = tmp_path / f"model{suffix}"
    try:
        if suffix == ".npz":
            extra = {} if as_state_dict else {"__circuits__": np.array(header)}
            np.savez(path, **arrays, **extra)
        else:
            from safetensors.numpy import save_file

            save_file(arrays, str(path), None if as_state_dict else {"circuits": header})
    except Exception:  # the writer refuses it (e.g. safetensors and strings): nothing to load
        return
    ends_cleanly(lambda: circuits.load(path))


@fuzz
@given(ct.models(SMALL), SUFFIXES, JSON_VALUES, st.data())
def test_hostile_headers(
    tmp_path: Path, model: AttnOnlyTransformer, suffix: str, value: Any, data: st.DataObject
) -> None:
    """A circuits header whose fields (format, version, config, BOS, metadata) are anything."""
    header: dict[str, Any] = {
        "format": "circuits",
        "version": 1,
        "config": model.cfg.to_dict(),
        "bos_token": None,
        "metadata": {},
    }
    field = data.draw(st.sampled_from([*sorted(header), "config field"]))
    if field == "config field":
        header["config"][data.draw(st.sampled_from([*sorted(header["config"]), "x"]))] = value
    else:
        header[field] = value
    text = json.dumps(header, allow_nan=True)
    path = tmp_path / f"model{suffix}"
    if suffix == ".npz":
        np.savez(path, **model.parameters(), __circuits__=np.array(text))
    else:
        from safetensors.numpy import save_file

        save_file(dict(model.parameters()), str(path), {"circuits": text})
    ends_cleanly(lambda: circuits.load(path))


# ---------------------------------------------------------------------- state dicts
TL_KEYS = st.sampled_from(
    [
        "embed.W_E",
        "pos_embed.W_pos",
        "unembed.W_U",
        "unembed.b_U",
        *(f"blocks.{layer}.attn.{w}" for layer in (0, 1, 7) for w in
          ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "mask", "IGNORE")),
        "blocks.0.ln1.w",
        "ln_final.b",
        "blocks.x.attn.W_Q",
    ]
) | HOSTILE_TEXT  # fmt: skip


@fuzz
@given(
    st.dictionaries(
        TL_KEYS,
        st.lists(st.integers(0, 4), max_size=4).map(lambda shape: np.ones(shape)) | SPECIAL,
        max_size=12,
    ),
    st.dictionaries(
        st.sampled_from(["n_ctx", "attn_scale", "positional_embedding_type", "bos_token", "x"]),
        JSON_VALUES,
        max_size=2,
    ),
)
def test_random_state_dicts(state_dict: dict[str, Any], overrides: dict[str, Any]) -> None:
    ends_cleanly(lambda: AttnOnlyTransformer.from_transformer_lens(state_dict, **overrides))


@fuzz
@given(ct.models(SMALL), st.data())
def test_state_dicts_with_a_few_wrong_entries(
    model: AttnOnlyTransformer, data: st.DataObject
) -> None:
    state_dict: dict[Any, Any] = dict(model.to_transformer_lens())
    for name in data.draw(
        st.lists(st.sampled_from(sorted(state_dict)), min_size=1, max_size=3, unique=True)
    ):
        state_dict[name] = data.draw(hostile_arrays(state_dict[name]) | JSON_VALUES)
    ends_cleanly(lambda: AttnOnlyTransformer.from_transformer_lens(state_dict))


# ---------------------------------------------------------------------- metadata
@fuzz
@given(ct.models(SMALL), JSON_VALUES, HOSTILE_TEXT)
def test_hostile_metadata_reaches_diagrams_and_latex(
    model: AttnOnlyTransformer, roles: Any, title: str
) -> None:
    from circuits import render

    def draw() -> None:
        hostile = model.replace(metadata={"roles": roles, "head_roles": roles, "name": title})
        render.circuit_diagram(hostile, title=title).source  # noqa: B018
        circuits.path_expansion(hostile).latex()

    ends_cleanly(draw)


# ---------------------------------------------------------------------- the command line
VERBS = ["demo", "render", "analyze", "expand", "certify", "training-run", "nope", "--help"]
OPTIONS = [
    "--out", "--vocab-size", "--n-ctx", "--mechanism", "--seed", "--threshold", "--highlight",
    "--title", "--json", "--seq-len", "--latex", "--order", "--tokens", "--limit", "--coherence",
    "--weights", "--beta0", "--beta1", "--gamma", "--attn-scale", "--bos-token",
    "--positional-embedding-type", "--certify-n-ctx", "--no-composition",
]  # fmt: skip
ARGUMENTS = (
    st.sampled_from(OPTIONS)
    | st.sampled_from(["0", "-1", "1e999", "nan", "inf", "3", "K", "Q", "x", "", "2", "-", "--"])
    | st.sampled_from(["missing.npz", "model.npz", "model.safetensors"])  # zoo models: slow proofs
    | HOSTILE_TEXT
)


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    circuits.save(AttnOnlyTransformer.random(SMALL, seed=1), folder / "model.npz")
    (folder / "model.safetensors").write_bytes(b"\x00" * 20)
    return folder


@fuzz
@given(st.sampled_from(VERBS), st.lists(ARGUMENTS, max_size=6))
def test_command_line_arguments(cli_folder: Path, verb: str, arguments: list[str]) -> None:
    argv = [verb, *arguments]
    if verb == "demo" or "--out" in arguments:  # write only inside the scratch folder
        argv += ["--out", "out.dot"] if verb == "render" else ["--out", "out"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with inside(cli_folder), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = cli_main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    lines = stderr.getvalue().splitlines()
    if status == 0:
        return
    assert status in (1, 2), (argv, status)
    assert len(lines) == 1, (argv, lines)


# ---------------------------------------------------------------------- what the fuzzing found
@pytest.mark.parametrize("dtype", ["V4", "<U3", "S2"])
def test_non_numeric_weights_in_a_state_dict_are_refused(dtype: str) -> None:
    state_dict = dict(AttnOnlyTransformer.random(SMALL).to_transformer_lens())
    state_dict["blocks.0.attn.W_K"] = np.zeros(state_dict["blocks.0.attn.W_K"].shape, dtype)
    with pytest.raises(
        circuits.WeightError, match=rf"blocks.0.attn.W_K: .*got dtype \|?[<]?{dtype[-2:]}"
    ):
        AttnOnlyTransformer.from_transformer_lens(state_dict)


def test_an_npy_header_claiming_more_data_than_its_member_holds_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("W_E.npy", npy_member({"descr": "<f8", "fortran_order": False,
                                                "shape": (2**40,)}, b"\x00" * 16))  # fmt: skip
    path = tmp_path / "lying.npz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(circuits.ModelFileError, match=r"W_E.npy claims shape \[1099511627776\]"):
        circuits.load(path)


@pytest.mark.parametrize("argument", ["\r", "a\nb", "x\u2028y", "missing\n.npz"])
def test_errors_about_arguments_with_line_breaks_stay_on_one_line(
    cli_folder: Path, argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with inside(cli_folder):
        try:
            status = cli_main(["analyze", argument])
        except SystemExit as exit_:
            status = exit_.code  # type: ignore[assignment]
    lines = capsys.readouterr().err.splitlines()
    assert status in (1, 2) and len(lines) == 1, lines
    assert repr(argument)[1:-1] in lines[0]
