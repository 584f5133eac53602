"""Path patching into keys and values: a zero change is exact, and the patched keys/values are the
ones the model computes (checked against a full activation patch of a layer-0 sender)."""

from __future__ import annotations

import torch

from advgen.circuits import patching, paths
from advgen.prompts.datasets import ioi_sets


def test_kv_patch_with_the_clean_keys_changes_nothing(tiny_model):
    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 4, 2)
    clean = patching.cache_run(tiny_model, clean_ps, 4)
    # the same computation as path_patching_kv with a zero sender delta must reproduce the clean run
    pre = paths.resid_pre_all(tiny_model, clean_ps, [1], 4)
    patches = []
    for i in range(len(clean_ps)):
        attn, blk = tiny_model.bridge.blocks[1].attn, tiny_model.bridge.blocks[1]
        x = blk.ln1(pre[i][1])
        k = x @ attn.W_K[2].float() + attn.b_K[2].float()
        v = x @ attn.W_V[2].float() + attn.b_V[2].float()
        patches.append(patching.Patch(i, (), None, kv_patch=((1, 2, "k", k), (1, 2, "v", v))))
    st = patching.patched_run(tiny_model, clean_ps, patches, 4)
    assert torch.allclose(st.ld.float(), clean.ld.float(), atol=1e-4)


def test_kv_effects_have_the_sender_layout_and_vanish_for_identical_twins(tiny_model):
    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 3, 4)
    clean = patching.cache_run(tiny_model, clean_ps, 4)
    out, forwards = paths.path_patching_kv(tiny_model, clean_ps, clean, clean, [(1, 0)], 4)
    L, H = tiny_model.n_layers, tiny_model.n_heads
    assert forwards == 2 * H * len(clean_ps)
    for w in ("k", "v"):
        assert out[w].shape == (L, H)
        assert abs(out[w][0]).max() < 1e-4  # sender output unchanged -> no effect
        assert (out[w][1] != out[w][1]).all()  # receivers' own layer: not a sender (NaN)
    abc = patching.cache_run(tiny_model, ioi_sets(tiny_model.tokenizer, 3, 4)[1], 4)
    real, _ = paths.path_patching_kv(tiny_model, clean_ps, clean, abc, [(1, 0)], 4)
    assert abs(real["v"][0]).max() > 0  # a random model's values do depend on layer 0
