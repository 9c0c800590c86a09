"""Normalised models against TransformerLens itself (peer tests: the ``torch`` and
``transformer_lens`` fixtures): every normalisation, both positional types, random LayerNorm
weights and biases, float64 and float32; import from the ``HookedTransformer`` object and the
refusal of what the library does not model; folding against TransformerLens's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import circuits
from circuits import AttnOnlyTransformer, UnsupportedModelError, fold_layer_norm

NORMS = ("LN", "LNPre", "RMS", "RMSPre")
#: agreement asked of each dtype: the issue's 1e-8 in float64; float32 rounding in float32
TOLERANCE = {"float64": 1e-8, "float32": 2e-4}


def _reference(
    torch: Any, transformer_lens: Any, norm: str | None, positions: str, dtype: str, **changes: Any
) -> Any:
    options: dict[str, Any] = {
        "n_layers": 2, "d_model": 16, "d_head": 4, "n_heads": 3, "d_vocab": 20, "n_ctx": 12,
        "attn_only": True, "normalization_type": norm, "positional_embedding_type": positions,
        "dtype": getattr(torch, dtype), "eps": 1e-4, **changes,
    }  # fmt: skip
    cfg = transformer_lens.HookedTransformerConfig(**options)
    torch.manual_seed(0)
    model = transformer_lens.HookedTransformer(cfg)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".w"):  # LayerNorm weights: away from 1, so that they matter
                parameter.copy_(1 + 0.3 * torch.randn_like(parameter))
            else:
                parameter.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("positions", ["standard", "shortformer"])
@pytest.mark.parametrize("norm", NORMS)
def test_normalised_models_match_hooked_transformer(
    norm: str, positions: str, dtype: str, torch: Any, transformer_lens: Any
) -> None:
    reference = _reference(torch, transformer_lens, norm, positions, dtype)
    model = AttnOnlyTransformer.from_hooked_transformer(reference)
    assert model.cfg.normalization_type == norm and model.dtype == np.dtype(dtype)
    tokens = torch.randint(0, 20, (3, 12))
    ref_logits, ref_cache = reference.run_with_cache(tokens)
    logits, cache = model.run_with_cache(tokens.numpy())
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), atol=tol, rtol=tol)
    for layer in range(2):
        np.testing.assert_allclose(
            cache.scale(layer),
            ref_cache[f"blocks.{layer}.ln1.hook_scale"].numpy()[..., 0],
            rtol=tol,
        )
        for head in range(3):
            np.testing.assert_allclose(
                cache.pattern(layer, head), ref_cache["pattern", layer].numpy()[:, head], atol=tol
            )
            written = (
                ref_cache["z", layer].numpy()[:, :, head]
                @ reference.W_O[layer, head].detach().numpy()
            )
            np.testing.assert_allclose(cache.head_output(layer, head), written, atol=tol, rtol=tol)
    np.testing.assert_allclose(
        cache.scale(2), ref_cache["ln_final.hook_scale"].numpy()[..., 0], rtol=tol
    )
    exported = model.to_transformer_lens()
    state_dict = reference.state_dict()
    assert {key for key in state_dict if ".ln" in key or key.startswith("ln")} <= set(exported)
    for key, value in exported.items():
        np.testing.assert_array_equal(value, state_dict[key].numpy(), err_msg=key)


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_the_path_expansion_of_a_hooked_transformer_sums_to_its_logits(
    norm: str, torch: Any, transformer_lens: Any
) -> None:
    reference = _reference(torch, transformer_lens, norm, "standard", "float64")
    model = AttnOnlyTransformer.from_hooked_transformer(reference)
    tokens = torch.randint(0, 20, (2, 12))
    ref_logits = reference(tokens).detach().numpy()
    _, cache = model.run_with_cache(tokens.numpy())
    total = circuits.path_expansion(model).evaluate(cache)
    np.testing.assert_allclose(total, ref_logits, atol=1e-10)


def test_folding_agrees_with_transformer_lens(torch: Any, transformer_lens: Any) -> None:
    """TransformerLens's ``fold_layer_norm`` (biases folded, reading weights centred) gives the
    same weights, and its processed model the same logits."""
    reference = _reference(torch, transformer_lens, "LN", "standard", "float64")
    folded = fold_layer_norm(AttnOnlyTransformer.from_hooked_transformer(reference))
    state_dict = {key: value.clone() for key, value in reference.state_dict().items()}
    theirs = reference.fold_layer_norm(state_dict, fold_biases=True, center_weights=True)
    ours = folded.to_transformer_lens()
    assert not any(key.startswith("ln_final") for key in ours)
    for key, value in ours.items():
        np.testing.assert_allclose(value, theirs[key].numpy(), atol=1e-12, err_msg=key)
    processed = transformer_lens.HookedTransformer(reference.cfg)
    processed.load_state_dict(reference.state_dict())
    processed.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=False)
    tokens = torch.arange(12)[None]
    np.testing.assert_allclose(
        folded(tokens.numpy()), processed(tokens).detach().numpy(), atol=1e-10
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attn_only": False, "d_mlp": 32, "act_fn": "relu"}, "attn_only=False"),
        (
            {"positional_embedding_type": "rotary", "rotary_dim": 4},
            "positional_embedding_type='rotary'",
        ),
        ({"positional_embedding_type": "alibi"}, "positional_embedding_type='alibi'"),
        ({"n_key_value_heads": 1}, "n_key_value_heads=1"),
        ({"attn_scores_soft_cap": 30.0}, "attn_scores_soft_cap=30.0"),
        ({"output_logits_soft_cap": 30.0}, "output_logits_soft_cap=30.0"),
        ({"d_vocab_out": 7}, "d_vocab_out=7"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"final_rms": True}, "final_rms=True"),
        ({"use_qk_norm": True}, "use_qk_norm=True"),
    ],
)
def test_hooked_transformers_the_library_does_not_model_are_refused(
    changes: dict[str, Any], message: str, torch: Any, transformer_lens: Any
) -> None:
    reference = _reference(torch, transformer_lens, "LN", "standard", "float64", **changes)
    with pytest.raises(UnsupportedModelError, match=message):
        AttnOnlyTransformer.from_hooked_transformer(reference)


def test_an_alibi_state_dict_is_not_silently_standard(torch: Any, transformer_lens: Any) -> None:
    """An ALiBi model still has ``pos_embed.W_pos``: read from the object, it is refused; read
    from its state dict alone it would import with standard positions, which is why the object
    is the way in (the docs say so)."""
    reference = _reference(torch, transformer_lens, None, "alibi", "float64")
    assert "pos_embed.W_pos" in reference.state_dict()
    with pytest.raises(UnsupportedModelError, match="alibi"):
        AttnOnlyTransformer.from_hooked_transformer(reference)


def test_folding_with_shortformer_positions_is_refused_where_transformer_lens_changes_the_model(
    torch: Any, transformer_lens: Any
) -> None:
    """Shortformer positions are added after ``ln1``: TransformerLens folds anyway and its logits
    move; ``fold_layer_norm`` refuses."""
    reference = _reference(torch, transformer_lens, "LN", "shortformer", "float64")
    model = AttnOnlyTransformer.from_hooked_transformer(reference)
    tokens = torch.arange(12)[None]
    before = reference(tokens).detach().numpy()
    reference.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    assert np.abs(reference(tokens).detach().numpy() - before).max() > 0.1
    with pytest.raises(circuits.ConfigError, match="shortformer"):
        fold_layer_norm(model)
