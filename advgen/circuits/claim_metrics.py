"""The metrics of one kept subgraph against the full model: every column of check-claim's table, with intervals.

Pure arithmetic on per-example LD, loss and KL (`RowStats`), shared by every ablation's row and by
causal scrubbing's row, so all columns of claims.json are computed one way; and the worst cases
(where circuit and model part most). Nothing here runs a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advgen.circuits import scrubbing
from advgen.circuits.patching import RowStats
from advgen.core.types import PromptSet
from advgen.model.metrics import bootstrap_ci

GAP_EPS = 1e-5
"""Relative loss gap (empty circuit vs model) below which loss recovered (%) is undefined (float32 noise)."""
METRICS = (
    "mean_ld",
    "ratio_to_model",
    "mean_abs_ld_diff",
    "kl_model_circuit",
    "accuracy",
    "loss_recovered_nats",
    "loss_recovered_pct",
)


def _paired_ratio_ci(num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = 1000) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    r = num[idx].mean(1) / den[idx].mean(1)
    lo, hi = np.percentile(r, [2.5, 97.5])
    return {"mean": float(num.mean() / den.mean()), "low": float(lo), "high": float(hi)}


def metric_row(model_ld: np.ndarray, model_loss: np.ndarray, c: RowStats, empty: RowStats, seed: int) -> dict[str, Any]:
    """Every metric of one kept subgraph against the full model, with bootstrap intervals."""
    ld, loss, e_loss = c.ld.numpy(), c.loss.numpy(), empty.loss.numpy()
    gap_total = float(e_loss.mean() - model_loss.mean())
    rec = float(e_loss.mean() - loss.mean())
    return {
        "mean_ld": bootstrap_ci(ld, seed).as_dict(),
        "ratio_to_model": _paired_ratio_ci(ld, model_ld, seed),
        "faithfulness_gap": bootstrap_ci(model_ld - ld, seed).as_dict(),
        "mean_abs_ld_diff": bootstrap_ci(np.abs(model_ld - ld), seed).as_dict(),
        "kl_model_circuit": bootstrap_ci(c.kl.numpy(), seed).as_dict(),
        "accuracy": bootstrap_ci((ld > 0).astype(float), seed).as_dict(),
        "loss_model": float(model_loss.mean()),
        "loss_circuit": float(loss.mean()),
        "loss_empty": float(e_loss.mean()),
        "loss_recovered_nats": rec,
        # undefined when knocking everything out costs (numerically) nothing: float noise is not a percentage
        "loss_recovered_pct": 100.0 * rec / gap_total
        if abs(gap_total) > GAP_EPS * max(1.0, abs(float(model_loss.mean())))
        else float("nan"),
        "empty_mean_ld": float(empty.ld.mean()),
        **scrubbing.spread(ld, model_ld),
    }


def worst_cases(prompts: PromptSet, model_ld: np.ndarray, circ: RowStats, k: int) -> list[dict[str, Any]]:
    """The k prompts where the circuit's LD is furthest from the model's."""
    dev = np.abs(model_ld - circ.ld.numpy())
    out = []
    for i in np.argsort(-dev, kind="stable")[:k]:
        p = prompts[int(i)]
        out.append(
            {
                "text": p.text,
                "io": p.io,
                "s": p.s,
                "template_id": p.template_id,
                "order": p.order,
                "pair_id": p.pair_id,
                "ld_model": float(model_ld[i]),
                "ld_circuit": float(circ.ld[i]),
                "abs_diff": float(dev[i]),
                "kl_model_circuit": float(circ.kl[i]),
            }
        )
    return out
