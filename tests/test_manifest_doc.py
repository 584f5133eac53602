"""manifest.json's typed record (advgen.core.manifest_doc): round trip, named errors, older shapes, a real run's."""

from __future__ import annotations

import json

import pytest

from advgen.core import records
from advgen.core.files import dumps
from advgen.core.manifest_doc import MANIFEST_SCHEMA, Manifest, Runtime, TaskSetting, read_manifest
from advgen.core.types import AdvgenError
from advgen.tasks.registry import task_of_manifest

DOC = {
    "schema_version": MANIFEST_SCHEMA,
    "model": "reference",
    "model_source": "/models/reference",
    "runtime": {"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "hub_kernels": "off"},
    "tokenizer_hash": "df75313dba82973c",
    "seed": 0,
    "settings": {"n": 60, "task": {"name": "induction", "source": "builtin:induction", "templates": 2, "roles": ["a"]}},
    "command": "advgen run --model reference --n 60",
    "versions": {"python": "3.12.0", "advgen": "0.1.0"},
}


def test_round_trip_keeps_the_bytes():
    rec = Manifest.from_dict(DOC, "x/manifest.json")
    assert rec.runtime == Runtime("cpu", "float32", "eager", "off") and rec.seed == 0
    assert dumps(rec.to_dict()) == dumps(DOC)
    assert rec.task_field == TaskSetting("induction", "builtin:induction", templates=2, roles=("a",))
    assert rec.task_name == "induction"


def test_a_field_of_the_wrong_type_is_named_by_file_and_path():
    with pytest.raises(AdvgenError, match=r"x/manifest.json: field 'runtime.dtype' must be string, got number"):
        Manifest.from_dict({**DOC, "runtime": {**DOC["runtime"], "dtype": 16}}, "x/manifest.json")
    with pytest.raises(AdvgenError, match=r"x/manifest.json: field 'settings.task.name' must be string"):
        read_manifest({**DOC, "settings": {"task": {"name": 3}}}, "x/manifest.json")
    with pytest.raises(AdvgenError, match=r"x/manifest.json: field 'versions.python' must be string"):
        read_manifest({**DOC, "versions": {"python": 3}}, "x/manifest.json")
    with pytest.raises(AdvgenError, match=r"x/manifest.json: field 'seed' is missing"):
        Manifest.from_dict({k: v for k, v in DOC.items() if k != "seed"}, "x/manifest.json")


def test_an_unknown_schema_version_is_refused_by_name(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({**DOC, "schema_version": MANIFEST_SCHEMA + 1}))
    want = f"manifest.json: manifest schema_version {MANIFEST_SCHEMA + 1}, this advgen reads versions 1 to {MANIFEST_SCHEMA}"
    with pytest.raises(AdvgenError, match=want):
        read_manifest(p)
    with pytest.raises(AdvgenError, match="manifest schema_version"):
        Manifest.from_dict({**DOC, "schema_version": MANIFEST_SCHEMA + 1})


def test_a_schema_1_document_is_read_leniently(tmp_path):
    old = {"model": "gpt2", "seed": None, "command": "advgen run --model gpt2", "settings": {"task": "induction"}}
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps(old))
    rec = read_manifest(p)
    assert rec.schema_version is None and rec.runtime is None and rec.seed is None and rec.versions is None
    assert rec.task_field == "induction" and rec.task_ref == TaskSetting("induction", None) and rec.task_name == "induction"
    with pytest.raises(AdvgenError, match=r"manifest schema_version 1, expected 2 \(read it with read_manifest\)"):
        Manifest.from_dict(old, p)
    assert read_manifest(tmp_path / "absent.json") == Manifest()


def test_a_scan_task_name_and_a_task_object_resolve_alike():
    scan = read_manifest({"settings": {"task": "induction", "task_source": "builtin:induction"}})
    run = read_manifest({"settings": {"task": {"name": "induction", "source": "builtin:induction"}}})
    assert task_of_manifest(scan, "s").name == task_of_manifest(run, "r").name == "induction"
    assert task_of_manifest(read_manifest({"settings": {}}), "ioi").name == "ioi"


def test_the_writer_builds_through_the_record(tiny_model):
    man = records.manifest(tiny_model, "hash", 0, {"n": 3}, "advgen run")
    assert Manifest.from_dict(man).to_dict() == man and list(man)[0] == "schema_version"
    assert records.manifest("gpt2", "h", 1, {})["model_source"] == ""


def test_a_real_runs_manifest_is_read_back(tmp_path):
    from advgen.jobs.prompts import run

    out = tmp_path / "run"
    run("reference", n=8, seed=3, out=out)
    text = (out / "manifest.json").read_text()
    rec = Manifest.from_dict(json.loads(text), out / "manifest.json")
    assert rec.seed == 3 and rec.model == "reference" and rec.runtime is not None and rec.task_field is None
    assert dumps(rec.to_dict()) + "\n" == text and read_manifest(out / "manifest.json") == rec
