"""One forward over a prompt set reading what behaviour records need: END attention rows of the
circuit's heads, and for every write of the circuit (a head's z @ W_O, an MLP node's output) its
direct logit attribution to IO - S and its contribution along the real path (later MLPs recomputed).

Kept apart from `behaviour` (which turns these reads into records) so each module has one job.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from advgen.circuits import paths
from advgen.core.types import AdvgenError, Head, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import end_logits


@dataclass(frozen=True)
class Reads:
    """Per prompt: attention rows at END [T] of the heads; per write (the heads, then the MLP nodes) two LD figures."""

    rows: list[dict[Head, np.ndarray]]
    dla: np.ndarray
    """[n, heads + mlps] direct logit attribution to IO - S (final LayerNorm scale frozen)."""
    path: np.ndarray
    """[n, heads + mlps] LD(clean) - LD(the write removed at END, later MLPs recomputed but the MLP nodes' held): real path."""


def final_norm(model: LoadedModel) -> torch.nn.LayerNorm:
    base = model.hf_model.base_model
    ln = getattr(base, "ln_f", None) or getattr(base, "norm", None)
    if ln is None:
        raise AdvgenError(f"model {model.name!r}: no final LayerNorm found (behaviour records need a GPT-2-style model)")
    return ln


def read_heads(
    model: LoadedModel,
    prompts: PromptSet,
    heads: Sequence[Head],
    batch_size: int,
    mlps: Sequence[int] = (),
    held: Collection[int] | None = None,
) -> Reads:
    """One forward per batch: END attention rows of `heads`; both LD figures of every head and MLP node (`mlps`, layers).

    `held`: the MLP layers the path figures keep at their clean output (default `mlps`: a circuit's MLP nodes, whose own
    records count what passes through them); every other MLP after a write is recomputed."""
    layers = sorted({h.layer for h in heads})
    n, L = len(prompts), model.n_layers
    rows: list[dict[Head, np.ndarray]] = [{} for _ in prompts]
    got: dict[str, list[dict[int, torch.Tensor]]] = {k: [{} for _ in prompts] for k in ("z", "mid", "mlp")}
    fin: list[torch.Tensor | None] = [None] * n
    first = min([*layers, *mlps], default=L)

    def factory(idx: list[int]) -> list[tuple[str, object]]:
        ends = [prompts[i].end for i in idx]

        def pat(t: torch.Tensor, hook: object, layer: int = 0) -> None:
            for r, i in enumerate(idx):
                for h in heads:
                    if h.layer == layer:
                        rows[i][h] = t[r, h.head, ends[r], : len(prompts[i])].float().cpu().numpy().copy()

        def keep(t: torch.Tensor, hook: object, key: str = "z", layer: int = 0) -> None:
            for r, i in enumerate(idx):
                got[key][i][layer] = t[r, ends[r]].float().cpu().clone()

        def fh(t: torch.Tensor, hook: object) -> None:
            for r, i in enumerate(idx):
                fin[i] = t[r, ends[r]].float().cpu().clone()

        hooks: list[tuple[str, object]] = [("ln_final.hook_in", fh)]
        for layer in layers:
            hooks.append((f"blocks.{layer}.attn.hook_pattern", lambda t, hook, layer=layer: pat(t, hook, layer)))
            hooks.append((f"blocks.{layer}.attn.hook_z", lambda t, hook, layer=layer: keep(t, hook, "z", layer)))
        for layer in range(first, L):
            hooks.append((f"blocks.{layer}.ln2.hook_in", lambda t, hook, layer=layer: keep(t, hook, "mid", layer)))
            hooks.append((f"blocks.{layer}.mlp.hook_out", lambda t, hook, layer=layer: keep(t, hook, "mlp", layer)))
        return hooks

    end_logits(model, prompts, batch_size, hooks=factory)  # type: ignore[arg-type]
    if any(f is None for f in fin):
        raise AdvgenError("behaviour reads: the final LayerNorm input was not recorded for every prompt")
    writes = _writes(model, heads, mlps, got)
    final = torch.stack([f for f in fin if f is not None])
    if not writes.shape[1]:
        return Reads(rows, np.zeros((n, 0)), np.zeros((n, 0)))
    starts = [h.layer for h in heads] + [m + 1 for m in mlps]  # the first MLP each write passes through
    mid, mlp = (_per_layer(got[k], final[0], L) for k in ("mid", "mlp"))
    _, path = paths.end_write_contributions(
        model, prompts, mid, mlp, final, writes, starts, fixed=set(mlps) if held is None else set(held)
    )
    return Reads(rows, _dla(model, prompts, writes, final), path)


def _per_layer(recorded: list[dict[int, torch.Tensor]], like: torch.Tensor, L: int) -> torch.Tensor:
    """[n, L, d] the recordings per prompt and layer; zeros before the first layer read (never used)."""
    return torch.stack([torch.stack([b.get(layer, torch.zeros_like(like)) for layer in range(L)]) for b in recorded])


def _writes(
    model: LoadedModel, heads: Sequence[Head], mlps: Sequence[int], got: Mapping[str, list[dict[int, torch.Tensor]]]
) -> torch.Tensor:
    """[n, heads + mlps, d] every write at END."""
    W_O = {h: model.bridge.blocks[h.layer].attn.W_O.detach().float().cpu()[h.head] for h in heads}
    per = [
        [z[h.layer][h.head] @ W_O[h] for h in heads] + [m[layer] for layer in mlps]
        for z, m in zip(got["z"], got["mlp"], strict=True)
    ]
    d = model.bridge.cfg.d_model
    return torch.stack([torch.stack(w) if w else torch.zeros(0, d, device="cpu") for w in per])


def _dla(model: LoadedModel, prompts: PromptSet, writes: torch.Tensor, final: torch.Tensor) -> np.ndarray:
    """[n, K] each write projected on W_U[IO] - W_U[S] through the frozen final LayerNorm scale."""
    ln = final_norm(model)
    W_U = model.hf_model.get_output_embeddings().weight.detach().float().cpu()
    g = ln.weight.detach().float().cpu()
    scale = ((final - final.mean(-1, keepdim=True)) ** 2).mean(-1).add(ln.eps).sqrt()  # [n]
    io = torch.tensor([p.io_token for p in prompts], device="cpu")
    s = torch.tensor([p.s_token for p in prompts], device="cpu")
    direction = W_U[io] - W_U[s]  # [n, d]
    centred = writes - writes.mean(-1, keepdim=True)
    return torch.einsum("nkd,nd->nk", centred * g / scale[:, None, None], direction).double().numpy()
