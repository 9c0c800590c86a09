"""Model files and state dicts: errors that say which layout a set of keys is in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import circuits
import circuits.io
from circuits import AttnOnlyTransformer, ModelFileError
from circuits.tl_format import to_transformer_lens_dict

CFG = {"n_layers": 2, "n_heads": 3, "d_model": 8, "d_head": 4, "d_vocab": 11, "n_ctx": 6}
SUFFIXES = [".npz", ".safetensors"]
LN_MLP_HINT = "LayerNorm and MLP weights"


def same_weights(a: AttnOnlyTransformer, b: AttnOnlyTransformer) -> bool:
    pa, pb = a.parameters(), b.parameters()
    return (
        a.cfg == b.cfg and pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"blocks.0.ln1.w": np.ones(8), "blocks.0.ln1.b": np.zeros(8)},
        {"ln_final.w": np.ones(8)},
        {"blocks.1.mlp.W_in": np.ones((8, 16)), "blocks.1.mlp.b_out": np.zeros(8)},
    ],
)
def test_layernorm_and_mlp_keys_get_the_hint(extra: dict[str, Any]) -> None:
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
