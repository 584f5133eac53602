"""The README's Python block is run as written (in a temporary directory), so it cannot drift from the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_python_block_runs_on_the_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1 and "import advgen" in blocks[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})  # the project's own README
    printed = capsys.readouterr().out
    assert "mean LD" in printed and "yield per 1,000" in printed
    for f in ("run/manifest.json", "discover/circuit.json", "attack/summary.json", "report.html", "export/README.md"):
        assert (tmp_path / "outputs" / "api" / f).is_file(), f
