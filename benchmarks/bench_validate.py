"""Validator throughput against a bare Hugging Face forward of the same prompts, in one run.

Model: GPT-2 small's shape (12 x 12 heads, d_model 768) with random weights and GPT-2's real
tokenizer (tests/data/gpt2-tokenizer). Baseline: the HF model called directly on the same
prompts, same batch size, right-padded in prompt order, full logits, read at each END. Both
sides run interleaved, several repeats; medians are compared. Writes docs/benchmarks/validate.md.

    python benchmarks/bench_validate.py [--n 256] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def bare_hf(hf, prompts, batch_size: int) -> torch.Tensor:
    """What a user would write by hand: fixed-order batches, right padding, full logits."""
    from advgen.model.validate import pad_batch

    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            idx = list(range(start, min(start + batch_size, len(prompts))))
            ids, ends = pad_batch(prompts, idx)
            mask = (torch.arange(ids.shape[1])[None] <= ends[:, None]).long()
            logits = hf(input_ids=ids, attention_mask=mask).logits
            out.append(logits[torch.arange(len(idx)), ends])
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokenizer", default=str(ROOT / "tests" / "data" / "gpt2-tokenizer"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "validate.md")
    args = ap.parse_args()
    torch.set_num_threads(2)

    from transformers import GPT2LMHeadModel

    from advgen.core.files import atomic_write_text
    from advgen.model.loading import load_model
    from advgen.model.toymodels import GPT2_SMALL_SHAPE, make_random_gpt2
    from advgen.model.validate import end_logits
    from advgen.outputs import pipeline

    with tempfile.TemporaryDirectory() as tmp:
        d = make_random_gpt2(Path(tmp) / "gpt2shaped", args.tokenizer, seed=0, **GPT2_SMALL_SHAPE)
        model = load_model(str(d))
        prompts = pipeline.generate(model.tokenizer, args.n, seed=0)
        hf_eager = GPT2LMHeadModel.from_pretrained(str(d), attn_implementation="eager").eval()
        hf_sdpa = GPT2LMHeadModel.from_pretrained(str(d)).eval()
        # warm-up, and a correctness check of the comparison itself
        ours = end_logits(model, prompts, args.batch_size)
        ref = bare_hf(hf_eager, prompts, args.batch_size)
        max_err = float((ours - ref).abs().max())
        times: dict[str, list[float]] = {"advgen": [], "hf_eager": [], "hf_sdpa": []}
        for _ in range(args.repeats):
            for name, fn in (
                ("advgen", lambda: end_logits(model, prompts, args.batch_size)),
                ("hf_eager", lambda: bare_hf(hf_eager, prompts, args.batch_size)),
                ("hf_sdpa", lambda: bare_hf(hf_sdpa, prompts, args.batch_size)),
            ):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    r_eager, r_sdpa = med["hf_eager"] / med["advgen"], med["hf_sdpa"] / med["advgen"]
    cmd = f"python benchmarks/bench_validate.py --n {args.n} --batch-size {args.batch_size} --repeats {args.repeats}"
    text = f"""# Validator throughput

Command: `{cmd}`

GPT-2-small-shaped model (12 layers x 12 heads, d_model 768, random weights), GPT-2's tokenizer,
{args.n} IOI prompts of mixed lengths, batch size {args.batch_size}, {torch.get_num_threads()} CPU threads,
median of {args.repeats} interleaved repeats. Throughput ratio = baseline time / advgen time
(goal >= 0.9; above 1 means advgen is faster).

| side | median seconds | prompts / s | ratio vs advgen |
|---|---|---|---|
| advgen validator (TransformerBridge, length-bucketed, END-only unembedding) | {med["advgen"]:.3f} | \
{args.n / med["advgen"]:.1f} | 1.00 |
| bare HF forward, eager attention (same numerics as the bridge) | {med["hf_eager"]:.3f} | \
{args.n / med["hf_eager"]:.1f} | {r_eager:.2f} |
| bare HF forward, default (sdpa) attention | {med["hf_sdpa"]:.3f} | {args.n / med["hf_sdpa"]:.1f} | {r_sdpa:.2f} |

Max |advgen - bare HF eager| over all END logits: {max_err:.2e}.
"""
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
