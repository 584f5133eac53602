from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from advgen.cli.main import main


def _run(tmp_path, model_dir, name, *extra):
    out = tmp_path / name
    rc = main(["run", "--model", str(model_dir), "--n", "30", "--seed", "7", "--out", str(out), "--no-progress", *extra])
    return rc, out


def test_run_contract_and_byte_identical(tmp_path, tiny_model_dir):
    rc1, a = _run(tmp_path, tiny_model_dir, "a")
    rc2, b = _run(tmp_path, tiny_model_dir, "b")
    assert rc1 == rc2 == 0
    assert (a / "results.jsonl").read_bytes() == (b / "results.jsonl").read_bytes()
    rows = [json.loads(x) for x in (a / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    for k in ("text", "io", "s", "logit_diff", "io_prob", "s_prob", "template_id", "order", "positions"):
        assert k in rows[0]
    summary = json.loads((a / "summary.json").read_text())
    assert summary["n"] == 30
    assert summary["accuracy"] == pytest.approx(sum(r["logit_diff"] > 0 for r in rows) / 30)
    assert summary["mean_logit_diff"] == pytest.approx(sum(r["logit_diff"] for r in rows) / 30)
    man = json.loads((a / "manifest.json").read_text())
    assert man["seed"] == 7 and man["tokenizer_hash"] and "torch" in man["versions"]
    # another batch size gives the same numbers up to float summation order
    _, d = _run(tmp_path, tiny_model_dir, "d", "--batch-size", "7")
    rows_d = [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows_d] == [r["text"] for r in rows]
    assert [r["logit_diff"] for r in rows_d] == pytest.approx([r["logit_diff"] for r in rows], abs=1e-5)
    # different seed, different prompts
    _, c = _run(tmp_path, tiny_model_dir, "c", "--seed", "8")
    assert (c / "results.jsonl").read_bytes() != (a / "results.jsonl").read_bytes()


def test_generate_then_validate_matches_run(tmp_path, tiny_model_dir):
    g = tmp_path / "g"
    assert main(["generate", "--model", str(tiny_model_dir), "--n", "30", "--seed", "7", "--out", str(g)]) == 0
    v = tmp_path / "v"
    assert main(["validate", str(g / "prompts.jsonl"), "--model", str(tiny_model_dir), "--out", str(v), "--no-progress"]) == 0
    _, r = _run(tmp_path, tiny_model_dir, "r")
    lds_v = [json.loads(x)["logit_diff"] for x in (v / "results.jsonl").read_text().splitlines()]
    lds_r = [json.loads(x)["logit_diff"] for x in (r / "results.jsonl").read_text().splitlines()]
    assert lds_v == pytest.approx(lds_r, abs=1e-6)


def test_validate_accepts_minimal_foreign_rows(tmp_path, tiny_model_dir):
    f = tmp_path / "mine.jsonl"
    f.write_text(
        json.dumps({"text": "When Mary and John went to the store, John gave a drink to", "io": "Mary", "s": "John"}) + "\n"
    )
    out = tmp_path / "o"
    assert main(["validate", str(f), "--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]) == 0
    row = json.loads((out / "results.jsonl").read_text())
    assert row["positions"] == {"IO": 2, "S1": 4, "S2": 10, "S1+1": 5, "END": 14}


@pytest.mark.parametrize(
    "row,needle",
    [
        ({"text": "When Mary and John went, John gave it to", "io": "Mary"}, "mine.jsonl:2: row is missing field(s) ['s']"),
        (
            {"text": "When Mary and Paul went, Paul gave it to", "io": "Mary", "s": "John"},
            "mine.jsonl:2: text does not contain the S1",
        ),
        ({"text": "When Xylophonia and John went, John gave it to", "io": "Xylophonia", "s": "John"}, "mine.jsonl:2"),
    ],
)
def test_bad_jsonl_row_named_error_no_partial_files(tmp_path, tiny_model_dir, capsys, row, needle):
    good = {"text": "When Mary and John went to the store, John gave a drink to", "io": "Mary", "s": "John"}
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "o"
    assert main(["validate", str(f), "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_bad_template_file_exits_nonzero_without_output(tmp_path, tiny_model_dir):
    t = tmp_path / "bad.yaml"
    t.write_text("templates:\n  - {id: a, text: '{S1} and {IO} met at {TOWN}. {S2} gave it to'}\n")
    out = tmp_path / "o"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "advgen.cli.main",
            "run",
            "--model",
            str(tiny_model_dir),
            "--templates",
            str(t),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "bad.yaml:2" in proc.stderr and "{TOWN}" in proc.stderr
    assert not out.exists()


def test_unreachable_gpt2_fails_fast_with_advice(tmp_path):
    """In a fresh process, so the hub library reads the empty HF_HOME when it is first imported."""
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # empty cache
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "advgen.cli.main", "run", "--model", "gpt2", "--n", "2", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert time.perf_counter() - t0 < 60  # process start and imports included; the probe itself takes seconds
    err = proc.stderr
    assert "local copy" in err and "--model reference" in err


def test_discover_nm_path_choices_are_the_rules_discovery_knows():
    """The CLI lists the paths literally (discovery imports torch); they must stay the same set."""
    from advgen.circuits.discovery_roles import NM_PATHS, Settings
    from advgen.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    nm = next(a for a in sub.choices["discover"]._actions if a.dest == "nm_path")
    assert set(nm.choices) == set(NM_PATHS) and nm.default == Settings.nm_path


@pytest.mark.parametrize(("argv", "stop"), [([], "shipped"), (["--stop-after", "7"], 7), (["--steps", "10"], None)])
def test_train_planted_cli_stops_at_the_shipped_step_by_default(tmp_path, monkeypatch, argv, stop):
    from advgen.reference import planted, planted_recipe

    seen = {}
    monkeypatch.setattr(planted, "train_planted", lambda out, s, **kw: seen.update(kw, steps=s.steps) or out)
    assert main(["train-reference", "--kind", "planted", "--out", str(tmp_path), "--no-progress", *argv]) == 0
    assert seen["stop_after"] == (planted.SHIPPED_STEP if stop == "shipped" else stop)
    assert seen["steps"] == (10 if "--steps" in argv else planted_recipe.PlantedSettings().steps)
