"""Scientific invariants of knockouts, claim checks and patching, checked against hand-written hooks.

Everything runs on the tiny random 2 x 4 model with a handful of prompts. The reference values are
computed here, one prompt per forward (no padding, no stacking), with our own hooks on
`blocks.L.attn.hook_z`, so they do not share code paths with `advgen.circuits.patching.patched_run`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from advgen.circuits import ablation, direct_effects, patching, paths
from advgen.circuits.claims import ClaimSettings, check_claim
from advgen.circuits.format import Circuit, CircuitHead
from advgen.core.types import Head, PromptSet, Role
from advgen.prompts import datasets
from advgen.prompts.datasets import ioi_sets
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.templates import resolve_templates

FAST = dict(n_random_k=2, greedy_steps=2, minimality_k=("empty", "random"), minimality_random_k=1, worst_k=2, batch_size=16)


# ------------------------------------------------------------------ independent reference runs


def _manual_run(model, p, hooks=()) -> tuple[float, torch.Tensor]:
    """LD at END and END logits of one prompt, unbatched, with the given (name, fn) hooks."""
    ids = torch.tensor([list(p.token_ids)])
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(hooks)):
        logits = model.bridge(ids)[0, p.end].double()
    return float(logits[p.io_token] - logits[p.s_token]), logits


def _manual_z(model, p) -> torch.Tensor:
    """[L, T, H, d_head] hook_z of one prompt, unbatched."""
    got: dict[int, torch.Tensor] = {}

    def rec(layer):
        def f(t, hook):
            got[layer] = t[0].detach().clone().float()

        return f

    _manual_run(model, p, [(f"blocks.{layer}.attn.hook_z", rec(layer)) for layer in range(model.n_layers)])
    return torch.stack([got[layer] for layer in range(model.n_layers)])


def _replace_hooks(model, mask: torch.Tensor, value: torch.Tensor | None):
    """Hooks that set z[mask] = value (zeros if None); mask [L, T, H], value [L, T, H, d_head]."""
    hooks = []
    for layer in range(model.n_layers):
        if not mask[layer].any():
            continue

        def f(t, hook, layer=layer):
            t = t.clone()
            m = mask[layer]
            t[0][m] = 0.0 if value is None else value[layer][m].to(t.dtype)
            return t

        hooks.append((f"blocks.{layer}.attn.hook_z", f))
    return hooks


def _kept_mask(model, p, kept: dict[Head, tuple[str, ...]]) -> torch.Tensor:
    """[L, T, H] True where z must be replaced: everything except each kept head at its positions."""
    L, H, T = model.n_layers, model.n_heads, len(p)
    m = torch.ones(L, T, H, dtype=torch.bool)
    for h, positions in kept.items():
        for pos in positions:
            idx = list(range(T)) if pos == "ALL" else [p.positions[pos]]
            m[h.layer, idx, h.head] = False
    return m


def _circuit(heads: dict[str, tuple[str, ...]]) -> Circuit:
    return Circuit("t", "tiny", tuple(CircuitHead(Head.parse(h), Role.S_INHIBITION, pos) for h, pos in heads.items()), 2, 4)


# ------------------------------------------------------------------ fixtures


def _two_templates():
    """p01 and p05 render to the same token length with GPT-2's tokenizer, so a mean taken per
    length (or globally) instead of per template would merge them and be caught."""
    by_id = {t.id: t for t in resolve_templates(None)}
    return [by_id["p01"], by_id["p05"]]


@pytest.fixture(scope="module")
def run(tiny_model):
    """Two templates x both orders, 3 prompts per template (so per-template means are real means)."""
    specs = datasets.sample_specs(_two_templates(), build_lexicon(tiny_model.tokenizer), 6, seed=3)
    clean_ps = datasets.build(specs, tiny_model.tokenizer)
    abc_ps = datasets.build(specs, tiny_model.tokenizer, abc=True)
    clean = patching.cache_run(tiny_model, clean_ps, 4, grad=True)
    abc = patching.cache_run(tiny_model, abc_ps, 4)
    ref = torch.log_softmax(clean.logits.double(), -1)
    return clean_ps, abc_ps, clean, abc, ref


def test_fixture_has_several_templates_with_several_prompts(run):
    clean_ps, abc_ps, *_ = run
    groups = ablation._groups(clean_ps)
    assert len({t for t, _ in groups}) == 2
    assert len({length for _, length in groups}) == 1, "both templates should share one token length"
    assert all(len(m) >= 2 for m in groups.values())
    for c, a in zip(clean_ps, abc_ps, strict=False):
        assert c.template_id == a.template_id and len(c) == len(a) and dict(c.positions) == dict(a.positions)


def test_caches_match_unbatched_manual_runs(tiny_model, run):
    clean_ps, abc_ps, clean, abc, _ = run
    for ps, cache in ((clean_ps, clean), (abc_ps, abc)):
        for i, p in enumerate(ps):
            ld, _ = _manual_run(tiny_model, p)
            assert abs(ld - float(cache.ld[i])) < 1e-4
            assert torch.allclose(_manual_z(tiny_model, p), cache.z[i], atol=1e-5)


# ------------------------------------------------------------------ knockouts


@pytest.mark.parametrize("kind", ablation.ABLATIONS)
def test_full_model_as_circuit_reproduces_model_ld_per_prompt(tiny_model, run, kind):
    clean_ps, _, clean, abc, ref = run
    vals = ablation.ablation_values(kind, clean_ps, clean, abc, seed=1)
    every_head_all = _circuit({f"a{layer}.h{h}": ("ALL",) for layer in range(2) for h in range(4)})
    every_head_slots = _circuit({f"a{layer}.h{h}": ("END", "S2", "S1+1", "S1", "IO") for layer in range(2) for h in range(4)})
    full, slots_only = ablation.run_kept(
        tiny_model, clean_ps, [ablation.circuit_entries(every_head_all), ablation.circuit_entries(every_head_slots)], vals, ref
    )
    assert torch.allclose(full.ld, clean.ld.double(), atol=1e-4)
    assert float(full.kl.abs().max()) < 1e-6
    # keeping every head only at the named slots ablates the other tokens: not the model any more
    assert float((slots_only.ld - clean.ld.double()).abs().max()) > 1e-4


def test_claim_check_on_full_model_circuit_has_zero_gap_and_zero_incompleteness(tiny_model):
    circuit = _circuit({f"a{layer}.h{h}": ("ALL",) for layer in range(2) for h in range(4)})
    clean_ps, abc_ps, _ = ioi_sets(tiny_model.tokenizer, 6, 0)
    res = check_claim(tiny_model, circuit, ClaimSettings(n=6, **FAST), prompts=(clean_ps, abc_ps))
    f_m = res.header["F_M"]
    for ab, row in res.table.items():
        assert abs(row["mean_ld"]["mean"] - f_m) < 1e-4, ab
        assert abs(row["ratio_to_model"]["mean"] - 1.0) < 1e-4, ab
        assert row["mean_abs_ld_diff"]["mean"] < 1e-4, ab
        assert abs(row["kl_model_circuit"]["mean"]) < 1e-6, ab
        assert abs(row["loss_circuit"] - row["loss_model"]) < 1e-5, ab
        if abs(row["loss_empty"] - row["loss_model"]) > 1e-3:
            assert abs(row["loss_recovered_pct"] - 100.0) < 1e-2, ab
    # C = M, so C\K = M\K for every K: incompleteness must vanish everywhere
    comp = res.completeness
    assert abs(comp["F_C"] - f_m) < 1e-4
    assert comp["max_incompleteness"] < 1e-4


def test_zero_ablation_zeroes_exactly_that_heads_output(tiny_model, run):
    clean_ps, _, clean, abc, ref = run
    vals = ablation.ablation_values("zero", clean_ps, clean, abc)
    assert all(s is None for s in vals.sources)
    for head in (Head(0, 1), Head(1, 2)):
        st = ablation.knockout(tiny_model, clean_ps, [head], vals, ref)
        for i, p in enumerate(clean_ps):
            mask = torch.zeros(2, len(p), 4, dtype=torch.bool)
            mask[head.layer, :, head.head] = True
            want, _ = _manual_run(tiny_model, p, _replace_hooks(tiny_model, mask, None))
            assert abs(float(st.ld[i]) - want) < 1e-4, (head, i)
        assert float((st.ld - clean.ld.double()).abs().max()) > 1e-5


def _per_template_mean(zs: list[torch.Tensor], ps: PromptSet) -> list[torch.Tensor]:
    out = []
    for p in ps:
        members = [j for j, q in enumerate(ps) if q.template_id == p.template_id]
        out.append(torch.stack([zs[j] for j in members]).mean(0))
    return out


@pytest.mark.parametrize("kind", ["abc_mean", "ioi_mean"])
def test_mean_ablation_is_per_template_and_keeps_circuit_heads_only_at_their_positions(tiny_model, run, kind):
    clean_ps, abc_ps, clean, abc, ref = run
    # the replacement is the per-template mean over ABC (or clean) prompts, computed here from our own runs
    src_ps = abc_ps if kind == "abc_mean" else clean_ps
    want_src = _per_template_mean([_manual_z(tiny_model, p) for p in src_ps], clean_ps)
    vals = ablation.ablation_values(kind, clean_ps, clean, abc)
    for i in range(len(clean_ps)):
        assert torch.allclose(vals.sources[i], want_src[i], atol=1e-5)
    # ... and not a global mean over prompts of the same length across templates
    glob = torch.stack(list((abc if kind == "abc_mean" else clean).z)).mean(0)
    assert all(not torch.allclose(v, glob, atol=1e-4) for v in vals.sources)

    kept = {Head(1, 0): ("END",), Head(0, 2): ("S2", "S1+1")}
    circuit = _circuit({str(h): pos for h, pos in kept.items()})
    at_end, at_all = ablation.run_kept(
        tiny_model,
        clean_ps,
        [ablation.circuit_entries(circuit), ablation.circuit_entries(_circuit({str(h): ("ALL",) for h in kept}))],
        vals,
        ref,
    )
    for i, p in enumerate(clean_ps):
        want, logits = _manual_run(tiny_model, p, _replace_hooks(tiny_model, _kept_mask(tiny_model, p, kept), want_src[i]))
        assert abs(float(at_end.ld[i]) - want) < 1e-4, i
        # KL(model || circuit) at END against our own logits
        ref_lp, lp = ref[i], torch.log_softmax(logits, -1)
        assert abs(float(at_end.kl[i]) - float((ref_lp.exp() * (ref_lp - lp)).sum())) < 1e-4
    # a head kept at END only is ablated elsewhere: keeping it at ALL must differ
    assert float((at_end.ld - at_all.ld).abs().max()) > 1e-5


def test_resample_ablation_is_seeded_and_draws_other_abc_prompts_of_the_same_template(tiny_model, run):
    clean_ps, _, clean, abc, _ = run
    a = ablation.ablation_values("resample_abc", clean_ps, clean, abc, seed=5)
    b = ablation.ablation_values("resample_abc", clean_ps, clean, abc, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.sources, b.sources, strict=False))
    differs = False
    for seed in range(6, 12):
        c = ablation.ablation_values("resample_abc", clean_ps, clean, abc, seed=seed)
        differs |= any(not torch.equal(x, y) for x, y in zip(a.sources, c.sources, strict=False))
    assert differs, "the seed has no effect"
    for i, p in enumerate(clean_ps):
        donors = [j for j in range(len(clean_ps)) if torch.equal(a.sources[i], abc.z[j])]
        assert donors, f"prompt {i}: source is not any ABC prompt's activation"
        assert not any(torch.equal(a.sources[i], clean.z[j]) for j in range(len(clean_ps)))
        assert all(clean_ps[j].template_id == p.template_id for j in donors)
        assert any(j != i for j in donors), f"prompt {i} resampled its own twin although its template has others"


# ------------------------------------------------------------------ activation / attribution patching


def test_patching_from_the_clean_run_itself_has_zero_effect(tiny_model, run):
    clean_ps, _, clean, _, _ = run
    act, _ = patching.activation_patching(tiny_model, clean_ps, clean, clean, batch_size=16)
    attr = direct_effects.attribution_patching(tiny_model, clean_ps, clean, clean)
    for kind in patching.KINDS:
        assert np.abs(act[kind]).max() < 1e-4, kind
        assert np.abs(attr[kind]).max() == 0.0, kind


def test_patching_at_slots_before_s2_from_the_abc_twin_has_zero_effect(tiny_model, run):
    """ABC twins equal the clean prompt before S2, so their z there are the clean z."""
    clean_ps, _, clean, abc, _ = run
    act, _ = patching.activation_patching(tiny_model, clean_ps, clean, abc, kinds=("S1", "S1+1"), batch_size=16)
    attr = direct_effects.attribution_patching(tiny_model, clean_ps, clean, abc, kinds=("S1", "S1+1"))
    for kind in ("S1", "S1+1"):
        assert np.abs(act[kind]).max() < 1e-4
        assert np.abs(attr[kind]).max() < 1e-6


def test_patching_every_head_from_a_run_that_differs_only_in_head_outputs_reproduces_it(tiny_model, run):
    """Patching all z from the ABC run would not reproduce the ABC LD (token embeddings and MLP inputs
    differ); a 'corrupted' run of the same tokens with one head zeroed differs only in z, so it must."""
    clean_ps, _, clean, _, _ = run

    def zero_a0h1(idx, width):
        def f(t, hook):
            t = t.clone()
            t[:, :, 1] = 0.0
            return t

        return [("blocks.0.attn.hook_z", f)]

    corrupt = patching.cache_run(tiny_model, clean_ps, 4, extra_hooks=zero_a0h1)
    assert float((corrupt.ld - clean.ld).abs().max()) > 1e-5
    every = tuple((layer, h, "ALL") for layer in range(2) for h in range(4))
    st = patching.patched_run(tiny_model, clean_ps, [patching.Patch(i, every, corrupt.z[i]) for i in range(len(clean_ps))], 4)
    assert torch.allclose(st.ld, corrupt.ld.double(), atol=1e-4)
    # the single-head patch alone does the same (the other heads' z are recomputed downstream)
    act, _ = patching.activation_patching(tiny_model, clean_ps, clean, corrupt, kinds=("ALL",), batch_size=16)
    base = float(clean.ld.mean())
    want = (float(corrupt.ld.mean()) - base) / abs(base)
    assert abs(act["ALL"][0, 1] - want) < 1e-4


def test_activation_patching_matches_manual_single_head_patch(tiny_model, run):
    clean_ps, abc_ps, clean, abc, _ = run
    act, _ = patching.activation_patching(tiny_model, clean_ps, clean, abc, kinds=("END", "ALL"), batch_size=16)
    base = float(clean.ld.mean())
    for head, kind in ((Head(0, 3), "ALL"), (Head(1, 1), "END")):
        lds = []
        for i, p in enumerate(clean_ps):
            mask = torch.zeros(2, len(p), 4, dtype=torch.bool)
            idx = list(range(len(p))) if kind == "ALL" else [p.end]
            mask[head.layer, idx, head.head] = True
            lds.append(_manual_run(tiny_model, p, _replace_hooks(tiny_model, mask, _manual_z(tiny_model, abc_ps[i])))[0])
        want = (np.mean(lds) - base) / abs(base)
        assert abs(act[kind][head.layer, head.head] - want) < 1e-4, (head, kind)


def test_attribution_is_the_derivative_of_activation_patching(tiny_model, run):
    """attr = (z_abc - z_clean) . dLD/dz, so patching z_clean + eps (z_abc - z_clean) must move LD by eps * attr."""
    clean_ps, _, clean, abc, _ = run
    kinds = ("ALL", "END", "S2")
    attr = direct_effects.attribution_patching(tiny_model, clean_ps, clean, abc, kinds=kinds)
    eps = 0.1
    near = dataclasses.replace(abc, z=tuple(c + eps * (a - c) for c, a in zip(clean.z, abc.z, strict=False)))
    act, _ = patching.activation_patching(tiny_model, clean_ps, clean, near, kinds=kinds, batch_size=16)
    for kind in kinds:
        fd = act[kind] / eps
        scale = max(np.abs(attr[kind]).max(), 1e-3)
        assert np.abs(fd - attr[kind]).max() < 0.02 * scale + 2e-5, (kind, fd, attr[kind])
    # at full size the linear estimate should at least agree in sign on the heads that matter most
    full, _ = patching.activation_patching(tiny_model, clean_ps, clean, abc, kinds=("ALL",), batch_size=16)
    big = np.abs(full["ALL"]) > 0.5 * np.abs(full["ALL"]).max()
    assert (np.sign(full["ALL"][big]) == np.sign(attr["ALL"][big])).mean() >= 0.5


# ------------------------------------------------------------------ the trained reference model


def test_reference_circuit_f_c_matches_a_hand_made_abc_mean_knockout(reference_model):
    """F(C) reported by check_claim for the built-in reference circuit = our own per-template ABC-mean knockout."""
    from advgen.circuits.format import resolve_circuit

    model = reference_model
    circuit = resolve_circuit("reference-ioi", model.n_layers, model.n_heads)
    specs = datasets.sample_specs(_two_templates(), build_lexicon(model.tokenizer), 8, seed=1)
    clean_ps, abc_ps = datasets.build(specs, model.tokenizer), datasets.build(specs, model.tokenizer, abc=True)
    res = check_claim(model, circuit, ClaimSettings(n=8, ablations=("abc_mean", "zero"), **FAST), prompts=(clean_ps, abc_ps))
    means = _per_template_mean([_manual_z(model, p) for p in abc_ps], clean_ps)
    kept = {h.head: h.positions for h in circuit.heads}
    lds, zero_lds, model_lds = [], [], []
    for i, p in enumerate(clean_ps):
        mask = _kept_mask(model, p, kept)
        lds.append(_manual_run(model, p, _replace_hooks(model, mask, means[i]))[0])
        zero_lds.append(_manual_run(model, p, _replace_hooks(model, mask, None))[0])
        model_lds.append(_manual_run(model, p)[0])
    assert abs(res.header["F_M"] - np.mean(model_lds)) < 1e-3
    assert abs(res.table["abc_mean"]["mean_ld"]["mean"] - np.mean(lds)) < 1e-3
    assert abs(res.table["zero"]["mean_ld"]["mean"] - np.mean(zero_lds)) < 1e-3
    assert abs(res.table["abc_mean"]["mean_abs_ld_diff"]["mean"] - np.mean(np.abs(np.array(model_lds) - lds))) < 1e-3
    assert abs(res.completeness["F_C"] - np.mean(lds)) < 1e-3


def test_path_patching_to_logits_matches_a_manual_direct_path_patch(tiny_model, run):
    """A head's ABC output reaching the logits directly: add its attn_out change at END to the final
    residual (LayerNorm recomputed), everything else clean. The change is measured via hook_attn_out,
    so the W_O layout used by `head_outputs_end` is checked independently."""
    clean_ps, abc_ps, clean, abc, _ = run
    pp = direct_effects.path_patching_logits(tiny_model, clean_ps, clean, abc)
    base = float(clean.ld.mean())
    for head in (Head(0, 1), Head(1, 3)):
        lds = []
        for i, p in enumerate(clean_ps):
            outs = {}

            def rec(t, hook, key):
                outs[key] = t[0, p.end].detach().clone()

            mask = torch.zeros(2, len(p), 4, dtype=torch.bool)
            mask[head.layer, p.end, head.head] = True
            name = f"blocks.{head.layer}.hook_attn_out"
            _manual_run(tiny_model, p, [(name, lambda t, hook: rec(t, hook, "clean"))])
            _manual_run(
                tiny_model,
                p,
                _replace_hooks(tiny_model, mask, _manual_z(tiny_model, abc_ps[i]))
                + [(name, lambda t, hook: rec(t, hook, "abc"))],
            )
            delta = outs["abc"] - outs["clean"]

            def add(t, hook, delta=delta, end=p.end):
                t = t.clone()
                t[0, end] += delta.to(t.dtype)
                return t

            lds.append(_manual_run(tiny_model, p, [("ln_final.hook_in", add)])[0])
        want = (np.mean(lds) - base) / abs(base)
        assert abs(pp[head.layer, head.head] - want) < 2e-5 + 0.01 * abs(want), (head, pp[head.layer, head.head], want)
        assert abs(want) > 1e-4


def test_path_patching_to_logits_via_mlps_matches_a_manual_frozen_heads_patch(tiny_model, run):
    """The paper's head -> logits path: the sender's ABC output at END, every other head frozen at
    its clean output everywhere, MLPs recomputed; done here with hooks on a full forward."""
    clean_ps, abc_ps, clean, abc, _ = run
    pp = paths.path_patching_logits_via_mlps(tiny_model, clean_ps, clean, abc)
    direct = direct_effects.path_patching_logits(tiny_model, clean_ps, clean, abc)
    base = float(clean.ld.mean())
    for head in (Head(0, 1), Head(0, 2), Head(1, 3)):
        lds = []
        for i, p in enumerate(clean_ps):
            source = _manual_z(tiny_model, p)
            source[head.layer, p.end, head.head] = _manual_z(tiny_model, abc_ps[i])[head.layer, p.end, head.head]
            lds.append(
                _manual_run(tiny_model, p, _replace_hooks(tiny_model, torch.ones(source.shape[:3], dtype=torch.bool), source))[0]
            )
        want = (np.mean(lds) - base) / abs(base)
        assert abs(pp[head.layer, head.head] - want) < 2e-5 + 0.01 * abs(want), (head, pp[head.layer, head.head], want)
    # last-layer senders see only the last MLP; earlier ones differ from the direct path through the MLPs
    assert not np.allclose(pp[0], direct[0], atol=1e-4)
