"""Check a built wheel and sdist: the package's files and data all there, nothing else, within the size limit.

Usage: python .ci/check_dist.py DIST_DIR   (run from the repository root; .ci/install_check.sh calls it)
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

LIMIT_MB = 18
"""Largest wheel or sdist, in MB (10**6 bytes). 0.1.0 is about 12.4 MB, nearly all bundled weights (reference,
planted, the ladder); a new model or data file that pushes past this is a decision to make, not an accident.
Raised from 16 to 18 in session 12 for the bundled induction model (0.8 MB), which took both to 16.7 MB."""
FORBIDDEN = ("__pycache__", ".pyc", ".pyo", ".pytest_cache", ".ipynb_checkpoints", ".DS_Store", "tests/", ".egg-info/")


def package_files(root: Path) -> set[str]:
    """Every file under advgen/ in this checkout (code and data), as the wheel names them."""
    return {
        p.relative_to(root).as_posix()
        for p in (root / "advgen").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }


def problems(names: list[str], size: int, kind: str, expected: set[str], prefix: str = "") -> list[str]:
    out = [
        f"{kind}: {n} should not ship" for n in names if any(f in n for f in FORBIDDEN if f != ".egg-info/" or kind == "wheel")
    ]
    have = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    out += [f"{kind}: {e} is missing (a file a command reads at run time?)" for e in sorted(expected - have)]
    out += [
        f"{kind}: {n} is not in the checkout's advgen/" for n in sorted(have) if n.startswith("advgen/") and n not in expected
    ]
    if size > LIMIT_MB * 10**6:
        out.append(f"{kind}: {size / 1e6:.1f} MB is over the {LIMIT_MB} MB limit")
    return out


def main(dist: Path) -> int:
    root = Path.cwd()
    expected = package_files(root)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"check_dist: expected one wheel and one sdist in {dist}, found {[p.name for p in wheels + sdists]}")
        return 1
    with zipfile.ZipFile(wheels[0]) as z:
        bad = problems(z.namelist(), wheels[0].stat().st_size, "wheel", expected)
    with tarfile.open(sdists[0]) as t:
        names = [m.name for m in t.getmembers() if m.isfile()]
    top = names[0].split("/", 1)[0] + "/"
    tmpl = {p.relative_to(root).as_posix() for p in (root / "templates").glob("*") if p.is_file()}
    bad += problems(names, sdists[0].stat().st_size, "sdist", expected | tmpl, prefix=top)
    for msg in bad:
        print(f"check_dist: {msg}")
    if not bad:
        print(
            f"check_dist: ok: {wheels[0].name} ({wheels[0].stat().st_size / 1e6:.1f} MB), {sdists[0].name} "
            f"({sdists[0].stat().st_size / 1e6:.1f} MB), {len(expected)} package files each, limit {LIMIT_MB} MB"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
