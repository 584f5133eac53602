"""The measured cause of a falsified cell (issue 22): the rule on hand-made node changes, no model.

The end-to-end check (a circuit whose gains are flipped, so its cells are falsified on a real model, and
the cause must come out as "gain") runs on the reference model in tests/test_attack_reference.py.
"""

from __future__ import annotations

import pytest

from advgen.attacks.causes import CellCause, NodeShift, causes_markdown, classify

OBS = {"mean": 2.0, "low": 1.5, "high": 2.5}


def _nodes(
    circuit_path: float, attention: float, outside: tuple[tuple[str, float], ...] = (("a0.h3", 1.5), ("m1", 0.9), ("a0.h0", -0.2))
):
    inside = [
        NodeShift("a1.h2", True, circuit_path / 2, circuit_path, predicted=-1.0, attention=attention, attention_predicted=0.05),
        NodeShift("m0", True, 0.0, 0.0, predicted=0.0),
    ]
    return inside + [NodeShift(n, False, v, v) for n, v in outside] + [NodeShift("rest", False, 0.1, 0.1)]


def test_circuit_carried_the_prediction_so_the_cause_is_outside_it():
    c = classify("compiled_repeat_io:3", "compiled_repeat_io", {"dose": 1, "site": "after"}, 40, -1.0, OBS, _nodes(-0.5, 0.04))
    assert c.cause == "outside the circuit"
    assert c.circuit == pytest.approx(-0.5) and c.circuit_direct == pytest.approx(-0.25) and c.outside == pytest.approx(2.25)
    assert "a0.h3 +1.50, m1 +0.90" in c.text and "a0.h0" in c.text  # ranked by how far each wrote LD the falsifying way
    assert [n.node for n in c.nodes] == ["a1.h2", "m0", "a0.h3", "m1", "a0.h0", "rest"]


def test_nodes_that_move_as_predicted_along_paths_but_write_the_change_directly():
    """The path figures (each write removed whole) said -0.5, as predicted; the same node wrote +1.9 directly."""
    nodes = [
        NodeShift("m0", True, 1.9, -0.5, predicted=-1.0),
        NodeShift("a0.h3", False, 0.05, 0.1),
        NodeShift("rest", False, 0.05, 0.05),
    ]
    c = classify("k:0", "m", {}, 40, -1.0, OBS, nodes)
    assert c.cause == "path not additive" and c.circuit_direct == pytest.approx(1.9) and c.outside == pytest.approx(0.1)
    assert "wrote +1.90 directly" in c.text


def test_attention_against_the_record_is_named():
    """Gain -20 LD per unit of attention (-1.0 / 0.05): attention at -0.09 alone gives +1.80, all of the miss."""
    c = classify("k:0", "m", {"dose": 1, "site": "after"}, 40, -1.0, OBS, _nodes(1.8, -0.09))
    assert c.cause == "attention"
    assert "a1.h2" in c.text and "-0.090 (record +0.050)" in c.text and "LD +1.80" in c.text
    assert "+2.80 of the miss is the attention's and +0.00 the write's" in c.text


def test_attention_as_recorded_but_write_against_the_gain():
    c = classify("k:0", "m", {"dose": 1, "site": "after"}, 40, -1.0, OBS, _nodes(1.8, 0.06))
    assert c.cause == "gain"
    assert "+1.80 (predicted -1.00)" in c.text and "-0.20 of the miss is the attention's and +3.00 the write's" in c.text


def test_an_mlp_node_that_misses_its_record():
    nodes = [
        NodeShift("a1.h2", True, 0.0, -0.1, predicted=-0.2, attention=0.05, attention_predicted=0.05),
        NodeShift("m1", True, 2.0, 2.2, predicted=-0.8),
        NodeShift("rest", False, 0.0, 0.0),
    ]
    c = classify("k:0", "m", {}, 10, -1.0, OBS, nodes)
    assert c.cause == "mlp node" and "m1" in c.text and "+2.20" in c.text


def test_a_mode_without_node_predictions_says_so():
    nodes = [NodeShift("a1.h2", True, 0.0, 0.4), NodeShift("a0.h3", False, 1.0, 1.6), NodeShift("rest", False, 0.0, 0.0)]
    c = classify("duplicated_io:0", "duplicated_io", {}, 10, None, OBS, nodes)
    assert c.cause == "no node prediction" and "a0.h3 +1.00" in c.text


def test_cause_round_trips_and_renders():
    c = classify("k:0", "m", {"dose": 2, "site": "before"}, 40, -1.0, OBS, _nodes(1.8, 0.06))
    assert CellCause.from_dict(c.to_dict()) == c
    md = causes_markdown([c])
    assert "| k:0 | dose=2, site=before | 40 | -1.00 | +2.00 [+1.50, +2.50] | +1.80 | +0.90 | +1.10 | gain |" in md
    assert causes_markdown([]) == ""
