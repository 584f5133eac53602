"""The promises of docs/reliability.md, one test each: hostile inputs end in a named error (exit 2),
run directories are units (locked, marked complete, never half-read), nothing is lost or poisoned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from advgen.cli.main import main
from advgen.core import files, rundir
from advgen.core.types import AdvgenError
from advgen.outputs import pipeline
from advgen.outputs.exporters import export
from advgen.outputs.rundata import load_run


def _cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory) -> Path:
    return pipeline.run(tiny_model, 12, seed=2, out=tmp_path_factory.mktemp("rel") / "run").out


# ---- run directories as units ---------------------------------------------------------------------


def test_completed_run_has_marker_and_no_lock(run_dir):
    mark = json.loads((run_dir / rundir.MARKER).read_text())
    assert mark["kind"] == "run" and set(mark["files"]) == {"results.jsonl", "results.csv", "summary.json", "manifest.json"}
    assert not (run_dir / rundir.LOCK).exists()
    rundir.check_complete(run_dir)


def test_interrupted_writer_leaves_a_lock_readers_refuse(tmp_path):
    d = tmp_path / "r"
    with pytest.raises(RuntimeError):
        with rundir.writing(d, "run", "id1"):
            files.atomic_write_text(d / "results.jsonl", "{}\n")
            raise RuntimeError("killed")
    assert (d / rundir.LOCK).exists()
    with pytest.raises(AdvgenError, match="incomplete|still being written"):
        load_run(d)


def test_files_added_beside_a_run_are_not_part_of_it(tiny_model, tmp_path):
    out = pipeline.run(tiny_model, 5, seed=4, out=tmp_path / "r").out
    (out / "report.html").write_text("<html>v1</html>")
    pipeline.run(tiny_model, 5, seed=4, out=out)  # the same run again, a report beside it
    assert "report.html" not in json.loads((out / rundir.MARKER).read_text())["files"]
    (out / "report.html").write_text("<html>v2</html>")  # a new report does not make the run look changed
    assert len(load_run(out).rows) == 5


def test_writer_failing_before_any_write_leaves_no_trace(run_dir, tmp_path):
    with pytest.raises(AdvgenError):
        with rundir.writing(tmp_path / "new", "run", "i"):
            raise AdvgenError("bad --modes")
    assert not (tmp_path / "new").exists()
    mark = json.loads((run_dir / rundir.MARKER).read_text())
    with pytest.raises(AdvgenError):
        with rundir.writing(run_dir, mark["kind"], mark["identity"]):
            raise AdvgenError("failed before writing")
    rundir.check_complete(run_dir)  # marker restored, lock gone: the finished run is still readable
    assert len(load_run(run_dir).rows) == 12


def test_new_rows_with_old_manifest_is_refused(run_dir, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    rows = (d / "results.jsonl").read_text().splitlines()
    files.atomic_write_text(d / "results.jsonl", "\n".join(rows[:-1]) + "\n")  # rows replaced, manifest not
    with pytest.raises(AdvgenError, match="results.jsonl changed after the run finished"):
        load_run(d)
    with pytest.raises(AdvgenError, match="changed after"):
        export(d, "jsonl", tmp_path / "ex")
    assert not (tmp_path / "ex").exists()


def test_concurrent_writer_is_refused(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (d / rundir.LOCK).write_text(json.dumps({"pid": other.pid, "kind": "run", "identity": "x"}))
        with pytest.raises(AdvgenError, match=f"another advgen process \\(pid {other.pid} is alive"):
            rundir.check_out(d, "run", "x")
    finally:
        other.kill()
        other.wait()


def test_same_run_rewrites_other_run_needs_overwrite(tiny_model, tmp_path):
    out = pipeline.run(tiny_model, 6, seed=1, out=tmp_path / "r").out
    before = (out / "results.jsonl").read_bytes()
    pipeline.run(tiny_model, 6, seed=1, out=out)  # the same run: allowed, byte-identical
    assert (out / "results.jsonl").read_bytes() == before
    with pytest.raises(AdvgenError, match="another run .*--overwrite"):
        pipeline.run(tiny_model, 7, seed=1, out=out)
    (out / "stale.jsonl").write_text("from an older run\n")
    pipeline.run(tiny_model, 7, seed=1, out=out, overwrite=True)
    assert not (out / "stale.jsonl").exists(), "--overwrite replaces the directory whole"
    assert len(load_run(out).rows) == 7


def test_run_into_attack_directory_is_refused(tmp_path):
    d = tmp_path / "a"
    with rundir.writing(d, "attack", "att"):
        files.atomic_write_text(d / "circuit.json", "{}\n")
    with pytest.raises(AdvgenError, match="advgen attack directory of another kind"):
        pipeline.precheck("run", d, "reference", 5, 0)


def test_foreign_directory_is_never_replaced(capsys, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep")
    rc, err = _cli(capsys, "generate", "--n", "3", "--out", str(d), "--overwrite")
    assert rc == 2 and "advgen did not write" in err and (d / "notes.txt").read_text() == "keep"


# ---- refusals before any work ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["generate", "--n", "5", "--seed", "-1"], "--seed must be >= 0"),
        (["generate", "--n", "1000000000"], "--n must be between 1 and 10,000,000"),
        (["run", "--n", "0"], "--n must be "),
        (["run", "--n", "100001"], "--n must be between 1 and 100,000"),
        (["discover", "--seed", "-1"], "--seed must be >= 0"),
        (["scan", "--seed", "-1"], "--seed must be >= 0"),
        (["train-reference", "--seed", "-1"], "--seed must be >= 0"),
        (["check-claim", "reference-ioi", "--seed", "-1"], "--seed must be >= 0"),
        (["validate", "p.jsonl", "--seed", str(2**63)], "--seed must be >= 0 (and below 2**63)"),
        (["scan", "--batch-size", "100000"], "--batch-size must be between 1 and 1024"),
        (["discover", "--batch-size", "0"], "--batch-size must be between 1 and 1024"),
        (["train-reference", "--kind", "planted", "--steps", "0"], "--steps must be >= 1"),
        (["train-reference", "--stop-after", "0"], "--stop-after must be >= 1"),
        (["scan", "--unit", "0"], "--unit must be >= 1"),
        (["check-claim", "reference-ioi", "--scrub-draws", "0"], "--scrub-draws must be >= 1"),
        (["discover", "--name", "ioi\udcff"], "--name 'ioi\\udcff' is not valid UTF-8 text"),  # argv bytes b"ioi\xff"
        (["run", "--n", "2", "--templates", "t\udcff.yaml"], "--templates 't\\udcff.yaml' is not valid UTF-8 text"),
        (["run", "--n", "5", "--batch-size", "0"], "--batch-size must be between 1 and 1024"),
        (["run", "--n", "5", "--batch-size", "1000000000"], "--batch-size must be between 1 and 1024"),
        (["run", "--n", "5", "--seed", "-4"], "--seed must be >= 0"),
        (["attack", "--circuit", "reference-ioi", "--budget", "1000000000"], "above the limit of 100,000"),
        (["attack", "--circuit", "reference-ioi", "--budget", "300", "--seed", "-1"], "--seed must be >= 0"),
        (["attack", "--circuit", "reference-ioi", "--budget", "300", "--batch-size", "100000"], "between 1 and 1024"),
    ],
)
def test_bad_arguments_fail_before_the_model_loads(capsys, monkeypatch, tmp_path, argv, msg):
    import advgen.model.loading as loading

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(loading, "load_model", boom)
    monkeypatch.setattr(loading, "load_tokenizer", boom)
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(capsys, *argv, "--out", str(tmp_path / "o"))
    assert rc == 2 and msg in err and not (tmp_path / "o").exists()


def test_out_naming_a_file_or_a_path_under_a_file(capsys, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    for out, msg in ((f, "is an existing file"), (f / "sub", "lies under")):
        rc, err = _cli(capsys, "run", "--n", "3", "--out", str(out))
        assert rc == 2 and msg in err
    assert f.read_text() == "x"


def test_no_command_writes_over_its_own_input(capsys, run_dir, tmp_path):
    rc, err = _cli(capsys, "validate", str(run_dir / "results.jsonl"), "--out", str(run_dir), "--overwrite")
    assert rc == 2 and "own input" in err
    before = (run_dir / "results.jsonl").read_bytes()
    rc, err = _cli(capsys, "report", str(run_dir), "--out", str(run_dir / "results.jsonl"), "--no-attention")
    assert rc == 2 and "own input" in err
    rc, err = _cli(capsys, "report", str(run_dir), "--out", str(tmp_path), "--no-attention")
    assert rc == 2 and "existing directory" in err
    rc, err = _cli(capsys, "export", str(run_dir), "--format", "jsonl", "--out", str(run_dir / "ex"))
    assert rc == 2 and "overlaps the run directory" in err
    assert (run_dir / "results.jsonl").read_bytes() == before and not (run_dir / "ex").exists()


def test_export_never_deletes_a_directory_holding_only_a_readme(run_dir, tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "README.md").write_text("---\nadvgen_export:\n  format: csv\n---\nmy notes\n")
    with pytest.raises(AdvgenError, match="not an advgen export"):
        export(run_dir, "csv", d)
    assert (d / "README.md").read_text().endswith("my notes\n")
    out = export(run_dir, "jsonl", tmp_path / "E")
    (out / "mine.txt").write_text("added later")
    with pytest.raises(AdvgenError, match="not an advgen export"):
        export(run_dir, "csv", out)  # an export with a file added since is someone's data now
    assert (out / "mine.txt").exists()


# ---- readers: named errors, physical lines --------------------------------------------------------


def test_jsonl_errors_name_the_physical_line(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'\n\n{"text": "a", "io": "b", "s": "c"}\n\n{"text": "a", "io": "b", "s": "c", "c": 7}\n')
    with pytest.raises(AdvgenError, match=r"p.jsonl:5: field 'c' must be a null or string, got number 7"):
        files.read_jsonl(p, types=pipeline.datasets.ROW_TYPES)
    p.write_bytes(b'{"text": "a", "io": "b", "s": "c"}\n\n\xff\xfe\n')
    with pytest.raises(AdvgenError, match=r"p.jsonl:3: not valid UTF-8"):
        files.read_jsonl(p)
    with pytest.raises(AdvgenError, match="is a directory"):
        files.read_jsonl(tmp_path)


def test_non_numeric_logit_diff_is_an_error(run_dir, tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    rows = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    rows[3]["logit_diff"] = "1.5"
    (d / "results.jsonl").write_text(files.jsonl_text(rows))
    with pytest.raises(AdvgenError, match=r"results.jsonl:4: field 'logit_diff' must be a number, got string"):
        export(d, "parquet", tmp_path / "ex")


def test_circuit_string_where_a_number_belongs(tmp_path):
    from advgen.circuits.format import Circuit

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"n_layers": "4", "n_heads": 4, "heads": [{"head": "a1.h1", "role": "name_mover"}]}))
    with pytest.raises(AdvgenError, match="'n_layers' must be a positive integer"):
        Circuit.load(p)
    p.write_text(json.dumps({"heads": [{"head": "a1.h1", "role": "name_mover", "scores": {"x": "high"}}]}))
    with pytest.raises(AdvgenError, match=r"heads\[0\]: head a1.h1: score 'x' must be a number"):
        Circuit.load(p)
    p.write_text(json.dumps({"n_layers": 2, "n_heads": 4, "heads": [{"head": "a7.h1", "role": "name_mover"}]}))
    with pytest.raises(AdvgenError, match="head a7.h1 has layer 7"):
        Circuit.load(p)


def test_truncated_journal_unit_is_recomputed_not_trusted(tmp_path):
    from advgen.attacks.search import Journal

    j = Journal(tmp_path, resume=False)
    rows = j.unit("k0", lambda: [{"logit_diff": 1.0}])
    path = tmp_path / "journal" / "unit-00000.json"
    text = path.read_text()
    for damaged in (text[: len(text) // 2], text.replace("1.0", "-9.0")):
        path.write_text(damaged)
        again = Journal(tmp_path, resume=True)
        assert again.unit("k0", lambda: [{"logit_diff": 1.0}]) == rows and again.computed == 1


def test_model_whose_weights_do_not_match_its_config(tiny_model_dir, tmp_path):
    import shutil

    from advgen.model.loading import ModelLoadError, load_model

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] += 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"missing weight\(s\): transformer.h.2.*refusing"):
        load_model(str(d))
    cfg["n_layer"] -= 2
    cfg["n_embd"] *= 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="shape mismatch"):
        load_model(str(d))


# ---- security -----------------------------------------------------------------------------------


def test_csv_formula_cells_are_neutralised():
    text = files.csv_text(
        [{"text": '=HYPERLINK("http://x")', "io": "+1", "s": "@SUM(A1)", "mode": "-2", "t": "\tx", "logit_diff": -1.5, "n": 3}]
    )
    import csv
    import io

    row = list(csv.DictReader(io.StringIO(text)))[0]
    assert row == {
        "text": '\'=HYPERLINK("http://x")',
        "io": "'+1",
        "s": "'@SUM(A1)",
        "mode": "'-2",
        "t": "'\tx",
        "logit_diff": "-1.5",
        "n": "3",
    }  # numbers stay numbers


def test_dataset_card_escapes_data(run_dir, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns(rundir.MARKER))
    man = json.loads((d / "manifest.json").read_text())
    man["command"] = "advgen run `x` <script>alert(1)</script> | [a](javascript:x)"
    man["model"] = "<img src=x onerror=alert(1)>"
    (d / "manifest.json").write_text(json.dumps(man))
    card = (export(d, "jsonl", tmp_path / "ex") / "README.md").read_text().split("\n---\n", 1)[1]
    assert "<script>" not in card and "<img" not in card and "](javascript" not in card


def test_skip_invalid_lists_rejected_rows(capsys, tiny_model_dir, tmp_path):
    good = {"text": "Then, John and Mary went to the store. John gave a drink to", "io": "Mary", "s": "John"}
    p = tmp_path / "p.jsonl"
    p.write_bytes(
        b"\n".join(
            [
                json.dumps(good).encode(),
                b"",
                b"not json",
                json.dumps({**good, "c": 7}).encode(),
                json.dumps({**good, "text": "Mary and John went. John gave it to"}).encode(),
                b"\xff",
            ]
        )
        + b"\n"
    )
    rc, err = _cli(capsys, "validate", str(p), "--model", str(tiny_model_dir), "--out", str(tmp_path / "v"), "--no-progress")
    assert rc == 2 and "p.jsonl:3: not valid JSON" in err
    rc = main(
        ["validate", str(p), "--model", str(tiny_model_dir), "--out", str(tmp_path / "v"), "--no-progress", "--skip-invalid"]
    )
    assert rc == 0 and "rejected 4 invalid row(s)" in capsys.readouterr().out
    rej = [json.loads(x) for x in (tmp_path / "v" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["row"], r["line"]) for r in rej] == [(2, 3), (3, 4), (4, 5), (5, 6)]
    assert "starts the text" in rej[2]["reason"] and "UTF-8" in rej[3]["reason"]
    assert len(load_run(tmp_path / "v").rows) == 1


def test_lock_pid_is_this_process_while_writing(tmp_path):
    d = tmp_path / "r"
    with rundir.writing(d, "run", "i"):
        assert json.loads((d / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert not (d / rundir.LOCK).exists()


def test_model_spec_that_is_neither_directory_nor_hub_id():
    from advgen.model.loading import ModelLoadError, load_tokenizer

    with pytest.raises(ModelLoadError, match="neither a local model directory nor a hub id"):
        load_tokenizer("a//b")


def test_integer_too_long_for_python_is_a_named_error(tmp_path):
    from advgen.circuits.format import Circuit
    from advgen.prompts.templates import load_templates

    (tmp_path / "c.json").write_text('{"n_layers": ' + "1" * 5000 + ', "heads": []}')
    with pytest.raises(AdvgenError, match="c.json: not usable JSON"):
        Circuit.load(tmp_path / "c.json")
    (tmp_path / "p.jsonl").write_text('{"text": "a", "io": "b", "s": "c", "c": ' + "9" * 5000 + "}\n")
    with pytest.raises(AdvgenError, match="p.jsonl:1: not usable JSON"):
        files.read_jsonl(tmp_path / "p.jsonl")
    (tmp_path / "t.yaml").write_text("templates:\n  - {id: " + "7" * 5000 + ", text: 'Then, {S1} and {IO} met. {S2} said to'}\n")
    with pytest.raises(AdvgenError, match="unusable YAML value"):
        load_templates(tmp_path / "t.yaml")


def test_export_overwrite_replaces_only_advgen_exports(run_dir, tmp_path):
    old = tmp_path / "old"  # an export by an older version: a card with our key, data, no marker
    (old / "data").mkdir(parents=True)
    (old / "data" / "clean.jsonl").write_text("{}\n")
    (old / "README.md").write_text("---\nadvgen_export:\n  format: jsonl\n---\n# card\n")
    with pytest.raises(AdvgenError, match="pass --overwrite"):
        export(run_dir, "csv", old)
    export(run_dir, "csv", old, overwrite=True)
    assert (old / "data" / "clean.csv").exists() and not (old / "data" / "clean.jsonl").exists()
    readme_only = tmp_path / "D"
    readme_only.mkdir()
    (readme_only / "README.md").write_text("---\nadvgen_export:\n  format: csv\n---\n")
    with pytest.raises(AdvgenError, match="never deletes"):
        export(run_dir, "csv", readme_only, overwrite=True)
    assert (readme_only / "README.md").exists()


def test_run_directory_of_an_older_version_needs_overwrite(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "manifest.json").write_text("{}\n")
    (d / "results.jsonl").write_text("{}\n")
    with pytest.raises(AdvgenError, match="an advgen directory of another run .*--overwrite"):
        pipeline.precheck("run", d, "reference", 5, 0)
    pipeline.precheck("run", d, "reference", 5, 0, overwrite=True)


# ---- CSV: a line break inside a cell never splits a row or starts a formula -----------------------

HOSTILE_PAIR = 'p1\r=HYPERLINK("http://x")\n+1\r\n@SUM(A1)\r-2'


def _assert_inert_csv(text: str, column: str, cell: str) -> None:
    """Every row has the header's width, `column` reads back as `cell`, and no physical line (split on CR,
    LF or CRLF, as a careless importer would) starts with a formula lead."""
    import csv
    import io
    import re

    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert all(len(r) == len(rows[0]) for r in rows)
    got = [r[rows[0].index(column)] for r in rows[1:]]
    assert cell in got
    assert text.endswith("\r\n")
    for line in re.split(r"\r\n|\r|\n", text):
        assert not line.startswith(files.FORMULA_LEAD[:-1]), line


HOSTILE_READ = "p1\r'=HYPERLINK(\"http://x\")\n'+1\r\n'@SUM(A1)\r'-2"


def test_csv_line_break_in_a_cell_cannot_split_a_row():
    text = files.csv_text([{"text": "ok", "pair_id": HOSTILE_PAIR, "logit_diff": -1.5}])
    _assert_inert_csv(text, "pair_id", HOSTILE_READ)
    assert ",-1.5\r\n" in text  # numbers stay numbers


@pytest.fixture(scope="module")
def hostile_validate(tiny_model, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("csv")
    row = {
        "text": "Then, John and Mary went to the store. John gave a drink to",
        "io": "Mary",
        "s": "John",
        "pair_id": HOSTILE_PAIR,
        "template_id": "t\r=1+1",
    }
    (d / "p.jsonl").write_text(json.dumps(row) + "\n")
    return pipeline.validate_rows(tiny_model, d / "p.jsonl", d / "v").out


def test_csv_writer_of_run_and_validate_is_inert(hostile_validate):
    text = (hostile_validate / "results.csv").read_bytes().decode()
    _assert_inert_csv(text, "pair_id", HOSTILE_READ)
    _assert_inert_csv(text, "template_id", "t\r'=1+1")


def test_csv_writer_of_export_is_inert(hostile_validate, tmp_path):
    ex = export(hostile_validate, "csv", tmp_path / "ex")
    [csv_file] = (ex / "data").glob("*.csv")
    _assert_inert_csv(csv_file.read_bytes().decode(), "pair_id", HOSTILE_READ)


def test_csv_writer_of_attack_is_inert(tiny_model, tmp_path):
    import dataclasses

    from advgen.attacks.attack_setup import AttackConfig
    from advgen.attacks.search import run_attack
    from advgen.attacks.tables import write_run
    from advgen.circuits.format import make_circuit
    from advgen.core.types import Role

    circuit = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h3"]}, 2, 4)
    cfg = AttackConfig(budget=30, n_clean=4, seed=1, batch_size=64)
    run = run_attack(tiny_model, circuit, cfg, tmp_path / "a")
    rows = [{**r, "text": HOSTILE_PAIR} if i == 0 else r for i, r in enumerate(run.rows)]  # text is no join key
    write_run(tmp_path / "a", dataclasses.replace(run, rows=rows), cfg, circuit, {"model": "tiny"})
    _assert_inert_csv((tmp_path / "a" / "results.csv").read_bytes().decode(), "text", HOSTILE_READ)
    _assert_strict_json(tmp_path / "a")


def _assert_strict_json(d: Path) -> int:
    """Every JSON / JSONL file under `d` parses with NaN and Infinity refused; returns how many nulls stand for them."""

    def refuse(tok: str) -> None:
        raise AssertionError(f"non-JSON constant {tok}")

    n = 0
    for p in sorted(d.rglob("*.json*")):
        for line in [p.read_text()] if p.suffix == ".json" else p.read_text().splitlines():
            json.loads(line, parse_constant=refuse)
            n += line.count("null")
    return n


def test_json_is_written_without_nan(tiny_model, tmp_path):
    assert (
        files.dumps({"a": float("nan"), "b": [float("inf"), 1.5, {"c": float("-inf")}]})
        == '{"a": null, "b": [null, 1.5, {"c": null}]}'
    )
    from advgen.outputs.scan import Tally

    files.atomic_write_text(tmp_path / "s" / "summary.json", files.dumps(Tally().summary()))  # n = 0: every mean is NaN
    assert _assert_strict_json(tmp_path / "s") >= 5
    _assert_strict_json(pipeline.run(tiny_model, 3, seed=1, out=tmp_path / "r").out)


def test_written_files_follow_the_umask(run_dir, tmp_path):
    old = os.umask(0o027)
    try:
        files.atomic_write_text(tmp_path / "f.json", "{}\n")
        ex = export(run_dir, "jsonl", tmp_path / "ex")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o640
    assert ex.stat().st_mode & 0o777 == 0o750 and (ex / "README.md").stat().st_mode & 0o777 == 0o640
    os.umask(0o002)
    try:
        files.atomic_write_text(tmp_path / "g.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "g.json").stat().st_mode & 0o777 == 0o664


# ---- YAML: no aliases, no duplicate keys, bounded size, encodable text ------------------------------


@pytest.mark.parametrize(
    "text, msg",
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a]\ntemplates: []\n",
            r"t.yaml:1: YAML anchor &a refused",
        ),
        ("templates:\n  - {id: a, text: 'Then, {S1} and {IO} met. {S2} said to'}\n  - *x\n", r"t.yaml:3: YAML alias \*x refused"),
        (
            "templates:\n  - id: a\n    text: 'Then, {S1} and {IO} met. {S2} said to'\n    text: 'x'\n",
            r"t.yaml:4: duplicate key 'text' \(first on line 3\)",
        ),
        ("templates: []\ntemplates: []\n", r"t.yaml:2: duplicate key 'templates'"),
        (
            "templates:\n  - text: 'Then, {S1} and {IO} met. {S2} said to" + "a" * 20_000 + "'\n",
            r"t.yaml:2: scalar of 20,03\d characters",
        ),
        ("#" + "x" * (1 << 20) + "\ntemplates: []\n", r"t.yaml: 1,048,5\d\d characters of YAML; at most 1,048,576"),
        ('templates:\n  - text: "Then, {S1} and {IO} met.\\ud800 {S2} said to"\n', r"t.yaml:2: .*lone surrogate"),
    ],
)
def test_yaml_template_pack_is_read_strictly(capsys, tmp_path, text, msg):
    from advgen.prompts.templates import TemplateError, load_templates

    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(TemplateError, match=msg):
        load_templates(tmp_path / "t.yaml")
    rc, err = _cli(
        capsys, "generate", "--model", "x", "--templates", str(tmp_path / "t.yaml"), "--n", "2", "--out", str(tmp_path / "o")
    )
    assert rc == 2 and "t.yaml" in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_yaml_file_over_the_byte_limit_is_refused_before_reading(tmp_path):
    from advgen.core.yamlsafe import MAX_YAML_CHARS
    from advgen.prompts.templates import TemplateError, load_templates

    with (tmp_path / "t.yaml").open("wb") as f:
        f.truncate(4 * MAX_YAML_CHARS + 1)  # sparse: no disk, and never read
    with pytest.raises(TemplateError, match=r"t.yaml: 4,194,305 bytes; a template file may have at most"):
        load_templates(tmp_path / "t.yaml")


def test_yaml_distractor_file_refuses_aliases(tmp_path):
    from advgen.prompts.sentences import _doc

    (tmp_path / "d.yaml").write_text("paper: &p ['A.']\ngrammars: {g: *p}\n")
    with pytest.raises(AdvgenError, match=r"d.yaml:1: YAML anchor &p refused"):
        _doc(tmp_path / "d.yaml")


# ---- text: every string read is encodable, checked when read ----------------------------------------


def test_lone_surrogate_in_a_row_is_named_when_read(capsys, tiny_model_dir, tmp_path):
    good = {"text": "Then, John and Mary went to the store. John gave a drink to", "io": "Mary", "s": "John"}
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "pair_id": "x\ud800"}) + "\n")  # json.dumps escapes it
    rc, err = _cli(capsys, "validate", str(p), "--model", str(tiny_model_dir), "--out", str(tmp_path / "v"), "--no-progress")
    assert rc == 2 and "p.jsonl:3: field 'pair_id' holds a lone surrogate" in err and not (tmp_path / "v").exists()
    p.write_text(json.dumps({**good, "extra": {"k\udc00": 1}}) + "\n")
    with pytest.raises(AdvgenError, match=r"p.jsonl:1: field 'extra.k\\udc00' holds a lone surrogate"):
        files.read_jsonl(p)
    p.write_text(json.dumps({**good, "text": good["text"] + " \ud83d\ude00"}) + "\n")  # a surrogate *pair* is an emoji
    assert files.read_jsonl(p)[0]["text"].endswith("\U0001f600")


def test_lone_surrogate_in_a_circuit_name_is_named_with_its_line(tmp_path):
    from advgen.circuits.format import Circuit

    p = tmp_path / "c.json"
    p.write_text('{"n_layers": 2, "n_heads": 4,\n "name": "ioi\\ud800",\n "heads": []}')
    with pytest.raises(AdvgenError, match=r"c.json:2: field 'name' holds a lone surrogate"):
        Circuit.load(p)


# ---- locks that can be judged stale ------------------------------------------------------------------


@pytest.fixture()
def sleeper():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


def _lock(d: Path, **kw) -> None:
    from advgen.core import locks

    d.mkdir(exist_ok=True)
    (d / rundir.LOCK).write_text(json.dumps({**locks.holder("run", "x"), **kw}))


def test_lock_records_host_pid_start_time_and_boot(tmp_path):
    import socket

    from advgen.core import locks

    d = tmp_path / "r"
    with rundir.writing(d, "run", "i"):
        lk = json.loads((d / rundir.LOCK).read_text())
        assert (lk["pid"], lk["host"], lk["start"]) == (os.getpid(), socket.gethostname(), locks.start_time(os.getpid()))
        assert isinstance(lk["start"], int) and lk["boot"] == locks.boot_id() and locks.judge(d).live


def test_live_lock_refuses_writers_and_unlock(capsys, tmp_path, sleeper):
    from advgen.core import locks

    _lock(tmp_path / "r", pid=sleeper, start=locks.start_time(sleeper))
    with pytest.raises(AdvgenError, match=f"another advgen process \\(process {sleeper} is running"):
        rundir.check_out(tmp_path / "r", "run", "x", overwrite=True)
    with pytest.raises(AdvgenError, match="is still being written"):
        rundir.check_complete(tmp_path / "r")
    rc, err = _cli(capsys, "unlock", str(tmp_path / "r"))
    assert rc == 2 and f"process {sleeper} is running and holds the lock" in err


@pytest.mark.parametrize(
    "fields, why",
    [
        ({"pid": 2**30}, "process 1073741824 is gone"),
        ({"start": -5}, "now belongs to another process"),  # same pid, other start time: the pid was reused
        ({"boot": "00000000-0000-0000-0000-000000000000"}, "before this machine last booted"),
        ({"host": "elsewhere.example"}, "on host 'elsewhere.example'"),
    ],
)
def test_stale_lock_is_reported_and_taken_over(tmp_path, sleeper, fields, why):
    from advgen.core import locks

    d = tmp_path / "r"
    _lock(d, **{"pid": sleeper, "start": locks.start_time(sleeper), **fields})
    assert not locks.judge(d).live and why in locks.judge(d).why
    with pytest.raises(AdvgenError, match=f"left incomplete by an interrupted writer \\(.*{why}"):
        rundir.check_complete(d)
    rundir.check_out(d, "run", "x")  # the same run takes it over
    (d / "sub").mkdir()
    (d / "sub" / ".results.jsonl.ab12.tmp").write_text("half")  # what a killed writer leaves
    with pytest.raises(AdvgenError, match="pass --overwrite"):
        rundir.check_out(d, "run", "other")
    with rundir.writing(d, "run", "x"):  # the same run takes it over and removes the dead writer's temporary files
        assert not list(d.rglob("*.tmp"))
        files.atomic_write_text(d / "results.jsonl", "{}\n")
    _lock(d, **{"pid": sleeper, "start": locks.start_time(sleeper), **fields})
    with rundir.writing(d, "run", "other", overwrite=True):  # --overwrite clears it for another run
        files.atomic_write_text(d / "results.jsonl", "{}\n")
    rundir.check_complete(d)


def test_unlock_clears_an_old_lock_and_keeps_the_directory_incomplete(capsys, tmp_path, sleeper):
    d = tmp_path / "r"
    d.mkdir()
    (d / "results.jsonl").write_text("{}\n")
    (d / rundir.LOCK).write_text(json.dumps({"pid": sleeper, "kind": "run", "identity": "x"}))  # pid only: cannot judge
    with pytest.raises(AdvgenError, match="another advgen process"):
        rundir.check_out(d, "run", "y", overwrite=True)
    rc = main(["unlock", str(d)])
    assert rc == 0 and "cleared the lock" in capsys.readouterr().out
    with pytest.raises(AdvgenError, match="left incomplete by an interrupted writer .*advgen unlock"):
        load_run(d)
    rundir.check_out(d, "run", "y", overwrite=True)
    rc, err = _cli(capsys, "unlock", str(tmp_path))
    assert rc == 2 and "no advgen lock" in err


# ---- resume keyed by content ------------------------------------------------------------------------


def test_attack_resume_after_the_weights_change_recomputes(tiny_model, tiny_model_dir, tmp_path):
    import torch

    from advgen.attacks.attack_setup import AttackConfig
    from advgen.attacks.search import Interrupted, run_attack
    from advgen.circuits.format import make_circuit
    from advgen.core.types import Role
    from advgen.model.loading import load_model

    circuit = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h3"]}, 2, 4)
    cfg = AttackConfig(budget=40, n_clean=4, seed=5, batch_size=64)
    with pytest.raises(Interrupted):
        run_attack(tiny_model, circuit, cfg, tmp_path / "a", stop_after_units=3)
    other = load_model(str(tiny_model_dir))  # same name and tokenizer, other weights
    with torch.no_grad():
        for p in other.hf_model.parameters():
            p.mul_(1.5)
    resumed = run_attack(other, circuit, cfg, tmp_path / "a", resume=True)
    fresh = run_attack(other, circuit, cfg, tmp_path / "b")
    old = run_attack(tiny_model, circuit, cfg, tmp_path / "c")
    assert resumed.rows == fresh.rows != old.rows


def _scan_pack(path: Path, text: str) -> None:
    path.write_text(f"templates:\n  - id: a\n    text: '{text}'\n")


def test_scan_resume_after_the_templates_change_recomputes(tiny_model, tmp_path):
    from advgen.model.backends import LocalBackend
    from advgen.outputs.scan import Interrupted, ScanConfig, run_scan

    pack = tmp_path / "t.yaml"
    _scan_pack(pack, "Then, {S1} and {IO} went to the {PLACE}. {S2} gave a {OBJECT} to")
    cfg = ScanConfig(limit=96, unit=32, batch_size=16, templates=str(pack))
    with pytest.raises(Interrupted):
        run_scan(LocalBackend(tiny_model), cfg, tmp_path / "cut", stop_after_units=2)
    _scan_pack(pack, "Afterwards, {S1} and {IO} went to the {PLACE}. {S2} handed a {OBJECT} to")  # same id, new text
    res = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "cut", resume=True)
    assert (res.reused_units, res.computed_units) == (0, 3)
    fresh = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "fresh")
    assert res.summary == fresh.summary
    rows = [json.loads(x) for x in (tmp_path / "cut" / "parts" / "part-00000.jsonl").read_text().splitlines()]
    assert all(r["text"].startswith("Afterwards") for r in rows)


def test_scan_part_edited_since_is_recomputed_not_trusted(tiny_model, tmp_path):
    from advgen.model.backends import LocalBackend
    from advgen.outputs.scan import ScanConfig, run_scan

    cfg = ScanConfig(limit=64, unit=32, batch_size=16)
    full = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "s")
    part = tmp_path / "s" / "parts" / "part-00001.jsonl"
    rows = [json.loads(x) for x in part.read_text().splitlines()]
    part.write_text("".join(files.dumps({**r, "logit_diff": -abs(r["logit_diff"]) - 1}) + "\n" for r in rows))  # all fail
    res = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "s", resume=True)
    assert (res.reused_units, res.computed_units) == (1, 1) and res.summary == full.summary
    (tmp_path / "s" / "parts" / "part-00000.jsonl").write_text("")  # truncated
    res = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "s", resume=True)
    assert (res.reused_units, res.computed_units) == (1, 1) and res.summary == full.summary


# ---- readers that trust types: the report's documents ------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "circuits" / "reference"


def _report(capsys, d: Path) -> tuple[int, str]:
    rc, err = _cli(capsys, "report", str(d), "--out", str(d.parent / "r.html"), "--no-attention")
    assert "Traceback" not in err and (rc == 0) == (d.parent / "r.html").exists()
    return rc, err


@pytest.mark.parametrize(
    "name, edit, msg",
    [
        ("summary.json", lambda d: {**d, "modes": []}, "summary.json: field 'modes' must be object or null, got array"),
        (
            "summary.json",
            lambda d: {**d, "modes": {"m": {"seen": {"mean": "big", "low": 0, "high": 1}}}},
            "field 'modes.m.seen.mean' must be number or null, got string",
        ),
        (
            "summary.json",
            lambda d: {**d, "yield": {"guided_per_1000": [1]}},
            "field 'yield.guided_per_1000' must be number or null",
        ),
        ("manifest.json", lambda d: {**d, "versions": "1.0"}, "manifest.json: field 'versions' must be object, got string"),
        ("modes.json", lambda d: {"modes": {"m": {"prediction": 3}}}, "modes.json: field 'modes.m.prediction' must be object"),
    ],
)
def test_report_names_a_run_document_of_the_wrong_type(capsys, run_dir, tmp_path, name, edit, msg):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(run_dir, d, ignore=shutil.ignore_patterns(rundir.MARKER))
    doc = json.loads((d / name).read_text()) if (d / name).exists() else {}
    (d / name).write_text(json.dumps(edit(doc)))
    rc, err = _report(capsys, d)
    assert rc == 2 and msg in err


@pytest.mark.parametrize(
    "name, edit, msg",
    [
        ("discovery.json", lambda d: {**d, "roles_found": "name_mover"}, "field 'roles_found' must be array, got string"),
        ("discovery.json", lambda d: {**d, "roles_missing": [1]}, "field 'roles_missing[0]' must be string, got number"),
        (
            "claims.json",
            lambda d: {**d, "table": {k: {**v, "ratio_to_model": {"mean": "0.9"}} for k, v in d["table"].items()}},
            "must be number or null, got string",
        ),
        (
            "claims.json",
            lambda d: {**d, "absolute": {**d.get("absolute", {}), "ladder": {"a": 1}}},
            "field 'absolute.ladder' must be array",
        ),
        ("claims.json", lambda d: {**d, "minimality": ["x"]}, "field 'minimality' must be object, got array"),
    ],
)
def test_report_names_a_discovery_or_claims_document_of_the_wrong_type(capsys, tmp_path, name, edit, msg):
    d = tmp_path / "c"
    d.mkdir()
    src = DOCS / name if name == "discovery.json" else DOCS / "claims" / name
    (d / name).write_text(json.dumps(edit(json.loads(src.read_text()))))
    rc, err = _report(capsys, d)
    assert rc == 2 and f"{name}: " in err and msg in err


def test_report_reads_null_where_nan_was(capsys, tmp_path):
    """advgen writes NaN as null: every number the report reads may be null."""
    d = tmp_path / "c"
    d.mkdir()
    doc = json.loads((DOCS / "claims" / "claims.json").read_text())
    doc["table"] = {k: {**v, "ratio_to_model": {"mean": None}, "sign_flip_rate": None} for k, v in doc["table"].items()}
    if isinstance(doc.get("absolute"), dict):
        doc["absolute"] = {**doc["absolute"], "times_smaller": None, "ladder_equivalent_params": None}
    (d / "claims.json").write_text(json.dumps(doc))
    assert _report(capsys, d)[0] == 0


# ---- export: content, not names; a lock; a re-check before the rename --------------------------------


def test_export_compares_content_not_names(run_dir, tmp_path):
    ex = export(run_dir, "jsonl", tmp_path / "ex")
    export(run_dir, "jsonl", ex)  # unchanged: replaced freely
    [data] = (ex / "data").glob("*.jsonl")
    data.write_text(data.read_text() + '{"hand": "edited"}\n')  # same names, other content
    with pytest.raises(AdvgenError, match="pass --overwrite"):
        export(run_dir, "jsonl", ex)
    assert "hand" in data.read_text()
    export(run_dir, "jsonl", ex, overwrite=True)
    assert "hand" not in data.read_text()


def test_export_takes_a_lock(run_dir, tmp_path, sleeper):
    from advgen.core import locks

    lock = tmp_path / ".ex.advgen-export.lock"
    lock.write_text(json.dumps({**locks.holder("export", ""), "pid": sleeper, "start": locks.start_time(sleeper)}))
    with pytest.raises(AdvgenError, match=f"--out {tmp_path / 'ex'} is being written by another advgen process"):
        export(run_dir, "jsonl", tmp_path / "ex")
    lock.write_text(json.dumps({**locks.holder("export", ""), "pid": 2**30}))  # stale: taken over
    export(run_dir, "jsonl", tmp_path / "ex")
    assert not lock.exists() and (tmp_path / "ex" / "README.md").exists()


def test_export_rechecks_out_before_renaming(run_dir, tmp_path, monkeypatch):
    from advgen.outputs import cards

    real = cards.dataset_card

    def card_and_a_file_appears(*a, **k):
        (tmp_path / "ex").mkdir(exist_ok=True)
        (tmp_path / "ex" / "mine.txt").write_text("written by someone else while the export ran")
        return real(*a, **k)

    monkeypatch.setattr(cards, "dataset_card", card_and_a_file_appears)
    with pytest.raises(AdvgenError, match="is not an unmodified advgen export"):
        export(run_dir, "jsonl", tmp_path / "ex")
    assert (tmp_path / "ex" / "mine.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ex"]


def test_tokenizer_with_ids_beyond_the_embedding_is_refused_at_load(capsys, tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from advgen.model.loading import ModelLoadError, load_model

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    tok = AutoTokenizer.from_pretrained(str(d))
    tok.add_tokens(["<extra-a>", "<extra-b>"])  # ids 50257, 50258: the embedding has 50257 rows
    tok.save_pretrained(str(d))
    with pytest.raises(ModelLoadError, match=r"token id 50,258 but the embedding has only 50,257 rows"):
        load_model(str(d))
    rc, err = _cli(capsys, "run", "--model", str(d), "--n", "2", "--out", str(tmp_path / "o"), "--no-progress")
    assert rc == 2 and "50,258" in err and not (tmp_path / "o").exists()
