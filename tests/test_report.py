"""The HTML report: its content, its escaping, its command, and the page in a real browser.

The browser tests drive headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with
Selenium. Without them they skip on a developer's machine and fail under CI (``CI`` set).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import circuits
from circuits.errors import HeadError, RenderError, TokenError, VerificationError
from circuits.reporting import report
from circuits.reporting.report import script_json

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PWNED = "window.__pwned = (window.__pwned || 0) + 1"
HOSTILE_NAME = f"<script>{PWNED}</script>"
HOSTILE_ROLE = "<img src=x onerror=alert(1)>"  # no "_": roles show underscores as spaces
HOSTILE_LABEL = f"</script><script>{PWNED}</script>"


@pytest.fixture(scope="module")
def construction() -> circuits.AttnOnlyTransformer:
    return circuits.induction_model(vocab_size=12, n_ctx=25)


def hostile_model() -> circuits.AttnOnlyTransformer:
    """A small 2-layer model whose metadata, roles and token labels are markup and script."""
    model = circuits.induction_model(vocab_size=8, n_ctx=12)
    labels = [HOSTILE_LABEL if t == 3 else f"<b>t{t}</b>" for t in range(8)]
    metadata = {
        "name": HOSTILE_NAME,
        "head_roles": {"1.0": HOSTILE_ROLE, "0.0": "<!-- previous -->"},
        "token_labels": labels,
        "notes": "]]></pre><iframe src='x'></iframe>",
    }
    return model.replace(metadata=metadata)


# ---------------------------------------------------------------------- content
def test_page_holds_every_section_and_loads_nothing_from_outside(
    construction: circuits.AttnOnlyTransformer,
) -> None:
    page = report(construction).html()
    for anchor in ("card", "diagram", "heads", "composition", "attention", "paths", "qk",
                   "certificate"):  # fmt: skip
        assert f'<section id="{anchor}">' in page
    assert "<svg" in page  # the diagram, inline
    lowered = page.lower()
    assert "<script src" not in lowered and "<link" not in lowered
    assert "sourcemappingurl" not in lowered
    assert "vegaEmbed" in page and "circuitsReport" in page


def test_path_terms_explain_the_logit_of_the_next_token(
    construction: circuits.AttnOnlyTransformer,
) -> None:
    tokens = [0, 3, 5, 7, 2, 3, 5, 7, 2]
    page = report(construction, tokens=tokens, position=5).html()
    logit = construction.forward(np.array(tokens))[5, tokens[6]]
    assert f"the logit of the next token <code>{tokens[6]}</code> is {logit:.3f}" in page
    assert "embed → 1.0 → unembed" in page


def test_canonical_construction_gets_its_closed_form_certificate(
    construction: circuits.AttnOnlyTransformer,
) -> None:
    page = report(construction).html()
    certificate = circuits.verify.certify_induction(construction)
    assert "closed-form certificate" in page
    assert html.escape(str(certificate)) in page
    assert "Certificate (K-composition" in page


def test_other_models_are_certified_only_when_asked() -> None:
    model = circuits.induction_model(vocab_size=5, n_ctx=6, beta0=3.0)
    model = model.replace(metadata={"name": "perturbed"})
    assert "Not certified" in report(model).html()
    page = report(model, certify_n_ctx=5).html()
    assert "Proved from the weights" in page and "Certificate (weights" in page
    with pytest.raises(VerificationError):
        report(model, certify_n_ctx=1)


def test_default_sequence_repeats_a_run_after_bos(
    construction: circuits.AttnOnlyTransformer,
) -> None:
    page = report(construction, seed=3).html()
    start = page.index('<code class="sequence">') + len('<code class="sequence">')
    shown = page[start : page.index("</code>", start)].split()
    # a run of 11 distinct tokens: the vocabulary of 12 less BOS
    assert shown[0] == "BOS" and len(shown) == 23
    assert shown[1:12] == shown[12:23] and len(set(shown[1:12])) == 11


def test_notebook_display_is_the_fragment(construction: circuits.AttnOnlyTransformer) -> None:
    result = report(construction)
    fragment = result._repr_html_()
    assert fragment.startswith('<div class="circuits-report" id="circuits-report-')
    assert "<!DOCTYPE html>" not in fragment and fragment in result.html()


def test_save_to_a_directory_or_a_file(
    tmp_path: Path, construction: circuits.AttnOnlyTransformer
) -> None:
    result = report(construction)
    assert result.save(tmp_path / "new") == tmp_path / "new" / "report.html"
    assert (tmp_path / "page.html").read_text() if result.save(tmp_path / "page.html") else False
    (tmp_path / "file").write_text("")
    with pytest.raises(RenderError, match="cannot write"):
        result.save(tmp_path / "file" / "below")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"position": 24}, RenderError, r"position must be an integer in \[0, 7\].*got 24"),
        ({"position": -1}, RenderError, "got -1"),
        ({"tokens": [0]}, TokenError, "at least 2 token ids"),
        ({"tokens": [0, 1.5, 2]}, TokenError, "token ids"),
        ({"tokens": [0, 99]}, TokenError, "99"),
        ({"labels": ["a"] * 3}, RenderError, "expected 12 strings"),
        ({"head": "2.0"}, HeadError, "2"),
        ({"title": 5}, RenderError, "title: expected a string, got 5"),
    ],
)
def test_bad_options_are_named(
    construction: circuits.AttnOnlyTransformer, options: dict[str, Any], error: type, match: str
) -> None:
    options.setdefault("tokens", [0, 3, 5, 7, 2, 3, 5, 7, 2])
    with pytest.raises(error, match=match):
        report(construction, **options)


def test_not_a_model_is_refused() -> None:
    with pytest.raises(RenderError, match="expected an AttnOnlyTransformer, got dict"):
        report({})  # type: ignore[arg-type]
    with pytest.raises(circuits.ZooError, match="no-such-model"):
        report("no-such-model")


def test_script_json_cannot_close_its_script_element() -> None:
    value = {"a": "</script><!-- & \u2028", "b": [1.5, None]}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_model_strings_are_escaped_in_the_page() -> None:
    page = report(hostile_model()).html()
    for text in (HOSTILE_NAME, HOSTILE_ROLE, "<b>t1</b>", "<iframe"):
        assert text not in page
    assert "&lt;script&gt;window.__pwned" in page
    assert page.count("<script") == page.count("</script>")


# ---------------------------------------------------------------------- in the browser
Browser = Any


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium through Selenium, logging the console and every network request."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need {missing} (dev.sh installs them)")
        pytest.skip(f"browser tests need {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser: Browser, path: Path) -> dict[str, Any]:
    """Load ``path``, wait for the views; the console entries and requested URLs so far."""
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(path.resolve().as_uri())
    wait_for(browser, "return Array.from(document.querySelectorAll('[data-view]'))"
             ".every(e => e.getAttribute('data-ready'))")  # fmt: skip
    return {"console": browser.get_log("browser"), "requests": requested(browser)}


def requested(browser: Browser) -> set[str]:
    urls = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def wait_for(browser: Browser, script: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script}")


def fills(browser: Browser, marks: str) -> list[str]:
    return list(browser.execute_script(
        f"return Array.from(document.querySelectorAll('[data-view=attention] .{marks} path'))"
        ".map(p => p.getAttribute('fill'))"
    ))  # fmt: skip


def hover(browser: Browser, index: int, *, click: bool = False) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    targets = browser.find_elements(
        By.CSS_SELECTOR, "[data-view=attention] .tokens_layer_2_marks path"
    )
    chain = ActionChains(browser).move_to_element(targets[index])
    (chain.click() if click else chain).perform()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    folder = tmp_path_factory.mktemp("pages")
    made: dict[str, Path] = {}

    def page(which: str) -> Path:
        if which not in made:
            model: Any = {"zoo": "attn2l-induction", "hostile": hostile_model(),
                          "construction": circuits.induction_model(vocab_size=12, n_ctx=25)}[which]  # fmt: skip
            made[which] = report(model).save(folder / which)
        return made[which]

    return page


@pytest.mark.parametrize("which", ["zoo", "construction"])
def test_page_loads_offline_with_no_console_error(
    browser: Browser, pages: Callable[[str], Path], which: str
) -> None:
    path = pages(which)
    seen = open_page(browser, path)
    assert [e for e in seen["console"] if e["level"] in ("SEVERE", "WARNING")] == []
    assert seen["requests"] == {path.resolve().as_uri()}
    ready = browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-view]')).map(e => e.getAttribute('data-ready'))"
    )
    assert ready == ["true", "true"]
    assert len(fills(browser, "pattern_marks")) > 0


def test_hovering_and_clicking_a_token_changes_the_attention_view(
    browser: Browser, pages: Callable[[str], Path]
) -> None:
    open_page(browser, pages("construction"))
    shown = fills(browser, "from_token_marks")
    assert len(shown) == 2 * 22  # two heads, keys 0…21 of the default query 21
    hover(browser, 6)
    wait_for(browser, "return document.querySelectorAll("
             "'[data-view=attention] .from_token_marks path').length === 14")  # fmt: skip
    after_hover = fills(browser, "from_token_marks")
    assert after_hover != shown[:14]
    hover(browser, 20, click=True)
    wait_for(browser, "return document.querySelectorAll("
             "'[data-view=attention] .from_token_marks path').length === 42")  # fmt: skip
    strip = fills(browser, "tokens_layer_0_marks")
    assert strip[20] != strip[0] and len(set(strip)) == 2  # the chosen token stands out
    assert requested(browser) == set() and browser.get_log("browser") == []


def test_choosing_a_head_redraws_its_pattern(
    browser: Browser, pages: Callable[[str], Path]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, pages("zoo"))
    before = fills(browser, "pattern_marks")
    title = "return document.querySelector('[data-view=attention]').textContent"
    assert "attention pattern of head 1.0" in browser.execute_script(title)
    Select(browser.find_element(By.CSS_SELECTOR, "[data-view=attention] select")).select_by_value(
        "0.0"
    )
    wait_for(browser, title.replace("return ", "return ") + ".includes('head 0.0')")
    assert fills(browser, "pattern_marks") != before
    assert browser.get_log("browser") == []


def test_hostile_model_strings_show_as_text_and_never_run(
    browser: Browser, pages: Callable[[str], Path]
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    path = pages("hostile")
    seen = open_page(browser, path)
    for index in range(3, 8):
        hover(browser, index)  # tooltips show token labels
    assert browser.execute_script("return window.__pwned") is None
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert seen["requests"] == {path.resolve().as_uri()}  # the <img src=x> never loaded
    assert browser.find_element(By.TAG_NAME, "h1").text == HOSTILE_NAME
    assert HOSTILE_ROLE in browser.find_element(By.ID, "heads").text
    assert HOSTILE_ROLE in browser.find_element(By.CSS_SELECTOR, ".diagram svg").text
    assert HOSTILE_LABEL in browser.find_element(By.CSS_SELECTOR, "code.sequence").text
    assert (
        browser.find_elements(By.CSS_SELECTOR, ".circuits-report img, .circuits-report iframe")
        == []
    )
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-view=attention] .tokens_layer_1_marks text'))"
        ".map(t => t.textContent)"
    )
    assert any(label.startswith("<b") for label in labels)  # drawn as text, truncated
