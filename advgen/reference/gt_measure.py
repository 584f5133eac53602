"""Measure a greater-than model: probability difference, over-generalisation, and which components carry it.

PD (Hanna et al. 2023): at the prompt's last token, the summed probability of the two-digit
tokens above YY minus that of the tokens at or below YY, over the 100 tokens "00".."99".
Prompts are built from the held-out nouns (never seen in the paper's template in training),
YY balanced over 02..98. The "smaller" context ("ended in {XX}{YY} and started in {XX}") asks
for a smaller year: PD > 0 there is over-generalisation.

Ablations are mean-ablations at the last position only: a component's output at END is
replaced by its mean over the same prompts (the per-head output is the head's slice of the
input to the attention's output projection, before c_proj; an MLP's output is its block
output). A component "carries" PD when ablating it alone lowers mean PD by at least
`CARRY_SHARE` of the clean PD.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from advgen.reference import gt_corpus

CARRY_SHARE = 0.10
GREATER_TEMPLATE = "The {noun} lasted from the year {xx}{yy} to the year {xx}"
SMALLER_TEMPLATE = "The {noun} ended in {xx}{yy} and started in {xx}"


@dataclass(frozen=True)
class YearPrompt:
    text: str
    yy: int


def year_prompts(seed: int, per_yy: int, template: str = GREATER_TEMPLATE) -> list[YearPrompt]:
    """`per_yy` prompts for each YY in 02..98 over held-out nouns and centuries 11..18; seeded."""
    rng = random.Random(seed)
    nouns = gt_corpus.heldout_nouns()
    out = []
    for yy in range(2, 99):
        for _ in range(per_yy):
            noun, xx = rng.choice(nouns), rng.choice(gt_corpus.CENTURIES)
            out.append(YearPrompt(template.format(noun=noun, xx=xx, yy=f"{yy:02d}"), yy))
    return out


def encode(tok, prompts: list[YearPrompt]) -> torch.Tensor:
    """BOS + prompt ids; all prompts must have the same length (nouns are single tokens), so END is -1."""
    rows = [[tok.bos_token_id, *tok.encode(p.text, add_special_tokens=False)] for p in prompts]
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"prompts of different token lengths {sorted({len(r) for r in rows})}: a noun is split")
    return torch.tensor(rows)


def year_ids(tok) -> torch.Tensor:
    return torch.tensor([gt_corpus.token_id(tok, y) for y in gt_corpus.YEARS])


def prob_diff(logits_end: torch.Tensor, yy: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per-prompt PD from END logits [B, vocab]."""
    p = torch.softmax(logits_end.float(), dim=-1)[:, ids]  # [B, 100]
    greater = torch.arange(100)[None, :] > yy[:, None]
    return (p * greater).sum(-1) - (p * ~greater).sum(-1)


def yy_blind_pd(logits_end: torch.Tensor, yy: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean PD of the prompts' average year distribution: what a model that ignores YY would score."""
    p = torch.softmax(logits_end.float(), dim=-1)[:, ids].mean(0, keepdim=True).expand(len(yy), -1)
    greater = torch.arange(100)[None, :] > yy[:, None]
    return float(((p * greater).sum(-1) - (p * ~greater).sum(-1)).mean())


def _mlp_hook(mean: torch.Tensor) -> Callable:
    def hook(_mod, _inp, out):
        out = out.clone()
        out[:, -1] = mean
        return out

    return hook


def _head_hook(head: int, d_head: int, mean: torch.Tensor) -> Callable:
    def hook(_mod, args):
        x = args[0].clone()
        x[:, -1, head * d_head : (head + 1) * d_head] = mean
        return (x, *args[1:])

    return hook


def _clean_run(model, ids: torch.Tensor) -> tuple[torch.Tensor, list, list, torch.Tensor]:
    """END logits, per-layer END MLP outputs and pre-c_proj head inputs, attention patterns."""
    mlp_out, head_in, handles = [], [], []
    for block in model.transformer.h:
        handles.append(block.mlp.register_forward_hook(lambda _m, _i, o: mlp_out.append(o[:, -1].detach())))
        handles.append(block.attn.c_proj.register_forward_pre_hook(lambda _m, a: head_in.append(a[0][:, -1].detach())))
    try:
        out = model(input_ids=ids, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    attn = torch.stack([a[:, :, -1] for a in out.attentions], 1)  # [B, layer, head, src]
    return out.logits[:, -1], mlp_out, head_in, attn


def _ablated_pd(model, ids, yy, yids, module, hook, pre: bool) -> float:
    h = module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
    try:
        return float(prob_diff(model(input_ids=ids).logits[:, -1], yy, yids).mean())
    finally:
        h.remove()


@torch.no_grad()
def measure(model, tok, prompts: list[YearPrompt]) -> dict[str, Any]:
    """Clean PD, attention END->YY per head, and the PD after mean-ablating each head and MLP at END."""
    ids, yids = encode(tok, prompts), year_ids(tok)
    yy = torch.tensor([p.yy for p in prompts])
    yy_pos = ids.shape[1] - 5  # both templates end "{YY} w w w {XX}"
    if tok.convert_ids_to_tokens(int(ids[0, yy_pos])) != f"{prompts[0].yy:02d}":
        raise ValueError(f"the token at YY's position of {prompts[0].text!r} is not YY")
    logits, mlp_out, head_in, attn = _clean_run(model, ids)
    pd = prob_diff(logits, yy, yids)
    cfg = model.config
    d_head = cfg.n_embd // cfg.n_head
    ablated: dict[str, float] = {}
    for layer, block in enumerate(model.transformer.h):
        for head in range(cfg.n_head):
            mean = head_in[layer][:, head * d_head : (head + 1) * d_head].mean(0)
            ablated[f"a{layer}.h{head}"] = _ablated_pd(
                model, ids, yy, yids, block.attn.c_proj, _head_hook(head, d_head, mean), pre=True
            )
        ablated[f"m{layer}"] = _ablated_pd(model, ids, yy, yids, block.mlp, _mlp_hook(mlp_out[layer].mean(0)), pre=False)
    clean = float(pd.mean())
    drops = {k: round(clean - v, 4) for k, v in ablated.items()}
    return {
        "n_prompts": len(prompts),
        "pd_mean": round(clean, 4),
        "pd_positive_share": round(float((pd > 0).float().mean()), 4),
        "pd_yy_blind": round(yy_blind_pd(logits, yy, yids), 4),
        "year_mass_mean": round(float(torch.softmax(logits, -1)[:, yids].sum(-1).mean()), 4),
        "attention_end_to_yy": {
            f"a{li}.h{h}": round(float(attn[:, li, h, yy_pos].mean()), 3) for li in range(cfg.n_layer) for h in range(cfg.n_head)
        },
        "pd_drop_mean_ablation": drops,
        "carriers": sorted((k for k, v in drops.items() if v >= CARRY_SHARE * clean), key=lambda k: -drops[k]),
    }


def load_hf(path) -> tuple[Any, Any]:
    """(model with eager attention, tokenizer) from a Hugging Face directory, for measuring."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


@torch.no_grad()
def clean_pd(model, tok, prompts: list[YearPrompt]) -> dict[str, float]:
    """PD alone (mean, share of prompts with PD > 0, and the YY-blind baseline)."""
    ids, yids = encode(tok, prompts), year_ids(tok)
    yy = torch.tensor([p.yy for p in prompts])
    logits = model(input_ids=ids).logits[:, -1]
    pd = prob_diff(logits, yy, yids)
    return {
        "n_prompts": len(prompts),
        "pd_mean": round(float(pd.mean()), 4),
        "pd_positive_share": round(float((pd > 0).float().mean()), 4),
        "pd_yy_blind": round(yy_blind_pd(logits, yy, yids), 4),
    }
