"""Head detection against TransformerLens's own detector (peer tests): its detection patterns and
its similarity score, on the same patterns, for every measure and exclusion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from circuits import AttnOnlyTransformer, TransformerConfig
from circuits.analysis import detection_pattern, detection_scores

#: TransformerLens's names of the detectors both libraries have
NAMES = {
    "previous_token": "previous_token",
    "duplicate_token": "duplicate_token",
    "induction": "induction",
}


@pytest.mark.parametrize("behaviour", sorted(NAMES))
@pytest.mark.parametrize("measure", ["mul", "abs"])
@pytest.mark.parametrize(
    ("no_bos", "no_current"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_detection_agrees_with_transformer_lens(
    behaviour: str, measure: str, no_bos: bool, no_current: bool, torch: Any, transformer_lens: Any
) -> None:
    from transformer_lens import head_detector

    model = AttnOnlyTransformer.random(TransformerConfig(2, 3, 16, 4, 6, 12), seed=1, biases=True)
    tokens = np.array(
        [0, 3, 1, 4, 2, 3, 1, 4, 5, 3, 1, 2]
    )  # repeats, so every pattern is non-empty
    _, cache = model.run_with_cache(tokens)
    theirs_pattern = getattr(head_detector, f"get_{NAMES[behaviour]}_head_detection_pattern")(
        torch.from_numpy(tokens)[None]
    )
    np.testing.assert_array_equal(detection_pattern(tokens, behaviour), theirs_pattern.numpy())
    ours = detection_scores(
        cache,
        behaviour,
        error_measure=measure,
        exclude_bos=no_bos,
        exclude_current_token=no_current,
    )
    for layer, head in model.cfg.heads():
        theirs = head_detector.compute_head_attention_similarity_score(
            torch.from_numpy(cache.pattern(layer, head)[0].copy()),
            detection_pattern=theirs_pattern.double(),
            exclude_bos=no_bos,
            exclude_current_token=no_current,
            error_measure=measure,
        )
        tolerance = 5e-4 if measure == "abs" else 1e-12  # TransformerLens rounds "abs" to 3 places
        assert abs(ours[layer, head] - theirs) <= tolerance, (
            layer,
            head,
            ours[layer, head],
            theirs,
        )
