"""Cached runs and batched patched runs per head and position: activation patching, and what path patching builds on.

Clean IOI prompts are paired with their ABC twins (same template, S2 replaced by a third name,
so every slot sits at the same token index). One cached run per distribution records what every
later step needs (per-head outputs `hook_z`, residuals at END, gradients of LD); patched runs
then stack many (head, position) variants along the batch dimension, so a forward pass patches
as many heads as it has rows. TransformerLens' `patching` module patches one head at one absolute
position per forward and assumes equal positions across a batch; IOI prompts have per-prompt
positions, hence this compact version. Attribution patching, path patching to the logits and direct
logit attribution need no forward beyond the cached runs: `advgen.circuits.direct_effects`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from advgen.circuits.mlp_patch import MLPEntry, MLPRecorder, mlp_hooks
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import kl_divergence
from advgen.model.validate import (
    DEFAULT_BATCH,
    check_prompts,
    end_logits,
    end_logits_fn,
    model_device,
    pad_batch,
)

KINDS = ("ALL", "END", "S2", "S1+1", "S1")
"""Position kinds a head is patched at in discovery: one slot, or ALL positions.

ABC twins differ from the clean prompt only from S2 on, so patching them at S1 / S1+1 changes
nothing; those kinds take their corrupted activations from the S1 twin (S1 replaced by the third
name, S2 kept), which removes the duplication from the other side."""
S1_KINDS = ("S1", "S1+1", "IO")


def source_for(kind: str, corrupt: Mapping[str, RunCache] | RunCache) -> RunCache:
    """The corrupted cache a kind is patched from (a single cache serves every kind)."""
    if isinstance(corrupt, RunCache):
        return corrupt
    return corrupt["s1"] if kind in S1_KINDS and "s1" in corrupt else corrupt["abc"]


ATTN_PAIRS = (("END", "IO"), ("END", "S1"), ("END", "S2"), ("S2", "S1"), ("S2", "S1+1"), ("S1+1", "S1"))
"""(query slot, key slot) attention readouts recorded in every cached run."""

Entry = tuple[int, int, str]
"""(layer, head, position kind)."""


def positions_of(p: Prompt, kind: str) -> list[int]:
    """Token indices of a position kind in one prompt ("ALL" = every real token)."""
    if kind == "ALL":
        return list(range(len(p)))
    if kind not in p.positions:
        raise AdvgenError(f"prompt {p.pair_id or p.text[:40]!r} has no position {kind!r}")
    return [p.positions[kind]]


@dataclass(frozen=True)
class RunCache:
    """What one batched run of a prompt set recorded (tensors are CPU float32)."""

    z: tuple[torch.Tensor, ...]
    """Per prompt [n_layers, T, n_heads, d_head]: each head's output before W_O."""
    resid_final: torch.Tensor
    """[n, d_model] input of the final LayerNorm at END."""
    resid_pre: torch.Tensor
    """[n, n_layers, d_model] residual stream entering each block, at END."""
    attn: dict[str, torch.Tensor]
    """"END->IO" etc. -> [n, n_layers, n_heads] attention probabilities."""
    logits: torch.Tensor
    """[n, vocab] logits at END."""
    ld: torch.Tensor
    """[n] logit(IO) - logit(S) at END."""
    grad_z: tuple[torch.Tensor, ...] | None = None
    """Per prompt d LD / d z (same shapes as z), when asked for (attribution patching)."""
    mlp: tuple[torch.Tensor, ...] | None = None
    """Per prompt [n_layers, T, d_model] MLP outputs, when asked for (knocking out MLPs)."""
    forwards: int = 0
    backwards: int = 0


def io_s_tokens(prompts: PromptSet) -> tuple[torch.Tensor, torch.Tensor]:
    """IO and S token ids on the CPU, where the recorded caches are."""
    return torch.tensor([p.io_token for p in prompts], device="cpu"), torch.tensor([p.s_token for p in prompts], device="cpu")


ExtraHooks = Callable[[list[int], int], list[tuple[str, Callable[..., Any]]]]
"""(batch prompt indices, padded width) -> hooks applied before the recording hooks."""


def _grad(t: torch.Tensor) -> torch.Tensor:
    if t.grad is None:
        raise AdvgenError("attribution patching: a hooked activation received no gradient")
    return t.grad


def _collect(
    idx: list[int],
    prompts: PromptSet,
    grad: bool,
    zs: dict[int, torch.Tensor],
    pre: dict[int, torch.Tensor],
    fin: torch.Tensor,
    logits: torch.Tensor,
    out: tuple[list[Any], ...],
) -> None:
    """Copy one batch's recordings into the per-prompt lists (z, grad z, final resid, resid_pre, logits)."""
    (z, gz, rfin, rpre, logits_out), L = out, len(zs)
    zb = torch.stack([zs[layer].detach().float() for layer in range(L)], 1).cpu()  # one host copy per batch
    gb = torch.stack([_grad(zs[layer]).float() for layer in range(L)], 1).cpu() if grad else None
    preb = torch.stack([pre[layer] for layer in range(L)], 1).cpu()
    fin, logits = fin.cpu(), logits.detach().cpu()
    for r, i in enumerate(idx):
        T = len(prompts[i])
        z[i] = zb[r, :, :T].clone()
        gz[i] = gb[r, :, :T].clone() if gb is not None else None
        rfin[i], rpre[i], logits_out[i] = fin[r], preb[r], logits[r]


def cache_run(
    model: LoadedModel,
    prompts: PromptSet,
    batch_size: int = DEFAULT_BATCH,
    grad: bool = False,
    extra_hooks: ExtraHooks | None = None,
    mlp: bool = False,
) -> RunCache:
    """One forward per batch (on the model's device) recording z, residuals at END, attention readouts (and d LD/dz;
    with `mlp`, every MLP's output at every position); the recordings reach the CPU in one copy per batch."""
    check_prompts(model, prompts)
    dev = model_device(model)
    L, n, run = model.n_layers, len(prompts), end_logits_fn(model)
    bufs: list[list[Any]] = [[None] * n for _ in range(6)]  # per prompt: z, grad z, final resid, resid_pre, logits, MLP outputs
    z, gz, rfin, rpre, logits_out, mlp_out = bufs
    attn = {f"{q}->{k}": torch.zeros(n, L, model.n_heads, device="cpu") for q, k in ATTN_PAIRS}
    io_all, s_all = io_s_tokens(prompts)
    for idx in prompts.batches(batch_size):
        ids, ends = pad_batch(prompts, idx, device=dev)
        rows = torch.arange(len(idx), device=dev)
        rec = _Recording(prompts, idx, rows, ends, grad, attn)
        hooks = list(extra_hooks(idx, ids.shape[1])) if extra_hooks else []
        hooks.append(("ln_final.hook_in", rec.finhook))
        mlp_rec = MLPRecorder(L) if mlp else None
        hooks += mlp_rec.hooks() if mlp_rec else []
        hooks += rec.hooks(L)
        with torch.set_grad_enabled(grad), model.bridge.hooks(fwd_hooks=hooks):
            logits = run(ids, ends).float()
            if grad:
                ld = logits[rows, io_all[idx].to(dev)] - logits[rows, s_all[idx].to(dev)]
                ld.sum().backward()
        _collect(idx, prompts, grad, rec.zs, rec.pre, rec.fin[0], logits, (z, gz, rfin, rpre, logits_out))
        if mlp_rec:
            mlp_rec.collect(idx, [len(prompts[i]) for i in idx], mlp_out)
    lg = torch.stack(logits_out)
    ld = lg[torch.arange(n, device="cpu"), io_all] - lg[torch.arange(n, device="cpu"), s_all]
    return RunCache(
        tuple(z),
        torch.stack(rfin),
        torch.stack(rpre),
        attn,
        lg,
        ld,
        tuple(gz) if grad else None,
        tuple(mlp_out) if mlp else None,
        forwards=n,
        backwards=n if grad else 0,
    )


class _Recording:
    """One batch's recording hooks: z per layer (its gradient retained with `grad`), residuals and final input at END,
    the attention readouts (ATTN_PAIRS, written straight into `attn`)."""

    def __init__(
        self,
        prompts: PromptSet,
        idx: list[int],
        rows: torch.Tensor,
        ends: torch.Tensor,
        grad: bool,
        attn: dict[str, torch.Tensor],
    ) -> None:
        self.prompts, self.idx, self.rows, self.ends, self.grad, self.attn = prompts, idx, rows, ends, grad, attn
        self.zs: dict[int, torch.Tensor] = {}
        self.pre: dict[int, torch.Tensor] = {}
        self.fin: list[torch.Tensor] = []

    def zhook(self, t: torch.Tensor, hook: Any, layer: int = 0) -> torch.Tensor:
        if self.grad:
            t.retain_grad()
        self.zs[layer] = t
        return t

    def prehook(self, t: torch.Tensor, hook: Any, layer: int = 0) -> None:
        self.pre[layer] = t[self.rows, self.ends].detach().float()

    def pathook(self, t: torch.Tensor, hook: Any, layer: int = 0) -> None:
        for q, k in ATTN_PAIRS:
            qi = torch.tensor([self.prompts[i].positions[q] for i in self.idx], device=t.device)
            ki = torch.tensor([self.prompts[i].positions[k] for i in self.idx], device=t.device)
            self.attn[f"{q}->{k}"][self.idx, layer] = t[self.rows, :, qi, ki].detach().float().cpu()

    def finhook(self, t: torch.Tensor, hook: Any) -> None:
        self.fin.append(t[self.rows, self.ends].detach().float())

    def hooks(self, n_layers: int) -> list[tuple[str, Callable[..., Any]]]:
        out: list[tuple[str, Callable[..., Any]]] = []
        for layer in range(n_layers):
            out += [
                (f"blocks.{layer}.attn.hook_z", lambda t, hook, layer=layer: self.zhook(t, hook, layer)),
                (f"blocks.{layer}.hook_resid_pre", lambda t, hook, layer=layer: self.prehook(t, hook, layer)),
                (f"blocks.{layer}.attn.hook_pattern", lambda t, hook, layer=layer: self.pathook(t, hook, layer)),
            ]
        return out


# ---------------------------------------------------------------- batched replacement runs


@dataclass(frozen=True)
class Patch:
    """One row of a patched run: prompt `prompt`, with z at `entries` replaced by `source`.

    With keep=True the meaning flips: every (layer, head, position) is replaced except `entries`
    (a knockout keeping only a circuit). `source` None means zeros.
    """

    prompt: int
    entries: tuple[Entry, ...]
    source: torch.Tensor | None
    keep: bool = False
    q_patch: tuple[tuple[int, int, torch.Tensor], ...] = field(default=())
    """(layer, head, new query at END [d_head]) replacements, for path patching to queries."""
    kv_patch: tuple[tuple[int, int, str, torch.Tensor], ...] = field(default=())
    """(layer, head, "k" or "v", new keys / values at every position [T, d_head]), for path
    patching to keys and values."""
    mlp_kept: tuple[MLPEntry, ...] | None = None
    """MLP (layer, position) outputs kept; every other MLP output takes `mlp_source` (None: every MLP runs as is)."""
    mlp_source: torch.Tensor | None = None
    """[L, T, d_model] replacement MLP outputs (None = zeros)."""


def _row_mask(p: Prompt, patch: Patch, L: int, H: int, width: int) -> torch.Tensor:
    """[L, width, H] True where z is replaced."""
    m = torch.zeros(L, width, H, dtype=torch.bool, device="cpu")  # moved to the activation's device in the hook
    for layer, head, kind in patch.entries:
        m[layer, positions_of(p, kind), head] = True
    if patch.keep:
        m = ~m
        m[:, len(p) :] = False
    return m


@dataclass(frozen=True)
class RowStats:
    """Per-row results of a patched run: LD, IO loss, KL(reference || patched), correct."""

    ld: torch.Tensor
    loss: torch.Tensor
    kl: torch.Tensor


def patched_run(
    model: LoadedModel,
    prompts: PromptSet,
    patches: Sequence[Patch],
    batch_size: int = DEFAULT_BATCH,
    ref_logp: torch.Tensor | None = None,
    chunk: int = 512,
) -> RowStats:
    """Run every patch (row) and reduce END logits to LD / loss / KL at once (no vocab-size output)."""
    L, H = model.n_layers, model.n_heads
    lds, losses, kls = [], [], []
    for c0 in range(0, len(patches), chunk):
        part = patches[c0 : c0 + chunk]
        rows_ps = PromptSet(tuple(prompts[p.prompt] for p in part), prompts.tokenizer_hash)
        factory = partial(_patch_hooks, part=part, rows_ps=rows_ps, L=L, H=H)
        logits = end_logits(model, rows_ps, batch_size, hooks=factory).double()
        io, s = io_s_tokens(rows_ps)
        r = torch.arange(len(part), device="cpu")  # end_logits returns host tensors
        logp = torch.log_softmax(logits, -1)
        lds.append(logits[r, io] - logits[r, s])
        losses.append(-logp[r, io])
        if ref_logp is not None:
            ref = ref_logp[[p.prompt for p in part]].double()
            kls.append(kl_divergence(ref, logp))
        else:
            kls.append(torch.full((len(part),), float("nan"), dtype=torch.float64, device="cpu"))
    return RowStats(torch.cat(lds), torch.cat(losses), torch.cat(kls))


def _patch_hooks(
    idx: list[int], part: Sequence[Patch], rows_ps: PromptSet, L: int, H: int
) -> list[tuple[str, Callable[..., Any]]]:
    """The hooks of one batch (rows `idx` of `part`): z, query, key / value and MLP replacements."""
    width = max(len(rows_ps[i]) for i in idx)
    masks = torch.stack([_row_mask(rows_ps[i], part[i], L, H, width) for i in idx])  # [b, L, W, H]
    hooks: list[tuple[str, Callable[..., Any]]] = []
    for layer in range(L):
        lm = masks[:, layer]
        if not lm.any():
            continue
        srcs = []
        for i in idx:
            src = part[i].source
            s = torch.zeros(width, H, 1, device="cpu") if src is None else src[layer]
            srcs.append(F.pad(s, (0, 0, 0, 0, 0, width - s.shape[0])) if s.shape[0] < width else s[:width])

        def zhook(t: torch.Tensor, hook: Any, lm: torch.Tensor = lm, srcs: list = srcs) -> torch.Tensor:
            src = torch.stack([s.expand(t.shape[1], t.shape[2], t.shape[3]) for s in srcs]).to(t.device, t.dtype)
            return torch.where(lm[..., None].to(t.device), src, t)

        hooks.append((f"blocks.{layer}.attn.hook_z", zhook))
    hooks += _q_hooks(idx, part, rows_ps)
    hooks += _kv_hooks([(r, kv) for r, i in enumerate(idx) for kv in part[i].kv_patch])
    return hooks + mlp_hooks(
        [rows_ps[i] for i in idx], [part[i].mlp_kept for i in idx], [part[i].mlp_source for i in idx], L, width, positions_of
    )


def _q_hooks(idx: list[int], part: Sequence[Patch], rows_ps: PromptSet) -> list[tuple[str, Callable[..., Any]]]:
    """hook_q replacements: batch row r gets a new query at END for one head."""
    hooks: list[tuple[str, Callable[..., Any]]] = []
    qrows = [(r, q) for r, i in enumerate(idx) for q in part[i].q_patch]
    for layer in sorted({q[0] for _, q in qrows}):
        sel = [(r, h, v) for r, (lq, h, v) in qrows if lq == layer]
        ends = [rows_ps[idx[r]].end for r, _, _ in sel]

        def qhook(t: torch.Tensor, hook: Any, sel: list = sel, ends: list = ends) -> torch.Tensor:
            t = t.clone()
            for (r, h, v), e in zip(sel, ends, strict=False):
                t[r, e, h] = v.to(t.device, t.dtype)
            return t

        hooks.append((f"blocks.{layer}.attn.hook_q", qhook))
    return hooks


def _kv_hooks(rows: list[tuple[int, tuple[int, int, str, torch.Tensor]]]) -> list[tuple[str, Callable[..., Any]]]:
    """hook_k / hook_v replacements: batch row r gets new keys or values for one head."""
    hooks: list[tuple[str, Callable[..., Any]]] = []
    for layer, which in sorted({(kv[0], kv[2]) for _, kv in rows}):
        sel = [(r, kv[1], kv[3]) for r, kv in rows if kv[0] == layer and kv[2] == which]

        def hook(t: torch.Tensor, hook: Any, sel: list = sel) -> torch.Tensor:
            t = t.clone()
            for r, h, v in sel:
                t[r, : v.shape[0], h] = v.to(t.device, t.dtype)
            return t

        hooks.append((f"blocks.{layer}.attn.hook_{which}", hook))
    return hooks


# ---------------------------------------------------------------- activation patching


def activation_patching(
    model: LoadedModel,
    prompts: PromptSet,
    clean: RunCache,
    corrupt: Mapping[str, RunCache] | RunCache,
    kinds: Sequence[str] = KINDS,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[dict[str, np.ndarray], int]:
    """Exhaustive: every (head, kind) patched from its corrupted twin; len(prompts) rows per variant."""
    L, H, n = model.n_layers, model.n_heads, len(prompts)
    variants = [(layer, head, kind) for kind in kinds for layer in range(L) for head in range(H)]
    patches = [Patch(i, (v,), source_for(v[2], corrupt).z[i]) for v in variants for i in range(n)]
    st = patched_run(model, prompts, patches, batch_size)
    base = float(clean.ld.mean())
    eff = ((st.ld.view(len(variants), n).mean(1) - base) / abs(base)).numpy()
    out = {k: np.zeros((L, H)) for k in kinds}
    for (layer, head, kind), e in zip(variants, eff, strict=False):
        out[kind][layer, head] = e
    return out, len(patches)
