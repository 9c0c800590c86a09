"""MkDocs hooks for the documentation site (mkdocs.yml): the README is its home page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


def on_files(files: Files, config: Any) -> Files:
    """Add README.md as index.md, its links to ``docs/…`` made relative to the site."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = re.sub(r"\]\(docs/", "](", readme)
    files.append(File.generated(config, "index.md", content=readme))
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    """Docstrings write formulas as ``:math:`…``` roles: show them as code, without the role."""
    return html.replace(":math:<code>", "<code>")
