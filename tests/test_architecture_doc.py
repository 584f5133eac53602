"""docs/architecture.md's module table names every module of the package, under its stage, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def documented() -> set[tuple[str, str]]:
    """(stage, file name) for every module the doc's table lists."""
    out = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("stage", "---"):
            out |= {(cells[0], name) for name in re.findall(r"`([\w]+\.py)`", cells[1])}
    return out


def modules() -> set[tuple[str, str]]:
    pkg = ROOT / "advgen"
    return {
        (p.relative_to(pkg).parts[0], p.name)
        for p in pkg.rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts and len(p.relative_to(pkg).parts) > 1
    }


def test_the_architecture_table_lists_every_module() -> None:
    missing = sorted(f"{stage}/{name}" for stage, name in modules() - documented())
    assert missing == [], f"docs/architecture.md does not list: {missing}"


def test_the_architecture_table_lists_no_module_that_is_gone() -> None:
    stale = sorted(f"{stage}/{name}" for stage, name in documented() - modules())
    assert stale == [], f"docs/architecture.md lists modules that do not exist: {stale}"


def test_the_doc_links_nothing_outside_the_repository() -> None:
    links = re.findall(r"\]\(([^)]+)\)", DOC.read_text(encoding="utf-8"))
    assert [u for u in links if u.startswith("../") and not (DOC.parent / u).resolve().is_relative_to(ROOT)] == []
