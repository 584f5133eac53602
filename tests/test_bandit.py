"""The learning search: falsified cells get no budget, Thompson sampling follows observed breaks, explained vs control."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from advgen.attacks import bandit
from advgen.attacks.compiler import compile_modes
from advgen.attacks.failure_mode import Signal
from advgen.attacks.signals import EXPLAINED_SD, label_rows, signal_value
from advgen.circuits.behaviour_records import HeadBehaviour, Mention
from advgen.circuits.format import Circuit, make_circuit
from advgen.core.types import Head, Role


def _copying_circuit() -> Circuit:
    """One head that copies what it attends to, its attention to S growing with each S mention."""
    m = {"IO": {"before": Mention(0.2, 0.0, 0.0, 0.01, 50)}, "S": {"before": Mention(0.0, 0.2, 0.0, 0.01, 50)}}
    rec = HeadBehaviour("a0.h1", "END", {}, m, 0.5, "copies", 0.5).to_dict()
    c = make_circuit("hand-made", "none", {Role.NAME_MOVER: ["a0.h1"]}, 4, 4)
    return replace(c, heads=tuple(replace(h, behaviour=rec) for h in c.heads))


def test_a_falsified_cell_gets_no_budget():
    arms = {"m:0": bandit.prior_arm("m:0", 0.5), "m:1": bandit.prior_arm("m:1", 0.01)}
    v, ci = bandit.verdict([2.0, 3.0, 2.5, 1.5, 2.2], expected_sign=-1, seed=0)  # predicted < 0, seen clearly > 0
    assert v == "falsified" and ci is not None and ci["low"] > 0
    arms = bandit.falsify(arms, ["m:0"])
    picks = bandit.choose(arms, {"m:0": 100, "m:1": 100}, 50, np.random.default_rng(0))
    assert picks and set(picks) == {"m:1"}
    assert bandit.choose(bandit.falsify(arms, ["m:1"]), {"m:0": 100, "m:1": 100}, 5, np.random.default_rng(0)) == []


def test_thompson_sampling_follows_observed_breaks_not_just_the_prior():
    arms = {"good": bandit.prior_arm("good", 0.01), "bad": bandit.prior_arm("bad", 0.5)}  # the prior is wrong
    arms = bandit.observe(arms, "good", 30, 40)
    arms = bandit.observe(arms, "bad", 0, 40)
    picks = bandit.choose(arms, {"good": 1000, "bad": 1000}, 200, np.random.default_rng(1))
    assert picks.count("good") > 190
    assert bandit.choose(arms, {"good": 3, "bad": 1000}, 10, np.random.default_rng(1))[:3] == ["good"] * 3  # exhausted cells stop


def test_prior_is_the_share_of_clean_prompts_the_predicted_shift_breaks():
    ld = [1.0, 2.0, 3.0, 10.0, -1.0]
    assert bandit.prior_break_rate(ld, -2.5, 0.1) == pytest.approx(0.5)  # 1.0 and 2.0 of the four positive ones
    assert bandit.prior_break_rate(ld, None, 0.1) == 0.1


def _row(family: str, cand: str | None, ld: float, hs: dict[str, float], mode: str | None = "compiled_repeat_s") -> dict:
    return {
        "text": "",
        "io": "Mary",
        "s": "John",
        "template_id": "t",
        "order": "BABA",
        "family": family,
        "pair_id": "p",
        "positions": {},
        "n_tokens": 10,
        "extra": {},
        "logit_diff": ld,
        "io_logit": 0.0,
        "s_logit": 0.0,
        "io_prob": 0.0,
        "s_prob": 0.0,
        "io_rank": 0,
        "s_beats_io": ld < 0,
        "mode": mode if family != "clean" else None,
        "cell": "compiled_repeat_s:0" if cand else None,
        "params": {},
        "head_signals": hs,
        "phase": "sample",
        "candidate": cand,
    }


def test_explained_is_measured_against_the_control_not_the_clean_prompt():
    circuit = _copying_circuit()
    mode = {m.name: m for m in compile_modes(circuit)[0]}["compiled_repeat_s"]
    k = "a0.h1:END->"
    rows = [_row("clean", None, 5.0, {k + "S1": 0.1, k + "IO": 0.3})]
    # four candidates' controls with some spread of the signal (S minus IO mass)
    for i, ctl_s in enumerate([0.3, 0.35, 0.4, 0.45]):
        rows.append(_row("control", f"c{i}", 4.0, {k + "S1": ctl_s, k + "IO": 0.2}))
    # c0: the attack's signal equals its control's (it moved vs clean, but so did the control): not explained
    rows.append(_row("attack", "c0", -1.0, {k + "S1": 0.3, k + "IO": 0.2}))
    # c1: far above its own control: explained
    rows.append(_row("attack", "c1", -1.0, {k + "S1": 0.35, k + "S3": 0.4, k + "IO": 0.1}))
    out = {(r["family"], r["candidate"]): r for r in label_rows(rows, circuit, [mode])}
    assert out[("attack", "c0")]["is_break"] and out[("attack", "c0")]["explained"] is False
    assert out[("attack", "c0")]["signal_shift"] == pytest.approx(0.0)
    assert out[("attack", "c1")]["explained"] is True
    sd = float(np.std([(0.3 + j * 0.05) - 0.2 for j in range(4)], ddof=1))
    assert out[("attack", "c1")]["signal_shift"] > EXPLAINED_SD * sd
    assert all("explained" in r for r in out.values()) and rows[0].get("is_break") is None  # inputs are not mutated


def test_a_slot_absent_from_one_prompt_is_not_a_shift_for_single_slot_signals():
    c = make_circuit("c", "m", {Role.S_INHIBITION: ["a0.h0"]}, 1, 1)
    sig = Signal(Role.S_INHIBITION, "END", ("IO", "IO2"), +1)
    attack = {"a0.h0:END->IO": 0.2, "a0.h0:END->IO2": 0.5}
    control = {"a0.h0:END->IO": 0.2}
    assert signal_value(sig, c, attack, control) - signal_value(sig, c, control, attack) == pytest.approx(0.0)
    group = Signal(Role.S_INHIBITION, "END", ("IO", "IO2"), +1, heads=(Head(0, 0),), group=True)
    assert signal_value(group, c, attack, control) - signal_value(group, c, control, attack) == pytest.approx(0.5)


def test_the_per_mode_interval_resamples_clean_prompts_not_candidates_that_share_a_control():
    """Doses on one prompt share one control: they count as one prompt in the interval, each in n."""
    from advgen.attacks.tables import prediction_check

    rows = []
    for p, (ctl, atts) in enumerate([(4.0, [3.0, 2.0, 1.0]), (5.0, [5.5, 4.5, 3.5]), (3.0, [1.0])]):
        for d, ld in enumerate(atts):
            cid = f"p{p}:m:{d}"
            rows += [{**_row("attack", cid, ld, {}), "pair_id": f"p{p}"}, {**_row("control", cid, ctl, {}), "pair_id": f"p{p}"}]
    out = prediction_check(rows, -1, seed=0)
    assert out["n"] == 7 and out["n_prompts"] == 3
    assert out["attack_minus_control"]["mean"] == pytest.approx(np.mean([-2.0, -0.5, -2.0]))  # per-prompt means (not -9.5 / 7)
    assert out["verdict"] in ("confirmed", "inconclusive")


def test_a_candidate_whose_control_is_already_evaluated_is_valued_per_evaluation():
    """theta / (1 + theta) breaks per evaluation when a break needs a new control, theta when its control is reused."""
    arms = {"fresh": bandit.prior_arm("fresh", 0.5), "reused": bandit.prior_arm("reused", 0.5)}
    arms = bandit.observe(bandit.observe(arms, "fresh", 90, 100), "reused", 60, 100)  # 0.9 -> 0.47 per eval; 0.6 free
    rng = np.random.default_rng(0)
    assert bandit.choose(arms, {"fresh": 50, "reused": 50}, 1, rng) == ["fresh"]  # plain Thompson: the higher rate
    picks = bandit.choose(arms, {"fresh": 50, "reused": 50}, 10, np.random.default_rng(0), free={"reused": 4})
    assert picks[:4] == ["reused"] * 4 and set(picks[4:]) == {"fresh"}  # the free ones first, then back to the better rate
