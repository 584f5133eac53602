"""`advgen attack` wall time, local vs `--backend ray`, and whether their files are byte-identical.

Each run is the real command in a fresh process, timed end to end (model load, Ray start-up, every
phase, the files). Both backends write to the same --out path (emptied in between), so every file,
the manifest included, can be compared by hash. `--threads` sets OMP_NUM_THREADS for the command:
torch's thread count in the local process, and (by default) in each Ray actor.

    python benchmarks/bench_attack_ray.py --seeds 0 1 2 --threads 1 --out docs/benchmarks/attack-ray.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def run(a: argparse.Namespace, seed: int, out: Path, ray: bool) -> float:
    cmd = [
        sys.executable,
        "-m",
        "advgen",
        "attack",
        "--model",
        "reference",
        "--circuit",
        "reference-ioi",
        "--budget",
        str(a.budget),
        "--n-clean",
        str(a.n_clean),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--overwrite",
        "--no-progress",
    ]
    cmd += ["--backend", "ray", "--workers", str(a.workers)] if ray else []
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads), "MPLBACKEND": "Agg"}
    )
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--n-clean", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS: torch threads of the local process and of each actor"
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON with every run (default: print only)")
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "attack"
        for seed in a.seeds:
            t_local = run(a, seed, out, ray=False)
            local = tree(out)
            shutil.rmtree(out)
            t_ray = run(a, seed, out, ray=True)
            same = tree(out) == local
            shutil.rmtree(out)
            runs.append(
                {
                    "seed": seed,
                    "local_s": round(t_local, 1),
                    "ray_s": round(t_ray, 1),
                    "speedup": round(t_local / t_ray, 2),
                    "identical": same,
                    "files": len(local),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    sp = [r["speedup"] for r in runs]
    doc = {
        "command": " ".join(["python", "benchmarks/bench_attack_ray.py", *sys.argv[1:]]),
        "budget": a.budget,
        "n_clean": a.n_clean,
        "workers": a.workers,
        "threads": a.threads,
        "cpus": os.cpu_count(),
        "load_avg_end": os.getloadavg(),
        "runs": runs,
        "speedup_min_median_max": [min(sp), statistics.median(sp), max(sp)],
        "all_identical": all(r["identical"] for r in runs),
    }
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}))
    if a.out:
        a.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
