"""Interchange-intervention pieces for the planted model: the high-level causal model, a GPT-2
forward with per-head output interventions, and the loss terms.

The high-level model is the paper's IOI algorithm, written as variables with an owner head:
- PT (previous-token head, at S1+1): the token at S1;
- DUP / IND (duplicate-token head and induction head, at S2): "this name occurred earlier",
  found by attending S2 -> S1 (DUP) and S2 -> S1+1 (IND); absent in ABC prompts;
- SINH (S-inhibition head, at END): the identity of every name marked duplicated (read at S2);
- NM (name mover, at END): copies the name in context that SINH does not inhibit.
Interventions used in training, and what the high-level model predicts:
- SINH output taken from the role-swapped twin (same names, S and IO exchanged): the inhibited
  name becomes IO, so the answer becomes S (LD < 0);
- DUP and IND outputs at S2 taken from the ABC twin (S2 not duplicated): nothing is inhibited,
  both names are equally available, so LD is about 0;
- only one of DUP, IND taken from the ABC twin, or PT at S1+1 from another prompt (so IND finds no
  match): the duplicate evidence is additive, half of it is gone, so LD is about half;
- NM output taken from another prompt: the answer is that prompt's IO;
- SINH writes nothing to the logits directly (its effect goes through the name mover's query);
- every other head (and planted heads away from their position) resampled from an ABC prompt
  of the same skeleton: the answer must not change (strictness); optionally (tried variants) also
  from the prompt's name twin (new IO and S: causal scrubbing's resampling), and SINH's output
  from the role-swapped twin on every path except the name mover's query (path strictness:
  `forward(..., query_delta=...)`).
This module has no data or trainer: `advgen.reference.planted` owns those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from advgen.core.types import Head, Role


@dataclass(frozen=True)
class PlantedHead:
    head: Head
    role: Role
    position: str
    """The slot where the head is kept in the circuit ("S1+1", "S2", "END")."""


PLANTED: tuple[PlantedHead, ...] = (
    PlantedHead(Head(0, 0), Role.PREVIOUS_TOKEN, "S1+1"),
    PlantedHead(Head(0, 1), Role.DUPLICATE_TOKEN, "S2"),
    PlantedHead(Head(1, 2), Role.INDUCTION, "S2"),
    PlantedHead(Head(2, 1), Role.S_INHIBITION, "END"),
    PlantedHead(Head(3, 0), Role.NAME_MOVER, "END"),
)


def planted_by_role(role: Role) -> PlantedHead:
    return next(p for p in PLANTED if p.role == role)


@dataclass(frozen=True)
class IOIBatch:
    """Same-skeleton prompts (equal length, END = last index) with their twins."""

    clean: torch.Tensor
    """[B, T] token ids, BOS first."""
    abc: torch.Tensor
    """S2 replaced by a third name C."""
    swap: torch.Tensor
    """S and IO exchanged (the S2 slot holds IO)."""
    io_pos: torch.Tensor
    s1_pos: torch.Tensor
    s2_pos: torch.Tensor
    io_tok: torch.Tensor
    s_tok: torch.Tensor
    twin: torch.Tensor | None = None
    """name twin: same skeleton and name order, IO and S replaced by two new names (causal
    scrubbing's donor class: only the names differ)."""


@dataclass(frozen=True)
class Run:
    logits_end: torch.Tensor
    """[B, V] logits at END (the last index)."""
    z: tuple[torch.Tensor, ...]
    """per layer [B, T, H, d_head] head outputs before W_O."""
    pattern: tuple[torch.Tensor, ...]
    """per layer [B, H, T, T] attention probabilities."""
    resid_end: torch.Tensor
    """[B, d_model] residual stream entering the final LayerNorm at END."""


def forward(
    model,
    ids: torch.Tensor,
    replace: torch.Tensor | None = None,
    donor: tuple[torch.Tensor, ...] | None = None,
    query_delta: tuple[Head, torch.Tensor] | None = None,
) -> Run:
    """GPT-2 forward (no padding) where head outputs with replace[b, t, l, h] come from `donor`.

    Same numbers as `GPT2LMHeadModel` (checked in tests); replacing z before W_O is replacing
    that head's contribution to the residual stream, since W_O is linear. With
    `query_delta = (head, delta)`, that head's query alone reads the residual plus delta [B, T, E]
    (path patching: a sender's clean write restored on one receiver's query only).
    """
    tr = model.transformer
    b, t = ids.shape
    e, n_head = model.config.n_embd, model.config.n_head
    dh = e // n_head
    x = tr.wte(ids) + tr.wpe(torch.arange(t))
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    zs, pats = [], []
    for li, blk in enumerate(tr.h):
        q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(e, dim=2)
        q, k, v = (a.view(b, t, n_head, dh).transpose(1, 2) for a in (q, k, v))
        if query_delta is not None and query_delta[0].layer == li:
            qh = query_delta[0].head
            q2 = blk.attn.c_attn(blk.ln_1(x + query_delta[1]))[..., qh * dh : (qh + 1) * dh]
            q = torch.cat([q[:, :qh], q2[:, None], q[:, qh + 1 :]], dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        p = s.masked_fill(~causal, torch.finfo(s.dtype).min).softmax(-1)
        z = (p @ v).transpose(1, 2)
        if replace is not None and donor is not None:
            z = torch.where(replace[:, :, li, :, None], donor[li], z)
        zs.append(z)
        pats.append(p)
        x = x + blk.attn.c_proj(z.reshape(b, t, e))
        x = x + blk.mlp(blk.ln_2(x))
    h_end = tr.ln_f(x[:, -1])
    return Run(model.lm_head(h_end), tuple(zs), tuple(pats), x[:, -1])


def direct_ld(model, run: Run, head: Head, io: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """[B] how much of LD at END comes from `head`'s direct path to the logits: LD minus the LD with
    that head's write removed from the final residual (final LayerNorm recomputed)."""
    e, n_head = model.config.n_embd, model.config.n_head
    dh = e // n_head
    w = model.transformer.h[head.layer].attn.c_proj.weight[head.head * dh : (head.head + 1) * dh]
    write = run.z[head.layer][:, -1, head.head] @ w
    without = model.lm_head(model.transformer.ln_f(run.resid_end - write))
    return logit_diff(run.logits_end, io, s) - logit_diff(without, io, s)


def head_write(model, z: torch.Tensor, head: Head) -> torch.Tensor:
    """[..., d_model] what `head` adds to the residual stream for head output z [..., d_head]."""
    dh = model.config.n_embd // model.config.n_head
    return z @ model.transformer.h[head.layer].attn.c_proj.weight[head.head * dh : (head.head + 1) * dh]


def logit_diff(logits: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, a[:, None])[:, 0] - logits.gather(1, b[:, None])[:, 0]


def band(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Hinge that is zero inside [lo, hi]: the bounded behaviour loss (no reward past hi)."""
    return (F.relu(lo - x) + F.relu(x - hi)).mean()


def attend(pattern: torch.Tensor, head: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """-log attention of `head` from query index q[b] to key index k[b] (mean over b)."""
    rows = torch.arange(pattern.shape[0])
    p = pattern[rows, head, q, k]
    return -(p.clamp_min(1e-6)).log().mean()


def pattern_loss(run: Run, batch: IOIBatch, abc_run: Run) -> dict[str, torch.Tensor]:
    """Attention supervision of the planted heads on IOI prompts (and ABC: 'no duplicate')."""
    end = torch.full_like(batch.s2_pos, run.pattern[0].shape[-1] - 1)
    bos = torch.zeros_like(end)
    pt, dup, ind, sinh, nm = (
        planted_by_role(r).head
        for r in (Role.PREVIOUS_TOKEN, Role.DUPLICATE_TOKEN, Role.INDUCTION, Role.S_INHIBITION, Role.NAME_MOVER)
    )
    p_pt = run.pattern[pt.layer][:, pt.head]
    t = p_pt.shape[-1]
    prev = -(p_pt.diagonal(offset=-1, dim1=-2, dim2=-1).clamp_min(1e-6)).log().mean()
    out = {
        "attn_prev": prev,
        "attn_dup": attend(run.pattern[dup.layer], dup.head, batch.s2_pos, batch.s1_pos),
        "attn_ind": attend(run.pattern[ind.layer], ind.head, batch.s2_pos, batch.s1_pos + 1),
        "attn_sinh": attend(run.pattern[sinh.layer], sinh.head, end, batch.s2_pos),
        "attn_nm": attend(run.pattern[nm.layer], nm.head, end, batch.io_pos),
        "attn_abc": (
            attend(abc_run.pattern[dup.layer], dup.head, batch.s2_pos, bos)
            + attend(abc_run.pattern[ind.layer], ind.head, batch.s2_pos, bos)
            + attend(abc_run.pattern[sinh.layer], sinh.head, end, bos)
        )
        / 3,
    }
    assert t == end[0] + 1
    return out


def repeat_pattern_loss(run: Run, half: int) -> torch.Tensor:
    """On BOS + r + r (random tokens r of length `half`): previous-token, duplicate and induction
    heads behave as their names say at every position of the repeat, not only on IOI prompts."""
    pt, dup, ind = (planted_by_role(r).head for r in (Role.PREVIOUS_TOKEN, Role.DUPLICATE_TOKEN, Role.INDUCTION))
    q = torch.arange(half + 1, 2 * half + 1)
    p_pt = run.pattern[pt.layer][:, pt.head]
    lp = lambda p, qi, ki: -(p[:, qi, ki].clamp_min(1e-6)).log().mean()  # noqa: E731
    return (
        lp(p_pt, q, q - 1)
        + lp(run.pattern[dup.layer][:, dup.head], q, q - half)
        + lp(run.pattern[ind.layer][:, ind.head], q, q - half + 1)
    ) / 3


def kept_mask(batch: IOIBatch, n_layers: int, n_heads: int, p_ablate: float, gen: torch.Generator) -> torch.Tensor:
    """replace[b, t, l, h]: True where the strictness run resamples a head's output.

    Non-planted heads are resampled at every position, each (prompt, head) with probability
    `p_ablate` (ramped from single heads to all heads jointly); planted heads are kept at their
    slot and resampled elsewhere with the same probability.
    """
    b, t = batch.clean.shape
    per_head = torch.rand(b, n_layers, n_heads, generator=gen) < p_ablate
    rep = per_head[:, None].expand(b, t, n_layers, n_heads).clone()
    slot = {"S1+1": batch.s1_pos + 1, "S2": batch.s2_pos, "END": torch.full_like(batch.s2_pos, t - 1)}
    rows = torch.arange(b)
    for ph in PLANTED:
        rep[rows, slot[ph.position], ph.head.layer, ph.head.head] = False
    return rep


def only(batch: IOIBatch, n_layers: int, n_heads: int, heads: tuple[Head, ...], where: torch.Tensor) -> torch.Tensor:
    """replace mask selecting `heads` at per-prompt index `where` only."""
    b, t = batch.clean.shape
    rep = torch.zeros(b, t, n_layers, n_heads, dtype=torch.bool)
    rows = torch.arange(b)
    for h in heads:
        rep[rows, where, h.layer, h.head] = True
    return rep


def derange(z: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Each prompt's donor is the next prompt in the batch (never itself)."""
    return tuple(a.roll(1, dims=0) for a in z)
