"""The package stands alone: its data ships inside advgen/, templates/ cannot drift from it, and it says its version.

The full check (build, install the wheel into a fresh venv, run the quick start there) is .ci/install_check.sh;
these are the fast parts of it that need no build.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from advgen.core import records
from advgen.core.version import version
from advgen.prompts.templates import TEMPLATES_DIR, builtin_pack

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "advgen"


def _data_files() -> set[Path]:
    return {p for p in PKG.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


def test_repository_templates_are_byte_identical_copies_of_the_packaged_packs() -> None:
    packaged = {p.name: p.read_bytes() for p in TEMPLATES_DIR.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (ROOT / "templates").glob("*.yaml")}
    assert packaged, f"no packaged template packs in {TEMPLATES_DIR}"
    assert sorted(copies) == sorted(packaged), "templates/ and advgen/prompts/data/templates/ hold different packs"
    drifted = [n for n in packaged if copies[n] != packaged[n]]
    assert not drifted, (
        f"templates/{drifted} differ from the packaged copies; edit advgen/prompts/data/templates/ "
        "and copy the file to templates/"
    )


def test_builtin_packs_resolve_inside_the_package() -> None:
    assert TEMPLATES_DIR.is_relative_to(PKG)
    assert builtin_pack("ioi").is_relative_to(PKG) and builtin_pack("distractors").is_relative_to(PKG)


def test_every_data_file_under_advgen_is_declared_package_data() -> None:
    """What pyproject's package-data globs select (as setuptools globs them) covers every non-Python file."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = cfg["tool"]["setuptools"]["package-data"]["advgen"]
    selected = {p for g in globs for p in PKG.glob(g) if p.is_file()}
    assert not any("__pycache__" in p.parts for p in selected), "a package-data glob sweeps in __pycache__"
    missing = sorted(str(p.relative_to(ROOT)) for p in _data_files() - selected)
    assert not missing, f"data files a wheel would leave out (add them to package-data): {missing}"


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    assert version() == metadata.version("advgen")
    assert records.package_versions()["advgen"] == version()


def test_python_dash_m_advgen_says_its_version() -> None:
    out = subprocess.run([sys.executable, "-m", "advgen", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"advgen {version()}"


@pytest.mark.slow  # over 7 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_manifest_command_is_the_same_for_the_script_and_python_dash_m(tmp_path) -> None:
    """The manifest records the job's equivalent `advgen` command, never argv (a path local to one machine)."""
    import json

    subprocess.run(
        [sys.executable, "-m", "advgen", "generate", "--n", "5", "--out", str(tmp_path / "g")], check=True, capture_output=True
    )
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert man["command"] == "advgen generate --model reference --n 5 --seed 0"


def _check_dist():
    spec = importlib.util.spec_from_file_location("check_dist", ROOT / ".ci" / "check_dist.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dist_check_flags_caches_tests_missing_data_and_size(tmp_path: Path) -> None:
    cd = _check_dist()
    expected = {"advgen/__init__.py", "advgen/prompts/data/templates/ioi.yaml"}
    whl = tmp_path / "x.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for n in ("advgen/__init__.py", "advgen/__pycache__/x.cpython-311.pyc", "tests/test_x.py"):
            z.writestr(n, "")
    bad = cd.problems(zipfile.ZipFile(whl).namelist(), cd.LIMIT_MB * 10**6 + 1, "wheel", expected)
    text = "\n".join(bad)
    assert "__pycache__/x.cpython-311.pyc should not ship" in text and "tests/test_x.py should not ship" in text
    assert "advgen/prompts/data/templates/ioi.yaml is missing" in text and "over the" in text
    assert cd.problems(sorted(expected), 1000, "wheel", expected) == []
