"""Discovery: batched patching equals one-at-a-time patching; outputs on the tiny model; and on the
reference model, the discovered name movers matter and a random circuit of the same size does worse."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from advgen.circuits import ablation, direct_effects, patching, scores
from advgen.circuits.claims import ClaimSettings, check_claim
from advgen.circuits.discovery import discover, write_discovery
from advgen.circuits.discovery_roles import Settings
from advgen.circuits.format import Circuit, CircuitHead
from advgen.core.types import AdvgenError, Head, Role
from advgen.model.metrics import bootstrap_ci
from advgen.prompts.datasets import ioi_sets


@pytest.fixture(scope="module")
def tiny_caches(tiny_model):
    clean_ps, abc_ps, s1_ps = ioi_sets(tiny_model.tokenizer, 5, 1)
    clean = patching.cache_run(tiny_model, clean_ps, 4, grad=True)
    return clean_ps, clean, {"abc": patching.cache_run(tiny_model, abc_ps, 4), "s1": patching.cache_run(tiny_model, s1_ps, 4)}


def test_twins_share_positions_and_differ_only_where_intended(tiny_model):
    clean_ps, abc_ps, s1_ps = ioi_sets(tiny_model.tokenizer, 6, 3)
    for c, a, s in zip(clean_ps, abc_ps, s1_ps, strict=False):
        assert c.positions == a.positions == s.positions
        diff_a = [i for i, (x, y) in enumerate(zip(c.token_ids, a.token_ids, strict=False)) if x != y]
        diff_s = [i for i, (x, y) in enumerate(zip(c.token_ids, s.token_ids, strict=False)) if x != y]
        assert diff_a == [c.positions["S2"]] and diff_s == [c.positions["S1"]]


def test_stacked_patching_equals_one_variant_per_run(tiny_model, tiny_caches):
    clean_ps, clean, corrupt = tiny_caches
    n = len(clean_ps)
    variants = [(0, 1, "ALL"), (1, 3, "END"), (1, 0, "S2"), (0, 2, "S1+1")]
    patches = [patching.Patch(i, (v,), patching.source_for(v[2], corrupt).z[i]) for v in variants for i in range(n)]
    stacked = patching.patched_run(tiny_model, clean_ps, patches, batch_size=64).ld
    single = torch.cat(
        [
            patching.patched_run(tiny_model, clean_ps, patches[k * n : (k + 1) * n], batch_size=2, chunk=n).ld
            for k in range(len(variants))
        ]
    )
    assert torch.allclose(stacked, single, atol=1e-5)
    assert float((stacked - clean.ld.double().repeat(len(variants))).abs().max()) > 1e-6  # patches did something


def test_attribution_agrees_with_activation_patching_on_tiny(tiny_model, tiny_caches):
    clean_ps, clean, corrupt = tiny_caches
    act, rows = patching.activation_patching(tiny_model, clean_ps, clean, corrupt, kinds=("ALL", "S2"))
    attr = direct_effects.attribution_patching(tiny_model, clean_ps, clean, corrupt, kinds=("ALL", "S2"))
    assert rows == 2 * tiny_model.n_layers * tiny_model.n_heads * len(clean_ps)
    assert scores.spearman(act["ALL"], attr["ALL"]) > 0.8  # a near-linear random model


@pytest.mark.slow  # over 7 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_discover_writes_circuit_scores_and_plots(tiny_model, tmp_path):
    d = discover(tiny_model, Settings(n=4, detector_seqs=1, detector_len=6), progress=None)
    paths = write_discovery(d, tmp_path / "c.json", "test")
    assert all(p.exists() for p in paths)
    doc = json.loads((tmp_path / "discovery.json").read_text())
    assert sorted(doc["roles_found"] + doc["roles_missing"]) == sorted(r.value for r in Role)
    assert np.array(doc["matrices"]["act_ALL"]).shape == (tiny_model.n_layers, tiny_model.n_heads)
    eff = doc["mlp_nodes"]["pp_mlp_logits"]  # the MLP-node rule's measurement, one per layer, and what it proposed
    assert len(eff) == tiny_model.n_layers and sorted(doc["mlp_nodes"]["proposed"]) == [m.node for m in d.circuit.mlps]
    assert all(m.behaviour["node"] == m.node for m in d.circuit.mlps)
    loaded = Circuit.load(tmp_path / "c.json").check_against(tiny_model.n_layers, tiny_model.n_heads)
    assert loaded.to_dict() == d.circuit.to_dict()
    assert (tmp_path / "patching.png").read_bytes()[:4] == b"\x89PNG"
    again = write_discovery(
        discover(tiny_model, Settings(n=4, detector_seqs=1, detector_len=6), progress=None), tmp_path / "b" / "c.json", "test"
    )
    for p, q in zip(paths, again, strict=False):
        assert p.read_bytes() == q.read_bytes(), f"{p.name} differs between two identical runs"


# ------------------------------------------------------------------ reference model (science)


@pytest.fixture(scope="module")
def ref_discovery(reference_model):
    return discover(reference_model, Settings(n=60, seed=1), progress=None)


@pytest.mark.slow
def test_knocking_out_discovered_name_movers_lowers_ld(reference_model, ref_discovery):
    """Name movers when the model has them; otherwise the heads the circuit keeps at END (the model
    may write the answer with MLPs: then discovery reports name movers as missing, and the END heads
    feeding those MLPs are what a knockout must hurt)."""
    c = ref_discovery.circuit
    heads = c.heads_with(Role.NAME_MOVER) or tuple(h.head for h in c.heads if "END" in h.positions)
    assert heads, f"discovery found no head acting at END; report: {ref_discovery.report['heads']}"
    clean_ps, abc_ps, _ = ioi_sets(reference_model.tokenizer, 60, 2)  # fresh prompts, not the discovery ones
    clean = patching.cache_run(reference_model, clean_ps)
    abc = patching.cache_run(reference_model, abc_ps)
    ref = torch.log_softmax(clean.logits.double(), -1)
    vals = ablation.ablation_values("abc_mean", clean_ps, clean, abc)
    ko = ablation.knockout(reference_model, clean_ps, heads, vals, ref)
    drop = bootstrap_ci((clean.ld.double() - ko.ld).numpy(), 0)
    assert drop.low > 0.1 * float(clean.ld.mean()), f"LD drop from knocking out {list(map(str, heads))}: {drop}"


@pytest.mark.slow
def test_random_circuit_of_same_size_scores_clearly_worse(reference_model, ref_discovery):
    """Faithfulness gap |1 - F(C)/F(M)| (paper's ablation) of the discovered heads vs 3 random sets of heads, every MLP kept
    (--mlps keep: the heads' ranking; the same MLP nodes knocked out around random heads is measured in docs/circuits.md)."""
    c = ref_discovery.circuit
    fast = ClaimSettings(
        n=60, seed=2, ablations=("abc_mean",), n_random_k=1, greedy_steps=0, minimality_k=(), worst_k=1, mlps="keep"
    )

    def gap(circuit: Circuit) -> float:
        return abs(1 - check_claim(reference_model, circuit, fast).table["abc_mean"]["ratio_to_model"]["mean"])

    found = gap(c)
    rng = random.Random(0)
    all_heads = [Head(la, h) for la in range(reference_model.n_layers) for h in range(reference_model.n_heads)]
    randoms = []
    for _ in range(3):
        picks = rng.sample([h for h in all_heads if h not in c.head_set()] if len(c) * 2 <= len(all_heads) else all_heads, len(c))
        rc = replace(
            c, name="random", heads=tuple(CircuitHead(h, ch.role, ch.positions) for h, ch in zip(picks, c.heads, strict=False))
        )
        randoms.append(gap(rc))
    assert min(randoms) - found >= 0.2, f"discovered gap {found:.3f}, random gaps {randoms}"


def test_backup_gain_runs_the_name_mover_knockout(tiny_model, tiny_caches):
    from advgen.circuits.discovery import backup_gain

    clean_ps, clean, corrupt = tiny_caches
    gain, rows = backup_gain(tiny_model, clean_ps, clean, corrupt["abc"], [Head(0, 1)], 4)
    assert rows == len(clean_ps) and gain.shape == (2, 4)
    assert gain[0, 1] == 0.0  # the knocked-out head itself is not its own backup
    assert np.abs(gain[1]).max() > 0  # layer-1 heads read the changed residual stream


def test_role_rules_on_synthetic_scores():
    from advgen.circuits.discovery_roles import assign_roles

    z = np.zeros((4, 2))
    m = {
        k: z.copy()
        for k in (
            "pp_logits",
            "dla_ld",
            "attn_END_to_IO",
            "attn_END_to_S2",
            "act_ALL",
            "act_END",
            "act_S2",
            "act_S1+1",
            "act_S1",
            "induction_score",
            "attn_S2_to_S1+1",
            "duplicate_token_score",
            "attn_S2_to_S1",
            "previous_token_score",
            "attn_S1+1_to_S1",
        )
    }
    m["pp_logits"][2, 0], m["dla_ld"][2, 0], m["attn_END_to_IO"][2, 0] = -0.4, 0.3, 0.6  # name mover
    m["pp_logits"][2, 1], m["dla_ld"][2, 1] = 0.2, -0.1  # negative name mover
    m["pp_logits_mlp"] = m["pp_logits"].copy()
    m["pp_queries"] = np.full((4, 2), np.nan)
    m["pp_queries"][1, 1] = -0.3  # S-inhibition
    m["induction_score"][1, 0], m["act_S2"][1, 0] = 0.6, -0.1  # induction
    m["previous_token_score"][0, 0], m["act_S1+1"][0, 0] = 0.9, -0.05  # previous token
    m["duplicate_token_score"][0, 1] = 0.9  # pattern without a causal effect: no role
    m["act_ALL"][3, 1], m["act_END"][3, 1] = -0.5, -0.1  # effect spread over unnamed positions
    m["act_ALL"][3, 0], m["act_END"][3, 0] = -0.5, -0.4  # mostly at END, but no rule for it: no role
    roles = {str(h): r.value for h, (r, _) in assign_roles(m, Settings()).items()}
    want = {
        "a2.h0": "name_mover",
        "a2.h1": "negative_name_mover",
        "a1.h1": "s_inhibition",
        "a1.h0": "induction",
        "a0.h0": "previous_token",
        "a3.h1": "s_inhibition",
    }
    assert roles == want
    # a name mover whose write reaches the logits through the last MLP: found on the paper's path
    # (the default), not on the direct one; negative name movers are read on the direct path only
    m["pp_logits"][2, 0], m["pp_logits_mlp"][2, 1] = -0.05, 0.0
    m["pp_logits_mlp"][0, 1], m["dla_ld"][0, 1] = 0.3, -0.1
    assert {str(h): r.value for h, (r, _) in assign_roles(m, Settings()).items()} == want
    direct = {str(h): r.value for h, (r, _) in assign_roles(m, Settings(nm_path="direct")).items()}
    assert "a2.h0" not in direct and direct["a2.h1"] == "negative_name_mover"
    with pytest.raises(AdvgenError, match="nm_path 'total'"):
        Settings(nm_path="total")
