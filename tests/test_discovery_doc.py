"""discovery.json's typed records (advgen.circuits.discovery_doc): round trip, named errors, older documents, the readers."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from handbuilt import load_handbuilt

from advgen.circuits.discovery_doc import DiscoveryDoc, TaskDiscoveryDoc, discovery_of, read_discovery
from advgen.circuits.format import Circuit, CircuitHead
from advgen.core.files import dumps
from advgen.core.types import AdvgenError, Head, Role
from advgen.outputs import verdict
from advgen.outputs.eap_ig import circuit_source
from advgen.outputs.report import build_report

OLD_IOI = Path(__file__).resolve().parents[1] / "docs" / "circuits" / "reference" / "discovery.json"
"""A committed IOI discovery.json from before runtime, mlp_nodes and faithfulness_curves were written."""

CURVE = {
    "sizes": [{"size": 0.5, "n_heads": 2, "faithfulness": 0.7}, {"size": 1.0, "n_heads": 4, "faithfulness": 1.0}],
    "points": [{"fraction": 0.0, "n_heads": 0, "faithfulness": 0.0, "mean_ld": 0.1}],
    "top_heads": ["a0.h1", "a1.h0"],
    "cpr": 0.9,
    "cmd": 0.2,
    "mean_ld_model": 2.0,
    "mean_ld_empty": 0.1,
    "forwards": 12,
}
CURVES = {
    "ablation": "abc_mean",
    "rank_score": "act_ALL",
    "nodes": "attention heads (MLPs always kept)",
    "n_nodes": 4,
    "n_prompts": 4,
    "mib_sizes": [0.5, 1.0],
    "signed": CURVE,
    "absolute": {**CURVE, "cmd": 0.25},
    "circuit_first": {
        **CURVE,
        "sizes": [*CURVE["sizes"], {"size": 0.25, "n_heads": 1, "faithfulness": None}],
        "circuit_heads": ["a1.h0"],
    },
    "cpr": 0.9,
    "cmd": 0.25,
    "forwards": 36,
}
MATRICES = {
    "act_ALL": [[-0.1, 0.0], [-0.8, 0.2]],
    "pp_logits": [[0.05, 0.0], [-0.7, 0.0]],
    "pp_queries": [[-0.3, None], [None, None]],
}
IOI = {
    "model": "reference",
    "model_source": "/m",
    "runtime": {"device": "cpu", "dtype": "float32"},
    "settings": {"n": 4, "seed": 3, "nm_path": "mlp"},
    "clean_mean_ld": 2.0,
    "abc_mean_ld": 0.1,
    "roles_found": ["name_mover"],
    "roles_missing": ["induction"],
    "heads_direct_share_of_ld": 0.4,
    "note_direct_share": "note",
    "heads": {"a1.h0": {"role": "name_mover", "why": "path->MLPs->logits -0.70"}},
    "mlp_nodes": {"rule": "r", "pp_mlp_logits": [0.0, -0.2], "proposed": {"m1": "why"}},
    "attribution_vs_activation_spearman": {"ALL": 0.9, "END": None},
    "forward_equivalents": {"cache_clean_forward": 4},
    "faithfulness_curves": CURVES,
    "command": "advgen discover --n 4",
    "versions": {"advgen": "0"},
    "matrices": MATRICES,
}
TASK = {
    "model": "m",
    "model_source": "/m",
    "runtime": {"device": "cpu"},
    "task": {"name": "induction", "metric": "logit_diff", "roles": ["previous_token", "induction"]},
    "settings": {"n": 8, "seed": 0},
    "n": 8,
    "clean_mean_ld": 2.0,
    "twin_mean_ld": -1.0,
    "thresholds": {"effect": 0.2, "chance_k": 3.0},
    "rule": {"effect": "e", "metric": "logit_diff"},
    "roles_found": ["induction"],
    "roles_missing": ["previous_token"],
    "heads": {"a1.h0": {"role": "induction", "positions": ["END"], "patching_effect": 0.95, "attn_induction": 0.9}},
    "unassigned": [{"head": "a0.h1", "effect": 0.3, "signatures": {"induction": 0.01}}],
    "mlp_nodes": [],
    "mlp_effects": [0.0, 0.0],
    "mlp_note": "",
    "forward_equivalents": {"cache_clean": 8},
    "reference": {
        "reference": "truth",
        "precision": 1.0,
        "recall": None,
        "found_not_in_reference": [],
        "reference_not_found": ["a0.h0"],
    },
    "command": "advgen discover --task induction",
    "versions": {"advgen": "0"},
    "matrices": {"effect": [[0.1, 0.3], [0.95, 0.0]]},
}


@pytest.mark.parametrize("doc, cls", [(IOI, DiscoveryDoc), (TASK, TaskDiscoveryDoc)], ids=["ioi", "task"])
def test_a_document_read_and_written_again_keeps_its_bytes(doc, cls):
    text = dumps(doc)
    rec = cls.from_dict(json.loads(text), "discovery.json")
    assert dumps(rec.to_dict()) == text and dumps(discovery_of(json.loads(text), "discovery.json").to_dict()) == text
    no_nan = json.loads(text.replace("null", "0"))  # NaN != NaN: compare records without it
    assert cls.from_dict(cls.from_dict(no_nan, "x").to_dict(), "x") == cls.from_dict(no_nan, "x")
    assert rec.seed == doc["settings"]["seed"] and type(discovery_of(doc, "d")) is cls


def test_the_fields_the_readers_use_are_typed():
    doc = DiscoveryDoc.from_dict(IOI, "discovery.json")
    fc = doc.faithfulness_curves
    assert fc is not None and list(fc.rankings()) == ["signed", "absolute", "circuit_first"]
    assert fc.circuit_first is not None and fc.circuit_first.circuit_heads == ("a1.h0",)
    got = fc.circuit_first.at(0.25)
    assert got is not None and got.faithfulness is not None and math.isnan(got.faithfulness), "null reads as NaN"
    assert doc.heads is not None and doc.heads["a1.h0"].role == "name_mover"
    m = doc.arrays(["act_ALL", "pp_queries", "absent"])
    assert set(m) == {"act_ALL", "pp_queries"} and m["act_ALL"].shape == (2, 2) and np.isnan(m["pp_queries"][0, 1])
    task = TaskDiscoveryDoc.from_dict(TASK, "discovery.json")
    assert task.heads is not None and task.heads["a1.h0"].scores == {"patching_effect": 0.95, "attn_induction": 0.9}
    assert task.reference is not None and task.reference.reference_not_found == ("a0.h0",)


@pytest.mark.parametrize(
    "doc, edit, field",
    [
        (IOI, lambda d: d.pop("runtime"), "'runtime' is missing"),
        (
            IOI,
            lambda d: d["faithfulness_curves"]["signed"]["sizes"][1].pop("n_heads"),
            r"'faithfulness_curves.signed.sizes\[1\].n_heads' is missing",
        ),
        (
            IOI,
            lambda d: d["faithfulness_curves"].update(cpr="0.9"),
            "'faithfulness_curves.cpr' must be number or null, got string",
        ),
        (IOI, lambda d: d["heads"]["a1.h0"].update(role=1), "'heads.a1.h0.role' must be string, got number"),
        (IOI, lambda d: d["roles_missing"].append(2), r"'roles_missing\[1\]' must be string, got number"),
        (IOI, lambda d: d["settings"].update(seed="3"), "'settings.seed' must be integer, got string"),
        (IOI, lambda d: d["matrices"]["act_ALL"][1].append(0.0), r"'matrices.act_ALL\[1\]' has 3 entries, row 0 has 2"),
        (
            IOI,
            lambda d: d["matrices"]["pp_logits"][0].__setitem__(1, "x"),
            r"'matrices.pp_logits\[0\]\[1\]' must be number or null",
        ),
        (TASK, lambda d: d.pop("mlp_note"), "'mlp_note' is missing"),
        (TASK, lambda d: d["heads"]["a1.h0"].pop("positions"), "'heads.a1.h0.positions' is missing"),
        (
            TASK,
            lambda d: d["heads"]["a1.h0"].update(attn_induction="high"),
            "'heads.a1.h0.attn_induction' must be number or null",
        ),
        (TASK, lambda d: d["unassigned"][0].update(effect=[1]), r"'unassigned\[0\].effect' must be number or null, got array"),
        (TASK, lambda d: d["reference"].update(recall="1"), "'reference.recall' must be number or null, got string"),
    ],
)
def test_a_missing_or_wrong_typed_field_names_the_file_and_the_field(doc, edit, field):
    d = copy.deepcopy(doc)
    edit(d)
    cls = TaskDiscoveryDoc if doc is TASK else DiscoveryDoc
    with pytest.raises(AdvgenError, match="runs/x/discovery.json: field " + field):
        cls.from_dict(d, "runs/x/discovery.json")


def test_the_reader_takes_older_and_partial_documents(tmp_path):
    with pytest.raises(AdvgenError, match="field 'runtime' is missing"):
        DiscoveryDoc.from_dict(json.loads(OLD_IOI.read_text()), OLD_IOI)
    old = read_discovery(OLD_IOI)
    assert isinstance(old, DiscoveryDoc) and old.runtime is None and old.mlp_nodes is None and old.faithfulness_curves is None
    assert old.seed == 0 and old.heads and old.roles_found and "act_ALL" in old.arrays(["act_ALL"])
    fc = {k: v for k, v in CURVES.items() if k != "circuit_first"}  # before the circuit-first curve (issue 29(c))
    first = discovery_of({"model": "m", "faithfulness_curves": fc}, "d")
    assert isinstance(first, DiscoveryDoc) and first.faithfulness_curves is not None
    assert list(first.faithfulness_curves.rankings()) == ["signed", "absolute"] and first.roles_found is None
    partial = {k: v for k, v in TASK.items() if k != "reference"} | {"rule": {"effect": "e"}, "heads": {"a0.h0": {"role": "r"}}}
    no_metric = discovery_of(partial, "d")  # before rule.metric; no shipped circuit to compare with; a head without positions
    assert isinstance(no_metric, TaskDiscoveryDoc) and no_metric.heads is not None and no_metric.heads["a0.h0"].positions is None
    with pytest.raises(AdvgenError, match="d: field 'roles_found' must be array, got string"):
        discovery_of({**IOI, "roles_found": "name_mover"}, "d")
    with pytest.raises(AdvgenError, match="d: the document must be object, got array"):
        discovery_of([], "d")
    assert read_discovery(tmp_path) is None


def test_the_report_and_the_export_read_the_record(tmp_path):
    d = tmp_path / "disc"
    d.mkdir()
    (d / "discovery.json").write_text(dumps(IOI))
    assert "Discovery kept <b>1 heads</b>; roles found: <b>name_mover</b>; missing: induction" in verdict.discovery_panel(d)
    html = build_report(d, tmp_path / "r.html", attention=False).read_text()
    assert "CPR (area under)</td><td>0.900" in html and "<td>0.5 (2 heads)</td>" in html and "<td>seed</td><td>3</td>" in html
    Circuit("c", "reference", (CircuitHead(Head(1, 0), Role.NAME_MOVER, ("END",)),), n_layers=2, n_heads=2).save(
        d / "circuit.json"
    )
    _, m = circuit_source(d)
    assert set(m) == {"act_ALL", "pp_logits", "pp_queries"} and m["pp_logits"][1, 0] == pytest.approx(-0.7)


@pytest.fixture(scope="module")
def handbuilt_induction(gpt2_tokenizer_dir, tmp_path_factory):
    return load_handbuilt(gpt2_tokenizer_dir, tmp_path_factory)


def test_a_real_task_discovery_is_read_back_strictly(handbuilt_induction, tmp_path):
    """The writer's bytes are the record's: a real discover run (with a shipped-circuit comparison) read back by the one
    reader."""
    from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task, write_task_discovery
    from advgen.tasks.registry import resolve_task

    truth = Circuit(
        "truth",
        "handbuilt",
        (CircuitHead(Head(0, 0), Role.PREVIOUS_TOKEN, ("A+1",)), CircuitHead(Head(1, 1), Role.INDUCTION, ("END",))),
        n_layers=2,
        n_heads=2,
        task="induction",
    )
    found = discover_task(handbuilt_induction, resolve_task("induction"), TaskDiscoverySettings(n=8, seed=0), reference=truth)
    write_task_discovery(found, tmp_path, "advgen discover --task induction")
    text = (tmp_path / "discovery.json").read_text()
    doc = read_discovery(tmp_path)
    assert isinstance(doc, TaskDiscoveryDoc) and dumps(doc.to_dict()) + "\n" == text
    assert dumps(TaskDiscoveryDoc.from_dict(json.loads(text), "discovery.json").to_dict()) + "\n" == text
    assert doc.reference is not None and doc.reference.reference_not_found == ("a1.h1",) and doc.seed == 0
    assert doc.heads is not None and set(doc.heads) == {"a0.h0", "a1.h0"} and doc.heads["a1.h0"].role == "induction"
    assert "Discovery kept <b>2 heads</b>" in verdict.discovery_panel(tmp_path)
