"""Time to load the bundled reference model offline (cold process), median of several runs.

    python benchmarks/bench_load.py [--repeats 5]

Each repeat is a fresh Python process (imports included), as a user's `advgen` call would be;
the load itself (`load_model("reference")`) is reported separately from the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import time, json; t0=time.perf_counter(); from advgen.model.loading import load_model;"
    " import transformer_lens.model_bridge; t1=time.perf_counter();"
    " m=load_model('reference'); t2=time.perf_counter(); print(json.dumps({'imports': t1-t0, 'load': t2-t1}))"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "load.md")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [
        json.loads(
            subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(args.repeats)
    ]
    imp = statistics.median(r["imports"] for r in runs)
    load = statistics.median(r["load"] for r in runs)
    from advgen.core.files import atomic_write_text

    text = f"""# Loading the reference model

Command: `python benchmarks/bench_load.py --repeats {args.repeats}`

Fresh process per repeat, `HF_HUB_OFFLINE=1`, median of {args.repeats}:
imports of advgen + TransformerLens {imp:.2f} s, then `load_model("reference")` {load:.2f} s,
in all {imp + load:.2f} s (goal: under 5 s). Other processes on the machine during the run: {os.getloadavg()[0]:.1f} load average.
"""
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
