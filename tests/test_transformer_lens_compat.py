"""Agreement with TransformerLens itself: peer tests (the ``torch`` and ``transformer_lens`` fixtures).

The rest of the suite checks the translation against TransformerLens's arithmetic written out in
the test; this module checks it against ``HookedTransformer`` directly: logits, residual streams,
attention patterns and scores, and the OV/QK circuits, for both positional embedding types, with
nonzero biases, in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import circuits


@pytest.mark.parametrize("positions", ["standard", "shortformer"])
def test_matches_hooked_transformer(positions: str, torch: Any, transformer_lens: Any) -> None:
    L, H = 3, 4
    cfg = transformer_lens.HookedTransformerConfig(
        n_layers=L, d_model=32, d_head=8, n_heads=H, d_vocab=50, n_ctx=20, attn_only=True,
        normalization_type=None, positional_embedding_type=positions, act_fn="relu",
        dtype=torch.float64,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = transformer_lens.HookedTransformer(cfg)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0, 0.5)
    state_dict = reference.state_dict()
    model = circuits.AttnOnlyTransformer.from_transformer_lens(
        state_dict, positional_embedding_type=positions
    )
    tokens = torch.randint(0, 50, (3, 20))
    ref_logits, ref_cache = reference.run_with_cache(tokens)
    logits, cache = model.run_with_cache(tokens.numpy())
    np.testing.assert_allclose(logits, ref_logits.detach().numpy(), atol=1e-9)
    causal = np.tril(np.ones((20, 20), bool))
    for layer in range(L):
        np.testing.assert_allclose(
            cache.resid(layer), ref_cache["resid_pre", layer].numpy(), atol=1e-9
        )
        for head in range(H):
            np.testing.assert_allclose(
                cache.pattern(layer, head), ref_cache["pattern", layer].numpy()[:, head], atol=1e-12
            )
            ref_scores = ref_cache["attn_scores", layer].numpy()[:, head]
            np.testing.assert_allclose(
                cache.scores(layer, head)[:, causal], ref_scores[:, causal], rtol=1e-9, atol=1e-8
            )
    np.testing.assert_allclose(model.W_OV(1, 2).AB, reference.OV[1, 2].AB.detach().numpy().T)
    np.testing.assert_allclose(model.W_QK(1, 2).AB, reference.QK[1, 2].AB.detach().numpy())
    exported = model.to_transformer_lens()
    for key, value in exported.items():
        np.testing.assert_array_equal(value, state_dict[key].numpy(), err_msg=key)
