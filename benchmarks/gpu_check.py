"""Every model command once on the CPU and once on a GPU (`--device cuda`), results compared within tolerance.

Runs the CLI (`advgen.cli.main.main`, in this process) on the bundled reference model at small sizes: run,
validate, scan, discover, check-claim, attack and report (attention views). Each command's JSON
outputs are compared number by number: |a - b| <= ATOL + RTOL * |b| (float32 on either device; the
metrics themselves are reduced in float64 on both); strings, integers and lists of names must be
equal; timings, paths, commands and the device fields are skipped. Prints one PASS / FAIL line per
command and exits 1 if any failed (2 if the GPU device is missing).

    python benchmarks/gpu_check.py --out /tmp/gpu-check [--device cuda] [--n 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ATOL, RTOL = 1e-3, 1e-3
SKIP = re.compile(r"(second|time|elapsed|wall|runtime|command|device|dtype|path|source|version|out_dir|created)", re.I)
"""Keys whose values legitimately differ between the two runs."""


def compare(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two JSON values differ beyond the tolerance (empty: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        for k in sorted(set(a) & set(b)):
            if not SKIP.search(str(k)):
                out += compare(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, f"{where}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return [] if a == b else [f"{where}: {a!r} vs {b!r}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b):
            return []
        return [] if abs(a - b) <= ATOL + RTOL * abs(b) else [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def load_json(path: Path) -> Any:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def cli(args: list[str], log: Path) -> tuple[int, float]:
    """Run one advgen command in this process (imports paid once), its output and any traceback going to `log`."""
    from advgen.cli.main import main

    t0 = time.perf_counter()
    with log.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            rc = main(args)
        except Exception:
            traceback.print_exc()
            rc = 1
    return rc, time.perf_counter() - t0


def commands(a: argparse.Namespace, d: Path, cpu_run: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (arguments without --device / --out, output files to compare); the crash-prone ones first."""
    n = str(a.n)
    common = ["--model", "reference", "--seed", "0", "--no-progress", "--overwrite"]
    return {
        "discover": (
            ["discover", "--model", "reference", "--n", str(max(a.n // 3, 12)), "--seed", "0", "--no-progress"],
            ["@circuit.json", "@discovery.json"],
        ),
        "check-claim": (
            [
                "check-claim",
                "reference-ioi",
                "--model",
                "reference",
                "--n",
                str(max(a.n // 3, 12)),
                "--seed",
                "0",
                "--no-progress",
            ],
            ["claims.json"],
        ),
        "run": (["run", *common, "--n", n, "--batch-size", "16"], ["results.jsonl", "summary.json"]),
        "validate": (
            ["validate", str(cpu_run / "results.jsonl"), *common, "--batch-size", "7"],
            ["results.jsonl", "summary.json"],
        ),
        "attack": (
            [
                "attack",
                "--model",
                "reference",
                "--circuit",
                "reference-ioi",
                "--budget",
                str(5 * a.n),
                "--n-clean",
                str(max(a.n // 3, 12)),
                "--seed",
                "0",
                "--no-progress",
                "--overwrite",
            ],
            ["summary.json"],
        ),
        "scan": (
            [
                "scan",
                "--model",
                "reference",
                "--sample",
                str(4 * a.n),
                "--seed",
                "0",
                "--unit",
                "64",
                "--batch-size",
                "32",
                "--no-progress",
                "--overwrite",
            ],
            ["summary.json"],
        ),
    }


def out_args(name: str, out: Path) -> list[str]:
    """Every command writes a run directory (discover's holds circuit.json and discovery.json)."""
    return ["--out", str(out)]


def check_one(name: str, spec: tuple[list[str], list[str]], root: Path, device: str) -> tuple[bool, str]:
    args, files = spec
    outs = {dev: root / dev.replace(":", "") / name for dev in ("cpu", device)}
    times = {}
    for dev, out in outs.items():
        out.parent.mkdir(parents=True, exist_ok=True)
        rc, times[dev] = cli([*args, *out_args(name, out), "--device", dev], out.parent / f"{name}.log")
        if rc != 0:
            return False, f"exit {rc} on {dev}; see {out.parent / f'{name}.log'}"
    diffs = []
    for f in files:
        rel = f.lstrip("@")
        a, b = (load_json(o / rel) for o in (outs[device], outs["cpu"]))
        diffs += [f"{rel}{d}" for d in compare(a, b)]
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    if diffs:
        return False, f"{len(diffs)} difference(s) beyond atol {ATOL} + rtol {RTOL}: {'; '.join(diffs[:4])} ({timing})"
    return True, f"{', '.join(f.lstrip('@') for f in files)} equal within atol {ATOL} + rtol {RTOL} ({timing})"


def check_report(root: Path, device: str) -> tuple[bool, str]:
    """The report's attention views load the model on the device; the HTML must come out with its heatmaps."""
    run = root / "cpu" / "attack"
    html = root / device.replace(":", "") / "report.html"
    rc, s = cli(["report", str(run), "--out", str(html), "--device", device], html.parent / "report.log")
    if rc != 0 or not html.exists():
        return False, f"exit {rc}; see {html.parent / 'report.log'}"
    ok = "Attention heatmaps skipped" not in html.read_text()
    return ok, f"{html.stat().st_size // 1024} KiB, attention views {'present' if ok else 'skipped'} ({s:.1f} s)"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda", help="the device compared with the CPU (cuda, cuda:N; cpu checks the script)")
    ap.add_argument("--n", type=int, default=36, help="prompts for run; the other commands scale from it")
    ap.add_argument("--only", nargs="*", default=None, help="run only these commands")
    a = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"FAIL setup: --device {a.device} but torch {torch.__version__} sees no CUDA device")
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    specs = commands(a, a.out, a.out / "cpu" / "run")
    failed = 0
    for name, spec in specs.items():
        if a.only and name not in a.only:
            continue
        try:
            ok, why = check_one(name, spec, a.out, a.device)
        except Exception as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: {why}", flush=True)
    if not a.only or "report" in a.only:
        ok, why = check_report(a.out, a.device)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} report: {why}", flush=True)
    print(f"{failed} command(s) failed" if failed else "all commands passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
