"""Generic discovery (`advgen.circuits.task_discovery`): the rule on synthetic measurements, and the induction model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from handbuilt import load_handbuilt

from advgen.core.types import AdvgenError, Head, Role
from advgen.tasks.registry import resolve_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def handbuilt_induction(gpt2_tokenizer_dir, tmp_path_factory):
    return load_handbuilt(gpt2_tokenizer_dir, tmp_path_factory)


INDUCTION = ROOT / "advgen" / "model" / "weights" / "induction"


def test_rule_members_by_effect_roles_by_signature_above_chance() -> None:
    from advgen.circuits.task_discovery import TaskDiscoverySettings, assign, threshold

    s = TaskDiscoverySettings(effect_share=0.2, min_effect=0.05, chance_k=3.0)
    eff = np.array([[-0.9, 0.01, -0.3], [-1.0, 0.1, 0.0]])
    thr = threshold(eff, np.zeros(2), s)
    assert thr == pytest.approx(0.2)
    sigs = {
        "previous_token": np.array([[0.9, 0.9, 0.05], [0.1, 0.1, 0.1]]),
        "induction": np.array([[0.0, 0.0, 0.05], [0.7, 0.9, 0.0]]),
    }
    chance = {"previous_token": 0.25, "induction": 0.1}  # thresholds 0.75 and 0.3
    heads, lost = assign(resolve_task("induction"), eff, sigs, chance, thr, s)
    assert [(str(h.head), h.role, h.positions) for h in heads] == [
        ("a0.h0", Role.PREVIOUS_TOKEN, ("A+1",)),
        ("a1.h0", Role.INDUCTION, ("END",)),
    ]
    # a0.h2 clears the effect threshold but attends like nothing: listed with its numbers, not dropped silently
    assert [(u.head, u.effect) for u in lost] == [(Head(0, 2), -0.3)] and lost[0].signatures["previous_token"] == 0.05
    # a model whose nodes barely matter gets the floor, not a share of noise
    assert threshold(np.full((2, 2), 0.01), np.zeros(2), s) == 0.05


def test_settings_and_tasks_without_twins_or_roles_are_refused(tiny_model) -> None:
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task
    from advgen.tasks.spec import Task, TaskError

    with pytest.raises(AdvgenError, match="effect_share"):
        TaskDiscoverySettings(effect_share=0.0)
    t = resolve_task("induction")
    with pytest.raises(TaskError, match="no corrupted twin"):
        discover_task(tiny_model, Task(**{**t.__dict__, "corrupt": None}))
    with pytest.raises(TaskError, match="no roles"):
        discover_task(tiny_model, Task(**{**t.__dict__, "roles": ()}))


def _measured_heads() -> tuple[list[Head], list[Head]]:
    """The trainer's own measurement (training_info.json): its previous-token heads in layer 0 and induction heads in layer 1."""
    info = json.loads((INDUCTION / "training_info.json").read_text())
    prev = [Head(a, b) for a, b in info["previous_token_heads"] if a == 0]
    ind = [Head(a, b) for a, b in info["induction_heads"] if a == 1]
    assert prev and ind, (
        f"the trainer found no layer-0 previous-token or layer-1 induction head: {info['previous_token_heads']}, "
        f"{info['induction_heads']}"
    )
    return prev, ind


def test_discovery_recovers_the_induction_models_heads() -> None:
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task
    from advgen.model.loading import load_model

    d = discover_task(load_model(str(INDUCTION)), resolve_task("induction"), TaskDiscoverySettings(n=40, seed=0))
    prev, ind = _measured_heads()
    roles = {h.head: h.role for h in d.circuit.heads}
    # each head the trainer measured is recovered with its role (its strongest one at least; weaker duplicates may miss the share)
    assert any(roles.get(h) == Role.PREVIOUS_TOKEN for h in prev), (prev, d.report["heads"], d.report["unassigned"])
    assert any(roles.get(h) == Role.INDUCTION for h in ind), (ind, d.report["heads"], d.report["unassigned"])
    assert all(h.head.layer == 0 for h in d.circuit.heads if h.role == Role.PREVIOUS_TOKEN)
    assert all(h.head.layer == 1 for h in d.circuit.heads if h.role == Role.INDUCTION)
    # attention-only: every MLP's output is exactly zero, so no MLP patch moves anything
    assert not d.circuit.mlps and np.all(np.abs(d.matrices["mlp_effect"]) < 1e-6) and d.report["mlp_note"]
    assert d.circuit.task == "induction" and d.report["roles_missing"] == []


def test_discover_job_writes_the_run_directory(tmp_path: Path) -> None:
    import advgen
    from advgen.circuits.format import Circuit
    from advgen.circuits.task_discovery import TaskDiscoverySettings

    out = tmp_path / "disc"
    res = advgen.discover(str(INDUCTION), out, TaskDiscoverySettings(n=12, seed=0), task="induction")
    assert {"circuit.json", "discovery.json", "discovery.png", "discovery.md", "manifest.json", ".advgen-complete.json"} <= {
        p.name for p in out.iterdir()
    }
    assert Circuit.load(out / "circuit.json").task == "induction" == res.circuit.task
    doc = json.loads((out / "discovery.json").read_text())
    assert {"effect", "mlp_effect", "sig_previous_token", "sig_induction"} == set(doc["matrices"])
    assert doc["thresholds"]["effect"] >= doc["thresholds"]["min_effect"]
    assert "--task induction" in doc["command"]


def test_discovery_recovers_the_handbuilt_induction_circuit(handbuilt_induction, tmp_path: Path) -> None:
    """Ground truth by construction: a0.h0 previous-token, a1.h0 induction, random distractors a0.h1 and a1.h1, zero MLPs."""
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task, write_task_discovery

    d = discover_task(handbuilt_induction, resolve_task("induction"), TaskDiscoverySettings(n=16, seed=0))
    assert [(str(h.head), h.role, h.positions) for h in d.circuit.heads] == [
        ("a0.h0", Role.PREVIOUS_TOKEN, ("A+1",)),
        ("a1.h0", Role.INDUCTION, ("END",)),
    ]
    eff = d.matrices["effect"]
    assert eff[0, 0] > 0.9 and eff[1, 0] > 0.9 and abs(eff[0, 1]) < 0.05 and abs(eff[1, 1]) < 0.05, eff
    assert d.matrices["sig_previous_token"][0, 0] > 0.95 and d.matrices["sig_induction"][1, 0] > 0.95
    assert not d.circuit.mlps and np.all(d.matrices["mlp_effect"] == 0.0) and "effect is 0" in d.report["mlp_note"]
    assert d.unassigned == () and d.report["roles_missing"] == []
    files = write_task_discovery(d, tmp_path, "advgen discover --task induction")
    assert [p.name for p in files] == ["circuit.json", "discovery.json", "discovery.png", "discovery.md"]
    assert "| a1.h0 | induction | END |" in (tmp_path / "discovery.md").read_text()
    again = (
        write_task_discovery(
            discover_task(handbuilt_induction, resolve_task("induction"), TaskDiscoverySettings(n=16, seed=0)),
            tmp_path / "again",
            "advgen discover --task induction",
        )
        if (tmp_path / "again").mkdir() is None
        else []
    )
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in files]  # same seed, same bytes


def test_cli_discover_then_check_claim_with_task(handbuilt_induction, tmp_path: Path, capsys) -> None:
    """`advgen discover --task induction` writes a circuit that `advgen check-claim --task induction` reads; IOI-only flags are
    refused."""
    from advgen.cli.main import main

    model = handbuilt_induction.name  # the directory it was loaded from
    assert (
        main(["discover", "--task", "induction", "--model", model, "--out", str(tmp_path / "d"), "--n", "8", "--no-progress"])
        == 0
    )
    said = capsys.readouterr().out
    assert "a0.h0" in said and "previous_token" in said and "a1.h0" in said
    circuit = str(tmp_path / "d" / "circuit.json")
    assert main(["check-claim", circuit, "--task", "induction", "--model", model, "--out", str(tmp_path / "c"), "--n", "8"]) == 0
    assert "| twin_mean |" in capsys.readouterr().out
    man = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert "--task induction" in man["command"]
    assert (
        main(["check-claim", circuit, "--task", "induction", "--model", model, "--out", str(tmp_path / "e"), "--no-ladder"]) == 2
    )
    assert "IOI's check-claim options" in capsys.readouterr().err
    assert main(["check-claim", circuit, "--model", model, "--out", str(tmp_path / "f")]) == 2  # an induction circuit under IOI
    assert "is for task 'induction', not 'ioi'" in capsys.readouterr().err


def test_prob_diff_task_is_discovered_on_its_own_metric(handbuilt_induction) -> None:
    """A task whose metric is p(answer) - p(foil) is patched on that metric, and finds the same constructed heads."""
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task
    from advgen.tasks.spec import Task

    t = resolve_task("induction")
    d = discover_task(handbuilt_induction, Task(**{**t.__dict__, "metric": "prob_diff"}), TaskDiscoverySettings(n=8, seed=3))
    assert d.report["rule"]["metric"] == "prob_diff"
    assert [str(h.head) for h in d.circuit.heads] == ["a0.h0", "a1.h0"]
