"""One batched forward per prompt set: END metrics plus per-prompt attention readouts of circuit heads.

The validator's own readout covers END -> slot; attacks need other query positions too (S2 -> S1+1
for induction, IO2 -> IO for duplicate-token heads), and each prompt wants only the pairs its
mode predicts. The readouts come from the same forward as the logits, so reading a signal never
costs a model evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from advgen.metrics import prompt_metrics
from advgen.models import LoadedModel
from advgen.types import Head, PromptMetrics, PromptSet
from advgen.validate import Hook, end_logits

Read = tuple[Head, str, str]
"""(head, query slot, key slot)."""


def read_key(head: Head, query: str, key: str) -> str:
    return f"{head}:{query}->{key}"


@dataclass(frozen=True)
class Measured:
    metrics: tuple[PromptMetrics, ...]
    signals: tuple[dict[str, float], ...]


def _factory(prompts: PromptSet, reads: Sequence[Sequence[Read]], sink: list[dict[str, float]]) -> Callable[[list[int]], list[Hook]]:
    layers = sorted({h.layer for rs in reads for h, _, _ in rs})

    def factory(idx: list[int]) -> list[Hook]:
        def make(layer: int) -> Callable[..., None]:
            def hook(pattern: torch.Tensor, hook: Any) -> None:
                for r, i in enumerate(idx):
                    pos = prompts[i].positions
                    for h, q, k in reads[i]:
                        if h.layer == layer and q in pos and k in pos:
                            sink[i][read_key(h, q, k)] = float(pattern[r, h.head, pos[q], pos[k]])

            return hook

        return [(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in layers]

    return factory


def measure(model: LoadedModel, prompts: PromptSet, reads: Sequence[Sequence[Read]], batch_size: int) -> Measured:
    """Metrics at END and the requested attention readouts, one forward per length bucket."""
    sink: list[dict[str, float]] = [{} for _ in prompts]
    hooks = _factory(prompts, reads, sink) if any(reads) else None
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
