"""A hand-built induction model: a 2-layer attention-only GPT-2 whose circuit is known by construction.

Head a0.h0 is a previous-token head (positional query rotated back one step), writing the previous
token's embedding into its own subspace; head a1.h0 is an induction head (query: the current
token; key: that previous-token subspace; value: the token itself, copied to the logits). Heads
a0.h1 and a1.h1 are small random distractors; every MLP is exactly zero. Residual subspaces are
disjoint and zero-mean, so each LayerNorm is a fixed scale. Tests of generic discovery and claims
use it as ground truth independent of any training run; its numbers describe only itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

D, H = 384, 2
DH = D // H
E, P, S = slice(0, 128), slice(128, 192), slice(192, 320)
"""Residual subspaces: token, position, previous token (dims 320-383 take only the distractors' writes)."""
N_FREQ = 16
N_POS = 128


def _freqs() -> torch.Tensor:
    return math.pi * torch.logspace(0, -math.log10(N_POS / 2), N_FREQ)


def _embeddings(vocab: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.randint(0, 2, (vocab, 64), generator=g).float() * 2 - 1
    wte = torch.zeros(vocab, D)
    wte[:, E] = torch.cat([r, -r], 1)  # zero mean, |e|^2 = 128
    ang = torch.arange(N_POS)[:, None] * _freqs()[None, :]
    wpe = torch.zeros(N_POS, D)
    c, s = 2 * torch.cos(ang), 2 * torch.sin(ang)
    wpe[:, P] = torch.stack([c, s, -c, -s], 2).reshape(N_POS, 4 * N_FREQ)  # zero mean, |p|^2 = 128
    return wte, wpe


def _prev_token_head(c_attn: torch.Tensor, c_proj: torch.Tensor, beta: float) -> None:
    """Head 0 of layer 0: the query is the position rotated back one step, so the key one position earlier matches."""
    w = _freqs()
    for f in range(N_FREQ):
        cr, sr, hc, hs = P.start + 4 * f, P.start + 4 * f + 1, 2 * f, 2 * f + 1
        c_attn[cr, hc], c_attn[sr, hc] = beta * math.cos(w[f]), beta * math.sin(w[f])
        c_attn[cr, hs], c_attn[sr, hs] = -beta * math.sin(w[f]), beta * math.cos(w[f])
        c_attn[cr, D + hc], c_attn[sr, D + hs] = 1.0, 1.0
    c_attn[E, 2 * D : 2 * D + 128] = torch.eye(128)
    c_proj[0:128, S] = torch.eye(128)


def _induction_head(c_attn: torch.Tensor, c_proj: torch.Tensor, gamma: float, copy: float) -> None:
    """Head 0 of layer 1: query the current token, key the previous-token subspace, copy the key position's token."""
    c_attn[E, 0:128] = gamma * torch.eye(128)
    c_attn[S, D : D + 128] = torch.eye(128)
    c_attn[E, 2 * D : 2 * D + 128] = torch.eye(128)
    c_proj[0:128, E] = copy * torch.eye(128)


def make_induction_gpt2(out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0) -> Path:
    """Write the hand-built model (GPT2LMHeadModel, tied embeddings) with the tokenizer into `out_dir`."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    g = torch.Generator().manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=N_POS, n_embd=D, n_layer=2, n_head=H))
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd["transformer.wte.weight"], sd["transformer.wpe.weight"] = _embeddings(len(tok), g)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    for layer, norm in ((0, 256), (1, 384)):
        sd[f"transformer.h.{layer}.ln_1.weight"] = torch.full((D,), math.sqrt(norm / D))  # LN output = the residual itself
        ca, cp = sd[f"transformer.h.{layer}.attn.c_attn.weight"], sd[f"transformer.h.{layer}.attn.c_proj.weight"]
        for part in range(3):  # head 1: a random distractor (query, key, value), writing weakly everywhere
            ca[:, part * D + DH : (part + 1) * D] = 0.05 * torch.randn(D, DH, generator=g)
        cp[DH:, :] = 0.01 * torch.randn(DH, D, generator=g)
    _prev_token_head(sd["transformer.h.0.attn.c_attn.weight"], sd["transformer.h.0.attn.c_proj.weight"], beta=1.2 * math.sqrt(DH))
    _induction_head(
        sd["transformer.h.1.attn.c_attn.weight"], sd["transformer.h.1.attn.c_proj.weight"], gamma=0.16 * math.sqrt(DH), copy=1.0
    )
    sd["transformer.ln_f.weight"] = torch.full((D,), 0.05)
    for layer in range(2):
        sd[f"transformer.h.{layer}.ln_2.weight"] = torch.ones(D)
    model.load_state_dict(sd)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def load_handbuilt(tokenizer_dir: Path, tmp_path_factory) -> object:
    """The hand-built induction model, loaded; built once per test session (under pytest's base temp directory)."""
    from advgen.model.loading import load_model

    return load_model(str(make_induction_gpt2(tmp_path_factory.getbasetemp() / "handbuilt-induction", tokenizer_dir)))
