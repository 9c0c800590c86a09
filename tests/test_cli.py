"""The ``circuits`` command end to end: every verb on saved models, clean one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from circuits import AttnOnlyTransformer, load, save
from circuits.analysis import behaviour_scores, composition_scores, copying_scores
from circuits.cli import main
from circuits.construct.induction import induction_model
from circuits.paths import path_expansion
from circuits.verify import certify_induction

CFG = {"n_layers": 2, "n_heads": 2, "d_model": 8, "d_head": 4, "d_vocab": 11, "n_ctx": 12}
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``circuits argv…`` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model() -> AttnOnlyTransformer:
    metadata = {"head_roles": {"induction": ["1.1"]}}
    return AttnOnlyTransformer.random(CFG, seed=5, biases=True).replace(metadata=metadata)


@pytest.fixture(params=[".npz", ".safetensors"])
def model_file(request: pytest.FixtureRequest, tmp_path: Path, model: AttnOnlyTransformer) -> Path:
    return save(model, tmp_path / f"model{request.param}")


@pytest.mark.parametrize(
    "verb", ["", "demo", "render", "analyze", "expand", "certify", "report", "zoo"]
)
def test_every_verb_has_help(capsys: pytest.CaptureFixture[str], verb: str) -> None:
    code, out, _ = run(capsys, *([verb] if verb else []), "--help")
    assert code == 0 and out.startswith("usage: circuits")
    for word in {"": ["demo", "render", "analyze"], "demo": ["--out"], "render": ["--out",
                 "--highlight", "--n-ctx"], "analyze": ["--json"], "expand": ["--latex", "--order"],
                 "certify": ["--vocab-size", "--coherence"],
                 "report": ["--out", "--tokens", "--certify-n-ctx"], "zoo": ["--json"]}[verb]:  # fmt: skip
        assert word in out


def test_analyze_json_reports_the_analyses(
    capsys: pytest.CaptureFixture[str], model_file: Path, model: AttnOnlyTransformer
) -> None:
    code, out, err = run(capsys, "analyze", str(model_file), "--json", "--threshold", "0.0")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["model"]["d_vocab"] == 11 and set(report["heads"]) == {"0.0", "0.1", "1.0", "1.1"}
    behaviour, copying = behaviour_scores(model), copying_scores(model)
    for name, values in report["heads"].items():
        layer, head = map(int, name.split("."))
        assert values["induction"] == pytest.approx(behaviour["induction"][layer, head])
        assert values["ov_copying"] == pytest.approx(copying[layer, head])
    assert len(report["composition"]) == 3 * 2 * 2  # every writer-reader pair, each kind
    k_scores = composition_scores(model, "K")
    for pair in report["composition"]:
        if pair["kind"] == "K":
            (l1, h1), (l2, h2) = (map(int, pair[key].split(".")) for key in ("writer", "reader"))
            assert pair["score"] == pytest.approx(k_scores[l1, h1, l2, h2])
    scores = [pair["score"] for pair in report["composition"]]
    assert scores == sorted(scores, reverse=True)


def test_analyze_table(capsys: pytest.CaptureFixture[str], model_file: Path) -> None:
    code, out, _ = run(capsys, "analyze", str(model_file), "--threshold", "2")
    assert code == 0
    assert "previous_token" in out and "1.1" in out and "composition ≥ 2" in out
    assert out.rstrip().endswith("none")


def test_default_threshold_finds_the_trained_models_k_composition(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The default threshold is relative to chance (1.5/√d_model), not a fixed number."""
    from circuits import composition_baseline, zoo

    trained = zoo.load("attn2l-induction")
    path = save(trained, tmp_path / "trained.safetensors")
    code, out, _ = run(capsys, "analyze", str(path), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["composition_threshold"] == pytest.approx(1.5 * composition_baseline(trained))
    k_pairs = {(p["writer"], p["reader"]) for p in report["composition"] if p["kind"] == "K"}
    assert {("0.0", f"1.{h}") for h in range(4)} <= k_pairs
    assert all(p["score"] >= report["composition_threshold"] for p in report["composition"])


def test_analyze_reads_transformer_lens_state_dicts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: AttnOnlyTransformer
) -> None:
    path = tmp_path / "tl.npz"
    np.savez(path, **model.to_transformer_lens())
    code, out, _ = run(capsys, "analyze", str(path), "--json", "--bos-token", "3")
    assert code == 0 and json.loads(out)["model"]["bos_token"] == 3


def test_expand_lists_terms_and_prints_latex(
    capsys: pytest.CaptureFixture[str], model_file: Path, model: AttnOnlyTransformer
) -> None:
    expansion = path_expansion(model)
    code, out, _ = run(capsys, "expand", str(model_file), "--limit", "1000")
    assert code == 0 and f"{len(expansion)} terms:" in out
    listed = [line.split("  ")[0] for line in out.splitlines() if "→" in line]
    assert listed == [" → ".join(term.path) for term in expansion]
    code, out, _ = run(capsys, "expand", str(model_file), "--order", "0", "--limit", "3")
    assert "embed → 0." not in out and "… and" in out
    code, out, _ = run(capsys, "expand", str(model_file), "--latex")
    assert r"\text{logits} = " in out and r"\otimes" in out and "W_{OV}^{h_2}" in out


def test_expand_ranks_terms_by_contribution_to_the_next_token(
    capsys: pytest.CaptureFixture[str], model_file: Path, model: AttnOnlyTransformer
) -> None:
    tokens = [3, 1, 4, 1, 5, 9, 2]
    code, out, _ = run(capsys, "expand", str(model_file), "--tokens", " ".join(map(str, tokens)),
                       "--limit", "1000")  # fmt: skip
    assert code == 0
    values = [float(line.split()[-1]) for line in out.splitlines() if "→" in line]
    assert len(values) == len(path_expansion(model))
    assert values == sorted(values, key=abs, reverse=True)
    logits = model.forward(np.array(tokens[:-1]))
    expected = np.mean(logits[np.arange(len(tokens) - 1), tokens[1:]])
    assert sum(values) == pytest.approx(expected, abs=1e-3 * len(values))


@needs_dot
def test_render_writes_a_diagram_with_the_models_heads(
    capsys: pytest.CaptureFixture[str], model_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "model.svg"
    code, out, _ = run(capsys, "render", str(model_file), "--out", str(target),
                       "--highlight", "0.1,1.1", "--threshold", "0.0")  # fmt: skip
    assert code == 0 and out.strip() == f"wrote {target}"
    root = ET.parse(target).getroot()
    titles = {"".join(g.itertext()).strip() for g in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {"0.0", "0.1", "1.0", "1.1", "embed", "unembed", "0.1->1.1"} <= titles
    assert "induction" in target.read_text()


def test_render_without_dot_writes_the_source(
    capsys: pytest.CaptureFixture[str],
    model_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    code, out, err = run(capsys, "render", str(model_file), "--out", str(tmp_path / "m.png"))
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'm.dot'}"
    assert "Graphviz's dot was not found" in err and "apt-get install graphviz" in err
    assert (tmp_path / "m.dot").read_text().startswith("digraph")


@pytest.mark.parametrize("mechanism", ["K", "Q"])
def test_demo_builds_runs_proves_and_draws_the_induction_circuit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mechanism: str
) -> None:
    out_dir = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "--out", str(out_dir), "--mechanism", mechanism,
                       "--vocab-size", "8", "--n-ctx", "15")  # fmt: skip
    assert code == 0
    assert "next token right on the second copy: 100%" in out
    assert "embed → 1.0 → unembed" in out  # the path expansion
    assert f"({mechanism})" in out  # the QK term of the composition that makes it work
    assert f"{mechanism}-composition 0.0 → 1.0" in out
    bound = float(out.split("P(correct next token) ≥ ")[1].split()[0])
    expected = certify_induction(vocab_size=8, n_ctx=15, mechanism=mechanism).bound
    assert bound == pytest.approx(expected, abs=1e-12)  # printed to 12 digits
    written = {p.name for p in out_dir.iterdir()}
    assert {"attention_0.0.svg", "attention_1.0.svg", "ov_1.0.svg"} <= written
    assert "circuit.svg" in written or "circuit.dot" in written
    for svg in out_dir.glob("*.svg"):
        ET.parse(svg)  # every SVG is well-formed XML


def test_certify_from_parameters_or_a_model_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "certify", "--vocab-size", "50", "--n-ctx", "64", "--beta1", "15")
    expected = certify_induction(vocab_size=50, n_ctx=64, beta1=15.0)
    assert code == 0 and out.strip() == str(expected)
    path = save(induction_model(vocab_size=7, n_ctx=9, mechanism="Q"), tmp_path / "q.npz")
    code, out, _ = run(capsys, "certify", str(path))
    assert code == 0 and out.strip() == str(certify_induction(load(path)))
    code, out, _ = run(capsys, "certify", "--vocab-size", "5", "--n-ctx", "6", "--latex")
    certificate = certify_induction(vocab_size=5, n_ctx=6)
    assert out.strip() == certificate.latex()
    assert out.startswith(r"$P(\text{correct}) \ge \frac{1}") and "beta_{1}" in out
    assert out.strip().endswith(f"{certificate.bound:.12g}$")


def test_certify_any_two_layer_model_from_its_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: AttnOnlyTransformer
) -> None:
    from circuits.verify import certify

    canonical = induction_model(vocab_size=5, n_ctx=6)
    rng = np.random.default_rng(0)
    perturbed = canonical.replace(
        **{k: v + 0.02 * rng.standard_normal(v.shape) for k, v in canonical.parameters().items()}
    )
    path = save(perturbed, tmp_path / "perturbed.npz")
    code, out, _ = run(capsys, "certify", str(path))
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("(closed form not applicable")
    assert "\n".join(lines[1:]) == str(certify(load(path)))
    # a shorter family, and the weights-based certifier on a canonical model
    code, out, _ = run(capsys, "certify", str(path), "--n-ctx", "4")
    assert code == 0 and out.strip() == str(certify(load(path), n_ctx=4))
    exact = save(canonical, tmp_path / "k.npz")
    code, out, _ = run(capsys, "certify", str(exact), "--weights")
    assert code == 0 and out.strip() == str(certify(canonical))
    # a model with no BOS token gets one line and exit status 1
    code, _, err = run(capsys, "certify", str(save(model, tmp_path / "random.npz")))
    assert code == 1 and "no BOS token" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "certify", str(path), "--latex")
    assert code == 1 and "no closed form" in err


def test_a_zoo_name_is_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    from circuits import zoo

    code, out, _ = run(capsys, "certify", "attn2l-induction", "--n-ctx", "3")
    assert code == 0 and "of a 2-layer attention-only model" in out
    code, out, _ = run(capsys, "analyze", "attn2l-induction")
    assert (
        code == 0
        and out == run(capsys, "analyze", str(zoo._entry("attn2l-induction", ".safetensors")))[1]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "{missing}"], "no such file"),
        (["analyze", "{garbage}"], "not a readable .npz file"),
        (["render", "{model}", "--out", "{tmp}/x.jpg"], "unknown diagram type '.jpg'"),
        (["render", "{model}", "--out", "{tmp}/m.svg", "--highlight", "1.0,0.1"], "is not a path"),
        (["render", "{model}", "--out", "{tmp}/none/m.dot"], "cannot write"),
        (["analyze", "{model}", "--seq-len", "100"], "seq_len"),
        (["demo", "--out", "{garbage}/sub"], "cannot create"),
        (["expand", "{model}", "--tokens", "1 x"], "expected token ids"),
        (["expand", "{model}", "--tokens", "1"], "at least two tokens"),
        (["expand", "{model}", "--tokens", "1 99"], "outside the vocabulary"),
        (["expand", "{model}", "--order", "-1"], "--order must be ≥ 0"),
        (["certify"], "vocab_size= and n_ctx="),
        (["certify", "{model}"], "no BOS token"),
        (["certify", "{model}", "--vocab-size", "5"], "not both"),
        (["certify", "--vocab-size", "5", "--n-ctx", "6", "--coherence", "2"], "coherence"),
        (["analyze", "{model}", "--threshold", "nan"], "threshold must be a finite number"),
        (["expand", "{model}", "--limit", "-1"], "--limit must be ≥ 0, got -1"),
        (["demo", "--out", "{tmp}/demo", "--seed", "-1"], "seed must be an integer ≥ 0, got -1"),
    ],
)
def test_errors_are_one_line_with_exit_status_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: AttnOnlyTransformer,
    argv: list[str], message: str,
) -> None:  # fmt: skip
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    names = {"missing": tmp_path / "missing.npz", "garbage": garbage, "tmp": tmp_path,
             "model": save(model, tmp_path / "m.npz")}  # fmt: skip
    code, out, err = run(capsys, *(arg.format(**names) for arg in argv))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"circuits {argv[0]}: error: ")
    assert message in err


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["analyze"], ["render", "m.npz"], ["analyze", "m.npz", "--threshold",
     "high"], ["render", "m.npz", "--out", "x.svg", "--positional-embedding-type", "rotary"]],
)  # fmt: skip
def test_bad_arguments_are_one_line_with_exit_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "error:" in err and "--help" in err


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "circuits", "analyze", "missing.npz"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == "circuits analyze: error: missing.npz: no such file\n"


def test_report_writes_one_page_of_the_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_file: Path
) -> None:
    code, out, err = run(
        capsys, "report", str(model_file), "--out", str(tmp_path / "r"), "--tokens", "0 3 5 3 5",
        "--head", "1.1",
    )  # fmt: skip
    page = tmp_path / "r" / "report.html"
    assert code == 0 and err == "" and out.strip() == f"wrote {page}"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "1.1" in html
    assert "<script src=" not in html and "http://" not in html.split("</style>")[0]


def test_report_of_a_zoo_model_to_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, _ = run(capsys, "report", "attn2l-induction", "--out", str(tmp_path / "zoo.html"))
    assert code == 0 and (tmp_path / "zoo.html").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--head", "1.9"], 2, "--head: the model has no head 1.9"),
        (["--tokens", "0 5 x"], 1, "--tokens: expected token ids"),
        (["--tokens", "0 99"], 1, "outside the vocabulary"),
    ],
)
def test_report_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_file: Path, argv: list[str],
    status: int, message: str,
) -> None:  # fmt: skip
    code, _, err = run(capsys, "report", str(model_file), "--out", str(tmp_path / "r"), *argv)
    assert code == status and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_layer_norm_state_dict_is_read_with_its_normalisation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An LNPre state dict has no key saying so: --normalization-type gives it."""
    from circuits import TransformerConfig

    cfg = TransformerConfig(2, 2, 8, 4, 6, 5, normalization_type="LNPre", eps=1e-3)
    lnpre = AttnOnlyTransformer.random(cfg, seed=3)
    path = tmp_path / "tl.npz"
    np.savez(path, **lnpre.to_transformer_lens())
    argv = [str(path), "--normalization-type", "LNPre", "--eps", "0.001"]
    code, out, _ = run(capsys, "expand", *argv, "--tokens", "0 3 1 4", "--position", "2")
    assert code == 0, out
    from circuits.cli import _load_model, build_parser

    read = _load_model(build_parser().parse_args(["expand", *argv]))
    tokens = np.array([0, 3, 1, 4])
    np.testing.assert_array_equal(read(tokens), lnpre(tokens))
    plain = AttnOnlyTransformer.from_transformer_lens(lnpre.to_transformer_lens())  # read as no LN
    assert not np.allclose(plain(tokens), lnpre(tokens))


def test_zoo_lists_every_model_with_its_card(capsys: pytest.CaptureFixture[str]) -> None:
    from circuits import zoo

    code, out, _ = run(capsys, "zoo")
    assert code == 0
    headers = [line for line in out.splitlines() if not line.startswith(" ")]
    assert [line.split(":")[0] for line in headers] == zoo.names()
    for name in zoo.names():
        cfg = zoo.load(name).cfg
        line = next(h for h in headers if h.startswith(name + ":"))
        assert f"vocabulary {cfg.d_vocab}, n_ctx {cfg.n_ctx}" in line
        assert (f"{len(zoo.steps(name))} checkpoints" in line) == bool(zoo.steps(name))
        assert zoo.info(name)["description"] in out
    code, out, _ = run(capsys, "zoo", "--json")
    cards = json.loads(out)  # valid JSON: no NaN from a loss not yet measured
    assert code == 0 and sorted(cards) == zoo.names()
    assert cards["attn2l-tiny-induction"]["measured"] == json.loads(
        json.dumps(zoo.info("attn2l-tiny-induction")["measured"])
    )
