"""Every export format round-trips through its own library and carries a dataset card.

The run directory is a real `advgen.outputs.pipeline.run` on the tiny random model plus attack-shaped
rows (`tests/rundirs.py`, fields per the run-directory contract), so the splits by mode are exercised
without running the attack engine.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from rundirs import make_attack_run
from transformers import AutoTokenizer

from advgen.core.types import AdvgenError
from advgen.outputs import pipeline
from advgen.outputs.exporters import FORMATS, export
from advgen.outputs.rundata import columns, json_columns, load_run, source_row, splits

N_CLEAN = 24


@pytest.fixture(scope="module")
def run_dirs(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("runs")
    clean = pipeline.run(tiny_model, N_CLEAN, seed=3, out=base / "clean").out
    return clean, make_attack_run(clean, base / "attack", tiny_model.tokenizer)


def _same(a: object, b: object) -> bool:
    """Equality that treats NaN == NaN and int 1 == float 1.0 (JSON and Arrow agree on values, not types)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    return a == b


def _assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=False):
        g = {k: v for k, v in g.items() if not (v is None and k not in w)}
        assert _same(g, w), (g, w)


def _card(out: Path, fmt: str) -> dict:
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["advgen_export"]["format"] == fmt
    assert front["advgen_export"]["seed"] == 3
    for heading in ("## How it was made", "## Fields", "## Intended use and limits", "## Splits"):
        assert heading in text
    return front


def test_splits_by_mode(run_dirs):
    parts = splits(load_run(run_dirs[1]).rows)
    assert list(parts) == ["clean", "control", "distractor_sentence", "duplicate_io"]
    assert len(parts["clean"]) == N_CLEAN
    assert all(r["mode"] == "duplicate_io" and r["family"] == "attack" for r in parts["duplicate_io"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_file_formats_round_trip(run_dirs, tmp_path, fmt):
    from datasets import load_dataset

    src = load_run(run_dirs[1])
    out = export(run_dirs[1], fmt, tmp_path / fmt)
    front = _card(out, fmt)
    parts = splits(src.rows)
    jcols = json_columns(src.rows)
    for name, want in parts.items():
        path = out / "data" / f"{name}.{fmt}"
        if fmt == "jsonl":
            got = [json.loads(line) for line in path.read_text().splitlines()]
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            got = [source_row(r, jcols) for r in pq.read_table(path).to_pylist()]
        else:
            with path.open(newline="") as f:
                got = [source_row(_typed(r), jcols) for r in csv.DictReader(f)]
        _assert_rows_equal(got, want)
    # the card's `configs` + features make the directory loadable by HF datasets as it is
    assert [c["split"] for c in front["configs"][0]["data_files"]] == list(parts)
    ds = load_dataset(str(out))
    assert {k: len(v) for k, v in ds.items()} == {k: len(v) for k, v in parts.items()}
    assert ds["clean"][0]["text"] == parts["clean"][0]["text"]
    if fmt == "jsonl":  # nested fields, whose keys differ between modes, come back as the objects they were
        for name, want in parts.items():
            got = ds[name][len(want) - 1]
            assert got["positions"] == want[-1]["positions"] and got["params"] == want[-1]["params"], name


def _typed(r: dict) -> dict:
    """CSV strings back to Python values (the reader's job; CSV has no types)."""
    out = {}
    for k, v in r.items():
        if v == "":
            out[k] = None
        elif v in ("True", "False"):
            out[k] = v == "True"
        else:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v) if k not in ("text", "io", "s", "template_id", "pair_id", "order", "family", "mode") else v
                except ValueError:
                    out[k] = v
    return out


def test_hf_round_trip(run_dirs, tmp_path):
    from datasets import load_from_disk

    src = load_run(run_dirs[1])
    out = export(run_dirs[1], "hf", tmp_path / "hf")
    _card(out, "hf")
    dd = load_from_disk(str(out / "hf"))
    parts = splits(src.rows)
    assert list(dd) == list(parts)
    jcols = json_columns(src.rows)
    assert dd["clean"].column_names == columns(src.rows)
    for name, want in parts.items():
        _assert_rows_equal([source_row(r, jcols) for r in dd[name]], want)


def test_exports_are_deterministic(run_dirs, tmp_path):
    for fmt in ("parquet", "hf"):
        a, b = export(run_dirs[0], fmt, tmp_path / f"{fmt}a"), export(run_dirs[0], fmt, tmp_path / f"{fmt}b")
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_auto_circuit_round_trip(run_dirs, tmp_path, tiny_model):
    tok = tiny_model.tokenizer
    src = load_run(run_dirs[1])
    out = export(run_dirs[1], "auto-circuit", tmp_path / "ac")
    _card(out, "auto-circuit")
    index = json.loads((out / "index.json").read_text())
    parts = splits(src.rows)
    assert list(index) == list(parts)
    for name, want in parts.items():
        doc = json.loads((out / f"{name}.json").read_text())
        prompts = doc["prompts"]
        assert len(prompts) + len(index[name]["skipped"]) == len(want)
        assert len(prompts) >= 0.9 * len(want)
        by_text = {r["text"]: r for r in want}
        for p in prompts:
            assert set(p) >= {"clean", "corrupt", "answers", "wrong_answers"}
            r = by_text[p["clean"]]
            assert p["answers"] == [" " + r["io"]] and p["wrong_answers"] == [" " + r["s"]]
            clean_ids = tok(p["clean"], add_special_tokens=False)["input_ids"]
            corrupt_ids = tok(p["corrupt"], add_special_tokens=False)["input_ids"]
            assert len(clean_ids) == len(corrupt_ids)
            diff = [i for i, (a, b) in enumerate(zip(clean_ids, corrupt_ids, strict=False)) if a != b]
            assert diff == [r["positions"]["S2"] - 1], "only S2 differs (p_ABC twin; indices without BOS)"
            for a in p["answers"] + p["wrong_answers"]:
                assert len(tok(a, add_special_tokens=False)["input_ids"]) == 1
        for g in index[name]["groups"]:
            gdoc = json.loads((out / g["file"]).read_text())
            w = gdoc["word_idxs"]
            assert len(gdoc["seq_labels"]) == len(tok(gdoc["prompts"][0]["clean"], add_special_tokens=False)["input_ids"])
            for p in gdoc["prompts"]:
                ids = tok(p["clean"], add_special_tokens=False)["input_ids"]
                assert tok.decode([ids[w["S2"]]]).strip() == by_text[p["clean"]]["s"]
                assert tok.decode([ids[w["IO"]]]).strip() == by_text[p["clean"]]["io"]
                assert w["end"] == len(ids) - 1


def test_auto_circuit_real_loader(run_dirs, tmp_path, gpt2_tokenizer_dir):
    """auto-circuit's own loader on the export (the schema test above runs without it).

    auto-circuit pins TransformerLens < 3, so it lives in its own venv (`make test` builds
    .venv-autocircuit); the loader runs there on the files this venv exported.
    """
    out = export(run_dirs[1], "auto-circuit", tmp_path / "ac")
    python = os.environ.get("ADVGEN_AUTO_CIRCUIT_PYTHON")
    if not python:
        pytest.skip("ADVGEN_AUTO_CIRCUIT_PYTHON is not set: run through `make test`, which builds auto-circuit's venv")
    probe = Path(__file__).with_name("auto_circuit_probe.py")
    res = subprocess.run(
        [python, str(probe), str(out / "clean.json"), str(gpt2_tokenizer_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    batch = json.loads(res.stdout.strip().splitlines()[-1])
    assert batch["clean"] == batch["corrupt"] and batch["clean"][0] == 4
    doc = json.loads((out / "clean.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(gpt2_tokenizer_dir))
    want = [tok(p["answers"][0], add_special_tokens=False)["input_ids"] for p in doc["prompts"][:4]]
    wrong = [tok(p["wrong_answers"][0], add_special_tokens=False)["input_ids"] for p in doc["prompts"][:4]]
    assert batch["answers"] == want and batch["wrong_answers"] == wrong


def test_lm_eval_task_loads_with_lm_eval(run_dirs, tmp_path):
    src = load_run(run_dirs[1])
    out = export(run_dirs[1], "lm-eval", tmp_path / "lm")
    _card(out, "lm-eval")
    parts = splits(src.rows)
    group = yaml.safe_load((out / "advgen_ioi.yaml").read_text())
    assert group["task"] == [f"advgen_ioi_{k}" for k in parts]
    pytest.importorskip("lm_eval", reason="lm-eval not installed (it is in the dev extra): the schema checks above still ran")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(out), include_defaults=False)
    loaded = tm.load(["advgen_ioi"])
    assert set(loaded["tasks"]) == {f"advgen_ioi_{k}" for k in parts}
    jcols = json_columns(src.rows)
    for name, want in parts.items():
        task = loaded["tasks"][f"advgen_ioi_{name}"]
        docs = list(task.test_docs())
        _assert_rows_equal([source_row({k: v for k, v in d.items() if k != "label"}, jcols) for d in docs], want)
        d = docs[0]
        assert task.doc_to_text(d) == want[0]["text"]
        assert task.doc_to_choice(d) == [want[0]["io"], want[0]["s"]]
        assert task.doc_to_target(d) == 0
        reqs = task.construct_requests(d, task.doc_to_text(d))
        assert [r.args[1] for r in reqs] == [" " + want[0]["io"], " " + want[0]["s"]]
        # lm-eval's own scoring on advgen's log-probabilities: acc is LD > 0 (log p(IO) - log p(S) = LD);
        # clean rows only: their metrics come from the model, the attack-shaped rows' LD is synthetic
        for doc, row in zip(docs, want, strict=True) if name == "clean" else ():
            lls = [(math.log(row["io_prob"]), False), (math.log(row["s_prob"]), False)]
            assert task.process_results(doc, lls)["acc"] == float(row["logit_diff"] > 0), row["text"]


def test_plain_run_exports_every_format(run_dirs, tmp_path):
    for fmt in FORMATS:
        out = export(run_dirs[0], fmt, tmp_path / fmt)
        front = _card(out, fmt)
        assert front["advgen_export"]["splits"] == {"clean": N_CLEAN}


def test_refuses_to_overwrite_foreign_directory(run_dirs, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(AdvgenError, match="not an advgen export"):
        export(run_dirs[0], "jsonl", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = export(run_dirs[0], "jsonl", tmp_path / "again")
    export(run_dirs[0], "csv", out)  # a previous export is replaced whole
    assert not (out / "data" / "clean.jsonl").exists() and (out / "data" / "clean.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp dirs left behind"


def test_unknown_format_and_missing_run(tmp_path):
    with pytest.raises(AdvgenError, match="unknown export format"):
        export(tmp_path, "xml", tmp_path / "o")
    with pytest.raises(AdvgenError, match="no results.jsonl"):
        export(tmp_path, "jsonl", tmp_path / "o")


@pytest.mark.slow
def test_lm_eval_scores_agree_with_advgen(run_dirs, tmp_path, tiny_model_dir):
    """lm-eval's acc on the exported task = advgen's LD > 0, prompt by prompt (same model, BOS on)."""
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = export(run_dirs[0], "lm-eval", tmp_path / "lm")
    res = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model_dir},add_bos_token=True",
        tasks=["advgen_ioi_clean"],
        task_manager=TaskManager(include_path=str(out), include_defaults=False),
        device="cpu",
        batch_size=8,
        log_samples=True,
    )
    samples = sorted(res["samples"]["advgen_ioi_clean"], key=lambda s: s["doc_id"])
    rows = load_run(run_dirs[0]).rows
    assert [s["acc"] for s in samples] == [float(r["logit_diff"] > 0) for r in rows]
