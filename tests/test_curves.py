"""Faithfulness curves, CPR and CMD (advgen.circuits.curves): the areas by hand, then on a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advgen.circuits import ablation, curves, patching
from advgen.circuits.format import Circuit, CircuitHead
from advgen.core.types import AdvgenError, Head, Role
from advgen.prompts.datasets import ioi_sets


def test_cpr_and_cmd_by_hand_on_a_made_up_curve() -> None:
    # f: 0 at 0, 0.5 at 0.25, 1 at 0.5, 1 at 1. Area under: 0.25*0.25 + 0.25*0.75 + 0.5*1 = 0.75
    xs, f = [0.0, 0.25, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0]
    assert curves.cpr(xs, f) == pytest.approx(0.75)
    assert curves.cmd(xs, f) == pytest.approx(0.25)  # area of 1 - f: 0.25*(1+0.5)/2 + 0.25*(0.5+0)/2
    # a perfect circuit at every size: CPR 1, CMD 0
    assert curves.cpr([0.0, 1.0], [1.0, 1.0]) == 1.0 and curves.cmd([0.0, 1.0], [1.0, 1.0]) == 0.0


def test_cmd_does_not_let_overshoot_cancel_undershoot() -> None:
    # f goes 0 -> 2 over [0, 1]: |1 - f| is a V of two triangles of area 0.5 * 0.5 * 1 each = 0.5,
    # while the plain area of (1 - f) would be 0; CPR is the triangle 1 * 2 / 2 = 1
    assert curves.cmd([0.0, 1.0], [0.0, 2.0]) == pytest.approx(0.5)
    assert curves.cpr([0.0, 1.0], [0.0, 2.0]) == pytest.approx(1.0)
    # above 1 between 0.5 and 1: f = 1.5 there, |1 - f| = 0.5 * 0.5 = 0.25, plus 0.5 * (1 + 0) / 2 below
    assert curves.cmd([0.0, 0.5, 1.0], [0.0, 1.0, 1.0 + 0.5]) == pytest.approx(0.25 / 2 + 0.25)


def test_sizes_rankings_and_bad_input() -> None:
    assert [curves.n_kept(s, 16) for s in curves.MIB_SIZES] == [0, 0, 0, 0, 0, 1, 2, 3, 8, 16]
    assert [curves.n_kept(s, 144) for s in curves.MIB_SIZES] == [0, 0, 1, 1, 3, 7, 14, 29, 72, 144]
    with pytest.raises(AdvgenError, match="outside"):
        curves.n_kept(1.5, 16)
    with pytest.raises(AdvgenError, match="ascending"):
        curves.area([0.5, 0.2], [1.0, 1.0])
    scores = np.array([[-0.5, 0.9], [0.0, -0.1]])
    assert curves.ranking(scores, signed=True) == [Head(0, 0), Head(1, 1), Head(1, 0), Head(0, 1)]
    assert curves.ranking(scores, signed=False) == [Head(0, 1), Head(0, 0), Head(1, 1), Head(1, 0)]
    c = Circuit("c", "m", (CircuitHead(Head(1, 0), Role.NAME_MOVER, ("END",)),))
    assert curves.circuit_first(curves.ranking(scores, True), c)[0] == Head(1, 0)


def test_curve_on_the_reference_model_ends_at_0_and_1_and_matches_run_kept(reference_model) -> None:
    m = reference_model
    clean_ps, abc_ps, _ = ioi_sets(m.tokenizer, 12, 0)
    clean, abc = patching.cache_run(m, clean_ps, 16), patching.cache_run(m, abc_ps, 16)
    values = ablation.ablation_values("abc_mean", clean_ps, clean, abc, 0)
    order = curves.ranking(np.arange(m.n_layers * m.n_heads, dtype=float).reshape(m.n_layers, m.n_heads), signed=True)
    out = curves.curve(m, clean_ps, clean, values, order, sizes=(0.25, 1.0), batch_size=64)
    pts = {p["n_heads"]: p for p in out["points"]}
    total = m.n_layers * m.n_heads
    assert pts[0]["faithfulness"] == 0.0 and pts[total]["faithfulness"] == pytest.approx(1.0)
    assert pts[total]["mean_ld"] == pytest.approx(float(clean.ld.double().mean()), abs=1e-3)  # nothing ablated = the model
    k = curves.n_kept(0.25, total)
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    direct = ablation.run_kept(m, clean_ps, [tuple((h.layer, h.head, "ALL") for h in order[:k])], values, ref_logp)[0]
    assert pts[k]["mean_ld"] == pytest.approx(float(direct.ld.double().mean()), abs=1e-4)
    xs = [p["fraction"] for p in out["points"]]
    assert out["cpr"] == pytest.approx(curves.cpr(xs, [p["faithfulness"] for p in out["points"]]))
    with pytest.raises(AdvgenError, match="each of the model's"):
        curves.curve(m, clean_ps, clean, values, order[:-1])


def test_report_shows_the_curve_table(tmp_path) -> None:
    from advgen.core.files import dumps
    from advgen.outputs.report import build_report

    pts = [{"size": s, "n_heads": curves.n_kept(s, 16), "faithfulness": 0.5} for s in curves.MIB_SIZES]
    block = {k: {"sizes": pts, "cpr": 0.123, "cmd": 0.456} for k in ("signed", "absolute")}
    fc = {"ablation": "abc_mean", "rank_score": "act_ALL", "n_nodes": 16, **block}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "discovery.json").write_text(dumps({"model": "m", "faithfulness_curves": fc}), encoding="utf-8")
    html = build_report(tmp_path / "run", tmp_path / "r.html", attention=False).read_text(encoding="utf-8")
    assert "CPR (area under)</td><td>0.123" in html and "0.456" in html and "0.05 (1 heads)" in html


def test_discover_settings_refuse_an_unknown_curve_ablation() -> None:
    from advgen.circuits.discovery_roles import Settings

    with pytest.raises(AdvgenError, match="curve_ablation 'mean'"):
        Settings(curve_ablation="mean")
