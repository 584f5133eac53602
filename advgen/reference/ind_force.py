"""Force a0.h0 of the induction trainer's model to be a previous-token head: the "architecture-forced" recipe.

Why: 21 recipes that left every weight to gradient descent never formed the previous-token ->
induction pair on 2 cores in minutes (docs/tasks.md, Induction). Not even a previous-token head that
formed on its own was picked up by layer 1, at the default initialisation. So the first half of
the circuit is imposed by construction and only the second half is learnt:
- positions are a fixed sinusoidal code in their own subspace (the last `2 * freqs` residual
  dimensions), which token embeddings may never enter (projected back to zero after each step);
- a0.h0's query reads position i as position i - 1 (a rotation of each sin/cos pair) and its key
  reads position j as is, so its score peaks at j = i - 1: it attends to the previous token.
  Its query and key weights, and layer 0's LayerNorm on that subspace, are restored after every
  optimiser step, so weight decay and gradients cannot move them;
- everything else (token embeddings, a0.h0's value/output, the other heads, all of layer 1) is
  trained. Whether layer 1 then forms an induction head is measured (`ind_measure`), not assumed.
The saved model is a plain GPT-2: the constraint exists only during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch


def position_dims(n_embd: int, freqs: int) -> list[int]:
    """The residual dimensions that hold the position code (and nothing else)."""
    if 2 * freqs >= n_embd:
        raise ValueError(f"forced previous-token head: {freqs} frequencies need {2 * freqs} of the {n_embd} residual dimensions")
    return list(range(n_embd - 2 * freqs, n_embd))


def position_code(n_positions: int, dims: list[int], n_embd: int) -> torch.Tensor:
    """[n_positions, n_embd]: cos/sin of the position at frequencies pi * k / n_positions (k = 1..freqs) in `dims`."""
    out = torch.zeros(n_positions, n_embd, device="cpu")
    pos = torch.arange(n_positions, dtype=torch.float32, device="cpu")[:, None]
    freq = math.pi * torch.arange(1, len(dims) // 2 + 1, dtype=torch.float32, device="cpu")[None, :] / n_positions
    out[:, dims[0::2]], out[:, dims[1::2]] = torch.cos(pos * freq), torch.sin(pos * freq)
    return out


def _set_head0_qk(weight: torch.Tensor, dims: list[int], n_positions: int, d_head: int, scale: float) -> None:
    """Write a0.h0's query (position i read as i - 1, times `scale`) and key (position as is) into c_attn's weight."""
    n_embd = weight.shape[0]
    if len(dims) > d_head:
        raise ValueError(f"forced previous-token head: {len(dims)} position dimensions exceed the head size {d_head}")
    weight[:, :d_head] = 0.0
    weight[:, n_embd : n_embd + d_head] = 0.0
    for k in range(len(dims) // 2):
        c, s = dims[2 * k], dims[2 * k + 1]
        ang = math.pi * (k + 1) / n_positions
        # (cos, sin)(ang * i) rotated by -ang is (cos, sin)(ang * (i - 1))
        weight[c, 2 * k], weight[s, 2 * k] = math.cos(ang) * scale, math.sin(ang) * scale
        weight[c, 2 * k + 1], weight[s, 2 * k + 1] = -math.sin(ang) * scale, math.cos(ang) * scale
        weight[c, n_embd + 2 * k], weight[s, n_embd + 2 * k + 1] = 1.0, 1.0


def force_previous_token(model: Any, freqs: int, scale: float) -> Callable[[], None]:
    """Impose the constraint on a freshly built model; returns the projection to call after every optimiser step."""
    cfg = model.config
    d_head = cfg.n_embd // cfg.n_head
    dims = position_dims(cfg.n_embd, freqs)
    wpe, wte = model.transformer.wpe.weight, model.transformer.wte.weight
    block = model.transformer.h[0]
    c_attn, ln = block.attn.c_attn, block.ln_1
    qk = list(range(d_head)) + list(range(cfg.n_embd, cfg.n_embd + d_head))
    with torch.no_grad():
        wpe.copy_(position_code(cfg.n_positions, dims, cfg.n_embd))
        _set_head0_qk(c_attn.weight, dims, cfg.n_positions, d_head, scale)
    wpe.requires_grad_(False)
    kept = c_attn.weight[:, qk].detach().clone()

    def project() -> None:
        with torch.no_grad():
            wte[:, dims] = 0.0
            c_attn.weight[:, qk] = kept
            c_attn.bias[qk] = 0.0
            ln.weight[dims] = 1.0
            ln.bias[dims] = 0.0

    project()
    return project
