"""The ladder of reference models: what a loss is worth in model size.

A circuit that "recovers 90 % of the loss" may still perform like a far smaller model. The ladder
is a set of models trained exactly like the reference model (same corpus, tokenizer, seeded
trainer, steps), differing only in size; `ladder.json` records each one's parameters, held-out
corpus loss and IOI figures. `place` maps an IOI loss onto the ladder: the loss-vs-log(params)
curve is made monotone (non-increasing, pool-adjacent-violators) and interpolated linearly in
log(params), so a lower loss never maps to a smaller model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.core.types import AdvgenError, PromptSet
from advgen.model.loading import LoadedModel, load_model
from advgen.model.validate import DEFAULT_BATCH, end_logits
from advgen.model.weights import REFERENCE_DIR, WEIGHTS_DIR

LADDER_DIR: Path = WEIGHTS_DIR / "ladder"
LADDER_JSON: Path = LADDER_DIR / "ladder.json"


@dataclass(frozen=True)
class Rung:
    """One ladder model: its size and where its HF directory is."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    parameters: int = 0
    path: str = ""
    """Directory relative to the weights directory ("ladder/l1h1d32", "reference")."""
    figures: tuple[tuple[str, float], ...] = ()
    """Measured figures (heldout_loss, ioi_loss, ioi_mean_ld, ioi_accuracy, ...)."""

    def figure(self, key: str) -> float:
        return dict(self.figures)[key]

    @property
    def directory(self) -> Path:
        return REFERENCE_DIR if self.path == "reference" else WEIGHTS_DIR / self.path


@dataclass(frozen=True)
class Placement:
    """Where a loss falls on the ladder."""

    loss: float
    equivalent_params: float | None
    """Interpolated parameter count of a ladder model with this loss (None outside the ladder)."""
    position: str
    """"below the ladder", "above the ladder", or "between A and B"."""
    below: str | None
    above: str | None


def load_ladder(path: Path = LADDER_JSON) -> tuple[dict[str, Any], tuple[Rung, ...]]:
    """ladder.json: (header, rungs sorted by parameters); an AdvgenError if it is missing."""
    if not path.exists():
        raise AdvgenError(f"ladder file not found: {path}; build it with `advgen train-reference --ladder`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AdvgenError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    rungs = []
    for i, r in enumerate(doc.get("models", [])):
        try:
            figs = tuple((k, float(v)) for k, v in sorted(r["figures"].items()))
            rungs.append(
                Rung(r["name"], int(r["n_layer"]), int(r["n_head"]), int(r["n_embd"]), int(r["parameters"]), r["path"], figs)
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AdvgenError(f"{path}: models[{i}] is malformed ({type(e).__name__}: {e})") from None
    return {k: v for k, v in doc.items() if k != "models"}, tuple(sorted(rungs, key=lambda r: r.parameters))


def monotone_losses(losses: Sequence[float]) -> list[float]:
    """Non-increasing fit (pool-adjacent-violators, equal weights) of losses ordered by size."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in losses:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out += [s / c] * int(c)
    return out


def place(loss: float, params: Sequence[int], losses: Sequence[float], names: Sequence[str]) -> Placement:
    """Interpolate `loss` on the monotone ladder curve, linear in log(params)."""
    if not len(params) == len(losses) == len(names) or not params:
        raise AdvgenError("ladder placement needs equally many parameters, losses and names (at least one)")
    order = np.argsort(np.asarray(params), kind="stable")
    idx = [int(i) for i in order]
    p = [float(params[i]) for i in idx]
    n = [names[i] for i in idx]
    y = monotone_losses([losses[i] for i in idx])
    if not math.isfinite(loss):
        return Placement(loss, None, "not finite", None, None)
    if loss > y[0]:
        return Placement(loss, None, f"below the ladder (worse than {n[0]})", None, n[0])
    if loss < y[-1]:
        return Placement(loss, None, f"above the ladder (better than {n[-1]})", n[-1], None)
    for k in range(len(p)):
        if loss == y[k]:  # first model reaching this loss (flat pooled segments: the smallest)
            return Placement(loss, p[k], f"equal to {n[k]}", n[k], n[k])
        if k + 1 < len(p) and y[k] > loss > y[k + 1]:
            t = (y[k] - loss) / (y[k] - y[k + 1])
            lp = math.log(p[k]) + t * (math.log(p[k + 1]) - math.log(p[k]))
            return Placement(loss, math.exp(lp), f"between {n[k]} and {n[k + 1]}", n[k], n[k + 1])
    raise AssertionError("unreachable: loss inside the ladder range but not placed")


def parameter_count(model: LoadedModel) -> int:
    """Parameters of the Hugging Face model as its config defines it (tied weights once).

    Counting the bridge's modules would count GPT-2's attention weights twice: the bridge keeps
    split q, k, v copies beside the fused c_attn. A meta-device instance costs no memory.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(model.hf_model.config)
    return int(sum(p.numel() for p in m.parameters()))


def ioi_figures(model: LoadedModel, prompts: PromptSet, batch_size: int = DEFAULT_BATCH) -> dict[str, float]:
    """IOI loss (-log p(IO) at END, nats), mean LD and accuracy (LD > 0) of one model on `prompts`."""
    logits = end_logits(model, prompts, batch_size).double()
    r = torch.arange(len(prompts), device="cpu")  # end_logits returns host tensors
    io = torch.tensor([q.io_token for q in prompts], device="cpu")
    s = torch.tensor([q.s_token for q in prompts], device="cpu")
    ld = logits[r, io] - logits[r, s]
    loss = -torch.log_softmax(logits, -1)[r, io]
    return {"ioi_loss": float(loss.mean()), "ioi_mean_ld": float(ld.mean()), "ioi_accuracy": float((ld > 0).double().mean())}


def live_ioi_losses(
    rungs: Sequence[Rung], prompts: PromptSet, batch_size: int = DEFAULT_BATCH, device: str = "cpu"
) -> list[dict[str, float]]:
    """`ioi_figures` of every ladder model on these very prompts (same tokenizer required), each on `device`."""
    out = []
    for r in rungs:
        if not (r.directory / "config.json").exists():
            raise AdvgenError(
                f"ladder model {r.name!r} is missing from {r.directory}; rebuild with `advgen train-reference --ladder`"
            )
        out.append(ioi_figures(load_model(str(r.directory), device=device), prompts, batch_size))
    return out
