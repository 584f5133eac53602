"""Scan throughput, peak driver memory and per-unit overhead: local backend vs Ray.

Each measured scan runs in a fresh child process (`--child`), which reports its own wall time
and peak RSS (`ru_maxrss`), so one run's memory never leaks into the next. For Ray the child is
the driver only; the actors are separate processes. The per-unit overhead is the round trip of a
unit through Ray with the model work taken out: a unit function that returns a precomputed text
the size of a real unit's rows.

    python benchmarks/bench_scan.py --sizes 10000 100000 --workers 2 --out docs/benchmarks/scan.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from advgen.model.backends import RaySettings, make_backend
    from advgen.outputs.scan import ScanConfig, run_scan

    t0 = time.perf_counter()
    backend = make_backend(args.backend, "reference", settings=RaySettings(workers=args.workers))
    t_start = time.perf_counter() - t0
    cfg = ScanConfig(limit=args.n, unit=args.unit, batch_size=args.batch_size)
    t1 = time.perf_counter()
    res = run_scan(backend, cfg, Path(args.dir))
    t_scan = time.perf_counter() - t1
    backend.close()
    print(
        json.dumps(
            {
                "backend": args.backend,
                "n": args.n,
                "startup_s": t_start,
                "scan_s": t_scan,
                "prompts_per_s": args.n / t_scan,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "failure_rate": res.summary["failure_rate"],
                "units": res.computed_units,
            }
        )
    )


def _noop_unit(model: Any, unit: Any) -> str:
    return unit[1]


def overhead(workers: int, units: int, unit_text: str) -> dict[str, float]:
    """Seconds per unit for a Ray round trip (payload + result of a real unit's size), model work excluded."""
    from advgen.model.backends import RayBackend, RaySettings

    backend = RayBackend("reference", RaySettings(workers=workers))
    list(backend.map(_noop_unit, [(0, "warm")] * workers * 2))
    t0 = time.perf_counter()
    for _ in backend.map(_noop_unit, ((i, unit_text) for i in range(units))):
        pass
    dt = time.perf_counter() - t0
    backend.close()
    return {"units": units, "unit_bytes": len(unit_text), "seconds_per_unit": dt / units}


def tree_digest(d: Path) -> str:
    """sha256 over every output file (path and bytes), so two backends' directories compare in one string."""
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.name != ".advgen.lock":
            h.update(str(p.relative_to(d)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def driver_fold(unit_text: str, repeats: int = 20) -> dict[str, float]:
    """Driver-side cost of one unit: parse every row and fold it into the counts (the part is written once, apart)."""
    import io

    from advgen.outputs.scan import Tally, fold_unit

    t0 = time.perf_counter()
    for _ in range(repeats):
        fold_unit(unit_text, Tally(), Tally(), io.StringIO())
    dt = (time.perf_counter() - t0) / repeats
    return {"seconds_per_unit": dt, "microseconds_per_row": 1e6 * dt / unit_text.count("\n")}


def run_child(backend: str, n: int, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    d = tmp / f"scan-{n}"  # the same path for both backends: the manifest records the command line
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--backend",
        backend,
        "--n",
        str(n),
        "--dir",
        str(d),
        "--workers",
        str(a.workers),
        "--unit",
        str(a.unit),
        "--threads",
        str(a.threads),
        "--batch-size",
        str(a.batch_size),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    if r.returncode != 0:
        raise SystemExit(f"child failed: {r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["part0"] = (d / "parts" / "part-00000.jsonl").read_text()
    out["tree_sha256"] = tree_digest(d)
    shutil.rmtree(d)
    print(json.dumps({k: v for k, v in out.items() if k != "part0"}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--backend", default="local")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dir", default="")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="none: only the per-unit costs")
    ap.add_argument("--backends", nargs="+", default=["local", "ray"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (driver for local, each actor for Ray)")
    ap.add_argument("--unit", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--overhead-units", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    if a.child:
        return child(a)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    runs = [run_child(b, n, a, tmp) for n in a.sizes for b in a.backends] or [run_child("local", a.unit, a, tmp)]
    same = {n: len({r["tree_sha256"] for r in runs if r["n"] == n}) == 1 for n in a.sizes}
    print(json.dumps({"byte_identical_across_backends": same}), flush=True)
    part = runs[0].pop("part0")
    for r in runs:
        r.pop("part0", None)
    result = {
        "runs": runs if a.sizes else [],
        "byte_identical_across_backends": same,
        "overhead": overhead(a.workers, a.overhead_units, part),
        "driver_fold": driver_fold(part),
        "nproc": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "settings": {k: v for k, v in vars(a).items() if k not in ("child", "dir", "n", "out")},
    }
    print(json.dumps({"overhead": result["overhead"], "driver_fold": result["driver_fold"]}))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
