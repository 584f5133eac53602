from __future__ import annotations

import pytest
import torch

from advgen.core.types import AdvgenError, PromptSet
from advgen.model.validate import end_logits, validate
from advgen.outputs import pipeline


@pytest.fixture(scope="module")
def mixed_prompts(tiny_model):
    ps = pipeline.generate(tiny_model.tokenizer, 40, seed=3)
    assert len({len(p) for p in ps}) >= 4, "need prompts of mixed lengths"
    return ps


def test_batched_ld_equals_unbatched_unpadded_forward(tiny_model_dir, tiny_model, mixed_prompts):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(str(tiny_model_dir), attn_implementation="eager").eval()
    ev = validate(tiny_model, mixed_prompts, batch_size=16)
    with torch.no_grad():
        for p, m in zip(mixed_prompts, ev.metrics, strict=False):
            logits = hf(torch.tensor([p.token_ids])).logits[0, -1]
            ld = float(logits[p.io_token] - logits[p.s_token])
            assert abs(ld - m.logit_diff) < 1e-4, (p.text, ld, m.logit_diff)
            assert m.io_rank == int((logits > logits[p.io_token]).sum())


def test_batch_size_does_not_change_results(tiny_model, mixed_prompts):
    a = end_logits(tiny_model, mixed_prompts, batch_size=1)
    b = end_logits(tiny_model, mixed_prompts, batch_size=40)
    assert torch.allclose(a, b, atol=1e-4)


def test_head_signals_are_attention_probabilities(tiny_model, mixed_prompts):
    from advgen.core.types import Head

    ev = validate(tiny_model, mixed_prompts, batch_size=8, heads=[Head(1, 0)])
    vals = ev.head_signals["a1.h0:END->IO"]
    assert len(vals) == len(mixed_prompts) and all(0.0 <= v <= 1.0 for v in vals)
    total = [sum(ev.head_signals[f"a1.h0:END->{s}"][i] for s in ("IO", "S1", "S2")) for i in range(len(vals))]
    assert all(t <= 1.0 + 1e-5 for t in total)


def test_head_out_of_range_is_named(tiny_model, mixed_prompts):
    from advgen.core.types import Head

    with pytest.raises(AdvgenError, match="a5.h0"):
        validate(tiny_model, mixed_prompts, heads=[Head(5, 0)])


def test_prompt_longer_than_context_is_rejected(tiny_model, mixed_prompts):
    from dataclasses import replace

    p = mixed_prompts[0]
    long = replace(
        p, token_ids=p.token_ids + (11,) * tiny_model.n_ctx, positions={**p.positions, "END": len(p) + tiny_model.n_ctx - 1}
    )
    with pytest.raises(AdvgenError, match="context"):
        end_logits(tiny_model, PromptSet((long,), mixed_prompts.tokenizer_hash))


def test_prompts_from_another_tokenizer_are_rejected(tiny_model, mixed_prompts):
    with pytest.raises(AdvgenError, match="tokenizer"):
        end_logits(tiny_model, PromptSet(mixed_prompts.prompts, "0000000000000000"))
