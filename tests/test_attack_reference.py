"""The attack pipeline on the bundled reference model with its discovered circuit (slow; run in CI)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.causes import explain_cell
from advgen.attacks.compiler import select_modes
from advgen.attacks.search import run_attack
from advgen.circuits.format import resolve_circuit
from advgen.model.validate import single_logit_diff
from advgen.prompts.templates import single_token_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ref_run(reference_model, tmp_path_factory):
    circuit = resolve_circuit("reference-ioi", reference_model.n_layers, reference_model.n_heads)
    cfg = AttackConfig(budget=900, n_clean=100, seed=5, batch_size=64, modes=("duplicated_io", "distant_s2"))
    return run_attack(reference_model, circuit, cfg, tmp_path_factory.mktemp("ref-attack"))


def test_every_break_holds_in_an_unbatched_forward(reference_model, ref_run):
    tok = reference_model.tokenizer
    breaks = [r for r in ref_run.rows if r["is_break"]]
    assert breaks, "expected some confirmed breaks on the reference model at this budget"
    for r in breaks:
        ids = [tok.bos_token_id, *tok.encode(r["text"], add_special_tokens=False)]
        io = single_token_id(tok, r["io"])
        s = single_token_id(tok, r["s"])
        ld = single_logit_diff(reference_model, ids, io, s)
        assert ld < 0 and ld == pytest.approx(r["logit_diff"], abs=1e-3)
        if r["family"] == "attack":
            assert r["explained"] in (True, False)


def test_duplicated_io_departs_from_gpt2_as_documented(ref_run):
    """docs/attacks.md: on this model repeating S (the control) lowers LD far more than repeating IO."""
    sample = [r for r in ref_run.rows if r["mode"] == "duplicated_io" and r.get("phase") == "sample"]
    ld = {fam: np.mean([r["logit_diff"] for r in sample if r["family"] == fam]) for fam in ("attack", "control")}
    clean = np.mean([r["logit_diff"] for r in ref_run.rows if r["family"] == "clean"])
    assert ld["control"] < clean - 2.0
    assert ld["attack"] > ld["control"] + 2.0


@pytest.fixture(scope="module")
def compiled_run(reference_model, tmp_path_factory):
    circuit = resolve_circuit("reference-ioi", reference_model.n_layers, reference_model.n_heads)
    cfg = AttackConfig(budget=900, n_clean=100, seed=6, batch_size=64)  # default modes: compiled from the records
    return run_attack(reference_model, circuit, cfg, tmp_path_factory.mktemp("ref-compiled"))


def test_compiled_modes_predict_s_repetition_on_the_reference_model(compiled_run):
    """The built-in circuit's behaviour records (heads copy names by mention count) compile to 'repeat S lowers LD'."""
    modes = {m.name: m for m in compiled_run.modes}
    assert modes["compiled_repeat_s"].expected_sign == -1
    assert modes["compiled_repeat_io"].expected_sign == +1
    ctl = {r["candidate"]: r["logit_diff"] for r in compiled_run.rows if r["family"] == "control" and r["phase"] == "sample"}
    d = [
        r["logit_diff"] - ctl[r["candidate"]]
        for r in compiled_run.rows
        if r["family"] == "attack" and r["phase"] == "sample" and r["mode"] == "compiled_repeat_s"
    ]
    assert np.mean(d) < 0  # the prediction holds on the model (a falsified prediction fails this test, it is not tuned away)
    breaks = [r for r in compiled_run.rows if r["family"] == "attack" and r["is_break"]]
    assert breaks and np.mean([bool(r["explained"]) for r in breaks]) >= 0.8


def _flipped(circuit):
    """The same circuit with every head's write gain negated: its compiled predictions turn round, the model does not."""
    heads = tuple(replace(h, behaviour={**h.behaviour, "write_gain": -h.behaviour["write_gain"]}) for h in circuit.heads)
    return replace(circuit, heads=heads)


def test_a_falsified_cell_is_traced_to_the_records_gain(reference_model, compiled_run):
    """Issue 22: a falsified prediction is reported with its measured cause. With the gains flipped, every cell the real
    records confirmed is falsified by the same rows; the heads' attention still moves as recorded, so the cause must be
    'gain', not the attention or the rest of the model."""
    circuit = resolve_circuit("reference-ioi", reference_model.n_layers, reference_model.n_heads)
    confirmed = sorted(k for k, v in compiled_run.screening["cell_verdicts"].items() if v == "confirmed")
    assert confirmed
    flipped = {m.name: m for m in select_modes(_flipped(circuit)).modes}
    for key in confirmed:
        mode = flipped[key.rsplit(":", 1)[0]]
        c = explain_cell(reference_model, circuit, mode, key, compiled_run.rows, batch_size=64, seed=0)
        assert c is not None and c.predicted is not None
        assert (c.observed["mean"] > 0) != (c.predicted > 0)  # the flipped prediction is wrong on these rows
        assert c.cause in ("gain", "outside the circuit"), c.text
        if abs(c.circuit) > abs(c.outside):  # the circuit carried most of the shift: its nodes went against the flipped gain
            assert c.cause == "gain", c.text
