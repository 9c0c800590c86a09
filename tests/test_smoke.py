import numpy as np

import circuits


def test_random_model_runs() -> None:
    model = circuits.AttnOnlyTransformer.random(
        {"n_layers": 1, "n_heads": 2, "d_model": 8, "d_head": 4, "d_vocab": 11, "n_ctx": 6}
    )
    logits = model.forward(np.array([1, 2, 3]))
    assert logits.shape == (3, 11)
