"""Attributable vs raw yield (issue 28): a break its control shares is the edit's, not the circuit's.

The runs here are built from hand-made measured rows (no model), labelled and written by the
attack's own code, so every file, the console, the report panel and the export see them as a real
run. Two runs differ only in the controls' LD: when every control breaks too, the attributable
yield is 0 while the raw yield is not; when no control breaks, the two are equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rundirs import hand_row

from advgen.attacks import bandit
from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.catalogue import mode_named
from advgen.attacks.causes import CellCause, NodeShift, classify
from advgen.attacks.search import AttackRun
from advgen.attacks.signals import label_rows, signal_doc
from advgen.attacks.summary import RunYield
from advgen.attacks.summary_read import read_attack_summary
from advgen.attacks.tables import write_run
from advgen.circuits.format import make_circuit
from advgen.core import files
from advgen.core.types import Role
from advgen.outputs import console, glossary, verdict

N_PROMPTS = 20
CFG = AttackConfig(budget=2 * N_PROMPTS + 2 * N_PROMPTS + N_PROMPTS, n_clean=N_PROMPTS, seed=0)


def _write(out: Path, control_ld: float, causes: tuple = ()) -> dict:
    """A run: every attack breaks (LD -1 on a clean LD +2), its control at `control_ld`; 1 in 4 random perturbations breaks."""
    rows = []
    for i in range(N_PROMPTS):
        p = f"p{i}"
        rows += [
            hand_row("clean", p, 2.0, "clean", None),
            hand_row("attack", p, -1.0, "sample", f"{p}:a"),
            hand_row("control", p, control_ld, "sample", f"{p}:a"),
            hand_row("baseline", p, -0.5 if i % 4 == 0 else 1.0, "baseline", f"{p}:random"),
        ]
    circuit = make_circuit("hand-made", "none", {Role.NAME_MOVER: ["a0.h1"]}, 2, 2)
    mode = mode_named("duplicated_io")
    labelled = label_rows(rows, circuit, (mode,))
    screening = {
        "cell_verdicts": {},
        "not_funded": [],
        "n_pool": N_PROMPTS,
        "n_sample": N_PROMPTS,
        "n_search": 0,
        "controls_reused": 0,
        "searched_per_cell": {},
        "posterior_break_rate": {},
    }
    evals = {"clean": N_PROMPTS, "sample": 2 * N_PROMPTS, "search": 0, "baseline": N_PROMPTS}
    run = AttackRun(labelled, evals, (mode,), {}, {}, {mode.name: signal_doc(mode, circuit)}, screening)
    out.mkdir(parents=True)
    write_run(out, run, CFG, circuit, {"model": "hand-made", "seed": 0}, causes)
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("attr")
    got = {k: (base / k, _write(base / k, ld)) for k, ld in (("shared", -0.5), ("held", 0.5))}
    cause = classify(
        "duplicated_io:0",
        "duplicated_io",
        {},
        N_PROMPTS,
        None,
        {"mean": -3.0, "low": -3.2, "high": -2.8},
        [NodeShift("a0.h1", True, 0.1, 0.2), NodeShift("a1.h0", False, -2.5, -2.9), NodeShift("rest", False, 0.0, 0.0)],
    )
    got["caused"] = (base / "caused", _write(base / "caused", -0.5, (cause,)))
    return got


def test_a_falsified_cell_carries_its_cause_into_every_view(runs):
    out, summary = runs["caused"]
    doc = json.loads((out / "causes.json").read_text())
    assert [CellCause.from_dict(c).cause for c in doc["causes"]] == ["no node prediction"]
    assert summary["falsified_causes"]["duplicated_io:0"]["cause"] == "no node prediction"
    assert (
        "## Falsified cells: measured cause" in (out / "table.md").read_text() and "a1.h0 -2.50" in (out / "table.md").read_text()
    )
    text = console.attack_summary(summary, out)
    assert "Falsified duplicated_io:0, measured cause (no node prediction)" in text
    assert max(map(len, text.splitlines())) <= console.WIDTH
    assert "1 falsified cell(s): measured cause" in verdict.attack_panel(out, summary)
    clean_out, clean = runs["held"]
    assert json.loads((clean_out / "causes.json").read_text()) == {"causes": []} and clean["falsified_causes"] == {}
    assert "Falsified" not in console.attack_summary(clean, clean_out) and "measured cause" not in verdict.attack_panel(
        clean_out, clean
    )


def test_every_control_breaking_leaves_no_attributable_yield(runs):
    out, summary = runs["shared"]
    y = summary["yield"]
    assert y["breaks"] == N_PROMPTS and y["guided_per_1000"] == pytest.approx(1000 * N_PROMPTS / (3 * N_PROMPTS))
    assert y["random_per_1000"] == pytest.approx(1000 * 5 / (2 * N_PROMPTS)) and y["ratio"] > 1
    assert y["control_shared_breaks"] == N_PROMPTS and y["attributable_breaks"] == 0
    assert y["attributable_per_1000"] == 0 and y["attributable_ratio"] == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["control_breaks"] is True for r in rows if r["family"] == "attack")
    assert all(r["control_breaks"] is None for r in rows if r["family"] != "attack")
    base = json.loads((out / "baseline.json").read_text())
    assert base["attributable_ratio"] == 0 and base["ratio"] == y["ratio"] and set(base["definitions"]) == {"attributable", "raw"}
    assert "Attributable yield (breaks whose control does not break" in (out / "table.md").read_text()


def test_controls_that_hold_make_both_yields_equal(runs):
    _, summary = runs["held"]
    y = summary["yield"]
    assert y["control_shared_breaks"] == 0 and y["attributable_per_1000"] == y["guided_per_1000"] > 0
    assert y["attributable_ratio"] == y["ratio"]


def test_console_and_report_lead_with_the_attributable_yield(runs):
    out, summary = runs["shared"]
    text = console.attack_summary(summary, out)
    att, raw = text.index("Attributable yield: 0.0 breaks"), text.index("Raw yield (for building test sets): 333.3")
    assert att < raw and "ratio 0.00x" in text and "20 breaks whose control broke too left out" in text
    assert f"attributable yield = {glossary.LEGEND['attributable yield']}" in " ".join(text.split())
    assert max(map(len, text.splitlines())) <= console.WIDTH
    html = verdict.attack_panel(out, summary)
    assert html.index("<b>Attributable yield</b>") < html.index("<b>Raw yield</b>") and "ratio <b>0.00x</b>" in html
    assert {"attributable yield", "raw yield"} <= set(glossary.LEGEND)


def test_a_run_without_control_breaks_says_so(runs):
    out, summary = runs["shared"]
    old = {**summary, "yield": {k: summary["yield"][k] for k in ("guided_per_1000", "random_per_1000", "ratio")}}
    y = verdict.run_yield(read_attack_summary(old, out / "summary.json"))
    assert y == RunYield(old["yield"]["guided_per_1000"], old["yield"]["random_per_1000"], old["yield"]["ratio"])
    assert "Attributable yield: not recorded" in console.attack_summary(old, out)
    html = verdict.attack_panel(out, old)
    assert "Attributable yield: not recorded" in html and "<b>Raw yield</b>" in html


def _export(run_dir: Path, out: Path, *flags: str) -> tuple[int, list[dict], str]:
    from advgen.cli.main import main

    try:
        rc = main(["export", str(run_dir), "--format", "jsonl", "--out", str(out), *flags])
    except SystemExit as e:
        rc = int(e.code or 0)
    data = out / "data" / "duplicated_io.jsonl"
    rows = [json.loads(x) for x in data.read_text().splitlines()] if data.exists() else []
    return rc or 0, rows, (out / "README.md").read_text() if (out / "README.md").exists() else ""


def test_export_with_and_without_control_shared_breaks(runs, tmp_path):
    run_dir, _ = runs["shared"]
    rc, rows, card = _export(run_dir, tmp_path / "all")
    assert rc == 0 and len(rows) == N_PROMPTS and all(r["control_breaks"] for r in rows)
    assert f"including {N_PROMPTS} whose matched control also broke" in card and "attributable_only: false" in card
    rc, rows, card = _export(run_dir, tmp_path / "attr", "--attributable-only")
    controls = (
        [json.loads(x) for x in (tmp_path / "attr" / "data" / "control.jsonl").read_text().splitlines()]
        if (tmp_path / "attr" / "data" / "control.jsonl").exists()
        else []
    )
    assert rc == 0 and rows == [] and controls == []  # every break was shared: no break, and none of their controls, is left
    assert f"{N_PROMPTS} breaks whose matched control also broke were left out" in card and "attributable_only: true" in card
    held_dir, _ = runs["held"]
    rc, rows, card = _export(held_dir, tmp_path / "held", "--attributable-only")
    assert rc == 0 and len(rows) == N_PROMPTS and "0 breaks whose matched control also broke were left out" in card


def test_attributable_only_refuses_a_run_that_cannot_tell(runs, tmp_path, capsys):
    run_dir, _ = runs["shared"]
    plain = tmp_path / "plain"
    plain.mkdir()
    rows = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    files.atomic_write_text(plain / "results.jsonl", files.jsonl_text(r for r in rows if r["family"] == "clean"))
    rc, _, _ = _export(plain, tmp_path / "x", "--attributable-only")
    assert rc == 2 and "needs an attack run" in capsys.readouterr().err and not (tmp_path / "x").exists()
    old = tmp_path / "old"
    old.mkdir()
    files.atomic_write_text(
        old / "results.jsonl", files.jsonl_text({k: v for k, v in r.items() if k != "control_breaks"} for r in rows)
    )
    rc, _, _ = _export(old, tmp_path / "y", "--attributable-only")
    assert (
        rc == 2 and "does not record control_breaks for break 'p0:a'" in capsys.readouterr().err and not (tmp_path / "y").exists()
    )


def test_the_search_does_not_reward_breaks_the_control_shares():
    """Cell 'edit' breaks 90 % but its control breaks as often; cell 'mechanism' breaks 40 %, all attributable."""
    arms = {k: bandit.prior_arm(k, 0.3) for k in ("edit", "mechanism")}
    arms = bandit.observe(arms, "edit", 0, 40, raw_breaks=36)
    arms = bandit.observe(arms, "mechanism", 16, 40, raw_breaks=16)
    picks = bandit.choose(arms, {"edit": 1000, "mechanism": 1000}, 200, np.random.default_rng(0))
    assert picks.count("mechanism") > 190
    raw_only = {k: bandit.prior_arm(k, 0.3) for k in ("edit", "mechanism")}  # rewarded by every break, as before issue 28
    raw_only = bandit.observe(bandit.observe(raw_only, "edit", 36, 40), "mechanism", 16, 40)
    assert bandit.choose(raw_only, {"edit": 1000, "mechanism": 1000}, 200, np.random.default_rng(0)).count("edit") > 190
    assert arms["edit"].raw_mean > arms["mechanism"].raw_mean and arms["edit"].mean < arms["mechanism"].mean
    with pytest.raises(ValueError, match="attributable 3 <= breaks 2"):
        bandit.observe(arms, "edit", 3, 5, raw_breaks=2)
