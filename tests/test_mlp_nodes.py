"""discover's MLP-node rule: the measured effect is the real one (checked against a forward), and the threshold decides."""

from __future__ import annotations

import numpy as np
import torch

from advgen.circuits.mlp_nodes import end_states, mlp_path_effects, propose
from advgen.model.validate import end_logits
from advgen.prompts.datasets import ioi_sets


def test_last_mlp_effect_equals_patching_its_end_output_from_the_twin(tiny_model):
    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 6, 4)
    logits = end_logits(tiny_model, clean_ps, 8)
    ld = np.array([float(logits[i, p.io_token] - logits[i, p.s_token]) for i, p in enumerate(clean_ps)])
    eff = mlp_path_effects(tiny_model, clean_ps, abc_ps, float(ld.mean()), 8)
    twin = end_states(tiny_model, abc_ps, 8)["mlp"][:, -1]  # [n, d]

    def hooks(idx):
        ends = [clean_ps[i].end for i in idx]

        def put(t, hook):
            t = t.clone()
            t[torch.arange(len(idx)), ends] = twin[idx].to(t.dtype)
            return t

        return [(f"blocks.{tiny_model.n_layers - 1}.mlp.hook_out", put)]

    pl = end_logits(tiny_model, clean_ps, 8, hooks=hooks)
    patched = np.array([float(pl[i, p.io_token] - pl[i, p.s_token]) for i, p in enumerate(clean_ps)])
    assert eff.shape == (tiny_model.n_layers,)
    assert abs(eff[-1] - (patched.mean() - ld.mean()) / abs(ld.mean())) < 1e-4
    assert abs(eff[-1]) > 1e-4  # not vacuous


def test_propose_keeps_the_layers_past_the_threshold():
    nodes = propose(np.array([-0.02, -0.3, 0.4, -0.1]), 0.10)
    assert [(m.node, m.positions) for m in nodes] == [("m1", ("END",)), ("m3", ("END",))]
    assert nodes[0].scores == {"pp_mlp_logits": -0.3} and "-0.30" in nodes[0].note
