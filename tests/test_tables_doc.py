"""modes.json (IOI and generic task) and IOI's baseline.json as typed records (advgen/attacks/tables_doc.py):
what the writers write, the strict readers read back with the same bytes; a field missing or of the wrong type
names the file and the dotted path; older and partial documents still read, and the attack summary reads them
only through these records.

The IOI run is built from hand-made measured rows (no model) and written by the attack's own `write_run`.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from rundirs import hand_row
from test_task_attack import CFG, circuit_with, copy_task, record

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.catalogue import mode_named
from advgen.attacks.search import AttackRun
from advgen.attacks.signals import label_rows, signal_doc
from advgen.attacks.summary import RunYield
from advgen.attacks.summary_read import load_attack_summary, read_attack_summary
from advgen.attacks.tables import write_run
from advgen.attacks.tables_doc import (
    Baseline,
    CellTable,
    ModesDoc,
    ModeTable,
    TaskModesDoc,
    read_baseline,
    read_modes,
    read_task_modes,
)
from advgen.circuits.format import make_circuit
from advgen.circuits.identity import model_identity
from advgen.core import files
from advgen.core.types import AdvgenError, Interval, Role

N = 10


@pytest.fixture(scope="module")
def ioi_dir(tmp_path_factory) -> Path:
    """A written IOI attack run: half the attacks break, every control holds, 1 in 3 random perturbations breaks."""
    rows = []
    for i in range(N):
        p = f"p{i}"
        rows += [
            hand_row("clean", p, 2.0, "clean", None),
            hand_row("attack", p, -1.0 if i % 2 else 1.0, "sample", f"{p}:a"),
            hand_row("control", p, 1.5, "sample", f"{p}:a"),
            hand_row("baseline", p, -0.5 if i % 3 == 0 else 1.0, "baseline", f"{p}:r"),
        ]
    circuit = make_circuit("hand-made", "none", {Role.NAME_MOVER: ["a0.h1"]}, 2, 2)
    mode = mode_named("duplicated_io")
    screening = {
        "cell_verdicts": {},
        "not_funded": [],
        "n_pool": N,
        "n_sample": N,
        "n_search": 0,
        "controls_reused": 0,
        "searched_per_cell": {},
        "posterior_break_rate": {},
    }
    run = AttackRun(
        label_rows(rows, circuit, (mode,)),
        {"clean": N, "sample": 2 * N, "search": 0, "baseline": N},
        (mode,),
        {"duplicate_s": "no S-inhibition head"},
        {},
        {mode.name: signal_doc(mode, circuit)},
        screening,
    )
    out = tmp_path_factory.mktemp("tables") / "run"
    out.mkdir()
    write_run(out, run, AttackConfig(budget=5 * N, n_clean=N, seed=0), circuit, {"model": "hand-made", "seed": 0})
    return out


def _doc(d: Path, name: str) -> dict[str, Any]:
    return json.loads((d / name).read_text(encoding="utf-8"))


def test_the_written_ioi_documents_read_back_strictly_with_the_same_bytes(ioi_dir):
    text = (ioi_dir / "modes.json").read_text(encoding="utf-8")
    modes = ModesDoc.from_dict(json.loads(text), ioi_dir / "modes.json")
    assert files.dumps(modes.to_dict()) + "\n" == text  # every key, in order: the record is the whole file
    assert ModesDoc.from_dict(modes.to_dict(), "modes.json") == modes
    m = modes.mode("duplicated_io")
    assert m is not None and m.prediction is not None and m.random_sample is not None and m.all is not None
    assert m.prediction.expected_sign == -1 and isinstance(m.prediction.attack_minus_control, Interval) and m.prediction.n == N
    assert (m.random_sample.breaks, m.random_sample.attacks) == (N // 2, N) and m.all.control_shared_breaks == 0
    assert m.by_params and all(isinstance(t, ModeTable) for vals in m.by_params.values() for t in vals.values())
    assert modes.skipped_modes == {"duplicate_s": "no S-inhibition head"} and modes.mode("nothing") is None
    text = (ioi_dir / "baseline.json").read_text(encoding="utf-8")
    base = Baseline.from_dict(json.loads(text), ioi_dir / "baseline.json")
    assert files.dumps(base.to_dict()) + "\n" == text and Baseline.from_dict(base.to_dict(), "baseline.json") == base
    assert base.guided is not None and base.guided.breaks == N // 2 and base.baseline is not None and base.baseline.breaks == 4
    summary = _doc(ioi_dir, "summary.json")  # summary.json's copies of the tables are the same records
    got = load_attack_summary(ioi_dir).modes["duplicated_io"]
    assert got.random_sample == m.random_sample and got.sample_and_search == m.all and got.sample_breaks == (N // 2, N)
    assert summary["baseline"] == base.to_dict()


def _broken(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    *parents, last = path.split(".")
    at = d
    for k in parents:
        at = at[k]
    if value is KeyError:
        del at[last]
    else:
        at[last] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "where", "message"),
    [
        ("modes.duplicated_io.prediction.expected_sign", "negative", None, "must be integer, got string"),
        ("modes.duplicated_io.prediction.attack_minus_control.low", "x", None, "must be number or null, got string"),
        ("modes.duplicated_io.random_sample.attack.n", 1.5, None, "must be integer, got number"),
        ("modes.duplicated_io.all.breaks", None, None, "must be integer, got null"),
        ("modes.duplicated_io.screening.cells_not_funded", "c:0", None, "must be array, got string"),
        ("modes.duplicated_io.roles", [1], "modes.duplicated_io.roles[0]", "must be string, got number"),
        ("skipped_modes.duplicate_s", 3, None, "must be string, got number"),
        ("natural", [], None, "must be object, got array"),
    ],
)
def test_a_wrong_ioi_modes_field_is_named_by_file_and_path(ioi_dir, path, value, where, message):
    doc = _broken(_doc(ioi_dir, "modes.json"), path, value)
    for read in (ModesDoc.from_dict, read_modes):  # strict and lenient alike
        with pytest.raises(AdvgenError) as e:
            read(doc, "run/modes.json")
        assert str(e.value) == f"run/modes.json: field '{where or path}' {message}"


def test_by_params_tables_are_typed_too(ioi_dir):
    doc = _doc(ioi_dir, "modes.json")
    key, vals = next(iter(doc["modes"]["duplicated_io"]["by_params"].items()))
    val = next(iter(vals))
    bad = _broken(doc, f"modes.duplicated_io.by_params.{key}", {val: {**vals[val], "breaks": "2"}})
    with pytest.raises(AdvgenError, match=f"field 'modes.duplicated_io.by_params.{key}.{val}.breaks' must be integer"):
        read_modes(bad, "modes.json")


def test_strict_needs_every_field_lenient_reads_older_documents(ioi_dir):
    """Before the interval over clean prompts a prediction had no n_prompts; before issue 28 no shared breaks."""
    older = _broken(
        _broken(_doc(ioi_dir, "modes.json"), "modes.duplicated_io.prediction.n_prompts", KeyError),
        "modes.duplicated_io.all.control_shared_breaks",
        KeyError,
    )
    with pytest.raises(AdvgenError, match="modes.json: field 'modes.duplicated_io.prediction.n_prompts' is missing"):
        ModesDoc.from_dict(older, "modes.json")
    m = read_modes(older, "modes.json").mode("duplicated_io")
    assert m is not None and m.prediction is not None and m.prediction.n_prompts is None and m.all is not None
    assert m.all.control_shared_breaks is None and m.all.breaks == N // 2
    with pytest.raises(AdvgenError, match="modes.json: field 'natural.mean_logit_diff' is missing"):  # n > 0: statistics required
        ModesDoc.from_dict(_broken(_doc(ioi_dir, "modes.json"), "natural.mean_logit_diff", KeyError), "modes.json")


def test_an_older_baseline_json_gives_the_raw_yield_alone(ioi_dir):
    base = _doc(ioi_dir, "baseline.json")
    old = {k: v for k, v in base.items() if "attributable" not in k}
    old["guided"] = {k: v for k, v in base["guided"].items() if k in ("evaluations", "breaks", "breaks_per_1000")}
    with pytest.raises(AdvgenError, match="baseline.json: field 'attributable_per_1000' is missing"):
        Baseline.from_dict(old, "baseline.json")
    rec = read_baseline(old, "baseline.json")
    y = RunYield.of_baseline_doc(rec)
    assert y is not None and y.guided_per_1000 == base["guided"]["breaks_per_1000"] and y.attributable_per_1000 is None
    assert y.control_shared_breaks is None and y.ratio == base["ratio"]
    assert RunYield.of_baseline_doc(read_baseline({"ratio": None}, "baseline.json")) is None  # no guided side: no yield
    with pytest.raises(AdvgenError, match="baseline.json: field 'guided.breaks' must be integer, got string"):
        read_baseline(_broken(base, "guided.breaks", "5"), "baseline.json")
    summary = {k: v for k, v in _doc(ioi_dir, "summary.json").items() if k != "yield"}  # from before summary.json had it
    got = read_attack_summary(summary, ioi_dir / "summary.json", None, old)
    assert got.yield_ == y


def task_modes_doc() -> dict[str, Any]:
    """A generic task's modes.json of the current shape: one mode, one cell, a null cause and interval."""
    cell = {
        "n": 4,
        "breaks": 2,
        "attributable_breaks": 1,
        "raw_break_rate": 0.5,
        "attributable_break_rate": 0.25,
        "explained": 1,
        "explained_fraction": 0.5,
        "mean_ld_attack": -0.2,
        "mean_ld_control": 0.4,
        "control_break_rate": 0.25,
    }
    empty = {
        **cell,
        "n": 0,
        "breaks": 0,
        "attributable_breaks": 0,
        "raw_break_rate": None,
        "attributable_break_rate": None,
        "explained": 0,
        "explained_fraction": None,
        "mean_ld_attack": None,
        "mean_ld_control": None,
        "control_break_rate": None,
    }
    mode = {
        "heads": ["a1.h0"],
        "key": "copy_next",
        "attack": ["end", "foil"],
        "control": ["filler", "foil"],
        "expected_sign": -1,
        "doses": [1, 2],
        "compiled_from": "a1.h0 (copies)",
        "mechanism": "split",
        "edit": "insert",
        "signal": {"query": "END", "keys": "E2 (every mention)", "direction": "+1 vs the control"},
        "cells": {
            "m:dose=1": {"sample": cell, "all": cell, "verdict": "confirmed"},
            "m:dose=2": {"sample": empty, "all": empty, "verdict": None},
        },
        "prediction": {"n": 1, "n_prompts": 1, "expected_sign": -1, "attack_minus_control": None, "verdict": "inconclusive"},
        "cause": "no paired attack in the random sample",
        "random_sample": cell,
        "all": cell,
    }
    return {"natural": {"n": 0}, "skipped_modes": {}, "modes": {"m": mode}}


def test_a_task_modes_json_round_trips_and_names_a_wrong_field():
    doc = task_modes_doc()
    rec = TaskModesDoc.from_dict(doc, "modes.json")
    assert files.dumps(rec.to_dict()) == files.dumps(doc) and TaskModesDoc.from_dict(rec.to_dict(), "modes.json") == rec
    m = rec.mode("m")
    assert m is not None and isinstance(m.random_sample, CellTable) and m.random_sample.attacks == 4
    assert m.prediction is not None and m.prediction.attack_minus_control is None
    cells = m.cells or {}
    assert (
        cells["m:dose=2"].verdict is None
        and cells["m:dose=2"].sample is not None
        and math.isnan(cells["m:dose=2"].sample.raw_break_rate or 0)
    )
    with pytest.raises(
        AdvgenError, match=r"^modes.json: field 'modes.m.cells.m:dose=1.sample.breaks' must be integer, got string$"
    ):
        read_task_modes(_broken(doc, "modes.m.cells", {"m:dose=1": {"sample": {"breaks": "2"}}}), "modes.json")
    with pytest.raises(AdvgenError, match="field 'modes.m.cause' is missing"):
        TaskModesDoc.from_dict(_broken(doc, "modes.m.cause", KeyError), "modes.json")
    assert (read_task_modes(_broken(doc, "modes.m.cause", KeyError), "modes.json").mode("m") or m).cause is None


@pytest.fixture(scope="module")
def task_dir(tiny_model, tmp_path_factory) -> Path:
    from advgen.jobs.attack import attack

    circuit = circuit_with(
        "copy",
        {
            "a1.h0": record("copy_next", 0.8, model_identity(tiny_model)),
            "a0.h0": record("previous", 0.2, model_identity(tiny_model)),
        },
    )
    return attack(tiny_model, circuit, CFG, tmp_path_factory.mktemp("task") / "run", task=copy_task()).out


def test_a_real_task_modes_json_reads_back_with_the_same_bytes_and_gives_the_sample_counts(task_dir):
    text = (task_dir / "modes.json").read_text(encoding="utf-8")
    rec = TaskModesDoc.from_dict(json.loads(text), task_dir / "modes.json")
    assert files.dumps(rec.to_dict()) + "\n" == text
    lifted = load_attack_summary(task_dir)
    for name, m in lifted.modes.items():
        t = rec.mode(name)
        assert t is not None and t.random_sample is not None and m.random_sample == t.random_sample
        assert m.sample_breaks == (t.random_sample.breaks, t.random_sample.n)  # the count of attacks, read from its record
