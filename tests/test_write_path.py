"""Write gains along the real path: a head's END write removed with the later MLPs recomputed.

Checked against the model itself (a last-layer head: removing its END output in a real forward
recomputes exactly the one MLP after it) and on a synthetic model whose last MLP reverses what
reaches it, where the direct and the real-path figures must differ in sign.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advgen.circuits.behaviour import BehaviourSettings, measure_behaviour, read_heads
from advgen.core.types import Head
from advgen.model.validate import end_logits
from advgen.prompts.datasets import ioi_sets

HEADS = [Head(1, 0), Head(1, 1), Head(1, 2), Head(1, 3)]


def _ld(model, prompts, hooks=None) -> np.ndarray:
    logits = end_logits(model, prompts, 8, hooks=hooks)
    return np.array([float(logits[i, p.io_token] - logits[i, p.s_token]) for i, p in enumerate(prompts)])


def test_path_contribution_of_a_last_layer_head_equals_removing_its_output_in_a_real_forward(tiny_model):
    prompts = ioi_sets(tiny_model.tokenizer, 6, 3)[0]
    reads = read_heads(tiny_model, prompts, HEADS, 8)
    base = _ld(tiny_model, prompts)
    for j, h in enumerate(HEADS):

        def hooks(idx, h=h):
            ends = [prompts[i].end for i in idx]

            def zero(t, hook):
                t = t.clone()
                t[torch.arange(len(idx)), ends, h.head] = 0.0
                return t

            return [(f"blocks.{h.layer}.attn.hook_z", zero)]

        np.testing.assert_allclose(reads.path[:, j], base - _ld(tiny_model, prompts, hooks), atol=2e-4)
    assert np.abs(reads.path).max() > 1e-3  # the check is not vacuous


@pytest.fixture()
def reversing_model(tiny_model_dir):
    """The tiny model with its last MLP set to -K x LayerNorm2(input): it reverses every write that reaches it, and K
    makes the reversed copy outweigh the direct write (GELU is the identity on the +20-shifted half it keeps)."""
    from advgen.model.loading import load_model

    model = load_model(str(tiny_model_dir))  # a fresh copy: the session's tiny model stays untouched
    mlp = model.hf_model.transformer.h[1].mlp
    d, k = model.hf_model.config.n_embd, 200.0
    with torch.no_grad():
        mlp.c_fc.weight.zero_()
        mlp.c_fc.weight[:, :d] = torch.eye(d)
        mlp.c_fc.bias.fill_(-20.0)
        mlp.c_fc.bias[:d] = 20.0
        mlp.c_proj.weight.zero_()
        mlp.c_proj.weight[:d] = -k * torch.eye(d)
        mlp.c_proj.bias.fill_(20.0 * k)
    return model


def test_a_reversing_mlp_gives_direct_and_real_path_gains_opposite_signs(reversing_model):
    prompts = ioi_sets(reversing_model.tokenizer, 8, 5)[0]
    reads = read_heads(reversing_model, prompts, HEADS, 8)
    big = np.abs(reads.dla) > 1e-6
    assert big.sum() >= len(prompts) * 2
    assert (np.sign(reads.path[big]) == -np.sign(reads.dla[big])).mean() > 0.95  # per prompt and head
    recs = measure_behaviour(reversing_model, HEADS, BehaviourSettings(n=16, seed=2, batch_size=16))
    flipped = [r for r in recs.values() if abs(r.write_gain_direct or 0.0) > 1e-6]
    assert flipped and all(r.write_gain * (r.write_gain_direct or 0.0) < 0 for r in flipped)
    assert all(r.write_path == "direct+mlps" and r.measured_on["model"] == reversing_model.name for r in recs.values())


def test_an_mlp_node_in_the_last_layer_contributes_what_removing_its_output_removes(tiny_model):
    from advgen.circuits.reads import read_heads as read

    prompts = ioi_sets(tiny_model.tokenizer, 6, 3)[0]
    reads = read(tiny_model, prompts, HEADS[:1], 8, mlps=[1])
    assert reads.path.shape == (len(prompts), 2)

    def hooks(idx):
        ends = [prompts[i].end for i in idx]

        def zero(t, hook):
            t = t.clone()
            t[torch.arange(len(idx)), ends] = 0.0
            return t

        return [("blocks.1.mlp.hook_out", zero)]

    np.testing.assert_allclose(reads.path[:, 1], _ld(tiny_model, prompts) - _ld(tiny_model, prompts, hooks), atol=2e-4)
    # with the node held, the layer-1 head's path passes no MLP: its figure is its direct effect (LayerNorm recomputed)
    free = read(tiny_model, prompts, HEADS[:1], 8)
    assert not np.allclose(free.path[:, 0], reads.path[:, 0], atol=1e-5)


def test_attach_records_fills_mlp_nodes_and_the_compiler_counts_them(tiny_model):
    from dataclasses import replace

    from advgen.attacks.compiler import mention_edits, mlp_records_of, records_of
    from advgen.circuits.behaviour import attach_records
    from advgen.circuits.format import CircuitMLP, make_circuit
    from advgen.core.types import Role

    c = replace(make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"]}, 2, 4), mlps=(CircuitMLP(1),))
    done = attach_records(tiny_model, c, BehaviourSettings(n=12, seed=1, batch_size=16))
    rec = done.mlps[0].behaviour
    assert rec["node"] == "m1" and rec["n_prompts"] == 12 and set(rec["mention"]) == {"IO", "S"}
    assert done.to_dict()["format"] == "advgen-circuit/2"
    edits = {e.name: e for e in mention_edits(records_of(done), mlp_records_of(done))}
    for y, e in edits.items():
        for site, total in e.predicted.items():
            parts = [x.shift for x in e.contributions if x.site == site]
            assert "m1" in [str(x.head) for x in e.contributions if x.site == site]
            assert total == pytest.approx(sum(parts))
            assert [x.shift for x in e.contributions if x.site == site and x.head == "m1"] == [rec["mention"][y][site]["d_write"]]
