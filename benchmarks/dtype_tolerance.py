"""How far bfloat16 / float16 move the validator's numbers from float32, on one model and device, over seeds.

For each seed: the same n IOI prompts validated in float32 and in each reduced dtype; reported per
dtype: max and median |LD - LD_fp32|, the same relative to the float32 LD's standard deviation,
the largest |io_prob - io_prob_fp32|, and the number of prompts whose LD sign flips. The docs'
tolerance table (docs/gpu.md) comes from this script; min / median / max are over the seeds.

    python benchmarks/dtype_tolerance.py --model reference --device cpu --n 600 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import numpy as np


def measure(spec: str, device: str, n: int, seeds: list[int], dtypes: list[str], batch_size: int) -> dict[str, Any]:
    from advgen.model.loading import load_model
    from advgen.model.validate import validate
    from advgen.outputs import pipeline

    models = {d: load_model(spec, device=device, dtype=d) for d in ["float32", *dtypes]}
    per: dict[str, list[dict[str, float]]] = {d: [] for d in dtypes}
    for seed in seeds:
        prompts = pipeline.generate(models["float32"].tokenizer, n, seed=seed)
        ref = validate(models["float32"], prompts, batch_size).metrics
        ld0 = np.array([m.logit_diff for m in ref])
        p0 = np.array([m.io_prob for m in ref])
        for d in dtypes:
            got = validate(models[d], prompts, batch_size).metrics
            ld = np.array([m.logit_diff for m in got])
            diff = np.abs(ld - ld0)
            per[d].append(
                {
                    "max_abs_ld": float(diff.max()),
                    "median_abs_ld": float(np.median(diff)),
                    "max_over_ld_std": float(diff.max() / ld0.std()),
                    "max_abs_io_prob": float(np.abs(np.array([m.io_prob for m in got]) - p0).max()),
                    "sign_flips": int(((ld > 0) != (ld0 > 0)).sum()),
                }
            )
    out: dict[str, Any] = {"model": spec, "device": models["float32"].device, "n": n, "seeds": seeds}
    for d, rows in per.items():
        out[d] = {
            k: {"min": min(r[k] for r in rows), "median": statistics.median(r[k] for r in rows), "max": max(r[k] for r in rows)}
            for k in rows[0]
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--model", default="reference")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"])
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    res = measure(a.model, a.device, a.n, a.seeds, a.dtypes, a.batch_size)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
