#!/usr/bin/env bash
# CI: the package as a user gets it. Build the sdist and the wheel (from that sdist), check their contents
# (.ci/check_dist.py: every package file and data file there, no tests or caches, within the size limit), install
# the wheel into a fresh venv (not editable; torch pinned first) and run the commands of the README's quick start
# from a directory outside the repository, so nothing can be imported or read from the checkout.
# Usage: .ci/install_check.sh   (PYTHON: the interpreter for the fresh venv; TORCH_INDEX_URL as in the Makefile)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
BUILD_PY=${BUILD_PY:-.venv/bin/python}   # has `build` (the dev extra)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { echo "install-check: $*"; }

"$BUILD_PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
rm -rf advgen.egg-info   # left by the sdist step; the editable install's metadata lives elsewhere
"$BUILD_PY" .ci/check_dist.py "$WORK/dist"

"$PYTHON" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install --quiet --upgrade pip
"$V/python" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
"$V/python" -m pip install --quiet "$WORK"/dist/*.whl "torch==2.13.0"

cd "$WORK"   # outside the repository: only the installed wheel can answer
unset PYTHONPATH
export MPLBACKEND=Agg
where=$("$V/python" -c "import advgen, pathlib; print(pathlib.Path(advgen.__file__).parent)")
case "$where" in "$WORK/venv/"*) ;; *) say "advgen imported from $where, not from the fresh venv"; exit 1 ;; esac
want=$(cd "$REPO" && "$V/python" -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
got=$("$V/advgen" --version)
[ "$got" = "advgen $want" ] || { say "advgen --version printed '$got', pyproject.toml says $want"; exit 1; }
log="$WORK/commands.log"   # every command's output, checked for Python warnings at the end
adv() { echo "\$ ${*#"$V/"}" >>"$log"; "$@" >>"$log" 2>&1 || { cat "$log"; say "failed: $*"; exit 1; }; }
adv "$V/python" -m advgen --help
adv "$V/advgen" run --model reference --n 50 --seed 0 --out run --no-progress
adv "$V/advgen" attack --model reference --circuit reference-ioi --budget 300 --n-clean 50 --seed 0 --out attack --no-progress
adv "$V/advgen" report attack --out attack/report.html
adv "$V/advgen" export attack --format parquet --out export
cat "$log"
if grep -E "[A-Za-z]+Warning: " "$log"; then say "Python warnings in the output (fix the cause; filter only a library's, saying why)"; exit 1; fi
"$V/python" - "$want" <<'PY'
import json, sys
from pathlib import Path
for d in ("run", "attack"):
    v = json.loads(Path(d, "manifest.json").read_text())["versions"]["advgen"]
    assert v == sys.argv[1], f"{d}/manifest.json records advgen {v}, expected {sys.argv[1]}"
assert f"advgen {sys.argv[1]}" in Path("attack/report.html").read_text(), "the report does not record the version"
assert any(Path("export").rglob("*.parquet")), "export wrote no parquet file"
PY
say "ok: wheel installed in a fresh venv; --version, python -m advgen, run, attack, report, export all work"
