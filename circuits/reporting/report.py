r"""One HTML page about a model, self-contained and offline: :func:`report` builds it.

The page holds, in order: the model's card; its circuit diagram (Graphviz SVG, inline); a table
of heads with the roles the model file records, the roles detected from behaviour and every
score; the Q-, K- and V-composition scores against the random baseline :math:`1/\sqrt{d}`; an
interactive view of the attention of every head on one sequence (hover or click a token to see
where each head attends from it, choose the head whose whole pattern is drawn); the path terms
of the logits and the QK terms of one head at a chosen position; and the certificate, where one
is cheap (the closed form of a canonical construction) or asked for.

The interactive views are Vega-Lite specifications drawn by Vega, Vega-Lite and vega-embed,
shipped in ``circuits/reporting/vendor`` (versions and licences in its README) and inlined into
the page, so it loads nothing from the network. Every string that comes from the model
(metadata, token labels, roles) is escaped for HTML, and the JSON the page reads is embedded
with ``<`` written as ``\u003c``, so it cannot end its ``<script>`` element.
"""

from __future__ import annotations

import html
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import is_int
from ..analysis import (
    all_composition_scores,
    behaviour_scores,
    composition_baseline,
    copying_scores,
    repeated_random_tokens,
)
from ..analysis.detection import BEHAVIOURS
from ..errors import RenderError, TokenError, VerificationError
from ..model import ActivationCache, AttnOnlyTransformer
from ..paths import path_expansion
from ..qk_paths import qk_expansion
from ..render import (
    GRAPHVIZ_HINT,
    circuit_diagram,
    composition_edges,
    head_roles,
    to_svg,
)

__all__ = ["ROLE_THRESHOLD", "Report", "report"]

#: A head is given a behaviour's role when its score (see ``behaviour_scores``) is at least this.
ROLE_THRESHOLD = 0.3
#: Length of each copy of the default sequence ``[BOS] r r`` (less when the model is smaller).
DEFAULT_RUN = 12
#: Rows of the path-term and QK-term tables.
TOP_TERMS = 10
#: Expansions with more terms than this are cut to terms through at most two heads.
MAX_TERMS = 2000
_VENDOR = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
_SOURCE_MAP = re.compile(r"//# sourceMappingURL=\S*\s*$")
_ROLE_NAMES = {name: name.replace("_", "-") for name in BEHAVIOURS}


@dataclass(frozen=True)
class Report:
    """A model's report: ``fragment`` is the page's content as one HTML element (its styles,
    data and scripts inside), :meth:`html` the whole page, :meth:`save` writes it."""

    title: str
    fragment: str

    def html(self) -> str:
        """The report as a complete HTML document."""
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(self.title)} — circuits report</title>\n</head>\n<body>\n"
            f"{self.fragment}\n</body>\n</html>\n"
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path`` (a ``.html`` file), or to ``report.html`` in the
        directory ``path`` (created if needed); return the file written."""
        target = Path(path)
        if target.suffix.lower() not in (".html", ".htm"):
            target = target / "report.html"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.html(), encoding="utf-8")
        except OSError as error:
            raise RenderError(f"{target}: cannot write ({error.strerror or error})") from None
        return target

    def _repr_html_(self) -> str:
        return self.fragment


def report(
    model: AttnOnlyTransformer | str,
    *,
    tokens: Sequence[int] | None = None,
    position: int | None = None,
    head: str | None = None,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    certify_n_ctx: int | None = None,
    title: str | None = None,
    description: str | None = None,
) -> Report:
    """The HTML report of ``model`` (a model, or the name of a model of :mod:`circuits.zoo`).

    ``tokens`` is the sequence of the attention view and of the term tables (default: the BOS
    token and a run of up to :data:`DEFAULT_RUN` distinct random tokens repeated, from
    ``seed``); ``position`` the query position of the term tables (default: the last one whose
    next token is in the sequence, whose logit the path terms explain); ``head`` the head of the
    QK-term table and of the drawn pattern (default: the best induction head after layer 0).
    ``labels`` name the tokens (default: ``metadata["token_labels"]`` if the model has one
    label per token, else the ids). The certificate is the closed form for a canonical
    construction; for any other 2-layer model the weights-based ``circuits.verify.certify``
    runs only with ``certify_n_ctx`` (it can take minutes). ``title`` and ``description`` head
    the card (defaults: the metadata's ``name``, the zoo's description).
    """
    if isinstance(model, str):
        from .. import zoo

        description = zoo.info(model).get("description") if description is None else description
        model = zoo.load(model)
    if not isinstance(model, AttnOnlyTransformer):
        raise RenderError(f"report: expected an AttnOnlyTransformer, got {type(model).__name__}")
    for name, text in (("title", title), ("description", description)):
        if text is not None and not isinstance(text, str):
            raise RenderError(f"{name}: expected a string, got {text!r}")
    title = _title(model) if title is None else title
    names = _token_labels(model, labels)
    sequence = _sequence(model, tokens, seed)
    _, cache = model.run_with_cache(sequence)
    position = _position(position, sequence.size)
    heads = _heads_table(model)
    focus = _focus_head(model, head, heads)
    composition = all_composition_scores(model)
    sections = [
        _card(model, title, description),
        _diagram(model, composition, title),
        _heads_section(model, heads),
        _composition_section(model, composition),
        _attention_section(model, sequence, names, focus, position),
        _path_section(model, cache, sequence, names, position),
        _qk_section(model, cache, names, focus, position),
        _certificate_section(model, certify_n_ctx),
    ]
    specs = {
        "composition": _composition_spec(model, composition),
        "attention": _attention_spec(model, cache, sequence, names, focus, position),
    }
    return Report(title, _fragment(title, model, sections, specs))


# ---------------------------------------------------------------------- inputs
def _title(model: AttnOnlyTransformer) -> str:
    """The metadata's ``name``, else what a hand-built model records of its construction."""
    name = model.metadata.get("name")
    if isinstance(name, str):
        return name
    construction = model.metadata.get("construction")
    if isinstance(construction, Mapping):
        mechanism = construction.get("mechanism")
        kind = f", {mechanism}-composition" if isinstance(mechanism, str) else ""
        return f"{construction.get('name', 'hand-built')} circuit (built by hand{kind})"
    return "model"


def _token_labels(model: AttnOnlyTransformer, labels: Sequence[str] | None) -> list[str]:
    """A label for every token id: ``labels``, the metadata's ``token_labels``, or the id."""
    vocab = model.cfg.d_vocab
    given: object = model.metadata.get("token_labels") if labels is None else labels
    if labels is not None and (
        isinstance(labels, str)
        or not isinstance(labels, Sequence)
        or len(labels) != vocab
        or not all(isinstance(label, str) for label in labels)
    ):
        raise RenderError(f"labels: expected {vocab} strings, one per token id, got {labels!r}")
    if isinstance(given, list) and len(given) == vocab and all(isinstance(g, str) for g in given):
        return list(given)
    return [
        "BOS" if token == model.bos_token else str(token) for token in range(vocab)
    ]  # fmt: skip


def _sequence(model: AttnOnlyTransformer, tokens: Sequence[int] | None, seed: int) -> Any:
    if tokens is None:
        room = (model.cfg.n_ctx - (model.bos_token is not None)) // 2
        usable = model.cfg.d_vocab - (model.bos_token is not None)
        run = min(DEFAULT_RUN, room, usable)
        chosen = repeated_random_tokens(
            model, seq_len=run if run >= 2 else None, n_samples=1, seed=seed
        )
        return chosen[0]
    sequence = np.asarray(tokens)
    if sequence.ndim != 1 or sequence.size < 2 or not all(is_int(t) for t in sequence.tolist()):
        raise TokenError(f"tokens: expected a sequence of at least 2 token ids, got {tokens!r}")
    return sequence.astype(np.intp)


def _position(position: int | None, n: int) -> int:
    if position is None:
        return n - 2
    if not (is_int(position) and 0 <= position <= n - 2):
        raise RenderError(
            f"position must be an integer in [0, {n - 2}] (a query whose next token is in the "
            f"sequence of {n} tokens), got {position!r}"
        )
    return int(position)


def _heads_table(model: AttnOnlyTransformer) -> dict[str, dict[str, Any]]:
    """Per head: the roles recorded in the model file, the detected roles and every score."""
    table: dict[str, dict[str, Any]] = {}
    if not model.cfg.n_layers:
        return table
    behaviour = behaviour_scores(model)
    eigen = copying_scores(model)
    recorded = head_roles(model)
    for layer, index in model.cfg.heads():
        name = f"{layer}.{index}"
        scores = {key: float(behaviour[key][layer, index]) for key in (*BEHAVIOURS, "copying")}
        scores["ov_copying"] = float(eigen[layer, index])
        detected = [_ROLE_NAMES[b] for b in BEHAVIOURS if scores[b] >= ROLE_THRESHOLD]
        table[name] = {"recorded": recorded.get(name, []), "detected": detected, **scores}
    return table


def _focus_head(
    model: AttnOnlyTransformer, head: str | None, heads: Mapping[str, Mapping[str, Any]]
) -> str | None:
    if head is not None:
        layer, index = model.cfg.resolve_head(head)
        return f"{layer}.{index}"
    if not heads:
        return None
    later = [name for name in heads if not name.startswith("0.")] or list(heads)
    return max(later, key=lambda name: _finite(heads[name]["induction"], -1.0))


def _finite(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


# ---------------------------------------------------------------------- sections
def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n{body}\n</section>'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], css: str = "") -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return _e(value)


def _card(model: AttnOnlyTransformer, title: str, description: str | None) -> str:
    cfg = model.cfg
    facts = [
        ("layers × heads", f"{cfg.n_layers} × {cfg.n_heads}"),
        ("d_model, d_head", f"{cfg.d_model}, {cfg.d_head}"),
        ("vocabulary, context", f"{cfg.d_vocab}, {cfg.n_ctx}"),
        ("positions", cfg.positional_embedding_type),
        ("BOS token", "none" if model.bos_token is None else model.bos_token),
        ("dtype", np.dtype(model.dtype).name),
    ]
    rows = "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    about = f'<p class="description">{_e(description)}</p>\n' if description else ""
    metadata = json.dumps(dict(model.metadata), indent=2, ensure_ascii=False)
    return _section(
        "card",
        f"Model: {title}",
        f'{about}<table class="facts">\n{rows}\n</table>\n'
        f'<details><summary>metadata</summary><pre class="metadata">{_e(metadata)}</pre>'
        "</details>",
    )


def _diagram(model: AttnOnlyTransformer, composition: Mapping[str, Any], title: str) -> str:
    svg = to_svg(circuit_diagram(model, composition=composition, title=title))
    if svg is None:
        body = (
            f'<p class="note">No diagram: Graphviz\'s dot was not found; {_e(GRAPHVIZ_HINT)}.</p>'
        )
    else:
        body = f'<div class="diagram">{svg[svg.find("<svg") :]}</div>'
    note = (
        '<p class="note">Residual stream from the embeddings (bottom) to the logits (top); '
        "composition edges: Q dashed blue, K dotted red, V solid green, width by score.</p>"
    )
    return _section("diagram", "Circuit diagram", body + "\n" + note)


def _heads_section(model: AttnOnlyTransformer, heads: Mapping[str, Mapping[str, Any]]) -> str:
    if not heads:
        return _section("heads", "Heads", '<p class="note">This model has no heads.</p>')
    header = ["head", "recorded role", "detected role", "previous token", "duplicate token",
              "induction", "copying", "OV copying"]  # fmt: skip
    rows = [
        [
            name,
            ", ".join(h["recorded"]) or "–",
            ", ".join(h["detected"]) or "–",
            *(h[key] for key in (*BEHAVIOURS, "copying", "ov_copying")),
        ]
        for name, h in heads.items()
    ]
    note = (
        '<p class="note">Recorded roles come from the model file\'s metadata. Behaviour scores '
        "are mean attention on 16 sequences [BOS] r r of repeated random tokens (previous token "
        "i → i−1; duplicate token: to the earlier copy of the same token; induction: to the token "
        f"after it); a head is given a role where its score is ≥ {ROLE_THRESHOLD}. Copying is "
        "the behavioural copying score, OV copying Σλ/Σ|λ| over the eigenvalues of "
        "W_U W_OV W_E (1 for a pure copying head).</p>"
    )
    return _section("heads", "Heads", _table(header, rows, "numbers") + "\n" + note)


def _composition_section(model: AttnOnlyTransformer, composition: Mapping[str, Any]) -> str:
    if model.cfg.n_layers < 2:
        note = '<p class="note">Composition needs at least two layers.</p>'
        return _section("composition", "Composition", note)
    baseline = composition_baseline(model)
    edges = composition_edges(model, composition)
    rows = [
        [kind, writer, reader, score, score / baseline] for kind, writer, reader, score in edges
    ]
    table = (
        _table(["kind", "writer", "reader", "score", "× baseline"], rows, "numbers")
        if rows
        else '<p class="note">No pair of heads composes above 1.5 × the baseline.</p>'
    )
    body = (
        f"<p>Scores ‖M W_OV‖ / (‖M‖ ‖W_OV‖) from a writing head to a reading head of a later layer "
        f"(M = W_QKᵀ for Q, W_QK for K, W_OV for V). Two unrelated heads score about "
        f"1/√d_model = <b>{baseline:.3f}</b> (the random baseline): the colour scale is centred "
        "there, orange above it, blue below.</p>\n"
        '<div class="vis" data-view="composition"></div>\n'
        f"<p>Pairs at or above 1.5 × the baseline ({1.5 * baseline:.3f}):</p>\n{table}"
    )
    return _section("composition", "Composition", body)


def _attention_section(
    model: AttnOnlyTransformer, sequence: Any, names: Sequence[str], focus: str | None, p: int
) -> str:
    if focus is None:
        return _section("attention", "Attention", '<p class="note">This model has no heads.</p>')
    text = " ".join(names[t] for t in sequence)
    body = (
        f'<p>Sequence of {sequence.size} tokens: <code class="sequence">{_e(text)}</code></p>\n'
        "<p>Hover over or click a token of the top row: the rows below show where each head "
        "attends from it. The drop-down chooses the head whose whole pattern (query down, key "
        "across) is drawn at the bottom, with the chosen query outlined.</p>\n"
        '<div class="vis scroll" data-view="attention"></div>\n'
        '<noscript><p class="note">The interactive views need JavaScript.</p></noscript>'
    )
    return _section("attention", "Attention", body)


def _path_section(
    model: AttnOnlyTransformer, cache: ActivationCache, sequence: Any, names: Sequence[str], p: int
) -> str:
    expansion = path_expansion(model)
    cut = ""
    if len(expansion) > MAX_TERMS:
        expansion = expansion.filter(order=range(3))
        cut = f" (of the terms through at most two heads, {len(expansion)} of them)"
    targets = np.append(sequence[1:], sequence[-1])[None]
    mask = np.zeros(targets.shape, dtype=bool)
    mask[0, p] = True
    contributions = expansion.contributions(cache, targets)
    ranked = contributions.ranked(mask)[:TOP_TERMS]
    total = float(contributions.total()[0, p])
    target = int(sequence[p + 1])
    rows = [[" → ".join(term.path), term.kind, value] for term, value in ranked]
    body = (
        f"<p>At position {p} (token <code>{_e(names[int(sequence[p])])}</code>), the logit of "
        f"the next token <code>{_e(names[target])}</code> is {total:.3f}; the terms of the path "
        f"expansion{cut} that contribute most to it:</p>\n"
        + _table(["path", "kind", "contribution"], rows, "numbers")
    )
    return _section("paths", "Path terms", body)


def _qk_section(
    model: AttnOnlyTransformer, cache: ActivationCache, names: Sequence[str], focus: str | None,
    p: int,
) -> str:  # fmt: skip
    if focus is None:
        return _section("qk", "QK terms", '<p class="note">This model has no heads.</p>')
    layer, index = model.cfg.resolve_head(focus)
    key = int(np.argmax(cache.pattern(layer, index)[0, p, : p + 1]))
    contributions = qk_expansion(model, focus).contributions(cache)
    values = contributions.values[:, 0, p, key]
    order = np.argsort(-np.abs(values), kind="stable")[:TOP_TERMS]
    rows = []
    for i in order:
        term = contributions.terms[i]
        rows.append(
            [" → ".join(term.query), " → ".join(term.key_path), term.kind, float(values[i])]
        )
    token = names[int(cache.tokens[0, key])]
    body = (
        f"<p>The score of head {_e(focus)} from query {p} to the key it attends to most, "
        f"position {key} (token <code>{_e(token)}</code>), by term: a key path through an "
        "earlier head is K-composition, a query path through one Q-composition.</p>\n"
        + _table(["query path", "key path", "kind", "score"], rows, "numbers")
    )
    return _section("qk", "QK terms", body)


def _certificate_section(model: AttnOnlyTransformer, certify_n_ctx: int | None) -> str:
    from ..verify import certify, certify_induction

    text: str | None = None
    if "construction" in model.metadata and certify_n_ctx is None:
        try:
            text = str(certify_induction(model))
        except VerificationError as error:
            note = f"The closed form does not apply ({error})."
        else:
            note = (
                "The closed-form certificate of the canonical construction "
                "(circuits.verify.certify_induction): a proved lower bound on P(correct next "
                "token) over every sequence of the family."
            )
    elif certify_n_ctx is not None:
        text = str(certify(model, n_ctx=certify_n_ctx))
        note = (
            f"Proved from the weights (circuits.verify.certify) over the sequences of at most "
            f"{certify_n_ctx} tokens."
        )
    elif model.cfg.n_layers == 2 and model.bos_token is not None:
        note = (
            "Not certified: this model is not a canonical construction, and the weights-based "
            "certifier can take minutes, so it runs only when asked: "
            "report(model, certify_n_ctx=N) or circuits report MODEL --certify-n-ctx N."
        )
    else:
        note = "No certificate: certificates cover 2-layer models with a BOS token."
    body = f'<p class="note">{_e(note)}</p>'
    if text is not None:
        body += f'\n<pre class="certificate">{_e(text)}</pre>'
    return _section("certificate", "Certificate", body)


# ---------------------------------------------------------------------- Vega-Lite views
def _composition_spec(
    model: AttnOnlyTransformer, composition: Mapping[str, Any]
) -> dict[str, Any] | None:
    if model.cfg.n_layers < 2:
        return None
    baseline = composition_baseline(model)
    names = model.cfg.head_names()
    rows = []
    for kind in ("Q", "K", "V"):
        scores = composition[kind]
        for l1, h1, l2, h2 in np.ndindex(*scores.shape):
            score = float(scores[l1, h1, l2, h2])
            if l1 < l2 and math.isfinite(score):
                rows.append(
                    {"kind": kind, "writer": f"{l1}.{h1}", "reader": f"{l2}.{h2}",
                     "score": round(score, 4), "ratio": round(score / baseline, 2)}
                )  # fmt: skip
    writers = [n for n in names if int(n.split(".")[0]) < model.cfg.n_layers - 1]
    readers = [n for n in names if not n.startswith("0.")]
    top = max([2 * baseline] + [row["score"] for row in rows])
    x = {"field": "reader", "type": "ordinal", "sort": readers, "title": "reading head"}
    y = {"field": "writer", "type": "ordinal", "sort": writers, "title": "writing head"}
    return {
        "data": {"values": rows},
        "facet": {
            "column": {
                "field": "kind",
                "type": "nominal",
                "sort": ["Q", "K", "V"],
                "title": None,
                "header": {"labelExpr": "datum.value + '-composition'", "labelFontSize": 12},
            }
        },
        "spec": {
            "width": max(38 * len(readers), 120),
            "height": 26 * len(writers),
            "layer": [
                {
                    "mark": "rect",
                    "encoding": {
                        "x": x,
                        "y": y,
                        "color": {
                            "field": "score",
                            "type": "quantitative",
                            "title": "score",
                            "scale": {
                                "scheme": "blueorange",
                                "domain": [0, top],
                                "domainMid": baseline,
                            },
                        },
                        "tooltip": [
                            {"field": "kind"},
                            {"field": "writer"},
                            {"field": "reader"},
                            {"field": "score", "format": ".3f"},
                            {"field": "ratio", "title": "× baseline"},
                        ],
                    },
                },
                {
                    "mark": {"type": "text", "fontSize": 9},
                    "encoding": {"x": x, "y": y, "text": {"field": "score", "format": ".2f"}},
                },
            ],
        },
    }


def _attention_spec(
    model: AttnOnlyTransformer, cache: ActivationCache, sequence: Any, names: Sequence[str],
    focus: str | None, p: int,
) -> dict[str, Any] | None:  # fmt: skip
    if focus is None:
        return None
    n = int(sequence.size)
    heads = model.cfg.head_names()
    labels = [names[int(t)] for t in sequence]
    tokens = [{"pos": i, "label": labels[i]} for i in range(n)]
    rows = []
    for layer, index in model.cfg.heads():
        pattern = cache.pattern(layer, index)[0]
        for q in range(n):
            for k in range(q + 1):
                rows.append(
                    {"head": f"{layer}.{index}", "pos": q, "key": k, "label": labels[k],
                     "w": round(float(pattern[q, k]), 4)}
                )  # fmt: skip
    step = 24
    width = step * n
    positions = list(range(n))
    axis = {"labelAngle": 0, "labelFontSize": 9}
    x_token = {"field": "pos", "type": "ordinal", "scale": {"domain": positions},
               "axis": {**axis, "title": "hover over or click a token", "orient": "top"}}  # fmt: skip
    x_key = {"field": "key", "type": "ordinal", "scale": {"domain": positions},
             "axis": {**axis, "title": "key position"}}  # fmt: skip
    colour = {"field": "w", "type": "quantitative", "title": "attention",
              "scale": {"domain": [0, 1], "range": ["#f7fbff", "#08306b"]}}  # fmt: skip
    tooltip = [{"field": "head"}, {"field": "pos", "title": "query"}, {"field": "key"},
               {"field": "label", "title": "key token"}, {"field": "w", "title": "attention",
                                                          "format": ".3f"}]  # fmt: skip
    picked = {"param": "pick", "empty": False}
    strip = {
        "name": "tokens",
        "data": {"values": tokens},
        "width": width,
        "height": 26,
        "layer": [
            {
                "mark": {"type": "rect", "stroke": "white"},
                "encoding": {
                    "x": x_token,
                    "color": {"condition": {**picked, "value": "#fdae6b"}, "value": "#eeeeee"},
                },
            },
            {
                "mark": {"type": "text", "fontSize": 10, "limit": step - 2},
                "encoding": {"x": x_token, "text": {"field": "label"}},
            },
            {
                "params": [
                    {
                        "name": "pick",
                        "select": {
                            "type": "point",
                            "fields": ["pos"],
                            "on": "click, pointerover",
                            "clear": False,
                            "toggle": False,
                        },
                        "value": [{"pos": p}],
                    }
                ],
                "mark": {
                    "type": "rect",
                    "fill": "#000000",
                    "fillOpacity": 0.001,
                    "cursor": "pointer",
                },
                "encoding": {
                    "x": x_token,
                    "tooltip": [
                        {"field": "pos", "title": "position"},
                        {"field": "label", "title": "token"},
                    ],
                },
            },
        ],
    }
    from_token = {
        "name": "from_token",
        "data": {"values": rows},
        "transform": [{"filter": picked}],
        "width": width,
        "height": {"step": 20},
        "title": {"text": "attention from the chosen token, every head", "fontSize": 11},
        "mark": {"type": "rect", "stroke": "white", "strokeWidth": 0.5},
        "encoding": {
            "x": x_key,
            "y": {"field": "head", "type": "ordinal", "scale": {"domain": heads}, "title": "head"},
            "color": colour,
            "tooltip": tooltip,
        },
    }
    pattern_view = {
        "name": "pattern",
        "data": {"values": rows},
        "transform": [{"filter": "datum.head === head"}],
        "width": width,
        "height": width,
        "title": {"text": {"expr": "'attention pattern of head ' + head"}, "fontSize": 11},
        "mark": {"type": "rect", "stroke": "#e6550d"},
        "encoding": {
            "x": x_key,
            "y": {
                "field": "pos",
                "type": "ordinal",
                "scale": {"domain": positions},
                "axis": {**axis, "title": "query position"},
            },
            "color": colour,
            "strokeWidth": {"condition": {**picked, "value": 1.5}, "value": 0},
            "tooltip": tooltip,
        },
    }
    return {
        "params": [
            {
                "name": "head",
                "value": focus,
                "bind": {"input": "select", "options": heads, "name": "pattern of head "},
            }
        ],
        "vconcat": [strip, from_token, pattern_view],
        "spacing": 14,
        "config": {"view": {"stroke": None}},
    }


# ---------------------------------------------------------------------- the page
def _fragment(
    title: str,
    model: AttnOnlyTransformer,
    sections: Sequence[str],
    specs: Mapping[str, dict[str, Any] | None],
) -> str:
    root = "circuits-report-" + secrets.token_hex(6)
    payload = {"specs": {name: spec for name, spec in specs.items() if spec is not None}}
    scripts = "\n".join(f"<script>{_asset(f'vendor/{name}')}</script>" for name in _VENDOR)
    nav = " · ".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (("card", "model"), ("diagram", "diagram"), ("heads", "heads"),
                              ("composition", "composition"), ("attention", "attention"),
                              ("paths", "path terms"), ("qk", "QK terms"),
                              ("certificate", "certificate"))
    )  # fmt: skip
    return (
        f'<div class="circuits-report" id="{root}">\n<style>{_asset("report.css")}</style>\n'
        f'<header><h1>{_e(title)}</h1><p class="subtitle">{_e(repr(model))}</p>'
        f"<nav>{nav}</nav></header>\n"
        + "\n".join(sections)
        + f'\n<script type="application/json" class="circuits-data">{script_json(payload)}'
        f"</script>\n{scripts}\n<script>{_asset('report.js')}</script>\n"
        f'<script>circuitsReport(document.getElementById("{root}"));</script>\n</div>'
    )


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&``
    and the line separators U+2028/U+2029 are written as ``\\u`` escapes."""
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _asset(name: str) -> str:
    text = (resources.files(__name__.rpartition(".")[0]) / name).read_text(encoding="utf-8")
    return _SOURCE_MAP.sub("", text)
