"""The worked examples as Jupyter notebooks (examples/notebooks) run from top to bottom.

Each is executed by nbclient on a fresh kernel of this interpreter, in a temporary directory; a
cell that raises fails the test, and the notebooks' own ``assert`` cells check what they claim.
They are kept without outputs, so the repository holds only what was written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "examples" / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), (
        f"{path.name} is stored with outputs; clear them before committing"
    )
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the figures and diagrams render: an SVG (the model, by Graphviz) and a PNG (a heatmap)
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert {"image/svg+xml", "image/png"} <= kinds, (kinds, sys.executable)
