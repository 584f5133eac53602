"""advgen's throughput against the bare Hugging Face forward of the same batches, on any device and model.

For each dtype and batch size: `validate`, the attack's evaluation phase (`measure` with attention
reads), and `scan`, as prompts per second and as a ratio to two bare forwards of the same
length-sorted batches (prepared on the device beforehand, so the baseline is the forward alone):
(a) the full model, all positions' logits; (b) the body plus the unembedding of the END rows only.
Also the peak device memory of each phase (CUDA), and `validate`'s peak memory at two sizes of n
(it must not grow with n). Runs on the CPU too (small n).

    python benchmarks/bench_gpu.py --device cuda --n 32768 --batch-sizes 256 1024 --dtypes float32 bfloat16
    python benchmarks/bench_gpu.py --device cpu --n 256 --batch-sizes 32 --dtypes float32 --scan-n 256

--model gpt2-shaped (default) writes a GPT-2-small-shaped random model with GPT-2's tokenizer
(tests/data) to a temporary directory; any other value is a load_model spec.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device: str) -> float | None:
    """Peak device memory since the last reset (CUDA); None on the CPU (see peak_rss_mb)."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


def timed(fn: Callable[[], Any], device: str, repeats: int) -> tuple[float, float | None]:
    """Median seconds of `repeats` runs after one warm-up, and the peak device memory of the last run."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        peak_reset(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak_mb(device)


def bare_batches(prompts: Any, batch_size: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The validator's own length-sorted batches, padded and moved to the device before any timing."""
    from advgen.model.validate import pad_batch

    out = []
    for idx in prompts.batches(batch_size):
        ids, ends = pad_batch(prompts, idx, device=torch.device(device))
        out.append((ids, ends, torch.arange(len(idx), device=device)))
    return out


def bare_full(hf: Any, batches: list) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for ids, ends, rows in batches:
                hf(input_ids=ids).logits[rows, ends].float()

    return run


def bare_end(hf: Any, batches: list) -> Callable[[], None]:
    body, head = hf.base_model, hf.get_output_embeddings()

    def run() -> None:
        with torch.inference_mode():
            for ids, ends, rows in batches:
                head(body(input_ids=ids).last_hidden_state[rows, ends]).float()

    return run


def attack_reads(model: Any, n: int) -> list:
    """What the attack's evaluation phase reads per prompt: END -> IO / S1 / S2 of four late heads."""
    from advgen.core.types import Head

    L, H = model.n_layers, model.n_heads
    heads = [Head(L - 1 - k % min(L, 2), k % H) for k in range(4)]
    return [[(h, "END", slot) for h in heads for slot in ("IO", "S1", "S2")]] * n


def one_setting(model: Any, hf: Any, prompts: Any, bs: int, a: argparse.Namespace, scan_dir: Path) -> dict[str, Any]:
    from advgen.model.backends import LocalBackend
    from advgen.model.validate import measure, validate
    from advgen.outputs.scan import ScanConfig, run_scan

    dev, n = model.device, len(prompts)
    batches = bare_batches(prompts, bs, dev)
    rows: dict[str, Any] = {}
    for name, fn in (
        ("bare_full", bare_full(hf, batches)),
        ("bare_end", bare_end(hf, batches)),
        ("validate", lambda: validate(model, prompts, bs)),
        ("attack_eval", lambda: measure(model, prompts, attack_reads(model, n), bs)),
    ):
        s, mem = timed(fn, dev, a.repeats)
        rows[name] = {"seconds": s, "prompts_per_s": n / s, "peak_device_mb": mem}
    if a.scan_n:
        cfg = ScanConfig(sample=a.scan_n, seed=0, batch_size=bs, unit=max(bs * 8, 512))
        k = iter(range(10**6))
        s, mem = timed(lambda: run_scan(LocalBackend(model), cfg, scan_dir / f"scan-{bs}-{next(k)}", progress=False), dev, 1)
        rows["scan"] = {"seconds": s, "prompts_per_s": a.scan_n / s, "peak_device_mb": mem}
    for name in ("validate", "attack_eval", "scan"):
        if name in rows:
            rows[name]["ratio_to_bare_end"] = rows[name]["prompts_per_s"] / rows["bare_end"]["prompts_per_s"]
            rows[name]["ratio_to_bare_full"] = rows[name]["prompts_per_s"] / rows["bare_full"]["prompts_per_s"]
    return rows


def memory_growth(model: Any, sizes: list[int], bs: int) -> dict[str, Any]:
    """Peak device memory of `validate` at each n (CUDA): the END logits never pile up, so it must not grow with n."""
    from advgen.model.validate import validate
    from advgen.outputs import pipeline

    out = {}
    for n in sizes:
        prompts = pipeline.generate(model.tokenizer, n, seed=1)
        sync(model.device)
        peak_reset(model.device)
        t0 = time.perf_counter()
        validate(model, prompts, bs)
        sync(model.device)
        out[str(n)] = {
            "peak_device_mb": peak_mb(model.device),
            "seconds": time.perf_counter() - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    return out


def load_pair(spec: str, device: str, dtype: str, tmp: Path) -> tuple[Any, Any]:
    """advgen's model and a plain HF copy of the same weights (eager attention, same dtype and device)."""
    from transformers import AutoModelForCausalLM

    from advgen.model.loading import load_model, resolve_dtype
    from advgen.model.toymodels import GPT2_SMALL_SHAPE, make_random_gpt2

    if spec == "gpt2-shaped":
        spec = str(make_random_gpt2(tmp / "gpt2shaped", ROOT / "tests" / "data" / "gpt2-tokenizer", seed=0, **GPT2_SMALL_SHAPE))
    model = load_model(spec, device=device, dtype=dtype)
    hf: Any = AutoModelForCausalLM.from_pretrained(model.source, dtype=resolve_dtype(dtype), attn_implementation="eager")
    return model, hf.to(model.device).eval()


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dtype | batch | path | prompts/s | vs bare body+END | vs bare full | peak device MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype, per_bs in results["runs"].items():
        for bs, rows in per_bs.items():
            for name, r in rows.items():
                mem = "n/a" if r["peak_device_mb"] is None else f"{r['peak_device_mb']:.0f}"
                ratios = [f"{r[k]:.2f}" if k in r else "-" for k in ("ratio_to_bare_end", "ratio_to_bare_full")]
                lines.append(f"| {dtype} | {bs} | {name} | {r['prompts_per_s']:.0f} | {' | '.join(ratios)} | {mem} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--model", default="gpt2-shaped", help="gpt2-shaped (random weights, GPT-2's tokenizer) or a load_model spec")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=4096, help="prompts per timed run")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after a warm-up; the median is reported")
    ap.add_argument("--scan-n", type=int, default=0, help="prompts per scan (0: no scan row)")
    ap.add_argument("--memory-n", type=int, nargs="*", default=[], help="n values for the memory-growth check of validate")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from advgen.outputs import pipeline

    results: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {dtype: load_pair(a.model, a.device, dtype, Path(tmp)) for dtype in a.dtypes}
        first = pairs[a.dtypes[0]][0]
        results["device"] = first.device
        results["device_name"] = torch.cuda.get_device_name() if first.device.startswith("cuda") else "cpu"
        prompts = pipeline.generate(first.tokenizer, a.n, seed=0)
        results["mean_tokens"] = sum(len(p) for p in prompts) / len(prompts)
        for bs in a.batch_sizes:  # batch sizes in the order given, every dtype at each: a timeout keeps the rows done
            for dtype, (model, hf) in pairs.items():
                rows = one_setting(model, hf, prompts, bs, a, Path(tmp))
                results["runs"].setdefault(dtype, {})[str(bs)] = rows
                print(
                    json.dumps({"dtype": dtype, "batch": bs, **{k: round(v["prompts_per_s"]) for k, v in rows.items()}}),
                    flush=True,
                )
                if a.json:
                    a.json.write_text(json.dumps(results, indent=2) + "\n")
        if a.memory_n:
            results["memory"] = memory_growth(first, a.memory_n, max(a.batch_sizes))
            print(f"memory: {json.dumps(results['memory'])}", flush=True)
    if "float32" in results["runs"] and "bfloat16" in results["runs"]:
        results["bf16_over_fp32_validate"] = {
            bs: results["runs"]["bfloat16"][bs]["validate"]["prompts_per_s"]
            / results["runs"]["float32"][bs]["validate"]["prompts_per_s"]
            for bs in results["runs"]["float32"]
        }
    print(
        f"model {a.model} on {results['device']} ({results['device_name']}), n {a.n}, "
        f"{results['mean_tokens']:.1f} tokens per prompt on average, median of {a.repeats} after a warm-up"
    )
    print(table(results))
    for k in ("bf16_over_fp32_validate", "memory"):
        if k in results:
            print(f"{k}: {json.dumps(results[k])}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
