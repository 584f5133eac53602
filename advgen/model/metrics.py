"""Per-prompt metrics from END logits, and aggregates with seeded bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from advgen.core.types import Interval, Prompt, PromptMetrics

N_BOOT = 1000


def prompt_metrics(end_logits: torch.Tensor, io_tokens: torch.Tensor, s_tokens: torch.Tensor) -> list[PromptMetrics]:
    """end_logits: [batch, vocab] read at each prompt's own END position."""
    logits = end_logits.double()
    logp = torch.log_softmax(logits, dim=-1)
    rows = torch.arange(len(logits))
    io_l, s_l = logits[rows, io_tokens], logits[rows, s_tokens]
    io_rank = (logits > io_l[:, None]).sum(-1)
    top = logits.argmax(-1)
    return [
        PromptMetrics(
            logit_diff=float(io_l[i] - s_l[i]),
            io_logit=float(io_l[i]),
            s_logit=float(s_l[i]),
            io_prob=float(logp[i, io_tokens[i]].exp()),
            s_prob=float(logp[i, s_tokens[i]].exp()),
            io_rank=int(io_rank[i]),
            top_token=int(top[i]),
        )
        for i in range(len(logits))
    ]


def bootstrap_ci(values: Sequence[float] | np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> Interval:
    """Percentile bootstrap 95 % interval of the mean; seeded so reports are reproducible."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Interval(float(v.mean()), float(lo), float(hi))


BREAKDOWN_KEYS = ("n", "mean_logit_diff", "logit_diff_ci95", "accuracy", "s_beats_io_rate", "mean_io_prob", "io_top1_rate")
"""What each per-template / per-order group reports (the full summary stays at the top level)."""


def _groups(prompts: Sequence[Prompt], metrics: Sequence[PromptMetrics], key: Callable[[Prompt], str],
            seed: int) -> dict[str, dict[str, Any]]:
    out = {}
    for k in sorted({key(p) for p in prompts}):
        full = summarize([m for p, m in zip(prompts, metrics, strict=True) if key(p) == k], seed)
        out[k] = {f: full[f] for f in BREAKDOWN_KEYS}
    return out


def summarize(metrics: Sequence[PromptMetrics], seed: int = 0, prompts: Sequence[Prompt] | None = None) -> dict[str, Any]:
    """The aggregate every report prints: LD, accuracy (LD > 0), probabilities, rank.

    With the prompts, also `by_template` and `by_order` (ABBA / BABA / ABC): the breakdowns
    TransformerLens users know from `ioi_eval`, where a mean can hide one template that fails.
    """
    out = _summary(metrics, seed)
    if prompts is not None:
        if len(prompts) != len(metrics):
            raise ValueError(f"summarize: {len(prompts)} prompts for {len(metrics)} metrics")
        out["by_template"] = _groups(prompts, metrics, lambda p: p.template_id, seed)
        out["by_order"] = _groups(prompts, metrics, lambda p: p.order, seed)
    return out


def _summary(metrics: Sequence[PromptMetrics], seed: int) -> dict[str, Any]:
    ld = np.array([m.logit_diff for m in metrics])
    acc = (ld > 0).astype(float)
    io_p = np.array([m.io_prob for m in metrics])
    s_p = np.array([m.s_prob for m in metrics])
    ranks = np.array([m.io_rank for m in metrics])
    return {
        "n": len(metrics),
        "mean_logit_diff": float(ld.mean()) if len(ld) else float("nan"),
        "logit_diff_ci95": bootstrap_ci(ld, seed).as_dict(),
        "accuracy": float(acc.mean()) if len(ld) else float("nan"),
        "accuracy_ci95": bootstrap_ci(acc, seed + 1).as_dict(),
        "s_beats_io_rate": float((ld < 0).mean()) if len(ld) else float("nan"),
        "mean_io_prob": float(io_p.mean()) if len(ld) else float("nan"),
        "io_prob_ci95": bootstrap_ci(io_p, seed + 2).as_dict(),
        "mean_s_prob": float(s_p.mean()) if len(ld) else float("nan"),
        "io_top1_rate": float((ranks == 0).mean()) if len(ld) else float("nan"),
        "median_io_rank": float(np.median(ranks)) if len(ld) else float("nan"),
    }


def kl_divergence(logp_ref: torch.Tensor, logp_other: torch.Tensor) -> torch.Tensor:
    """KL(ref || other) per row, both given as log-probabilities [batch, vocab]."""
    return (logp_ref.exp() * (logp_ref - logp_other)).sum(-1)
