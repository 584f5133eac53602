"""The planted model: loss terms and trainer on a tiny configuration (fast), the shipped weights
and circuit recovery (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from advgen.core.types import Role
from advgen.reference import iit, planted, planted_recipe
from advgen.reference.planted_ckpt import CheckpointError, latest, load
from advgen.reference.planted_data import ioi_batch, repeat_batch

TINY = dict(
    init="scratch",
    n_layer=4,
    n_head=4,
    n_embd=32,
    batch=4,
    repeat_batch=2,
    repeat_half=4,
    w_lm=0.0,
    steps=4,
    checkpoint_every=2,
    warmup=1,
    w_path=1.0,
    w_strict_twin=1.0,
    w_strict_swap=1.0,
    w_close_extra=1.0,
    w_io=1.0,
    extra_from=0,
)
"""With the second-phase terms on (path, name-twin and swap-twin strictness, extra closeness, IO
cross-entropy), so they are tested."""


@pytest.fixture(scope="module")
def tiny():
    s = planted_recipe.PlantedSettings(**TINY)
    model, tok = planted._model_and_tokenizer(s)
    return s, model, tok


def test_forward_matches_hf_and_replacement_is_local(tiny):
    s, model, tok = tiny
    b = ioi_batch(tok, 0, 0, 4)
    run = iit.forward(model, b.clean)
    with torch.no_grad():
        hf = model(b.clean).logits[:, -1]
    assert torch.allclose(run.logits_end, hf, atol=1e-5)
    donor = iit.forward(model, b.abc).z
    only_end = iit.only(b, 4, 4, (iit.planted_by_role(Role.NAME_MOVER).head,), torch.full_like(b.s2_pos, b.clean.shape[1] - 1))
    patched = iit.forward(model, b.clean, only_end, donor)
    # a layer-3 head at END changes nothing upstream: every earlier layer's z is untouched
    for la in range(3):
        assert torch.equal(patched.z[la], run.z[la])


def test_batch_positions_twins_and_held_out(tiny):
    _, _, tok = tiny
    from advgen.reference.heldout import contains_paper_template

    for step in range(20):
        b = ioi_batch(tok, 0, step, 4)
        rows = torch.arange(4)
        assert torch.equal(b.clean[rows, b.s1_pos], b.s_tok) and torch.equal(b.clean[rows, b.s2_pos], b.s_tok)
        assert torch.equal(b.clean[rows, b.io_pos], b.io_tok)
        assert torch.equal(b.swap[rows, b.s2_pos], b.io_tok)  # S and IO exchanged at S2
        assert not (b.abc[rows, b.s2_pos] == b.s_tok).any()
        assert torch.equal(b.clean[:, : int(b.s2_pos[0])], b.abc[:, : int(b.s2_pos[0])])
        assert not contains_paper_template(tok.decode(b.clean[0, 1:]))
    assert torch.equal(ioi_batch(tok, 3, 7, 4).clean, ioi_batch(tok, 3, 7, 4).clean)
    assert not torch.equal(ioi_batch(tok, 3, 7, 4).clean, ioi_batch(tok, 3, 8, 4).clean)


def test_band_is_bounded():
    x = torch.tensor([1.0, 3.0, 4.0, 5.0, 9.0])
    assert float(iit.band(x, 3.0, 5.0)) == pytest.approx((2.0 + 4.0) / 5)
    assert float(iit.band(torch.tensor([3.5, 4.5]), 3.0, 5.0)) == 0.0


def test_strictness_mask_keeps_planted_heads_at_their_slot(tiny):
    _, _, tok = tiny
    b = ioi_batch(tok, 0, 1, 4)
    rep = iit.kept_mask(b, 4, 4, 1.0, torch.Generator().manual_seed(0))
    rows = torch.arange(4)
    end = b.clean.shape[1] - 1
    slot = {"S1+1": b.s1_pos + 1, "S2": b.s2_pos, "END": torch.full_like(b.s2_pos, end)}
    kept = (~rep).sum().item()
    assert kept == 4 * len(iit.PLANTED)  # joint: only the planted heads at their slot survive
    for p in iit.PLANTED:
        assert not rep[rows, slot[p.position], p.head.layer, p.head.head].any()
    half = iit.kept_mask(b, 4, 4, 0.0, torch.Generator().manual_seed(0))
    assert not half.any()


def test_every_loss_term_is_finite_and_trains_the_planted_heads(tiny):
    s, model, tok = tiny
    parts = planted_recipe.step_losses(model, tok, None, 0, s)
    want = {
        "behaviour",
        "attn_prev",
        "attn_dup",
        "attn_ind",
        "attn_sinh",
        "attn_nm",
        "attn_abc",
        "attn_repeat",
        "strict",
        "iit_sinh",
        "iit_dup",
        "iit_nm",
        "iit_half",
        "sinh_direct",
        "path_sinh",
        "strict_twin",
        "strict_swap",
        "io",
    }
    assert set(parts) == want
    assert all(torch.isfinite(v.detach()) and float(v.detach()) >= -1e-6 for v in parts.values())
    model.zero_grad()
    parts["attn_nm"].backward()
    nm = iit.planted_by_role(Role.NAME_MOVER).head
    g = model.transformer.h[nm.layer].attn.c_attn.weight.grad
    assert g is not None and float(g.abs().sum()) > 0
    model.zero_grad()


def test_name_twin_changes_only_io_and_s(tiny):
    _, _, tok = tiny
    for step in range(10):
        b = ioi_batch(tok, 0, step, 4)
        assert b.twin is not None and b.twin.shape == b.clean.shape
        rows = torch.arange(4)
        names = torch.zeros_like(b.clean, dtype=torch.bool)
        for pos in (b.io_pos, b.s1_pos, b.s2_pos):
            names[rows, pos] = True
        assert torch.equal(b.twin[~names], b.clean[~names])  # same skeleton, same order
        t_s1, t_s2, t_io = b.twin[rows, b.s1_pos], b.twin[rows, b.s2_pos], b.twin[rows, b.io_pos]
        assert torch.equal(t_s1, t_s2) and not (t_s1 == t_io).any()  # S' repeated, IO' once
        for new in (t_s1, t_io):
            assert not ((new == b.s_tok) | (new == b.io_tok) | (new == b.abc[rows, b.s2_pos])).any()


def test_query_delta_reaches_only_that_heads_query(tiny):
    s, model, tok = tiny
    b = ioi_batch(tok, 0, 2, 4)
    t = b.clean.shape[1]
    sinh, nm = (iit.planted_by_role(r).head for r in (Role.S_INHIBITION, Role.NAME_MOVER))
    swap_z = iit.forward(model, b.swap).z
    rep = iit.only(b, 4, 4, (sinh,), torch.full_like(b.s2_pos, t - 1))
    plain = iit.forward(model, b.clean, rep, swap_z)
    zero = iit.forward(model, b.clean, rep, swap_z, query_delta=(nm, torch.zeros(4, t, model.config.n_embd)))
    assert torch.allclose(zero.logits_end, plain.logits_end, atol=1e-6)
    delta = torch.zeros(4, t, model.config.n_embd)
    delta[:, -1] = torch.randn(4, model.config.n_embd, generator=torch.Generator().manual_seed(0))
    path = iit.forward(model, b.clean, rep, swap_z, query_delta=(nm, delta))
    others = [h for h in range(4) if h != nm.head]
    assert torch.equal(path.pattern[nm.layer][:, others], plain.pattern[nm.layer][:, others])
    assert not torch.allclose(path.pattern[nm.layer][:, nm.head, -1], plain.pattern[nm.layer][:, nm.head, -1])
    assert torch.equal(path.pattern[nm.layer][:, nm.head, :-1], plain.pattern[nm.layer][:, nm.head, :-1])


def test_path_term_trains_the_mlps_it_constrains(tiny):
    s, model, tok = tiny
    parts = planted_recipe.step_losses(model, tok, None, 0, s)
    model.zero_grad()
    parts["path_sinh"].backward()
    sinh = iit.planted_by_role(Role.S_INHIBITION).head
    g = model.transformer.h[sinh.layer].mlp.c_fc.weight.grad  # the SINH -> MLP -> logits shortcut
    assert g is not None and float(g.abs().sum()) > 0
    model.zero_grad()
    v1 = planted_recipe.step_losses(model, tok, None, 0, planted_recipe.PlantedSettings(**{**TINY, "w_path": 0.0}))
    assert "path_sinh" not in v1


@pytest.mark.parametrize(
    ("term", "weight", "layer", "head"),
    [
        ("strict_twin", "w_strict_twin", 3, 1),  # a3.h1: not planted
        ("strict_swap", "w_strict_swap", 2, 3),  # a2.h3: not planted; v4 made it an S-inhibitor
    ],
)
def test_twin_strictness_terms_train_the_heads_outside_the_circuit(tiny, term, weight, layer, head):
    s, model, tok = tiny
    parts = planted_recipe.step_losses(model, tok, None, 0, s)
    model.zero_grad()
    parts[term].backward()
    e, dh = model.config.n_embd, model.config.n_embd // model.config.n_head
    g = model.transformer.h[layer].attn.c_attn.weight.grad  # that head's value weights
    assert g is not None and float(g[:, 2 * e + head * dh : 2 * e + (head + 1) * dh].abs().sum()) > 0
    model.zero_grad()
    assert term not in planted_recipe.step_losses(model, tok, None, 0, planted_recipe.PlantedSettings(**{**TINY, weight: 0.0}))


def test_second_phase_terms_start_at_their_step(tiny):
    _, model, tok = tiny
    later = planted_recipe.PlantedSettings(**{**TINY, "extra_from": 3})
    assert not {"strict_swap", "strict_twin", "path_sinh", "io"} & set(planted_recipe.step_losses(model, tok, None, 2, later))
    assert {"strict_swap", "strict_twin", "path_sinh", "io"} <= set(planted_recipe.step_losses(model, tok, None, 3, later))
    # the extra closeness weight, too: the strictness term grows only from its step
    loose = planted_recipe.PlantedSettings(**{**TINY, "extra_from": 3, "w_close_extra": 0.0})
    with torch.no_grad():
        before, before0 = (float(planted_recipe.step_losses(model, tok, None, 2, x)["strict"]) for x in (later, loose))
        after, after0 = (float(planted_recipe.step_losses(model, tok, None, 3, x)["strict"]) for x in (later, loose))
    assert before == before0 and after > after0


def test_io_term_is_a_hinge_on_the_io_cross_entropy(tiny):
    _, model, tok = tiny
    with torch.no_grad():
        lax, strict = (
            float(planted_recipe.step_losses(model, tok, None, 0, planted_recipe.PlantedSettings(**{**TINY, "io_nats": v}))["io"])
            for v in (1e6, 0.0)
        )
    b = ioi_batch(tok, 0, 0, TINY["batch"])
    with torch.no_grad():
        ce = -iit.forward(model, b.clean).logits_end.log_softmax(-1).gather(1, b.io_tok[:, None]).mean()
    assert lax == 0.0 and abs(strict - float(ce)) < 1e-5


def test_repeat_batch_repeats():
    r = repeat_batch(0, 0, 2, 5, 100, 0)
    assert r.shape == (2, 11) and torch.equal(r[:, 1:6], r[:, 6:]) and (r[:, 0] == 0).all()


def _weights(out):
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_same_seed_same_weights_and_resume_is_exact(tmp_path):
    s = planted_recipe.PlantedSettings(**TINY)
    a = planted.train_planted(tmp_path / "a", s, progress=False)
    b = planted.train_planted(tmp_path / "b", planted_recipe.PlantedSettings(**TINY), progress=False)
    planted.train_planted(tmp_path / "c", planted_recipe.PlantedSettings(**TINY), progress=False, stop_after=2)
    assert latest(tmp_path / "c" / "checkpoints").name == "step-000002.json"
    c = planted.train_planted(tmp_path / "c", planted_recipe.PlantedSettings(**TINY), progress=False)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(torch.equal(wa[k], wb[k]) and torch.equal(wa[k], wc[k]) for k in wa)
    other = planted.train_planted(tmp_path / "d", planted_recipe.PlantedSettings(**{**TINY, "seed": 1}), progress=False)
    assert any(not torch.equal(wa[k], _weights(other)[k]) for k in wa)


def test_foreign_checkpoints_are_refused(tmp_path, tiny):
    s, model, _ = tiny
    bad = tmp_path / "step-000001.json"
    bad.write_text(json.dumps({"step": 1}))
    with pytest.raises(CheckpointError, match="format tag"):
        load(bad, model, None)
    (tmp_path / "step-000002.json").write_text(json.dumps({"format": "advgen-planted-checkpoint/1", "step": 2}))
    (tmp_path / "step-000002.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load(tmp_path / "step-000002.json", model, None)


def test_resume_with_other_settings_is_refused(tmp_path):
    planted.train_planted(tmp_path / "r", planted_recipe.PlantedSettings(**TINY), progress=False, stop_after=2)
    with pytest.raises(CheckpointError, match="other settings"):
        planted.train_planted(tmp_path / "r", planted_recipe.PlantedSettings(**{**TINY, "lr": 5e-4}), progress=False)


def test_resuming_under_other_cpu_kernels_warns(tmp_path, capsys):
    planted.train_planted(tmp_path / "k", planted_recipe.PlantedSettings(**TINY), progress=False, stop_after=2)
    ck = latest(tmp_path / "k" / "checkpoints")
    meta = json.loads(ck.read_text())
    assert meta["cpu_capability"] == planted.cpu_capability()
    capsys.readouterr()
    planted.train_planted(tmp_path / "k", planted_recipe.PlantedSettings(**TINY), progress=False, stop_after=3)
    assert "warning" not in capsys.readouterr().out
    ck = latest(tmp_path / "k" / "checkpoints")
    ck.write_text(json.dumps({**json.loads(ck.read_text()), "cpu_capability": "SOME_OTHER_ISA"}))
    planted.train_planted(tmp_path / "k", planted_recipe.PlantedSettings(**TINY), progress=False)
    out = capsys.readouterr().out
    assert "SOME_OTHER_ISA" in out and planted.cpu_capability() in out and "bitwise" in out
    info = json.loads((tmp_path / "k" / "training_info.json").read_text())
    assert info["cpu_capability"] == planted.cpu_capability()


def test_a_second_phase_resumes_from_a_first_phase_checkpoint_and_equals_one_run(tmp_path):
    first = {**TINY, "w_path": 0.0, "w_strict_twin": 0.0, "w_strict_swap": 0.0, "w_close_extra": 0.0, "w_io": 0.0}
    second = planted_recipe.PlantedSettings(**{**TINY, "extra_from": 2})
    planted.train_planted(tmp_path / "p", planted_recipe.PlantedSettings(**first), progress=False, stop_after=2)
    resumed = planted.train_planted(tmp_path / "p", second, progress=False)
    straight = planted.train_planted(tmp_path / "s", second, progress=False)
    wr, ws = _weights(resumed), _weights(straight)
    assert all(torch.equal(wr[k], ws[k]) for k in wr)
    info = json.loads((resumed / "training_info.json").read_text())
    assert info["resumed_from_step"] == 2 and "strict_swap" in info["final_losses_mean_last_100_steps"]
    # past the second phase's start, other second-phase weights are another history
    with pytest.raises(CheckpointError, match="other settings"):
        planted.train_planted(
            tmp_path / "p", planted_recipe.PlantedSettings(**{**TINY, "extra_from": 2, "w_path": 0.5}), progress=False
        )


# ------------------------------------------------------------------------- the shipped model


@pytest.mark.slow
def test_shipped_planted_model_meets_its_acceptance_figures():
    from advgen.model.loading import load_model
    from advgen.reference.planted_check import acceptance

    acc = acceptance(load_model("planted"), n=200, seed=0)
    assert acc["accuracy"] >= 0.95
    assert 2.0 <= acc["mean_ld"] <= 6.0
    att = acc["attention"]
    assert att["a0.h1 duplicate_token S2->S1"] >= 0.5
    assert att["a2.h1 s_inhibition END->S2"] >= 0.5
    assert att["a3.h0 name_mover END->IO"] >= 0.5
    assert acc["joint_resample_planted_kept_everywhere"]["answer_changed"] <= 0.05


@pytest.mark.slow
def test_discovery_recovers_the_planted_circuit():
    from advgen.circuits.discovery import discover
    from advgen.circuits.discovery_roles import Settings
    from advgen.circuits.format import resolve_circuit
    from advgen.model.loading import load_model

    truth = resolve_circuit("planted-ioi")
    found = discover(load_model("planted"), Settings(n=100, seed=0)).circuit
    t = {h.head: h.role for h in truth.heads}
    f = {h.head: h.role for h in found.heads}
    hits = set(t) & set(f)
    assert len(hits) / max(1, len(f)) >= 0.9  # precision
    assert len(hits) / len(t) >= 0.9  # recall
    assert sum(t[h] == f[h] for h in hits) / max(1, len(hits)) >= 0.9  # role accuracy


@pytest.mark.slow
def test_planted_circuit_is_faithful_within_10_percent_under_resample_ablation():
    """Issue 10: check-claim planted-ioi on the planted model, F(C)/F(M) >= 0.90 under resample_abc
    (the docs/planted.md command's n and seed)."""
    from advgen.circuits.claims import ClaimSettings, check_claim
    from advgen.circuits.format import resolve_circuit
    from advgen.model.loading import load_model

    model = load_model("planted")
    res = check_claim(
        model,
        resolve_circuit("planted-ioi", model.n_layers, model.n_heads),
        ClaimSettings(n=100, seed=0, ablations=("resample_abc",), ladder=False),
    )
    assert res.table["resample_abc"]["ratio_to_model"]["mean"] >= 0.90, res.table["resample_abc"]["ratio_to_model"]
