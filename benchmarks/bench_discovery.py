"""Discovery cost in forward-pass equivalents, and attribution patching's speed-up over exhaustive
activation patching, measured in one `discover` run; written to docs/benchmarks/discovery.md.

    .venv/bin/python benchmarks/bench_discovery.py --model reference --n 200
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from advgen.circuits import patching
from advgen.circuits.discovery import discover
from advgen.circuits.discovery_roles import Settings
from advgen.core.files import atomic_write_text
from advgen.model.loading import load_model
from advgen.prompts.datasets import ioi_sets

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "discovery.md"


def _best(fn, repeats: int = 3) -> float:
    """Fastest of `repeats` timings: the machine is shared, the minimum is the least disturbed."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def stacking_speedup(model, n: int, seed: int, n_variants: int, batch_size: int) -> tuple[float, float]:
    """Seconds for n_variants single-head patches: stacked along the batch vs one variant per run."""
    clean_ps, abc_ps, _ = ioi_sets(model.tokenizer, n, seed)
    abc = patching.cache_run(model, abc_ps, batch_size)
    variants = [(layer, head, "END") for layer in range(model.n_layers) for head in range(model.n_heads)][:n_variants]
    patches = [patching.Patch(i, (v,), abc.z[i]) for v in variants for i in range(n)]

    def stacked_run() -> None:
        patching.patched_run(model, clean_ps, patches, batch_size * 4)

    def looped_run() -> None:
        for k in range(len(variants)):
            patching.patched_run(model, clean_ps, patches[k * n : (k + 1) * n], n, chunk=n)

    stacked_run()  # warm-up
    stacked, looped = _best(stacked_run), _best(looped_run)
    return stacked, looped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="reference")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    command = "python benchmarks/bench_discovery.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    model = load_model(a.model)
    d = discover(model, Settings(n=a.n, seed=a.seed, batch_size=a.batch_size))
    r = d.report
    fe = r["forward_equivalents"]
    sec = r["seconds"]
    n = fe["cache_clean_forward"]
    # a backward pass counted as 2 forward-pass equivalents (the usual rule of thumb)
    attr_fe = fe["cache_clean_forward"] + fe["cache_abc_forward"] + fe["cache_s1_twin_forward"] + 2 * fe["cache_clean_backward"]
    total_fe = attr_fe + fe["activation_patching"] + fe["path_patching_queries"] + fe["backup_knockout"]
    n_var = min(24, model.n_layers * model.n_heads)
    nb = min(n, 32)
    stacked, looped = stacking_speedup(model, nb, a.seed, n_var, a.batch_size)
    rho = r["attribution_vs_activation_spearman"]
    lines = [
        "# Discovery benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Model `{a.model}` ({model.n_layers} layers x {model.n_heads} heads), n = {n} clean IOI prompts (+ ABC and S1 twins), "
        f"seed {a.seed}, batch size {a.batch_size}; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Wall times are on a shared machine.",
        "",
        "## Cost of one `discover` run, in prompt forward-pass equivalents (1 = one prompt, one forward)",
        "",
        "| step | prompt-forwards |",
        "|---|---|",
        f"| cached runs: clean (+ backward = 2 fwd-eq), ABC twin, S1 twin | {attr_fe} |",
        f"| exhaustive activation patching ({model.n_layers * model.n_heads} heads x {len(patching.KINDS)} position kinds) | "
        f"{fe['activation_patching']} |",
        f"| path patching heads -> name-mover queries | {fe['path_patching_queries']} |",
        f"| name-mover knockout (backup detection) | {fe['backup_knockout']} |",
        f"| head_detector (repeated random tokens, sequences) | {fe['head_detector_sequences']} |",
        f"| **total** (without head_detector) | **{total_fe}** = {total_fe / n:.0f} x n |",
        "",
        "Path patching to the logits and direct logit attribution are computed from the cached runs (0 extra forwards).",
        "",
        "## Attribution patching vs exhaustive activation patching (same run)",
        "",
        "| | seconds | prompt-forward equivalents |",
        "|---|---|---|",
        "| attribution patching (cached runs: clean forward + backward, ABC and S1 twins forward; estimates for every head x "
        f"kind) | {sec['attribution_total']:.2f} | {attr_fe} |",
        f"| exhaustive activation patching | {sec['activation_patching']:.2f} | {fe['activation_patching']} |",
        f"| **speed-up** | **{sec['activation_patching'] / sec['attribution_total']:.1f}x** | "
        f"{fe['activation_patching'] / attr_fe:.1f}x |",
        "",
        "Rank agreement (Spearman) of the attribution estimate with activation patching, per position kind: "
        + ", ".join(f"{k} {v:.3f}" for k, v in rho.items())
        + ".",
        "",
        "## Batched patching",
        "",
        f"{n_var} single-head patches (END) on {nb} prompts: stacked along the batch dimension {stacked:.2f} s, "
        f"one variant per run {looped:.2f} s ({looped / stacked:.1f}x); best of 3 each.",
        "",
        f"Total discovery wall time: {sec['total']:.1f} s.",
        "",
    ]
    atomic_write_text(a.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
