"""Randomly initialised GPT-2-architecture models saved in HF format, for plumbing tests and benchmarks.

They exercise the real loading path (a local HF directory) without any download; their weights
mean nothing, so they are never used for a scientific figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GPT2_SMALL_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}
TINY_SHAPE = {"n_layer": 2, "n_head": 4, "n_embd": 64}


def make_random_gpt2(
    out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0, n_positions: int = 1024, **shape: int
) -> Path:
    """Write a random GPT2LMHeadModel with the tokenizer at `tokenizer_dir` into `out_dir`."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dims: dict[str, Any] = dict(shape or TINY_SHAPE)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, **dims)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)  # saved beside the weights: TransformerLens needs a tokenizer on disk
    return out
