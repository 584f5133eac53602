"""Peak memory (max RSS) of `advgen generate`, `validate` and `run` on the reference model, by n.

Each command runs in its own process (`advgen ...` via this venv, torch limited to one thread);
its peak resident set size comes from the kernel (`resource.getrusage(RUSAGE_CHILDREN)` after the
child exits, so only that child is counted). `generate` streams prompts to disk in chunks, so
its peak should not grow with n; `validate` and `run` hold one run in memory (limit
`pipeline.MAX_ROWS`). Writes docs/benchmarks/memory.md.

    python benchmarks/bench_memory.py [--ns 1000,100000] [--jobs generate,validate,run]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADVGEN = Path(sys.executable).with_name("advgen")


def peak_of(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one advgen command run as a fresh child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: exec advgen, so RUSAGE_CHILDREN of the parent's waitpid is exactly it
        os.execve(str(ADVGEN), [str(ADVGEN), *argv], env)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"advgen {' '.join(argv)} failed with status {status}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", default="1000,100000")
    ap.add_argument("--jobs", default="generate,validate,run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "memory.md")
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")]
    jobs = args.jobs.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in ns:
            gen = Path(tmp) / f"g{n}"
            for job in jobs:
                if job == "generate":
                    argv = ["generate", "--n", str(n), "--seed", "0", "--out", str(gen)]
                elif job == "validate":
                    if not (gen / "prompts.jsonl").exists():
                        subprocess.run(
                            [str(ADVGEN), "generate", "--n", str(n), "--out", str(gen)], check=True, capture_output=True
                        )
                    argv = ["validate", str(gen / "prompts.jsonl"), "--out", str(Path(tmp) / f"v{n}"), "--no-progress"]
                else:
                    argv = ["run", "--n", str(n), "--seed", "0", "--out", str(Path(tmp) / f"r{n}"), "--no-progress"]
                mib, secs = peak_of(argv + ["--model", "reference"])
                rows.append((job, n, mib, secs))
                print(f"{job:9} n={n:>7}  peak RSS {mib:8.1f} MiB  {secs:7.1f} s", flush=True)
    lines = [
        "# Peak memory by n (reference model, CPU)",
        "",
        f"`python benchmarks/bench_memory.py --ns {args.ns} --jobs {args.jobs}`; one fresh process per command, "
        "peak RSS from the kernel (`wait4` rusage of that child).",
        "",
        "| command | n | peak RSS (MiB) | wall (s) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| `{job}` | {n:,} | {mib:.0f} | {secs:.0f} |" for job, n, mib, secs in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
