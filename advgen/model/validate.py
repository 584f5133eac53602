"""Batched model runs that read each prompt at its own END, with padding that cannot shift positions.

Prompts are right-padded: under causal attention a real token never sees a later pad, and
position ids of real tokens stay 0..len-1, so batched logits equal unbatched ones. Batches are
formed by length so padding stays small, and only the END rows go through the unembedding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from advgen.core.types import AdvgenError, Evaluation, Head, PromptMetrics, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import metric_rows, rows_to_metrics, set_metric_rows
from advgen.prompts.templates import tokenizer_hash

Hook = tuple[str, Callable[..., Any]]
"""(TransformerLens hook name, function(tensor, hook) -> tensor | None)."""
HookFactory = Callable[[list[int]], Sequence[Hook]]
"""Builds the hooks for one batch, given the prompt indices in it (for per-prompt ablations)."""

DEFAULT_BATCH = 32
SMALL_ROW = 64
"""Per-prompt results up to this many numbers stay on the device until the last batch (one host copy at the end)."""


def check_prompts(model: LoadedModel, prompts: PromptSet) -> None:
    """Refuse prompts tokenized by another tokenizer or longer than the model's context."""
    want = tokenizer_hash(model.tokenizer)
    if prompts.tokenizer_hash != want:
        raise AdvgenError(
            f"prompts were tokenized with tokenizer {prompts.tokenizer_hash}, model {model.name!r} uses {want}; "
            "re-render the prompts for this model"
        )
    for i, p in enumerate(prompts):
        if len(p) > model.n_ctx:
            raise AdvgenError(f"prompt {i} ({p.template_id}) has {len(p)} tokens, more than the model's context of {model.n_ctx}")


def model_device(model: LoadedModel) -> torch.device:
    """Where the model's weights live: batches go there (a GPU actor), logits come back to the CPU."""
    return next(model.hf_model.parameters()).device


def pad_batch(
    prompts: PromptSet, idx: Sequence[int], pad_id: int = 0, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [b, T] and each row's END index [b], built once on `device` (CPU by default)."""
    width = max(len(prompts[i]) for i in idx)
    rows = [list(prompts[i].token_ids) + [pad_id] * (width - len(prompts[i])) for i in idx]
    ids = torch.tensor(rows, dtype=torch.long, device=device)
    ends = torch.tensor([prompts[i].end for i in idx], dtype=torch.long, device=device)
    return ids, ends


def end_logits_fn(model: LoadedModel) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Body forward + unembedding of END rows only; full forward where the head is not a plain linear."""
    hf = model.hf_model
    body, head = getattr(hf, "base_model", None), hf.get_output_embeddings()
    softcap = getattr(hf.config, "final_logit_softcapping", None)
    if body is None or head is None or body is hf or softcap:
        return lambda ids, ends: model.bridge(ids)[torch.arange(len(ends), device=ends.device), ends]

    def run(ids: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        h = body(input_ids=ids).last_hidden_state
        return head(h[torch.arange(len(ends), device=ends.device), ends])

    return run


def map_end_logits(
    model: LoadedModel,
    prompts: PromptSet,
    reduce: Callable[[torch.Tensor, list[int]], torch.Tensor],
    batch_size: int = DEFAULT_BATCH,
    hooks: HookFactory | None = None,
    progress: bool = False,
    desc: str = "model",
) -> torch.Tensor:
    """`reduce(end_logits [b, vocab] on the device, batch indices) -> [b, ...]` per batch, in prompt order, on the CPU.

    One forward per batch; the END logits stay on the model's device and only what `reduce`
    returns is copied to the host, so memory does not grow with vocabulary x prompts.
    """
    check_prompts(model, prompts)
    run = end_logits_fn(model)
    parts: list[torch.Tensor] = []
    order: list[int] = []
    device = model_device(model)
    with torch.inference_mode():
        for idx in tqdm(list(prompts.batches(batch_size)), desc=desc, disable=not progress, unit="batch"):
            ids, ends = pad_batch(prompts, idx, device=device)
            fwd = list(hooks(idx)) if hooks else []
            with model.bridge.hooks(fwd_hooks=fwd):
                part = reduce(run(ids, ends).float(), idx)
            # a few numbers per prompt wait on the device (no per-batch sync); wide rows leave at once
            parts.append(part if part[0].numel() <= SMALL_ROW else part.cpu())
            order += idx
    if not parts:
        return torch.empty(0, device="cpu")
    out = torch.cat([t.cpu() for t in parts])
    inverse = torch.empty(len(order), dtype=torch.long, device="cpu")
    inverse[torch.tensor(order, dtype=torch.long, device="cpu")] = torch.arange(len(order), device="cpu")
    return out[inverse]


def end_logits(
    model: LoadedModel,
    prompts: PromptSet,
    batch_size: int = DEFAULT_BATCH,
    hooks: HookFactory | None = None,
    progress: bool = False,
    desc: str = "model",
) -> torch.Tensor:
    """Logits at each prompt's END, [n, vocab] float32 on the CPU, in prompt order (for KL and other full-vocabulary reads)."""
    return map_end_logits(model, prompts, lambda lg, idx: lg, batch_size, hooks, progress, desc)


def end_metrics(
    model: LoadedModel,
    prompts: PromptSet,
    batch_size: int = DEFAULT_BATCH,
    hooks: HookFactory | None = None,
    progress: bool = False,
    desc: str = "model",
) -> tuple[PromptMetrics, ...]:
    """Per-prompt metrics at END, reduced on the model's device: 7 numbers per prompt reach the host."""
    io_all = [p.io_token for p in prompts]
    s_all = [p.s_token for p in prompts]
    if any(p.answer_tokens for p in prompts):
        return _set_metrics(model, prompts, batch_size, hooks, progress, desc)

    def reduce(logits: torch.Tensor, idx: list[int]) -> torch.Tensor:
        io = torch.tensor([io_all[i] for i in idx], dtype=torch.long, device=logits.device)
        s = torch.tensor([s_all[i] for i in idx], dtype=torch.long, device=logits.device)
        return metric_rows(logits, io, s)

    rows = map_end_logits(model, prompts, reduce, batch_size, hooks, progress, desc)
    return tuple(rows_to_metrics(rows)) if len(prompts) else ()


def _set_metrics(
    model: LoadedModel, prompts: PromptSet, batch_size: int, hooks: HookFactory | None, progress: bool, desc: str
) -> tuple[PromptMetrics, ...]:
    """`end_metrics` for answer/foil token sets: per batch, [b, vocab] masks built on the device."""
    sets = [(p.answer_tokens or (p.io_token,), p.foil_tokens or (p.s_token,)) for p in prompts]

    def reduce(logits: torch.Tensor, idx: list[int]) -> torch.Tensor:
        masks = torch.zeros((2, len(idx), logits.shape[-1]), dtype=torch.bool, device=logits.device)
        for r, i in enumerate(idx):
            masks[0, r, list(sets[i][0])] = True
            masks[1, r, list(sets[i][1])] = True
        return set_metric_rows(logits, masks[0], masks[1])

    return tuple(rows_to_metrics(map_end_logits(model, prompts, reduce, batch_size, hooks, progress, desc)))


Read = tuple[Head, str, str]
"""(head, query slot, key slot): one attention probability to read per prompt."""


def read_key(head: Head, query: str, key: str) -> str:
    return f"{head}:{query}->{key}"


def attention_readout_hooks(prompts: PromptSet, reads: Sequence[Sequence[Read]], sink: list[dict[str, float]]) -> HookFactory:
    """Hooks that store, per prompt, the attention of each requested (head, query, key) read.

    Only the requested scalars leave the hook: full patterns are never cached. A read whose
    query or key slot the prompt lacks is skipped.
    """
    layers = sorted({h.layer for rs in reads for h, _, _ in rs})

    def factory(idx: list[int]) -> list[Hook]:
        def make(layer: int) -> Callable[..., None]:
            want = [
                (r, i, h.head, prompts[i].positions[q], prompts[i].positions[k], read_key(h, q, k))
                for r, i in enumerate(idx)
                for h, q, k in reads[i]
                if h.layer == layer and q in prompts[i].positions and k in prompts[i].positions
            ]

            def hook(pattern: torch.Tensor, hook: Any) -> None:
                if not want:
                    return
                at = torch.tensor([w[0:1] + w[2:5] for w in want], dtype=torch.long, device=pattern.device)
                values = pattern[at[:, 0], at[:, 1], at[:, 2], at[:, 3]].float().cpu().tolist()  # one copy per layer
                for (_, i, _, _, _, key), v in zip(want, values, strict=True):
                    sink[i][key] = v

            return hook

        return [(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in layers]

    return factory


@dataclass(frozen=True)
class Measured:
    """Per-prompt metrics at END and each prompt's own attention reads, from one forward per batch."""

    metrics: tuple[PromptMetrics, ...]
    signals: tuple[dict[str, float], ...]


def measure(
    model: LoadedModel,
    prompts: PromptSet,
    reads: Sequence[Sequence[Read]],
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    desc: str = "model",
) -> Measured:
    """Metrics at END plus the requested (head, query, key) attention reads of every prompt."""
    sink: list[dict[str, float]] = [{} for _ in prompts]
    hooks = attention_readout_hooks(prompts, reads, sink) if any(reads) else None
    metrics = end_metrics(model, prompts, batch_size, hooks=hooks, progress=progress, desc=desc)
    return Measured(metrics, tuple(dict(sorted(d.items())) for d in sink))


def validate(
    model: LoadedModel,
    prompts: PromptSet,
    batch_size: int = DEFAULT_BATCH,
    heads: Sequence[Head] = (),
    slots: Sequence[str] = ("IO", "S1", "S2"),
    progress: bool = False,
) -> Evaluation:
    """Per-prompt LD, probabilities and rank; optional END->slot attention of `heads` from the same run."""
    for h in heads:
        h.check_in(model.n_layers, model.n_heads, f"model {model.name!r}")
    reads = [(h, "END", slot) for h in heads for slot in slots]
    m = measure(model, prompts, [reads] * len(prompts), batch_size, progress, desc="validate")
    signals = {read_key(*r): [d.get(read_key(*r), float("nan")) for d in m.signals] for r in reads}
    return Evaluation(prompts, m.metrics, signals)


def single_logit_diff(model: LoadedModel, token_ids: Sequence[int], io_token: int, s_token: int) -> float:
    """LD from one unbatched, unpadded forward through the bridge: the reference for batched numbers."""
    with torch.inference_mode():
        logits = model.bridge(torch.tensor([list(token_ids)], device=model_device(model)))[0, -1].double()
    return float(logits[io_token] - logits[s_token])
