"""Per-prompt metrics from END logits, and aggregates with seeded bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from advgen.core.types import Interval, Prompt, PromptMetrics

N_BOOT = 1000


METRIC_FIELDS = ("logit_diff", "io_logit", "s_logit", "io_prob", "s_prob", "io_rank", "top_token")
"""The columns of `metric_rows`, in PromptMetrics' field order."""


def metric_rows(end_logits: torch.Tensor, io_tokens: torch.Tensor, s_tokens: torch.Tensor) -> torch.Tensor:
    """[batch, 7] float64 on the logits' device: the few numbers per prompt that leave the device.

    end_logits: [batch, vocab] read at each prompt's own END position. The reduction runs where
    the logits are (a GPU never ships [batch, vocab] to the host) and in float64 with the same
    operations as before, so on the CPU the numbers are the old ones bit for bit.
    """
    dev = end_logits.device
    io, s = io_tokens.to(dev)[:, None], s_tokens.to(dev)[:, None]
    logits = end_logits.double()
    io_l, s_l = logits.gather(1, io)[:, 0], logits.gather(1, s)[:, 0]
    logp = torch.log_softmax(logits, dim=-1)
    io_rank = (logits > io_l[:, None]).sum(-1)
    cols = (io_l - s_l, io_l, s_l, logp.gather(1, io)[:, 0].exp(), logp.gather(1, s)[:, 0].exp(), io_rank, logits.argmax(-1))
    return torch.stack([c.double() for c in cols], dim=1)


def set_metric_rows(end_logits: torch.Tensor, answers: torch.Tensor, foils: torch.Tensor) -> torch.Tensor:
    """`metric_rows` for answer and foil token SETS (greater-than): [batch, 7] on the logits' device.

    answers / foils: [batch, vocab] bool masks. io/s logit = log-sum-exp of the set's logits, so LD =
    log(p(answers) / p(foils)): negative exactly when the probability difference PD = p(answers) - p(foils)
    is, and every "LD < 0" rule (breaks, failure rates) reads PD's sign. io/s prob = the set's summed
    probability; io rank = the rank of the best answer token.
    """
    logits = end_logits.double()
    neg = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    io_l = torch.where(answers.to(logits.device), logits, neg).logsumexp(-1)
    s_l = torch.where(foils.to(logits.device), logits, neg).logsumexp(-1)
    lse = logits.logsumexp(-1)
    best = torch.where(answers.to(logits.device), logits, neg).max(-1).values
    cols = (io_l - s_l, io_l, s_l, (io_l - lse).exp(), (s_l - lse).exp(), (logits > best[:, None]).sum(-1), logits.argmax(-1))
    return torch.stack([c.double() for c in cols], dim=1)


def rows_to_metrics(rows: torch.Tensor) -> list[PromptMetrics]:
    """PromptMetrics from `metric_rows` output (one host copy, then plain Python numbers)."""
    return [
        PromptMetrics(ld, io_l, s_l, io_p, s_p, int(rank), int(top))
        for ld, io_l, s_l, io_p, s_p, rank, top in rows.cpu().tolist()
    ]


def prompt_metrics(end_logits: torch.Tensor, io_tokens: torch.Tensor, s_tokens: torch.Tensor) -> list[PromptMetrics]:
    """end_logits: [batch, vocab] read at each prompt's own END position."""
    return rows_to_metrics(metric_rows(end_logits, io_tokens, s_tokens))


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


def _groups(
    prompts: Sequence[Prompt], metrics: Sequence[PromptMetrics], key: Callable[[Prompt], str], seed: int
) -> dict[str, dict[str, Any]]:
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
