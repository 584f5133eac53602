"""Generic check-claim (`advgen.circuits.task_claims`): the built-in GPT-2 induction circuit, task checks, run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from handbuilt import load_handbuilt

from advgen.circuits.format import Circuit, CircuitError, resolve_circuit
from advgen.core.types import AdvgenError, Role
from advgen.tasks.registry import resolve_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def handbuilt_induction(gpt2_tokenizer_dir, tmp_path_factory):
    return load_handbuilt(gpt2_tokenizer_dir, tmp_path_factory)


INDUCTION = ROOT / "advgen" / "model" / "weights" / "induction"


def test_gpt2_small_induction_circuit_loads_and_names_its_task() -> None:
    c = resolve_circuit("gpt2-small-induction", 12, 12)
    assert c.task == "induction" and c.model == "gpt2"
    c.check_task(resolve_task("induction"))
    assert {str(h) for h in c.heads_with(Role.INDUCTION)} == {"a5.h5", "a6.h9"}
    assert {str(h) for h in c.heads_with(Role.PREVIOUS_TOKEN)} == {"a2.h2", "a4.h11"}
    assert {h.positions for h in c.heads} == {("END",), ("A+1",)}
    assert "Olsson" in c.provenance["source"]
    with pytest.raises(CircuitError, match="is for task 'induction', not 'ioi'"):
        c.check_task(resolve_task("ioi"))


def test_ioi_circuits_still_refuse_unknown_roles_and_task_positions() -> None:
    with pytest.raises(CircuitError, match="unknown role 'mover'"):
        Circuit.from_dict({"heads": [{"head": "a0.h0", "role": "mover"}]})
    with pytest.raises(CircuitError, match="unknown position"):
        Circuit.from_dict({"heads": [{"head": "a0.h0", "role": "previous_token", "positions": ["A+1"]}]})


def test_check_claim_refuses_a_circuit_of_another_task_before_loading_the_model(tmp_path: Path) -> None:
    import advgen

    with pytest.raises(CircuitError, match="is for task 'ioi', not 'induction'"):
        advgen.check_claim("no-such-model", "reference-ioi", tmp_path / "c", task="induction")
    with pytest.raises(CircuitError, match="is for task 'induction', not 'ioi'"):
        advgen.check_claim("reference", "gpt2-small-induction", tmp_path / "d")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_task_claim_settings_are_checked() -> None:
    from advgen.circuits.task_claims import TaskClaimSettings

    with pytest.raises(AdvgenError, match="unknown ablation"):
        TaskClaimSettings(ablations=("abc_mean",))
    with pytest.raises(AdvgenError, match="TaskClaimSettings are for generic tasks"):
        import advgen

        advgen.check_claim("reference", "reference-ioi", "unused", TaskClaimSettings())


@pytest.mark.slow  # 6-10 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_check_claim_on_a_gpt2_shaped_model_writes_the_run_directory(gpt2_shaped_dir: Path, tmp_path: Path) -> None:
    """End to end on random GPT-2-small-shaped weights: the numbers mean nothing, the files and shapes do."""
    import advgen
    from advgen.circuits.task_claims import TASK_ABLATIONS, TaskClaimSettings

    out = tmp_path / "claim"
    run = advgen.check_claim(
        str(gpt2_shaped_dir), "gpt2-small-induction", out, TaskClaimSettings(n=4, seed=1, worst_k=3), task="induction"
    )
    names = {p.name for p in out.iterdir()}
    assert {"claims.json", "claims.md", "worst_cases.jsonl", "manifest.json", ".advgen-complete.json"} <= names
    doc = json.loads((out / "claims.json").read_text())
    assert set(doc["table"]) == set(TASK_ABLATIONS) == set(doc["completeness"])
    for ab in TASK_ABLATIONS:
        row = doc["table"][ab]
        for key in ("faithfulness_ld", "faithfulness_accuracy", "mean_ld", "accuracy", "kl_model_circuit"):
            assert set(row[key]) == {"mean", "low", "high"}, (ab, key)
        assert 0.0 <= row["accuracy"]["mean"] <= 1.0
    assert doc["heads"] == ["a2.h2", "a4.h11", "a5.h5", "a6.h9"] and doc["n"] == 4
    worst = [json.loads(line) for line in (out / "worst_cases.jsonl").read_text().splitlines()]
    assert len(worst) == 3 and worst == sorted(worst, key=lambda w: -w["abs_diff"])
    man = json.loads((out / "manifest.json").read_text())
    assert "--task induction" in man["command"] and man["command"].startswith("advgen check-claim gpt2-small-induction")
    assert "twin_mean" in run.result.markdown


def test_discovered_induction_circuit_is_faithful_under_twin_mean() -> None:
    """Measured on the bundled model (discover n 40 seed 0: a0.h2 previous-token, a1.h0-a1.h3 induction; check-claim
    n 150, seeds 1-3): twin-mean faithfulness 0.92 / 0.83 / 0.89 (lows 0.81 / 0.74 / 0.79), about 0 left without the
    circuit. Short of 1 because a0.h1 (partly previous-token, 0.23) stays unassigned. A circuit that did not carry
    the behaviour (the hand-built test below drops its induction head) fails these bounds."""
    from advgen.circuits.task_claims import TaskClaimSettings, check_task_claim
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task
    from advgen.model.loading import load_model

    model, task = load_model(str(INDUCTION)), resolve_task("induction")
    found = discover_task(model, task, TaskDiscoverySettings(n=40, seed=0))
    assert {str(h) for h in found.circuit.heads_with(Role.PREVIOUS_TOKEN)} == {"a0.h2"}
    assert {str(h) for h in found.circuit.heads_with(Role.INDUCTION)} == {"a1.h0", "a1.h1", "a1.h2", "a1.h3"}
    res = check_task_claim(model, found.circuit, task, TaskClaimSettings(n=150, seed=1))
    twin_mean = res.table["twin_mean"]
    assert twin_mean["faithfulness_ld"]["mean"] > 0.8 and twin_mean["faithfulness_ld"]["low"] > 0.7, twin_mean["faithfulness_ld"]
    assert twin_mean["accuracy"]["mean"] >= 0.9 * res.header["model_accuracy"]
    # knocking the circuit out of the full model removes most of the behaviour
    assert res.completeness["twin_mean"]["ld_left"]["mean"] < 0.5


def test_handbuilt_circuit_is_faithful_and_complete(handbuilt_induction) -> None:
    """The constructed circuit (a0.h0 at A+1, a1.h0 at END) alone does what the model does; without it nothing is left."""
    from advgen.circuits.task_claims import TaskClaimSettings, check_task_claim

    c = Circuit.from_dict(
        {
            "format": "advgen-circuit/1",
            "task": "induction",
            "heads": [
                {"head": "a0.h0", "role": "previous_token", "positions": ["A+1"]},
                {"head": "a1.h0", "role": "induction", "positions": ["END"]},
            ],
        }
    )
    res = check_task_claim(handbuilt_induction, c, resolve_task("induction"), TaskClaimSettings(n=24, seed=1, worst_k=5))
    assert res.header["model_accuracy"] == 1.0
    for ab in ("twin_mean", "resample", "zero"):
        assert res.table[ab]["faithfulness_ld"]["low"] > 0.9, (ab, res.table[ab]["faithfulness_ld"])
        assert res.table[ab]["accuracy"]["mean"] == 1.0
        assert abs(res.completeness[ab]["ld_left"]["mean"]) < 0.2, (ab, res.completeness[ab])
    # the circuit without its induction head is not faithful: the measure can fail
    half = Circuit.from_dict(
        {
            "format": "advgen-circuit/1",
            "task": "induction",
            "heads": [{"head": "a0.h0", "role": "previous_token", "positions": ["A+1"]}],
        }
    )
    assert (
        check_task_claim(handbuilt_induction, half, resolve_task("induction"), TaskClaimSettings(n=24, seed=1)).table[
            "twin_mean"
        ]["faithfulness_ld"]["high"]
        < 0.5
    )
