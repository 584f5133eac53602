"""One batched forward per prompt set: END metrics plus per-prompt attention readouts of circuit heads.

The validator's own readout covers END -> slot; attacks need other query positions too (S2 -> S1+1
for induction, IO2 -> IO for duplicate-token heads), and each prompt wants only the pairs its
mode predicts. The readouts come from the same forward as the logits, so reading a signal never
costs a model evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from advgen.metrics import prompt_metrics
from advgen.models import LoadedModel
from advgen.types import PromptMetrics, PromptSet
from advgen.validate import Read, attention_readout_hooks, end_logits


@dataclass(frozen=True)
class Measured:
    metrics: tuple[PromptMetrics, ...]
    signals: tuple[dict[str, float], ...]


def measure(model: LoadedModel, prompts: PromptSet, reads: Sequence[Sequence[Read]], batch_size: int) -> Measured:
    """Metrics at END and the requested attention readouts, one forward per length bucket."""
    sink: list[dict[str, float]] = [{} for _ in prompts]
    hooks = attention_readout_hooks(prompts, reads, sink) if any(reads) else None
    logits = end_logits(model, prompts, batch_size, hooks=hooks)
    io = torch.tensor([p.io_token for p in prompts])
    s = torch.tensor([p.s_token for p in prompts])
    ordered = [dict(sorted(d.items())) for d in sink]
    return Measured(tuple(prompt_metrics(logits, io, s)), tuple(ordered))


def single_logit_diff(model: LoadedModel, token_ids: Sequence[int], io_token: int, s_token: int) -> float:
    """LD from one unbatched, unpadded forward through the bridge: the reference for batched numbers."""
    with torch.inference_mode():
        logits = model.bridge(torch.tensor([list(token_ids)]))[0, -1].double()
    return float(logits[io_token] - logits[s_token])
