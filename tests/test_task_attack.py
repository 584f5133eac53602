"""The compiled attack for generic tasks: modes from records, edits, determinism, resume, the circuit's task, the induction
model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.task_attack import run_task_attack
from advgen.attacks.task_compiler import compile_task_modes
from advgen.attacks.task_edits import fillers, render_edit, taken
from advgen.attacks.task_tables import write_task_run
from advgen.circuits.format import Circuit, CircuitError
from advgen.circuits.identity import model_identity
from advgen.circuits.task_records import KEYS, KIND
from advgen.core.journal import Interrupted
from advgen.core.types import AdvgenError
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.sample import iter_task_specs, render_spec
from advgen.tasks.spec import AnswerRule, Corruption, Edits, RoleSpec, Task, TaskTemplate

WORDS = (
    "cat",
    "dog",
    "red",
    "blue",
    "tree",
    "house",
    "car",
    "sun",
    "moon",
    "star",
    "fish",
    "bird",
    "book",
    "door",
    "hand",
    "king",
    "road",
    "ship",
    "song",
    "wall",
    "milk",
    "rain",
    "snow",
    "wind",
    "fire",
    "gold",
    "iron",
    "salt",
    "sand",
    "stone",
)
INDUCTION_DIR = Path(__file__).resolve().parents[1] / "advgen" / "model" / "weights" / "induction"


def copy_task(name: str = "copy") -> Task:
    """An induction-shaped task with a small inline lexicon (fast to resolve); the rules never read its name."""
    return Task(
        name=name,
        description="copy the token after the earlier copy",
        templates=(
            TaskTemplate("t1", "{F1} {F2} {A} {B} {F3} {C} {F4} {A}"),
            TaskTemplate("t2", "{F1} {A} {B} {F2} {C} {F3} {A}"),
        ),
        lexicons={"w": WORDS},
        slots={s: "w" for s in ("A", "B", "C", "F1", "F2", "F3", "F4")},
        answer=AnswerRule("B"),
        foil=AnswerRule("C"),
        corrupt=Corruption("A"),
        roles=(RoleSpec("previous_token", "A+1", "A"), RoleSpec("induction", "END", "A+1")),
        edits=Edits("A", "w", 3),
    )


def record(key: str, dla: float, ident: dict[str, str] | None = None) -> dict[str, object]:
    att = {k: (0.7 if k == key else 0.05) for k in KEYS}
    return {"kind": KIND, "n": 10, "attention": att, "dla": dla, "measured_on": ident or {"model": "x"}}


def circuit_with(task: str, recs: dict[str, dict[str, object]]) -> Circuit:
    heads = [
        {
            "head": h,
            "role": "induction" if r["attention"]["copy_next"] > 0.5 else "previous_token",  # type: ignore[index]
            "positions": ["END"],
            "behaviour": r,
        }
        for h, r in recs.items()
    ]
    return Circuit.from_dict(
        {"format": "advgen-circuit/1", "name": "fake", "task": task, "model": "tiny", "n_layers": 2, "n_heads": 4, "heads": heads}
    )


def test_modes_come_from_records_and_their_sign_from_dla():
    modes, skipped = compile_task_modes(
        circuit_with("copy", {"a1.h0": record("copy_next", 0.8), "a0.h1": record("previous", 0.1)}), 3
    )
    assert [(m.name, m.expected_sign, [str(h) for h in m.heads]) for m in modes] == [("compiled_copy_split", -1, ["a1.h0"])]
    assert [modes[0].cell_key(d) for d in modes[0].doses] == [f"compiled_copy_split:dose={d}" for d in (1, 2, 3)]
    assert "a0.h1: END attention mostly on previous" in skipped["compiled_foil_mention"]
    flipped, _ = compile_task_modes(circuit_with("copy", {"a1.h0": record("copy_next", -0.8)}), 3)
    assert flipped[0].expected_sign == +1 and flipped[0].predicted_shift(2) > 0  # the head suppresses what it attends to
    foil, _ = compile_task_modes(circuit_with("copy", {"a1.h2": record("answer_mention", 0.5)}), 2)
    assert [(m.name, m.attack, m.control, m.doses) for m in foil] == [
        ("compiled_foil_mention", ("filler", "foil"), ("filler", "filler"), (1, 2))
    ]


def test_attack_and_control_differ_only_in_e1_and_keep_the_answer(gpt2_tokenizer):
    task = copy_task()
    lex = resolve_lexicons(task, gpt2_tokenizer)
    modes, _ = compile_task_modes(circuit_with("copy", {"a1.h0": record("copy_next", 0.8)}), 3)
    mode = modes[0]
    for sp in iter_task_specs(task, lex, 6, 0):
        clean = render_spec(task, sp, gpt2_tokenizer)
        for dose in mode.doses:
            fill = fillers(task, lex.words["w"], taken(clean), 2 * dose, random.Random(0))
            a = render_edit(task, sp, clean, mode.attack, fill, dose, gpt2_tokenizer, "attack", {})
            c = render_edit(task, sp, clean, mode.control, fill, dose, gpt2_tokenizer, "control", {})
            e1 = {a.positions["E1" if k == 1 else f"E1@{k}"] for k in range(1, dose + 1)}
            assert len(a) == len(c) == len(clean) + 2 * dose
            assert {i for i, (x, y) in enumerate(zip(a.token_ids, c.token_ids, strict=True)) if x != y} == e1
            assert all(a.token_ids[i] == clean.token_ids[-1] for i in e1)  # E1 is END's token in the attack
            assert (a.io_token, a.s_token, c.io_token, c.s_token) == (clean.io_token, clean.s_token) * 2
            last = max(j for j in range(a.end) if a.token_ids[j] == a.token_ids[a.end])  # still followed by the answer
            assert a.token_ids[last + 1] == clean.io_token


@pytest.fixture(scope="module")
def tiny_setup(tiny_model):
    """The tiny random model with a circuit whose records (bound to this model) describe an induction head."""
    ident = model_identity(tiny_model)
    return tiny_model, circuit_with("copy", {"a1.h0": record("copy_next", 0.8, ident), "a0.h0": record("previous", 0.2, ident)})


CFG = AttackConfig(budget=60, n_clean=10, seed=3, batch_size=16)


def test_same_seed_same_bytes_and_resume_gives_the_same_bytes(tiny_setup, tmp_path):
    from advgen.jobs.attack import attack

    model, circuit = tiny_setup
    task = copy_task()
    first = attack(model, circuit, CFG, tmp_path / "a", task=task)
    attack(model, circuit, CFG, tmp_path / "b", task=task)
    summary = (tmp_path / "a" / "summary.json").read_bytes()
    assert summary == (tmp_path / "b" / "summary.json").read_bytes()
    assert first.records_note == "" and first.summary["schema_version"] == 1 and first.summary["task"] == "copy"
    with pytest.raises(Interrupted):
        run_task_attack(model, task, circuit, CFG, tmp_path / "c", stop_after_units=2)
    resumed = run_task_attack(model, task, circuit, CFG, tmp_path / "c", resume=True)
    write_task_run(tmp_path / "c", resumed, CFG, first.circuit, {}, task.name)
    for name in ("summary.json", "results.jsonl", "modes.json", "baseline.json"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    rows = [r for r in first.run.rows if r["family"] == "attack"]
    assert rows and all(r.get("task") == "copy" and r.get("answer") and r.get("foil") for r in rows)
    assert first.summary["evaluations"]["clean"] == CFG.n_clean


def test_a_circuit_of_another_task_is_refused(tiny_setup, tmp_path):
    from advgen.jobs.attack import attack

    model, circuit = tiny_setup
    with pytest.raises(CircuitError, match="is for task 'copy', not 'other'"):
        attack(model, circuit, CFG, tmp_path / "x", task=copy_task("other"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(AdvgenError, match="--templates"):
        attack(model, circuit, AttackConfig(budget=60, n_clean=10, templates="ioi"), tmp_path / "y", task=copy_task())


def test_the_copy_split_prediction_holds_on_the_induction_model(tmp_path):
    """A circuit written by hand from the trainer's measured heads (training_info.json), as the benchmark does."""
    import json

    from advgen.jobs.attack import attack

    info = json.loads((INDUCTION_DIR / "training_info.json").read_text())
    heads = [{"head": f"a{a}.h{b}", "role": "induction", "positions": ["END"]} for a, b in info["induction_heads"]]
    assert heads, "the trainer found no induction head"
    path = tmp_path / "circuit.json"
    path.write_text(
        json.dumps({"format": "advgen-circuit/1", "name": "ind", "task": "induction", "model": "induction", "heads": heads})
    )
    res = attack("induction", path, AttackConfig(budget=300, n_clean=60, seed=0), tmp_path / "ind", task="induction")
    mode = res.summary["modes"]["compiled_copy_split"]
    # measured on a partly trained stand-in (docs/benchmarks/attack.md, Induction): the prediction held at every seed
    # (attack - control about -2 logits), while attributable yield stayed below random, so only the prediction is asserted
    assert mode["predicted_sign"] == -1 and mode["verdict"] == "confirmed" and mode["seen"]["high"] < 0
    assert res.summary["yield"]["breaks"] > 0


def test_cli_attack_with_task_records_the_task_in_the_command(tiny_model, tiny_model_dir, tmp_path, capsys):
    import json

    from advgen.cli.main import main

    ident = model_identity(tiny_model)
    path = tmp_path / "ind.json"
    circuit_with("induction", {"a1.h0": record("copy_next", 0.8, ident)}).save(path)
    out = tmp_path / "run"
    rc = main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--task",
            "induction",
            "--circuit",
            str(path),
            "--budget",
            "40",
            "--n-clean",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Attributable yield" in printed and "compiled_copy_split" in printed
    man = json.loads((out / "manifest.json").read_text())
    assert "--task induction" in man["command"] and man["task"]["name"] == "induction"
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {r["family"] for r in rows} >= {"clean", "attack", "control", "baseline"}


def test_ioi_attack_refuses_a_circuit_of_another_task(tiny_setup, tmp_path):
    from advgen.jobs.attack import attack

    _, circuit = tiny_setup
    with pytest.raises(CircuitError, match="is for task 'copy', not 'ioi'"):
        attack("reference", circuit, CFG, tmp_path / "z")
