"""examples/quickstart.ipynb: committed without outputs, and (slow) it runs top to bottom on the reference model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"


@pytest.mark.slow
def test_notebook_runs(tmp_path, reference_model):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "TransformerBridge" in out and "ABBA" in out and "BABA" in out and "weakest template" in out
    assert "roles missing" in out and "wrote" in out
    html = (tmp_path / "outputs" / "quickstart" / "report.html").read_text()
    assert "<section id='verdict'>" in html and "CircuitsVis.render(" in html
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "display_data"]
    assert shown and "text/html" in shown[-1]["data"], "the report is displayed inline"
