"""Claim checks: ablation mechanics on the tiny model, the whole pipeline on a GPT-2-shaped model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from advgen.circuits import ablation, patching
from advgen.circuits.claim_metrics import METRICS
from advgen.circuits.claims import ClaimSettings, check_claim, write_claims
from advgen.circuits.format import make_circuit, resolve_circuit
from advgen.core.types import AdvgenError, Head, Role
from advgen.prompts.datasets import ioi_sets

FAST = dict(n_random_k=2, greedy_steps=1, minimality_k=("empty",), worst_k=2, batch_size=16)


@pytest.fixture(scope="module")
def tiny_run(tiny_model):
    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 6, 0)
    clean = patching.cache_run(tiny_model, clean_ps, 8)
    abc = patching.cache_run(tiny_model, abc_ps, 8)
    return clean_ps, abc_ps, clean, abc, torch.log_softmax(clean.logits.double(), -1)


def test_keeping_every_head_reproduces_the_model(tiny_model, tiny_run):
    clean_ps, _, clean, abc, ref = tiny_run
    vals = ablation.ablation_values("zero", clean_ps, clean, abc)
    full = ablation.all_but(tiny_model.n_layers, tiny_model.n_heads, [])
    (st,) = ablation.run_kept(tiny_model, clean_ps, [full], vals, ref)
    assert torch.allclose(st.ld, clean.ld.double(), atol=1e-4)
    assert float(st.kl.abs().max()) < 1e-6


def test_knockouts_change_the_output_and_abc_mean_is_per_template(tiny_model, tiny_run):
    clean_ps, _, clean, abc, ref = tiny_run
    vals = ablation.ablation_values("abc_mean", clean_ps, clean, abc)
    for members in ablation._groups(clean_ps).values():
        want = torch.stack([abc.z[i] for i in members]).mean(0)
        assert all(torch.equal(vals.sources[i], want) for i in members)
    zero = ablation.ablation_values("zero", clean_ps, clean, abc)
    st = ablation.knockout(tiny_model, clean_ps, [Head(0, 0), Head(1, 1)], zero, ref)
    assert float((st.ld - clean.ld.double()).abs().max()) > 1e-5
    with pytest.raises(AdvgenError, match="unknown ablation"):
        ablation.ablation_values("mean", clean_ps, clean, abc)


def test_claim_check_is_deterministic_and_complete(tiny_model, tmp_path):
    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h2"]}, 2, 4)
    texts = []
    for run in ("a", "b"):
        res = check_claim(tiny_model, c, ClaimSettings(n=6, **FAST))
        write_claims(res, tmp_path / run)
        texts.append((tmp_path / run / "claims.json").read_text())
    assert texts[0] == texts[1]
    doc = json.loads(texts[0])
    assert set(doc["table"]) == set(ablation.ABLATIONS)
    for ab in ablation.ABLATIONS:
        assert set(METRICS) <= set(doc["table"][ab])
    assert len((tmp_path / "a" / "worst_cases.jsonl").read_text().splitlines()) == 2
    md = (tmp_path / "a" / "claims.md").read_text()
    assert "| F(C) = mean LD |" in md and "\\|" not in md  # no escaped pipes that break the table
    assert "| metric | " + " | ".join(ablation.ABLATIONS) + " | causal scrubbing |" in md
    cs = doc["causal_scrubbing"]
    assert {"ld_kept_pct", "sd", "quantiles", "sign_flip_rate", "baseline_ld_kept_pct", "metrics"} <= set(cs)
    assert 0.0 <= cs["sign_flip_rate"] <= 1.0 and cs["n"] == 6
    ab = doc["absolute"]
    assert {"loss_recovered_nats", "ladder_equivalent_params", "ladder_position", "ioi_loss", "ioi_mean_ld"} <= set(ab)
    assert ab["loss_recovered_nats"] == doc["table"]["abc_mean"]["loss_recovered_nats"]
    for ab_name in ablation.ABLATIONS:
        assert {"per_example_sd_pct", "per_example_quantiles_pct", "sign_flip_rate"} <= set(doc["table"][ab_name])


@pytest.mark.slow
def test_builtin_gpt2_circuit_whole_pipeline_on_gpt2_shaped_model(gpt2_shaped_dir, tmp_path):
    from advgen.model.loading import load_model

    model = load_model(str(gpt2_shaped_dir))
    circuit = resolve_circuit("gpt2-small-ioi", model.n_layers, model.n_heads)
    res = check_claim(model, circuit, ClaimSettings(n=2, **FAST))
    paths = write_claims(res, tmp_path)
    assert all(p.exists() for p in paths)
    t = res.table
    # n=2 prompts of two templates: the per-template IOI mean is each prompt itself -> no change
    assert abs(t["ioi_mean"]["ratio_to_model"]["mean"] - 1) < 1e-4
    assert t["zero"]["mean_abs_ld_diff"]["mean"] > 1e-4
    assert all(math.isfinite(t[a]["kl_model_circuit"]["mean"]) for a in t)
    assert len(res.minimality["heads"]) == 26
    assert set(res.completeness["per_role_K"]) == {r.value for r in Role}


def test_prompts_without_a_template_fill_skip_scrubbing_but_not_the_claim_check(tiny_model):
    from dataclasses import replace

    from advgen.core.types import PromptSet

    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 4, 0)
    bare = PromptSet(tuple(replace(p, extra={}) for p in clean_ps), clean_ps.tokenizer_hash)
    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"]}, 2, 4)
    res = check_claim(tiny_model, c, ClaimSettings(n=4, ladder=False, **FAST), prompts=(bare, abc_ps))
    assert "fill is unknown" in res.causal_scrubbing["skipped"]
    assert "Causal scrubbing skipped" in res.markdown and "| causal scrubbing |" not in res.markdown
    assert res.absolute["loss_recovered_nats"] == res.table["abc_mean"]["loss_recovered_nats"]
    assert math.isnan(res.absolute["ioi_loss"]["scrubbed"])


def test_mlp_nodes_are_kept_and_every_other_mlp_knocked_out_by_default(tiny_model):
    """A format-2 circuit claims the MLPs it does not name are not needed: by default (--mlps auto) they are knocked out
    with the row's ablation; --mlps keep is the heads' claim with every MLP running, the figures of a format-1 circuit."""
    from dataclasses import replace

    from advgen.circuits.claims import mlp_mode
    from advgen.circuits.format import CircuitMLP

    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"]}, 2, 4)
    s = ClaimSettings(n=6, **{**FAST, "ablations": ("abc_mean",)})
    node = replace(c, mlps=(CircuitMLP(1),))
    plain, kept = check_claim(tiny_model, c, s), check_claim(tiny_model, node, replace(s, mlps="keep"))
    ablated = check_claim(tiny_model, node, s)
    assert kept.header["mlp_nodes"] == ["m1"] and "heads only" in kept.header["mlp_note"] and kept.header["mlps"] == "keep"
    assert "MLP nodes m1 (--mlps keep):" in kept.markdown and "mlp_nodes" not in plain.header and "mlps" not in plain.header
    assert kept.table == plain.table  # keeping every MLP changes no figure
    assert ablated.header["mlps"] == "ablate" and "knocked out" in ablated.header["mlp_note"]
    assert "| mean LD, all heads and MLPs ablated" in ablated.markdown and "| mean LD, all heads ablated |" in kept.markdown
    assert ablated.table["abc_mean"] != kept.table["abc_mean"]  # m0 knocked out now, in the circuit and the empty circuit
    assert check_claim(tiny_model, c, replace(s, mlps="keep")).table == plain.table  # auto keeps for a format-1 circuit
    assert (mlp_mode("auto", c), mlp_mode("auto", node), mlp_mode("ablate", c)) == ("keep", "ablate", "ablate")
    with pytest.raises(AdvgenError, match="--mlps 'some': choose one of"):
        mlp_mode("some", c)


def test_mlp_knockouts_match_a_forward_with_those_mlps_zeroed(tiny_model):
    """run_kept's MLP knockout against an independent forward: every head kept, MLP 0 zeroed at every position."""
    from advgen.model.validate import end_logits

    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 6, 0)
    clean, abc = patching.cache_run(tiny_model, clean_ps, 8, mlp=True), patching.cache_run(tiny_model, abc_ps, 8, mlp=True)
    ref = torch.log_softmax(clean.logits.double(), -1)
    full = ablation.all_but(tiny_model.n_layers, tiny_model.n_heads, [])
    zero = ablation.ablation_values("zero", clean_ps, clean, abc)
    every, no_m0 = ablation.run_kept(
        tiny_model, clean_ps, [full, full], zero, ref, mlps=[((0, "ALL"), (1, "ALL")), ((1, "ALL"),)]
    )
    assert torch.allclose(every.ld, clean.ld.double(), atol=1e-4)
    logits = end_logits(
        tiny_model, clean_ps, 8, hooks=lambda idx: [("blocks.0.mlp.hook_out", lambda t, hook: torch.zeros_like(t))]
    ).double()
    io = torch.tensor([p.io_token for p in clean_ps])
    s_tok = torch.tensor([p.s_token for p in clean_ps])
    r = torch.arange(len(clean_ps))
    assert torch.allclose(no_m0.ld, logits[r, io] - logits[r, s_tok], atol=1e-4)
    assert float((no_m0.ld - clean.ld.double()).abs().max()) > 1e-4
    mean = ablation.ablation_values("abc_mean", clean_ps, clean, abc)
    assert mean.mlp_sources is not None
    for members in ablation._groups(clean_ps).values():
        assert all(torch.equal(mean.mlp_sources[i], torch.stack([abc.mlp[i2] for i2 in members]).mean(0)) for i in members)
    plain = ablation.ablation_values("abc_mean", clean_ps, patching.cache_run(tiny_model, clean_ps, 8), abc)
    with pytest.raises(AdvgenError, match="MLP knockouts need MLP outputs recorded"):
        ablation.run_kept(tiny_model, clean_ps, [full], plain, ref, mlps=[()])
