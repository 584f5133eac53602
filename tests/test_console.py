"""The CLI's console summaries fit in 100 columns and define their terms."""

from __future__ import annotations

import json

from rundirs import make_attack_run

from advgen.outputs import console, glossary, pipeline


def test_run_and_attack_summaries_fit_and_define_terms(tiny_model, tmp_path):
    clean = pipeline.run(tiny_model, 12, seed=0, out=tmp_path / "clean")
    text = console.run_summary(clean.summary)
    assert max(map(len, text.splitlines())) <= console.WIDTH
    words = " ".join(text.split())  # the glossary's definitions, under the console's labels
    assert f"LD = {glossary.LEGEND['LD']}" in words and f"S>IO = {glossary.LEGEND['S > IO']}" in words

    run = make_attack_run(clean.out, tmp_path / "attack", tiny_model.tokenizer)
    text = console.attack_summary(json.loads((run / "summary.json").read_text()), run, {"clean": 12})
    lines = text.splitlines()
    assert max(map(len, lines)) <= console.WIDTH, max(lines, key=len)
    assert any(line.split()[:1] == ["duplicate_io"] and "confirmed" in line and "-1.30 [-1.50, -1.10]" in line for line in lines)
    flat = text.replace("\n  ", " ")
    assert "Raw yield (for building test sets): 15.0" in flat and "ratio 3.00x" in flat
    assert flat.index("Attributable yield: 10.0") < flat.index("Raw yield") and "ratio 2.00x" in flat
    words = " ".join(text.split())
    for label, key in glossary.CONSOLE_ATTACK:
        assert f"{label} = {glossary.LEGEND[key]}" in words, label


def test_run_cli_prints_within_100_columns(tiny_model_dir, tmp_path, capsys):
    from advgen.cli.main import main

    assert main(["run", "--model", str(tiny_model_dir), "--n", "8", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= console.WIDTH, out
    assert "Terms:" in out
