"""The divergence objective: budget per side, rows measured at their own END and unchanged alone, same seed -> same
bytes, resume, the worst-first test set that exports and reports like any run, and named errors for bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rundirs import file_bytes

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.divergence import DivergenceSettings, measure_divergence, run_divergence
from advgen.attacks.divergence_tables import FILES, write_divergence
from advgen.attacks.journal import REUSED
from advgen.attacks.search import Interrupted
from advgen.circuits.format import make_circuit
from advgen.core import files
from advgen.core.types import AdvgenError, Role
from advgen.model.validate import single_logit_diff
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.rows import prompt_of_row

CFG = AttackConfig(budget=90, n_clean=12, seed=2, batch_size=64)
DS = DivergenceSettings(top=20, controls=5)


@pytest.fixture(scope="module")
def circuit():
    return make_circuit(
        "tiny-all",
        "tiny",
        {
            Role.PREVIOUS_TOKEN: ["a0.h0"],
            Role.DUPLICATE_TOKEN: ["a0.h1"],
            Role.INDUCTION: ["a0.h2"],
            Role.S_INHIBITION: ["a0.h3"],
            Role.NAME_MOVER: ["a1.h0"],
            Role.NEGATIVE_NAME_MOVER: ["a1.h2"],
        },
        2,
        4,
    )


def _run(model, circuit, out: Path, ds: DivergenceSettings = DS, **kw):
    run = run_divergence(model, circuit, CFG, ds, out, **kw)
    write_divergence(out, run, CFG, circuit, {"model": "tiny", "seed": CFG.seed})
    return run


@pytest.fixture(scope="module")
def div_run(tiny_model, circuit, tmp_path_factory):
    out = tmp_path_factory.mktemp("div") / "a"
    return out, _run(tiny_model, circuit, out)


def test_each_side_spends_at_most_its_budget_and_every_phase_is_counted(div_run):
    _, run = div_run
    e = run.evals
    assert e["guided"] == e["clean"] + e["sample"] + e["search"] + e["control"] <= CFG.budget
    assert e["clean"] + run.skipped["clean"] == CFG.n_clean
    assert e["random"] + run.skipped["random"] == CFG.budget
    assert e["search"] > 0 and e["control"] > 0
    assert len(run.random) == e["random"] and all(r["phase"] == "baseline" for r in run.random)
    assert sum(REUSED not in r["extra"] for r in run.guided) == e["guided"]


def test_rows_read_the_model_at_their_own_end_and_hold_alone(tiny_model, circuit, div_run):
    _, run = div_run
    names = build_lexicon(tiny_model.tokenizer).name_texts
    rows = sorted(run.guided, key=lambda r: -r["divergence"])[:3] + run.random[:2]
    for r in rows:
        assert r["divergence"] == pytest.approx(abs(r["logit_diff"] - r["circuit_logit_diff"]), abs=1e-9)
        p = prompt_of_row(r, tiny_model.tokenizer, "row")
        assert single_logit_diff(tiny_model, p.token_ids, p.io_token, p.s_token) == pytest.approx(r["logit_diff"], abs=1e-4)
        (alone,) = measure_divergence(tiny_model, circuit, [p], [{"phase": "x"}], DS, names, 1, CFG.seed)
        assert alone["circuit_logit_diff"] == pytest.approx(r["circuit_logit_diff"], abs=1e-4)


def test_the_test_set_is_the_worst_guided_prompts_first(div_run):
    out, run = div_run
    rows = files.read_jsonl(out / "results.jsonl")
    d = [r["divergence"] for r in rows]
    assert d == sorted(d, reverse=True) and len(rows) == DS.top and len({r["text"] for r in rows}) == len(rows)
    assert d[0] == max(r["divergence"] for r in run.guided)
    assert [r["extra"]["divergence_rank"] for r in rows] == list(range(1, DS.top + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["guided"]["max"] == d[0] and summary["random"]["max"] == max(r["divergence"] for r in run.random)
    assert summary["worst_case_ratio"] == pytest.approx(d[0] / summary["random"]["max"])
    assert summary["controls"]["n"] == sum(r["phase"] == "control" for r in run.guided)
    with_control = [r for r in rows if "control_divergence" in r["extra"]]
    ctl = {r["candidate"]: r["divergence"] for r in run.guided if r["phase"] == "control"}
    assert all(r["extra"]["control_divergence"] == ctl[r["candidate"]] for r in with_control)


def test_interrupted_then_resumed_gives_the_same_bytes(tiny_model, circuit, div_run, tmp_path):
    """Units after the cut are measured again from scratch, so this also checks same seed -> same bytes."""
    out, _ = div_run
    cut = tmp_path / "c"
    with pytest.raises(Interrupted):
        _run(tiny_model, circuit, cut, stop_after_units=2)
    _run(tiny_model, circuit, cut, resume=True)
    assert file_bytes(cut, FILES) == file_bytes(out, FILES)


@pytest.mark.slow
def test_kl_measure_and_zero_ablation(tiny_model, circuit, tmp_path):
    run = _run(tiny_model, circuit, tmp_path / "kl", DivergenceSettings(ablation="zero", measure="kl", top=5, controls=2))
    assert all(r["divergence"] == r["circuit_kl"] >= -1e-9 for r in run.guided + run.random)
    assert run.skipped == {"clean": 0, "sample": 0, "search": 0, "control": 0, "random": 0}  # zero needs no ABC twin


@pytest.mark.parametrize(
    "ds, match",
    [
        (DivergenceSettings(ablation="ioi_mean"), "own template-and-length group"),
        (DivergenceSettings(measure="js"), "not a divergence measure"),
        (DivergenceSettings(top=0), "--top must be >= 1"),
        (DivergenceSettings(controls=200), "too small for the divergence search"),
    ],
)
def test_bad_settings_are_named(tiny_model, circuit, tmp_path, ds, match):
    with pytest.raises(AdvgenError, match=match):
        run_divergence(tiny_model, circuit, CFG, ds, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_writes_a_test_set_that_exports_and_reports(tiny_model_dir, tmp_path, capsys):
    import datasets

    from advgen.cli.main import main

    out = tmp_path / "run"
    rc = main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--circuit",
            "gpt2-small-ioi",
            "--objective",
            "divergence",
            "--budget",
            "90",
            "--n-clean",
            "12",
            "--out",
            str(tmp_path / "bad"),
            "--no-progress",
        ]
    )  # GPT-2 small's circuit on a 2-layer model
    assert rc == 2 and "a0.h10" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    rc = main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--circuit",
            "gpt2-small-ioi",
            "--objective",
            "divergence",
            "--ablation",
            "ioi_mean",
            "--budget",
            "90",
            "--n-clean",
            "12",
            "--out",
            str(tmp_path / "bad"),
            "--no-progress",
        ]
    )
    assert rc == 2 and "--ablation 'ioi_mean'" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    circ = tmp_path / "c.json"
    circ.write_text(json.dumps(make_circuit("tiny-nm", "tiny", {Role.NAME_MOVER: ["a1.h0", "a1.h1"]}, 2, 4).to_dict()))
    main(
        [
            "attack",
            "--model",
            str(tiny_model_dir),
            "--circuit",
            str(circ),
            "--objective",
            "divergence",
            "--budget",
            "90",
            "--n-clean",
            "12",
            "--top",
            "10",
            "--controls",
            "4",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "Worst case, guided / random" in printed and "evaluated.jsonl" in printed
    assert json.loads((out / "manifest.json").read_text())["settings"]["objective"] == "divergence"
    main(["export", str(out), "--format", "hf", "--out", str(tmp_path / "hf")])
    ds = datasets.load_from_disk(str(tmp_path / "hf" / "hf"))
    assert isinstance(ds, datasets.DatasetDict)
    assert sum(len(v) for v in ds.values()) == 10 and "divergence" in next(iter(ds.values())).column_names
    main(["report", str(out), "--out", str(tmp_path / "r.html"), "--no-attention"])
    assert "Worst case, guided / random" in (tmp_path / "r.html").read_text()
