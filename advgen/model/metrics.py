"""Per-prompt metrics from END logits, and aggregates with seeded bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from advgen.core.types import Interval, PromptMetrics

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


def summarize(metrics: Sequence[PromptMetrics], seed: int = 0) -> dict[str, Any]:
    """The aggregate every report prints: LD, accuracy (LD > 0), probabilities, rank."""
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
