"""The package's shape is part of its contract: stages import only downwards, and stay small.

Read from the source with `ast` (lazy imports inside functions included), so a cycle hidden in a
function body fails here as surely as one at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "advgen"
STAGES = ("core", "prompts", "tasks", "model", "circuits", "attacks", "outputs", "reference", "jobs", "cli")
"""Bottom to top: a module may import from its own stage or any stage before it."""
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "advgen" else None


def _name_of(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every advgen import, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("advgen"):
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("advgen")]
    return out


def test_top_level_is_the_stages() -> None:
    entries = sorted(p.name for p in PKG.iterdir() if p.name not in {"__init__.py", "__main__.py", "__pycache__", "py.typed"})
    assert set(entries) == set(STAGES), entries


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_follow_the_stage_order(path: Path) -> None:
    mine = _stage(_name_of(path))
    bad = []
    for line, module, names in _imports(path):
        target = _stage(module)
        if mine in STAGES and target in STAGES and STAGES.index(target) > STAGES.index(mine):
            bad.append(f"{path.name}:{line} ({mine}) imports {module} ({target})")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private:
            bad.append(f"{path.name}:{line} imports private {private} from {module}")
    assert not bad, bad


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    names = {_name_of(p) for p in _modules()}
    for p in _modules():
        deps = set()
        for _, module, imported in _imports(p):
            for n in imported:  # `from advgen.x import y` where y is a submodule
                if f"{module}.{n}" in names:
                    deps.add(f"{module}.{n}")
            if module in names:
                deps.add(module)
        graph[_name_of(p)] = deps - {_name_of(p)}
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in graph.get(n, ()):
            if d not in graph:
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, n, d]))
            if d not in state:
                visit(d, [*stack, n])
        state[n] = 2

    assert sum(len(d) for d in graph.values()) > len(graph) // 2, "the import graph looks empty: the scan is broken"
    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    assert len(state) == len(graph) and all(v == 2 for v in state.values())


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has {len(text.splitlines())} lines"
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        and n.end_lineno
        and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path}: {long}"
