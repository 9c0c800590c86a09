"""Normalisation (LayerNorm and RMSNorm, with and without weights): the forward pass against the
formula written out here, exact path and QK expansions with frozen scales, the folding identities,
import/export and refusals. Agreement with TransformerLens itself is in
``test_transformer_lens_layer_norm.py``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_model import loop_forward

import circuits
from circuits import (
    AttnOnlyTransformer,
    ConfigError,
    ModelFileError,
    TransformerConfig,
    UnsupportedModelError,
    center_unembed,
    center_writing_weights,
    fold_layer_norm,
    path_expansion,
    qk_expansion,
)
from circuits.analysis import composition_scores, ov_circuit, token_qk_circuit
from circuits.testing import configs
from circuits.testing import models as drawn_models

NORMS = ("LN", "LNPre", "RMS", "RMSPre")
POSITIONS = ("standard", "shortformer", "none")


def normalised_models(
    norms: tuple[str, ...] = NORMS, positions: tuple[str, ...] = POSITIONS, max_layers: int = 2
) -> st.SearchStrategy[AttnOnlyTransformer]:
    cfg = configs(
        n_layers=(0, max_layers),
        d_model=(2, 8),
        d_vocab=(2, 9),
        n_ctx=(1, 7),
        positional_embedding_types=positions,
        normalization_types=norms,
        eps=st.sampled_from([1e-5, 1e-2, 0.5]),
    )
    return drawn_models(cfg)


@st.composite
def model_and_tokens(draw: st.DrawFn, **kwargs: Any) -> tuple[AttnOnlyTransformer, np.ndarray]:
    model = draw(normalised_models(**kwargs))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, model.cfg.n_ctx)))
    tokens = np.random.default_rng(draw(st.integers(0, 2**16))).integers(
        0, model.cfg.d_vocab, shape
    )
    return model, tokens


def test_the_strategy_draws_every_normalisation_and_nontrivial_weights() -> None:
    for norm in NORMS:
        for pos in POSITIONS:
            found = _find(normalised_models(), lambda m, n=norm, p=pos: _is(m, n, p))
            assert found.cfg.normalization_type == norm
    with_weights = _find(
        normalised_models(norms=("LN",)),
        lambda m: m.cfg.n_layers > 0 and not np.allclose(m.w_LN, 1) and np.any(m.b_LN != 0),
    )
    assert with_weights.b_LN is not None


def _is(model: AttnOnlyTransformer, norm: str, pos: str) -> bool:
    return model.cfg.normalization_type == norm and model.cfg.positional_embedding_type == pos


def _find(strategy: st.SearchStrategy[Any], condition: Any) -> Any:
    from hypothesis import find

    return find(strategy, condition, settings=settings(max_examples=2000, database=None))


# ---------------------------------------------------------------------- the forward pass
@given(model_and_tokens())
def test_forward_matches_the_normalisation_written_out(
    case: tuple[AttnOnlyTransformer, np.ndarray],
) -> None:
    model, tokens = case
    np.testing.assert_allclose(model(tokens), loop_forward(model, tokens), rtol=1e-10, atol=1e-10)


@given(model_and_tokens())
def test_the_cache_holds_each_layers_scale(case: tuple[AttnOnlyTransformer, np.ndarray]) -> None:
    model, tokens = case
    _, cache = model.run_with_cache(tokens)
    centred = model.cfg.centred
    for layer in range(model.cfg.n_layers + 1):
        x = cache.resid(layer)
        x = x - x.mean(-1, keepdims=True) if centred else x
        expected = np.sqrt(np.mean(x**2, axis=-1) + model.cfg.eps)
        np.testing.assert_allclose(cache.scale(layer), expected, rtol=1e-12)


def test_without_normalisation_the_scale_is_one() -> None:
    model = AttnOnlyTransformer.random(TransformerConfig(1, 1, 4, 2, 5, 4))
    _, cache = model.run_with_cache([0, 1, 2])
    np.testing.assert_array_equal(cache.scale(1), np.ones((1, 3)))
    with pytest.raises(ConfigError, match=r"scale\(2\)"):
        cache.scale(2)


def test_normalisation_removes_the_mean_and_the_scale_of_the_stream() -> None:
    """LN reads ``x`` and ``3 x + c𝟙`` alike (eps aside); RMS does not ignore ``c𝟙``."""
    cfg = TransformerConfig(1, 2, 6, 3, 5, 4, normalization_type="LN", eps=1e-12)
    model = AttnOnlyTransformer.random(cfg, seed=3, biases=True)
    shifted = model.replace(
        W_E=3 * model.W_E + 0.7, W_P=3 * model.W_P, W_O=3 * model.W_O, b_O=3 * model.b_O
    )
    tokens = np.array([[1, 4, 0, 2]])
    np.testing.assert_allclose(shifted(tokens), model(tokens), atol=1e-9)
    rms = model.replace(
        cfg=dataclasses.replace(cfg, normalization_type="RMS"), b_LN=None, b_LN_final=None
    )
    rms_shifted = shifted.replace(cfg=rms.cfg, b_LN=None, b_LN_final=None)
    assert np.abs(rms_shifted(tokens) - rms(tokens)).max() > 1e-3


# ---------------------------------------------------------------------- exact expansions
@settings(max_examples=15)
@given(model_and_tokens(max_layers=2))
def test_path_terms_sum_to_the_logits(case: tuple[AttnOnlyTransformer, np.ndarray]) -> None:
    model, tokens = case
    logits, cache = model.run_with_cache(tokens)
    expansion = path_expansion(model, biases="all")
    np.testing.assert_allclose(expansion.evaluate(cache), logits, atol=1e-10)
    contributions = expansion.contributions(cache, tokens)
    target_logits = np.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(contributions.total(), target_logits, atol=1e-10)
    for term, value in contributions:  # each term on its own agrees with the shared evaluation
        np.testing.assert_allclose(
            np.take_along_axis(term.evaluate(cache), tokens[..., None], axis=-1)[..., 0],
            value,
            atol=1e-10,
        )


@settings(max_examples=15)
@given(model_and_tokens(max_layers=2))
def test_qk_terms_sum_to_the_scores(case: tuple[AttnOnlyTransformer, np.ndarray]) -> None:
    model, tokens = case
    _, cache = model.run_with_cache(tokens)
    n = tokens.shape[1]
    causal = np.tril(np.ones((n, n), dtype=bool))
    for layer, head in model.cfg.heads():
        total = qk_expansion(model, (layer, head), biases="all").evaluate(cache)
        np.testing.assert_allclose(
            total[:, causal], cache.scores(layer, head)[:, causal], atol=1e-10
        )


@settings(max_examples=10)
@given(model_and_tokens(max_layers=2), st.data())
def test_symbolic_terms_evaluate_to_the_numeric_ones(
    case: tuple[AttnOnlyTransformer, np.ndarray], data: st.DataObject
) -> None:
    """A term's pattern product (with the scales S) times its weight product (with the LN maps)
    gives its contribution: the symbolic form is the numeric one."""
    model, tokens = case
    _, cache = model.run_with_cache(tokens[:1])
    terms = path_expansion(model, biases="all").terms()
    for term in data.draw(st.lists(st.sampled_from(terms), min_size=1, max_size=6)):
        P = term.pattern_value(cache)
        W = term.weight_value()
        W = W.AB if isinstance(W, circuits.FactoredMatrix) else np.asarray(W)
        n = tokens.shape[1]
        right = (
            W[:, tokens[0]]
            if term.source == "embed"
            else W[:, :n]
            if term.source == "pos_embed"
            else W
        )
        np.testing.assert_allclose(P @ right.T, term.evaluate(cache)[0], atol=1e-10)


def test_latex_shows_the_normalisation_factors() -> None:
    cfg = TransformerConfig(2, 2, 6, 3, 7, 5, normalization_type="LN")
    model = AttnOnlyTransformer.random(cfg, seed=1, biases=True)
    expansion = path_expansion(model)
    assert expansion.term("embed", "0.1", "1.0").latex() == (
        r"\left(S^{final} A^{1.0} S^{1} A^{0.1} S^{0}\right) \otimes \left(W_{U} \mathrm{LN}^{final} "
        r"W_{OV}^{1.0} \mathrm{LN}^{1} W_{OV}^{0.1} \mathrm{LN}^{0} W_{E}\right)"
    )
    assert expansion.term("b_LN[1]", "1.0").latex() == (
        r"\left(S^{final} A^{1.0} \mathbb{1}\right) \otimes \left(W_{U} \mathrm{LN}^{final} W_{OV}^{1.0} b_{LN}^{1}\right)"
    )
    assert (
        expansion.term("b_LN_final").latex()
        == r"\mathbb{1} \otimes \left(W_{U} b_{LN}^{final}\right)"
    )


def test_the_graph_has_a_source_per_normalisation_bias() -> None:
    cfg = TransformerConfig(2, 2, 6, 3, 7, 5, normalization_type="LN")
    model = AttnOnlyTransformer.random(cfg, seed=1, biases=True)
    graph = circuits.computation_graph(model)
    assert set(graph.successors("b_LN[1]")) == {"1.0", "1.1"}
    assert set(graph.successors("b_LN_final")) == {"unembed"}
    assert all(graph.edges["b_LN[0]", h]["inputs"] == ("Q", "K", "V") for h in ("0.0", "0.1"))
    unbiased = AttnOnlyTransformer.random(cfg, seed=1)  # LN biases drawn only with biases=True
    assert not any(node.startswith("b_LN") for node in circuits.computation_graph(unbiased))
    with pytest.raises(circuits.PathError, match="b_LN"):
        circuits.graph.parse_node("b_LN[x]")


# ---------------------------------------------------------------------- folding
@given(model_and_tokens(norms=("LN", "RMS"), positions=("standard", "none")), st.booleans())
def test_folding_the_normalisation_is_exact(
    case: tuple[AttnOnlyTransformer, np.ndarray], centre: bool
) -> None:
    model, tokens = case
    folded = fold_layer_norm(model, center_weights=centre)
    assert (
        folded.cfg.normalization_type
        == {"LN": "LNPre", "RMS": "RMSPre"}[model.cfg.normalization_type]
    )
    assert folded.w_LN is None and folded.b_LN is None
    np.testing.assert_allclose(folded(tokens), model(tokens), atol=1e-10)
    if centre and model.cfg.centred and model.cfg.n_layers:
        np.testing.assert_allclose(folded.W_Q.sum(-1), 0, atol=1e-12)


def test_folding_leaves_weightless_models_alone_and_refuses_shortformer() -> None:
    cfg = TransformerConfig(1, 1, 4, 2, 5, 4, normalization_type="LNPre")
    model = AttnOnlyTransformer.random(cfg)
    assert fold_layer_norm(model) is model
    shortformer = AttnOnlyTransformer.random(
        dataclasses.replace(cfg, normalization_type="LN", positional_embedding_type="shortformer"),
        seed=2,
    )
    with pytest.raises(ConfigError, match="shortformer"):
        fold_layer_norm(shortformer)


@given(model_and_tokens(norms=("LN", "LNPre")))
def test_centring_the_writers_is_exact_under_layer_norm(
    case: tuple[AttnOnlyTransformer, np.ndarray],
) -> None:
    model, tokens = case
    centred = center_writing_weights(model)
    np.testing.assert_allclose(centred(tokens), model(tokens), atol=1e-10)
    np.testing.assert_allclose(centred.W_E.mean(axis=0), 0, atol=1e-12)
    _, cache = centred.run_with_cache(tokens)
    np.testing.assert_allclose(cache.resid(model.cfg.n_layers).mean(-1), 0, atol=1e-10)


def test_centring_the_writers_is_refused_without_centring_readers() -> None:
    for norm in (None, "RMS", "RMSPre"):
        model = AttnOnlyTransformer.random(
            TransformerConfig(1, 1, 4, 2, 5, 4, normalization_type=norm)
        )
        with pytest.raises(ConfigError, match="'LN' or 'LNPre'"):
            center_writing_weights(model)


@given(model_and_tokens(norms=NORMS))
def test_centring_the_unembedding_keeps_the_log_probabilities(
    case: tuple[AttnOnlyTransformer, np.ndarray],
) -> None:
    model, tokens = case
    centred = center_unembed(model)

    def log_probs(logits: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))

    np.testing.assert_allclose(log_probs(centred(tokens)), log_probs(model(tokens)), atol=1e-10)
    np.testing.assert_allclose(centred.W_U.mean(axis=0), 0, atol=1e-12)


def test_weight_analyses_read_the_folded_weights() -> None:
    cfg = TransformerConfig(2, 2, 8, 3, 9, 6, normalization_type="LN")
    model = AttnOnlyTransformer.random(cfg, seed=4, biases=True)
    folded = fold_layer_norm(model)
    np.testing.assert_allclose(ov_circuit(model, "1.0").AB, ov_circuit(folded, "1.0").AB)
    np.testing.assert_allclose(
        token_qk_circuit(model, "0.1").AB, token_qk_circuit(folded, "0.1").AB
    )
    np.testing.assert_allclose(
        composition_scores(model, "K"), composition_scores(folded, "K"), equal_nan=True
    )
    # and they differ from the raw weights, whose LayerNorm weight the folding applies
    raw = model.replace(
        cfg=dataclasses.replace(cfg, normalization_type=None),
        w_LN=None,
        b_LN=None,
        w_LN_final=None,
        b_LN_final=None,
    )
    assert not np.allclose(ov_circuit(raw, "1.0").AB, ov_circuit(model, "1.0").AB)
    # the OV circuit, times the frozen scales, is what a head adds to the logits (token part)
    tokens = np.array([[3, 1, 4, 1, 5, 2]])
    _, cache = model.run_with_cache(tokens)
    term = path_expansion(model).term("embed", "0.1")
    expected = (
        (cache.pattern("0.1")[0] / cache.scale(0)[0][None, :])
        @ ov_circuit(model, "0.1").AB[:, tokens[0]].T
        / cache.scale(2)[0][:, None]
    )
    np.testing.assert_allclose(term.evaluate(cache)[0], expected, atol=1e-10)


# ---------------------------------------------------------------------- import and export
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("positions", ["standard", "shortformer"])
def test_transformer_lens_state_dicts_round_trip_exactly(norm: str, positions: str) -> None:
    cfg = TransformerConfig(
        2, 2, 6, 3, 7, 5, normalization_type=norm, positional_embedding_type=positions, eps=1e-3
    )
    model = AttnOnlyTransformer.random(cfg, seed=5, biases=True)
    state_dict = model.to_transformer_lens()
    expected_keys = {"LN": {"ln_final.w", "ln_final.b"}, "RMS": {"ln_final.w"}}.get(norm, set())
    assert {k for k in state_dict if k.startswith("ln_final")} == expected_keys
    overrides = {"positional_embedding_type": positions, "eps": 1e-3}
    if norm.endswith("Pre"):
        overrides["normalization_type"] = norm  # no key says so
    back = AttnOnlyTransformer.from_transformer_lens(state_dict, **overrides)
    assert back.cfg == cfg
    for name, value in model.parameters().items():
        np.testing.assert_array_equal(back.parameters()[name], value, err_msg=name)


def test_saved_normalised_models_load_back(tmp_path: Any) -> None:
    cfg = TransformerConfig(1, 2, 6, 3, 7, 5, normalization_type="LN", eps=1e-3)
    model = AttnOnlyTransformer.random(cfg, seed=6, biases=True)
    for suffix in (".npz", ".safetensors"):
        circuits.save(model, tmp_path / f"m{suffix}")
        back = circuits.load(tmp_path / f"m{suffix}")
        assert back.cfg == cfg
        np.testing.assert_array_equal(back(np.array([0, 3, 2])), model(np.array([0, 3, 2])))


@pytest.mark.parametrize(
    ("keys", "overrides", "message"),
    [
        ({"ln_final.w"}, {}, r"no \['blocks.0.ln1.w'"),
        ({"blocks.0.ln1.w", "ln_final.w"}, {"normalization_type": "LN"}, "does not match"),
        ({"blocks.0.ln1.w", "ln_final.w", "blocks.0.ln1.b", "ln_final.b"}, {"normalization_type": "LNPre"}, "does not match"),
        (set(), {"normalization_type": "LN"}, "no LayerNorm weights"),
        ({"blocks.0.ln1.b", "ln_final.b"}, {}, "biases without weights"),
    ],
)  # fmt: skip
def test_normalisation_keys_must_agree_with_the_normalisation(
    keys: set[str], overrides: dict[str, Any], message: str
) -> None:
    state_dict: dict[str, Any] = AttnOnlyTransformer.random(
        TransformerConfig(1, 2, 6, 3, 7, 5)
    ).to_transformer_lens()
    state_dict.update({key: np.ones(6) for key in keys})
    with pytest.raises(ModelFileError, match=message):
        AttnOnlyTransformer.from_transformer_lens(state_dict, **overrides)


@pytest.mark.parametrize(
    ("changes", "weights", "message"),
    [
        ({"normalization_type": "LayerNorm"}, {}, "normalization_type must be one of"),
        ({"normalization_type": "LN", "eps": 0.0}, {}, "eps must be a finite number > 0"),
        ({"normalization_type": "LN", "eps": float("nan")}, {}, "eps must be"),
        (
            {"normalization_type": "LNPre"},
            {"w_LN": np.ones((1, 6))},
            r"'LNPre' has no such weights: \['w_LN'\]",
        ),
        ({"normalization_type": "RMS"}, {"b_LN_final": np.ones(6)}, "'RMS' has no such weights"),
        ({}, {"w_LN_final": np.ones(6)}, "None has no such weights"),
        ({"normalization_type": "LN"}, {"w_LN": np.ones((2, 6))}, "w_LN"),
    ],
)
def test_bad_normalisation_settings_get_a_clear_error(
    changes: dict[str, Any], weights: dict[str, Any], message: str
) -> None:
    base = AttnOnlyTransformer.random(TransformerConfig(1, 2, 6, 3, 7, 5))
    with pytest.raises(circuits.CircuitsError, match=message):
        cfg = dataclasses.replace(base.cfg, **changes)
        AttnOnlyTransformer(cfg, **{**base.parameters(), **weights})


# ---------------------------------------------------------------------- from a HookedTransformer
@dataclass
class FakeConfig:
    """The fields of TransformerLens's ``HookedTransformerConfig`` that the import reads or
    checks, with its defaults (duck typing: no TransformerLens needed)."""

    n_layers: int = 1
    d_model: int = 6
    n_ctx: int = 5
    d_head: int = 3
    n_heads: int = 2
    d_vocab: int = 7
    eps: float = 1e-5
    attn_only: bool = True
    normalization_type: str | None = "LN"
    positional_embedding_type: str = "standard"
    attention_dir: str = "causal"
    use_attn_scale: bool = True
    attn_scale: float = 3.0**0.5
    d_vocab_out: int = 7
    attn_scores_soft_cap: float = -1.0
    output_logits_soft_cap: float = -1.0
    n_key_value_heads: int | None = None
    final_rms: bool = False
    scale_attn_by_inverse_layer_idx: bool = False
    default_prepend_bos: bool = True
    some_future_option: bool = False
    model_name: str = "custom"
    rotary_dim: int | None = None
    attn_types: list[str] | None = field(default=None)


class FakeHookedTransformer:
    def __init__(self, cfg: FakeConfig, state_dict: dict[str, Any], bos: int | None = None) -> None:
        self.cfg, self._state_dict = cfg, state_dict
        self.tokenizer = None if bos is None else type("Tokenizer", (), {"bos_token_id": bos})()

    def state_dict(self) -> dict[str, Any]:
        return self._state_dict


def _fake(norm: str | None = "LN", **changes: Any) -> FakeHookedTransformer:
    cfg = TransformerConfig(1, 2, 6, 3, 7, 5, normalization_type=norm, eps=1e-4)
    model = AttnOnlyTransformer.random(cfg, seed=8, biases=True)
    return FakeHookedTransformer(
        FakeConfig(normalization_type=norm, eps=1e-4, **changes), model.to_transformer_lens(), bos=6
    )


@pytest.mark.parametrize("norm", [None, *NORMS])
def test_a_hooked_transformer_is_read_with_its_config(norm: str | None) -> None:
    fake = _fake(norm, model_name="attn-only-demo", rotary_dim=4)  # inert fields
    model = AttnOnlyTransformer.from_hooked_transformer(fake)
    assert model.cfg.normalization_type == norm and model.cfg.eps == 1e-4
    assert model.bos_token == 6
    no_scale = AttnOnlyTransformer.from_hooked_transformer(_fake(norm, use_attn_scale=False))
    assert no_scale.cfg.attn_scale == 1.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attn_only": False}, "attn_only=False"),
        ({"positional_embedding_type": "rotary"}, "positional_embedding_type='rotary'"),
        ({"positional_embedding_type": "alibi"}, "positional_embedding_type='alibi'"),
        ({"attention_dir": "bidirectional"}, "attention_dir='bidirectional'"),
        ({"n_key_value_heads": 1}, "n_key_value_heads=1"),
        ({"attn_scores_soft_cap": 30.0}, "attn_scores_soft_cap=30.0"),
        ({"output_logits_soft_cap": 5.0}, "output_logits_soft_cap=5.0"),
        ({"d_vocab_out": 3}, "d_vocab_out=3"),
        ({"final_rms": True}, "final_rms=True"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"some_future_option": True}, "some_future_option=True: a TransformerLens option"),
        ({"attn_types": ["local"]}, "attn_types"),
    ],
)
def test_what_the_library_does_not_model_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message.replace("[", r"\[")):
        AttnOnlyTransformer.from_hooked_transformer(_fake("LN", **changes))


def test_a_non_model_is_refused() -> None:
    for thing in (None, object(), {"cfg": 1}):
        with pytest.raises(
            UnsupportedModelError, match="expected a TransformerLens HookedTransformer"
        ):
            AttnOnlyTransformer.from_hooked_transformer(thing)
    not_a_config = FakeHookedTransformer(FakeConfig(), {})
    not_a_config.cfg = {"n_layers": 1}  # type: ignore[assignment]
    with pytest.raises(UnsupportedModelError, match="HookedTransformerConfig, got dict"):
        AttnOnlyTransformer.from_hooked_transformer(not_a_config)
