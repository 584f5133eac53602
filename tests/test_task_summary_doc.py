"""A generic-task attack's summary.json and baseline.json as typed records: round trip, strict named errors, a real run."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from test_task_attack import CFG, circuit_with, copy_task, record

from advgen.attacks.summary_read import load_attack_summary, read_attack_summary
from advgen.attacks.task_summary_doc import (
    SCHEMA_VERSION,
    TaskAttackSummary,
    TaskBaseline,
    built,
    is_task_summary,
    read_task_summary,
)
from advgen.circuits.identity import model_identity
from advgen.core import files
from advgen.core.types import AdvgenError, Interval


def summary_doc() -> dict[str, Any]:
    """A summary.json of the current shape: an empty family, a null ratio and cause, a screening key no record names."""
    clean = {
        "n": 2,
        "mean_logit_diff": 1.5,
        "logit_diff_ci95": {"mean": 1.5, "low": 1.0, "high": 2.0},
        "mean_io_prob": 0.3,
        "s_beats_io_rate": 0.0,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "task": "copy",
        "by_family": {"clean": clean, "baseline": {"n": 0}},
        "evaluations": {"clean": 2, "sample": 4, "search": 0, "baseline": 6},
        "yield": {
            "guided_per_1000": 250.0,
            "random_per_1000": 0.0,
            "ratio": None,
            "ratio_lower_bound": 0.5,
            "attributable_per_1000": 250.0,
            "attributable_ratio": None,
            "attributable_ratio_lower_bound": 0.5,
            "breaks": 1,
            "attributable_breaks": 1,
            "control_shared_breaks": 0,
        },
        "explained_fraction": 1.0,
        "modes": {
            "compiled_copy_split": {
                "predicted_sign": -1,
                "seen": {"mean": -2.0, "low": -3.0, "high": -1.0},
                "verdict": "confirmed",
                "cause": None,
                "compiled_from": "a1.h0 (copies)",
                "breaks": 1,
                "attributable_breaks": 1,
                "explained_fraction": 1.0,
            }
        },
        "skipped_modes": {"compiled_foil_mention": "no head attends to answer_mention"},
        "natural_failure_rate": 0.0,
        "screening": {"cell_verdicts": {"compiled_copy_split:dose=1": "confirmed"}, "added_by_the_search_later": [1, 2]},
    }


def baseline_doc() -> dict[str, Any]:
    return {
        "budget": 6,
        "guided_per_1000": 250.0,
        "attributable_per_1000": 250.0,
        "random_per_1000": 0.0,
        "guided": {"evaluations": 4, "breaks": 1, "control_shared_breaks": 0, "attributable_breaks": 1},
        "baseline": {"evaluations": 6, "breaks": 0},
        "ratio": None,
        "attributable_ratio": None,
        "ratio_lower_bound": 0.5,
        "attributable_ratio_lower_bound": 0.5,
        "definitions": {"attributable": "a", "raw": "r", "lower_bound": "b"},
        "accounting": "both sides pay the clean run",
    }


def test_round_trip_keeps_the_record_and_the_bytes():
    doc = summary_doc()
    rec = TaskAttackSummary.from_dict(doc, "summary.json")
    assert TaskAttackSummary.from_dict(rec.to_dict(), "summary.json") == rec
    assert files.dumps(rec.to_dict()) == files.dumps(doc)  # same keys, same order; null stays null
    assert (
        rec.yield_ is not None
        and rec.yield_.ratio is not None
        and math.isnan(rec.yield_.ratio)
        and rec.yield_.ratio_lower_bound == 0.5
    )
    mode = (rec.modes or {})["compiled_copy_split"]
    assert mode.seen == Interval(-2.0, -3.0, -1.0) and mode.cause is None
    assert (rec.by_family or {})["baseline"].to_dict() == {"n": 0}
    assert rec.screening == doc["screening"]  # opaque: keys the search adds later are carried as they are
    base = TaskBaseline.from_dict(baseline_doc(), "baseline.json")
    assert TaskBaseline.from_dict(base.to_dict(), "baseline.json") == base
    assert files.dumps(base.to_dict()) == files.dumps(baseline_doc())


def _broken(path: str, value: Any, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    d = copy.deepcopy(doc or summary_doc())
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
    ("path", "value", "message"),
    [
        ("yield.ratio", "high", "field 'yield.ratio' must be number or null, got string"),
        ("yield.breaks", 1.5, "field 'yield.breaks' must be integer, got number"),
        ("modes.compiled_copy_split.verdict", KeyError, "field 'modes.compiled_copy_split.verdict' is missing"),
        ("modes.compiled_copy_split.seen.low", "x", "field 'modes.compiled_copy_split.seen.low' must be number or null"),
        ("by_family.clean.mean_io_prob", KeyError, "field 'by_family.clean.mean_io_prob' is missing"),
        ("evaluations.clean", "2", "field 'evaluations.clean' must be integer, got string"),
        ("skipped_modes.compiled_foil_mention", 3, "field 'skipped_modes.compiled_foil_mention' must be string"),
        ("screening", [], "field 'screening' must be object, got array"),
        ("yield", KeyError, "field 'yield' is missing"),
    ],
)
def test_a_wrong_field_is_named_by_file_and_path(path, value, message):
    with pytest.raises(AdvgenError, match="^run/summary.json: " + message.replace("(", r"\(")):
        TaskAttackSummary.from_dict(_broken(path, value), "run/summary.json")
    with pytest.raises(AdvgenError, match="field 'guided.breaks' must be integer, got string"):
        TaskBaseline.from_dict(_broken("guided.breaks", "1", baseline_doc()), "baseline.json")


def test_another_schema_version_and_unknown_written_fields_are_refused():
    with pytest.raises(AdvgenError, match="schema_version 2 of a task attack summary; this advgen reads version 1"):
        TaskAttackSummary.from_dict({**summary_doc(), "schema_version": 2}, "summary.json")
    with pytest.raises(AdvgenError, match=r"summary.json \(writing\): fields \['extra'\] are not in TaskAttackSummary"):
        built(TaskAttackSummary, {**summary_doc(), "extra": 1}, "summary.json")
    assert not is_task_summary({"modes": {}}) and read_task_summary({"modes": {}}, "summary.json") is None
    with pytest.raises(AdvgenError, match="field 'yield.ratio'"):  # named through the attack reader too
        read_attack_summary(_broken("yield.ratio", "x"), "summary.json")


def test_an_older_document_reads_leniently_and_a_wrong_type_is_still_named():
    """Before 2026-12-04 a mode had no `cause`: the reader gives None, the current shape's from_dict names it."""
    older = _broken("modes.compiled_copy_split.cause", KeyError)
    rec = read_task_summary(older, "summary.json")
    assert rec is not None and (rec.modes or {})["compiled_copy_split"].cause is None
    with pytest.raises(AdvgenError, match="field 'modes.compiled_copy_split.cause' is missing"):
        TaskAttackSummary.from_dict(older, "summary.json")
    with pytest.raises(AdvgenError, match="summary.json: field 'natural_failure_rate' must be number or null, got string"):
        read_task_summary(_broken("natural_failure_rate", "low"), "summary.json")


@pytest.fixture(scope="module")
def tiny_setup(tiny_model):
    """The tiny random model with an induction-head circuit bound to it (as tests/test_task_attack.py's)."""
    ident = model_identity(tiny_model)
    return tiny_model, circuit_with("copy", {"a1.h0": record("copy_next", 0.8, ident), "a0.h0": record("previous", 0.2, ident)})


def test_a_real_task_attack_is_read_back_through_the_record(tiny_setup, tmp_path):
    from advgen.jobs.attack import attack

    model, circuit = tiny_setup
    res = attack(model, circuit, CFG, tmp_path / "run", task=copy_task())
    path = tmp_path / "run" / "summary.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    rec = read_task_summary(doc, path)
    assert rec is not None and rec.task == "copy" and rec.schema_version == SCHEMA_VERSION
    assert path.read_text(encoding="utf-8") == files.dumps(rec.to_dict()) + "\n"
    assert files.dumps(res.summary) == files.dumps(rec.to_dict())
    base = TaskBaseline.from_dict(json.loads((tmp_path / "run" / "baseline.json").read_text(encoding="utf-8")), "baseline.json")
    assert rec.yield_ is not None and base.guided is not None and rec.yield_.breaks == base.guided.breaks
    lifted = load_attack_summary(tmp_path / "run")  # what the report and console read
    assert list(lifted.modes) == list(rec.modes or {})
    assert all(m.verdict == (rec.modes or {})[k].verdict for k, m in lifted.modes.items())
    assert lifted.yield_ is not None and lifted.yield_.breaks == rec.yield_.breaks
