"""Causal scrubbing: exact identities at the two ends, equivalence classes, an independent hook check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advgen.circuits import scrubbing
from advgen.circuits.format import Circuit, CircuitHead, make_circuit
from advgen.core.types import Head, Role
from advgen.prompts.datasets import ioi_sets


@pytest.fixture(scope="module")
def setup(tiny_model):
    clean, _, _ = ioi_sets(tiny_model.tokenizer, 8, 0)
    donors, of = scrubbing.name_twins(clean, tiny_model.tokenizer, seed=0, draws=2)
    return clean, donors, of


def _whole(model) -> Circuit:
    heads = tuple(
        CircuitHead(Head(layer, h), Role.NAME_MOVER, ("ALL",)) for layer in range(model.n_layers) for h in range(model.n_heads)
    )
    return Circuit("whole", "tiny", heads)


def test_name_twins_respect_the_equivalence_classes(tiny_model, setup):
    clean, donors, of = setup
    assert len(donors) == 2 * len(clean) and list(of) == [*range(len(clean))] * 2
    for k, i in enumerate(of):
        p, q = clean[i], donors[k]
        assert scrubbing.equivalence_key(q) == scrubbing.equivalence_key(p)
        assert (q.template_id, q.order, len(q)) == (p.template_id, p.order, len(p))
        assert {q.io, q.s}.isdisjoint({p.io, p.s}) and q.io != q.s
        assert {k: v for k, v in q.positions.items()} == dict(p.positions)
    # the two draws differ, and the same seed gives the same twins
    assert [q.text for q in donors][: len(clean)] != [q.text for q in donors][len(clean) :]
    again, _ = scrubbing.name_twins(clean, tiny_model.tokenizer, seed=0, draws=2)
    assert [q.text for q in again] == [q.text for q in donors]


def test_whole_model_scrubs_to_exactly_100_percent(tiny_model, setup):
    clean, donors, of = setup
    run = scrubbing.scrub(tiny_model, _whole(tiny_model), clean, donors, of, batch_size=4)
    assert np.array_equal(run.scrubbed_ld, np.stack([run.model_ld, run.model_ld]))
    s = scrubbing.summarize(run)
    # the LDs are equal bit for bit (above); the percentage is a mean of ratios, exact only up to float rounding
    assert s["ld_kept_pct"] == pytest.approx(100.0, abs=1e-9) and s["sign_flip_rate"] == 0.0
    assert run.model_ld.shape == (len(clean),)


def test_empty_circuit_scrubs_to_the_resample_baseline_independent_hooks(tiny_model, setup):
    clean, donors, of = setup
    empty = Circuit("empty", "tiny", ())
    run = scrubbing.scrub(tiny_model, empty, clean, donors, of, batch_size=4)
    assert np.array_equal(run.scrubbed_ld, run.baseline_ld)
    s = scrubbing.summarize(run)
    assert s["ld_kept_pct"] == s["baseline_ld_kept_pct"]
    # independent: one unpadded run per prompt, every hook_z replaced by the donor's own z
    bridge = tiny_model.bridge
    for k in (0, len(clean) + 3):
        p, q = clean[of[k]], donors[k]
        zs = {}
        hooks = [
            (f"blocks.{layer}.attn.hook_z", lambda t, hook, layer=layer, zs=zs: zs.__setitem__(layer, t.clone()))
            for layer in range(tiny_model.n_layers)
        ]
        with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
            bridge(torch.tensor([q.token_ids]))
        put = [
            (f"blocks.{layer}.attn.hook_z", lambda t, hook, layer=layer, zs=zs: zs[layer]) for layer in range(tiny_model.n_layers)
        ]
        with torch.no_grad(), bridge.hooks(fwd_hooks=put):
            logits = bridge(torch.tensor([p.token_ids]))[0, -1].double()
        want = float(logits[p.io_token] - logits[p.s_token])
        d, i = divmod(k, len(clean))
        assert abs(run.scrubbed_ld[d, i] - want) < 1e-4


def test_a_partial_circuit_lies_between_and_is_deterministic(tiny_model, setup):
    clean, donors, of = setup
    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h2"]}, 2, 4)
    a = scrubbing.scrub(tiny_model, c, clean, donors, of, batch_size=4)
    b = scrubbing.scrub(tiny_model, c, clean, donors, of, batch_size=4)
    assert np.array_equal(a.scrubbed_ld, b.scrubbed_ld)
    assert not np.allclose(a.scrubbed_ld, a.baseline_ld) and not np.allclose(a.scrubbed_ld, a.model_ld[None])
    s = scrubbing.summarize(a)
    assert set(s["quantiles"]) == {"q05", "q25", "q50", "q75", "q95"} and s["sd"] >= 0
    assert s["quantiles"]["q05"] <= s["quantiles"]["q50"] <= s["quantiles"]["q95"]


def test_donor_answer_is_read_at_the_right_tokens(tiny_model, setup):
    clean, donors, of = setup
    run = scrubbing.scrub(tiny_model, _whole(tiny_model), clean, donors, of, batch_size=4)
    # whole model kept: logit(IO') - logit(IO) is the model's own, from one independent unpadded run
    p, q = clean[1], donors[1]
    with torch.no_grad():
        logits = tiny_model.bridge(torch.tensor([p.token_ids]))[0, -1].double()
    assert abs(run.donor_io_ld[0, 1] - float(logits[q.io_token] - logits[p.io_token])) < 1e-4
    s = scrubbing.summarize(run)
    assert 0 <= s["donor_io_beats_io_rate"] <= 1 and s["mean_p_io_model"] == pytest.approx(s["mean_p_io_scrubbed"])


@pytest.mark.slow
def test_planted_model_scrubs_its_ground_truth_circuit_to_at_least_80_percent():
    """The issue's prediction: with the circuit known by construction, scrubbing keeps >= 80 % of LD.

    It failed on the weights shipped before (step 1800 of the first phase: 77.1 %), held on the
    second-phase weights shipped now (docs/planted.md).
    """
    from advgen.circuits.format import resolve_circuit
    from advgen.model.loading import load_model
    from advgen.model.weights import PLANTED_DIR

    if not (PLANTED_DIR / "config.json").exists():
        pytest.skip("planted model not trained yet")
    model = load_model("planted")
    clean, _, _ = ioi_sets(model.tokenizer, 100, 0)
    s, _ = scrubbing.causal_scrubbing(model, resolve_circuit("planted-ioi", model.n_layers, model.n_heads), clean, seed=0)
    assert s["ld_kept_pct"] >= 80.0, s
