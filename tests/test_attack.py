"""Attack pipeline: breaks hold unbatched, same seed -> same files, resume == uninterrupted, CLI end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rundirs import file_bytes

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.journal import REUSED
from advgen.attacks.search import Interrupted, run_attack
from advgen.attacks.tables import write_run
from advgen.circuits.format import make_circuit
from advgen.core.types import Role
from advgen.model.validate import single_logit_diff
from advgen.prompts.templates import single_token_id

FILES = (
    "results.jsonl",
    "results.csv",
    "summary.json",
    "modes.json",
    "adversarial.jsonl",
    "near_misses.jsonl",
    "baseline.json",
    "circuit.json",
    "manifest.json",
    "table.md",
    "causes.json",
)


@pytest.fixture(scope="module")
def tiny_circuit():
    """Every role on the 2 x 4 tiny model, so every mode is proposed."""
    return make_circuit(
        "tiny-all",
        "tiny",
        {
            Role.PREVIOUS_TOKEN: ["a0.h0"],
            Role.DUPLICATE_TOKEN: ["a0.h1"],
            Role.INDUCTION: ["a0.h2"],
            Role.S_INHIBITION: ["a0.h3"],
            Role.NAME_MOVER: ["a1.h0", "a1.h1"],
            Role.NEGATIVE_NAME_MOVER: ["a1.h2"],
        },
        2,
        4,
    )


CFG = AttackConfig(budget=100, n_clean=12, seed=3, batch_size=64)


def _run(model, circuit, out: Path, **kw):
    run = run_attack(model, circuit, CFG, out, **kw)
    write_run(out, run, CFG, circuit, {"model": "tiny", "seed": CFG.seed})
    return run


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tiny_circuit, tmp_path_factory):
    out = tmp_path_factory.mktemp("attack") / "a"
    return out, _run(tiny_model, tiny_circuit, out)


def test_budget_is_counted_and_respected(tiny_run):
    _, run = tiny_run
    e = run.evals
    assert e["clean"] == CFG.n_clean
    assert e["clean"] + e["sample"] + e["search"] <= CFG.budget
    assert e["clean"] + e["baseline"] == CFG.budget
    fams = [r["family"] for r in run.rows]
    assert fams.count("clean") == e["clean"] and fams.count("baseline") == e["baseline"]
    assert not any(REUSED in r["extra"] for r in run.rows)  # catalogue modes share no control
    assert fams.count("attack") + fams.count("control") == e["sample"] + e["search"]
    sample_att = sum(r["family"] == "attack" and r["phase"] == "sample" for r in run.rows)
    search_breaks = sum(r["family"] == "attack" and r["phase"] == "search" and r["is_break"] for r in run.rows)
    assert fams.count("control") == sample_att + search_breaks  # search: a control only for each break
    controlled = {r["candidate"] for r in run.rows if r["family"] == "control"}
    assert all(r["candidate"] in controlled for r in run.rows if r["is_break"] and r["family"] == "attack")


def test_rows_follow_the_contract(tiny_run):
    out, run = tiny_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(run.rows)
    clean_ld = {r["pair_id"]: r["logit_diff"] for r in rows if r["family"] == "clean"}  # the clean rows, not the label
    for r in rows:
        assert r["family"] in ("clean", "attack", "control", "baseline")
        assert {"mode", "cell", "params", "is_break", "explained", "signal_shift", "head_signals"} <= set(r)
        assert (r["mode"] is None) == (r["family"] == "clean")
        assert r["clean_logit_diff"] == clean_ld[r["pair_id"]]
        if r["family"] in ("clean", "control"):
            assert r["is_break"] is False
        elif r["is_break"]:
            assert r["logit_diff"] < 0 and clean_ld[r["pair_id"]] > 0
        else:
            assert r["logit_diff"] >= 0 or clean_ld[r["pair_id"]] <= 0
        assert (r["explained"] is not None) == (r["family"] == "attack" and r["is_break"])
        if (
            r["family"] == "attack" and r["is_break"]
        ):  # the control the verdict compares against: same candidate, same clean prompt
            [k] = [c for c in rows if c["family"] == "control" and c["candidate"] == r["candidate"]]
            assert k["pair_id"] == r["pair_id"] and r["control_breaks"] is (k["logit_diff"] < 0)
        else:
            assert r["control_breaks"] is None
    y = json.loads((out / "summary.json").read_text())["yield"]
    attack_breaks = [r for r in rows if r["family"] == "attack" and r["is_break"]]
    assert y["breaks"] == len(attack_breaks) and y["control_shared_breaks"] == sum(r["control_breaks"] for r in attack_breaks)
    assert (
        y["attributable_per_1000"] == pytest.approx(y["guided_per_1000"] * y["attributable_breaks"] / y["breaks"])
        if y["breaks"]
        else True
    )
    adv = (out / "adversarial.jsonl").read_text().splitlines()
    assert len(adv) == sum(r["is_break"] and r["family"] == "attack" for r in rows)
    modes = json.loads((out / "modes.json").read_text())
    assert set(modes["modes"]) == {"duplicated_io", "distant_s2", "extra_name", "reversed_transfer", "swapped_pair"}
    assert "natural_failure_rate" in modes["modes"]["duplicated_io"]
    assert "Natural failure rate" in (out / "table.md").read_text()


def test_breaks_hold_in_an_unbatched_forward(tiny_model, tiny_run):
    _, run = tiny_run
    breaks = [r for r in run.rows if r["is_break"]]
    assert breaks, "the tiny random model should yield some breaks at this budget"
    tok = tiny_model.tokenizer
    for r in breaks:
        ids = [tok.bos_token_id, *tok.encode(r["text"], add_special_tokens=False)]
        assert len(ids) == r["n_tokens"] and r["positions"]["END"] == len(ids) - 1
        io = single_token_id(tok, r["io"])
        s = single_token_id(tok, r["s"])
        ld = single_logit_diff(tiny_model, ids, io, s)
        assert ld < 0
        assert ld == pytest.approx(r["logit_diff"], abs=1e-3)


def test_same_seed_same_files(tiny_model, tiny_circuit, tiny_run, tmp_path):
    out, _ = tiny_run
    _run(tiny_model, tiny_circuit, tmp_path / "b")
    assert file_bytes(tmp_path / "b", FILES) == file_bytes(out, FILES)


def test_where_the_model_lives_does_not_change_the_run(tiny_model, tiny_circuit, tiny_run, tmp_path):
    """The same model and seed from another directory (another clone): the same journal keys and files."""
    out, _ = tiny_run
    moved = dataclasses.replace(tiny_model, source="/elsewhere/clone/advgen/model/weights/tiny")
    assert moved.source != tiny_model.source
    _run(moved, tiny_circuit, tmp_path / "m")
    assert file_bytes(tmp_path / "m", FILES) == file_bytes(out, FILES)


def test_interrupted_then_resumed_equals_uninterrupted(tiny_model, tiny_circuit, tiny_run, tmp_path):
    out, run = tiny_run
    with pytest.raises(Interrupted):
        run_attack(tiny_model, tiny_circuit, CFG, tmp_path / "c", stop_after_units=2)
    assert len(list((tmp_path / "c" / "journal").glob("unit-*.json"))) == 2
    resumed = _run(tiny_model, tiny_circuit, tmp_path / "c", resume=True)
    assert resumed.evals == run.evals
    assert file_bytes(tmp_path / "c", FILES) == file_bytes(out, FILES)


def test_fresh_run_discards_an_old_journal(tiny_model, tiny_circuit, tmp_path):
    with pytest.raises(Interrupted):
        run_attack(tiny_model, tiny_circuit, CFG, tmp_path / "d", stop_after_units=1)
    with pytest.raises(Interrupted):
        run_attack(tiny_model, tiny_circuit, CFG, tmp_path / "d", stop_after_units=0)
    assert not list((tmp_path / "d" / "journal").glob("unit-*.json"))


@pytest.mark.slow
def test_cli_end_to_end_on_gpt2_shaped_model(gpt2_shaped_dir, tmp_path, capsys):
    from advgen.cli.main import main

    out = tmp_path / "e2e"
    rc = main(
        [
            "attack",
            "--model",
            str(gpt2_shaped_dir),
            "--circuit",
            "gpt2-small-ioi",
            "--budget",
            "60",
            "--n-clean",
            "10",
            "--out",
            str(out),
            "--batch-size",
            "16",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Natural failure rate" in printed and "behaviour records measured on" in printed
    assert "compiled_repeat" in printed or "duplicated_io" in printed  # compiled unless a random model's records imply nothing
    saved = json.loads((out / "circuit.json").read_text())
    assert all(h["behaviour"]["measured_on"]["model"] == str(gpt2_shaped_dir) for h in saved["heads"])
    for f in FILES:
        assert (out / f).exists(), f
    man = json.loads((out / "manifest.json").read_text())
    assert man["circuit"]["name"] == "gpt2-small-ioi"
    base = json.loads((out / "baseline.json").read_text())
    assert base["baseline"]["evaluations"] == 60


def test_cli_reports_a_bad_circuit(tiny_model_dir, tmp_path, capsys):
    from advgen.cli.main import main

    rc = main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--circuit",
            "gpt2-small-ioi",
            "--budget",
            "40",
            "--n-clean",
            "12",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "gpt2-small-ioi" in err and "a0.h10" in err


def test_search_spends_nothing_on_cells_it_does_not_fund(tiny_run):
    out, run = tiny_run
    sc = run.screening
    assert set(sc["searched_per_cell"]).isdisjoint(sc["not_funded"])
    assert all(v in ("confirmed", "falsified", "inconclusive") for v in sc["cell_verdicts"].values())
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["yield"]) == {
        "guided_per_1000",
        "random_per_1000",
        "ratio",
        "attributable_per_1000",
        "attributable_ratio",
        "breaks",
        "attributable_breaks",
        "control_shared_breaks",
    }
    for m in summary["modes"].values():
        assert m["predicted_sign"] in (-1, 1) and m["verdict"] in ("confirmed", "falsified", "inconclusive") and "n" in m["seen"]


def test_cli_measure_behaviour_runs_the_compiled_modes(tiny_model_dir, tmp_path):
    from advgen.cli.main import main

    circuit = tmp_path / "c.json"
    make_circuit("tiny-nm", "tiny", {Role.NAME_MOVER: ["a1.h0", "a1.h1"]}, 2, 4).save(circuit)
    out = tmp_path / "a"
    rc = main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--circuit",
            str(circuit),
            "--budget",
            "80",
            "--n-clean",
            "12",
            "--measure-behaviour",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    modes = json.loads((out / "modes.json").read_text())["modes"]
    assert set(modes) <= {"compiled_repeat_s", "compiled_repeat_io"} and modes
    saved = json.loads((out / "circuit.json").read_text())
    assert all("behaviour" in h for h in saved["heads"])


def test_cli_measures_missing_records_by_default(tiny_model_dir, tmp_path, capsys):
    """A records-free circuit file: attack measures the records on the loaded model, keeps them, and runs compiled modes."""
    from advgen.cli.main import main

    circuit = tmp_path / "c.json"
    make_circuit("tiny-nm", "tiny", {Role.NAME_MOVER: ["a1.h0", "a1.h1"]}, 2, 4).save(circuit)
    out = tmp_path / "a"
    assert (
        main(
            [
                "attack",
                "--model",
                str(tiny_model_dir),
                "--circuit",
                str(circuit),
                "--budget",
                "80",
                "--n-clean",
                "12",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "the circuit has no behaviour records" in capsys.readouterr().out
    modes = json.loads((out / "modes.json").read_text())["modes"]
    assert set(modes) <= {"compiled_repeat_s", "compiled_repeat_io"} and modes
    saved = json.loads((out / "circuit.json").read_text())
    assert all(
        h["behaviour"]["measured_on"]["model"] == str(tiny_model_dir) and h["behaviour"]["n_prompts"] == 12
        for h in saved["heads"]
    )
    assert "n=12 clean prompts" in saved["provenance"]["behaviour_records"]  # min(100, --n-clean)


@pytest.fixture(scope="module")
def compiled_tiny_run(tiny_model, tmp_path_factory):
    """Compiled modes on the tiny model (records measured on it): every dose of both names at a site shares one control."""
    from advgen.circuits.behaviour import attach_records

    circuit = attach_records(tiny_model, make_circuit("tiny-nm", "tiny", {Role.NAME_MOVER: ["a1.h0", "a1.h1"]}, 2, 4))
    cfg = AttackConfig(budget=160, n_clean=12, seed=1, batch_size=64)
    out = tmp_path_factory.mktemp("compiled") / "a"
    return out, cfg, circuit, run_attack(tiny_model, circuit, cfg, out)


def test_a_shared_control_is_evaluated_once(compiled_tiny_run):
    _, cfg, _, run = compiled_tiny_run
    assert {m.name for m in run.modes} <= {"compiled_repeat_s", "compiled_repeat_io"}
    ctl = [r for r in run.rows if r["family"] == "control"]
    fresh = [r for r in ctl if REUSED not in r["extra"]]
    reused = [r for r in ctl if REUSED in r["extra"]]
    assert reused, "the sample takes all doses of a site together, so most controls are reused"
    assert len({r["text"] for r in fresh}) == len(fresh)  # no prompt evaluated twice
    src = {r["candidate"]: r for r in fresh}
    for r in reused:  # a copy of the one evaluation: same prompt, same measurement, its own candidate
        s = src[r["extra"][REUSED]]
        assert (r["text"], r["logit_diff"], r["head_signals"]) == (s["text"], s["logit_diff"], s["head_signals"])
        assert r["candidate"] != s["candidate"] and r["extra"]["control_unit"] == s["extra"]["control_unit"]
    e = run.evals
    guided = [r for r in run.rows if r["family"] in ("attack", "control")]
    assert e["sample"] + e["search"] == len(guided) - len(reused)
    assert e["clean"] + e["sample"] + e["search"] <= cfg.budget
    ctl_of = {r["candidate"] for r in ctl}
    assert all(
        r["candidate"] in ctl_of for r in run.rows if r["family"] == "attack" and (r["phase"] == "sample" or r["is_break"])
    )
    assert run.screening["controls_reused"] == len(reused)


def test_the_compiled_sample_is_stratified_by_whole_units(compiled_tiny_run):
    """Equal count per cell, and a sampled unit (clean prompt x site) brings every cell of that site."""
    _, _, _, run = compiled_tiny_run
    att = [r for r in run.rows if r["family"] == "attack" and r["phase"] == "sample"]
    per_cell: dict[str, int] = {}
    for r in att:
        per_cell[r["cell"]] = per_cell.get(r["cell"], 0) + 1
    by_site: dict[tuple[str, int], set[int]] = {}  # a unit: clean prompt x site x edit length (3 sentences, or the short 1)
    for r in att:
        by_site.setdefault((r["params"]["site"], r["params"].get("length", 3)), set()).add(per_cell[r["cell"]])
    assert all(len(v) == 1 for v in by_site.values()), per_cell
    units: dict[tuple[str, str, int], set[str]] = {}
    for r in att:
        units.setdefault((r["pair_id"], r["params"]["site"], r["params"].get("length", 3)), set()).add(r["cell"])
    assert len({frozenset(v) for (_, site, n), v in units.items() if site == "before" and n == 3}) == 1


def test_compiled_run_resumes_to_the_same_files(tiny_model, compiled_tiny_run, tmp_path):
    """Shared controls are registered from resumed units too, so the resumed run reuses exactly the same ones."""
    out, cfg, circuit, run = compiled_tiny_run
    write_run(out, run, cfg, circuit, {"model": "tiny", "seed": cfg.seed})
    with pytest.raises(Interrupted):
        run_attack(tiny_model, circuit, cfg, tmp_path / "r", stop_after_units=2)
    resumed = run_attack(tiny_model, circuit, cfg, tmp_path / "r", resume=True)
    write_run(tmp_path / "r", resumed, cfg, circuit, {"model": "tiny", "seed": cfg.seed})
    assert resumed.evals == run.evals and file_bytes(tmp_path / "r", FILES) == file_bytes(out, FILES)


def test_summary_counts_compiled_predictions_by_verdict(compiled_tiny_run, tmp_path, capsys):
    from advgen.outputs import console

    _, cfg, circuit, run = compiled_tiny_run
    summary = write_run(tmp_path / "w", run, cfg, circuit, {"model": "tiny", "seed": cfg.seed})["summary"]
    acc = json.loads((tmp_path / "w" / "summary.json").read_text())["prediction_accuracy"]
    cells = {k: v for k, v in run.screening["cell_verdicts"].items() if k.startswith("compiled_")}
    assert acc["compiled_cells"] == len(cells) == acc["confirmed"] + acc["falsified"] + acc["inconclusive"] > 0
    assert acc["falsified"] == sum(v == "falsified" for v in cells.values()) == len(acc["falsified_cells"])
    assert f"of {len(cells)} compiled cells" in console.attack_summary(summary, tmp_path / "w")
