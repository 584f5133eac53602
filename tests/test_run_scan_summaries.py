"""The `run` / `validate` and `scan` summary.json as typed records (advgen/outputs/run_summary.py, scan_summary.py):
what the writer writes, the strict reader reads back and writes again byte for byte; a field missing or of the wrong
type names the file and the field; a run directory from before the breakdowns still reads; the readers (console,
dataset card) state what they stated before.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from advgen.core import files
from advgen.core.types import AdvgenError, Interval
from advgen.model.backends import LocalBackend
from advgen.outputs import cards, console, pipeline
from advgen.outputs.run_summary import GroupStats, ProbDiff, RunStats, RunSummary, headlines, load_run_summary, read_run_summary
from advgen.outputs.scan import ScanConfig, Tally, fold_unit, run_scan
from advgen.outputs.scan_summary import (
    FailureGroup,
    ScanSelection,
    ScanSource,
    ScanSummary,
    SlotValues,
    WorstPair,
    load_scan_summary,
    wilson,
)


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory) -> Path:
    return pipeline.run(tiny_model, 12, seed=0, out=tmp_path_factory.mktemp("run") / "run").out


@pytest.fixture(scope="module")
def scan_dir(tiny_model, tmp_path_factory) -> Path:
    return run_scan(
        LocalBackend(tiny_model), ScanConfig(sample=96, seed=3, unit=48, batch_size=16), tmp_path_factory.mktemp("scan") / "s"
    ).out


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---- run / validate ----------------------------------------------------------------------------------------------


def test_the_run_summary_reads_back_strictly_and_writes_the_same_bytes(run_dir):
    doc = files.read_json(run_dir / "summary.json")
    rec = RunSummary.from_dict(doc, run_dir / "summary.json")
    assert files.dumps(rec.to_dict()) + "\n" == _text(run_dir / "summary.json")
    assert rec.by_template and rec.by_order and set(rec.by_family) == {"clean"} and rec.prob_diff is None
    assert rec.stats.n == 12 == sum(g.n for g in (rec.by_order or {}).values())
    assert load_run_summary(run_dir) == rec


def test_run_records_round_trip():
    ci = Interval(0.5, 0.25, 0.75)
    stats = RunStats(3, 1.0, ci, 0.5, ci, 0.25, 0.4, ci, 0.1, 1.0, 0.0)
    group = GroupStats(3, 1.0, ci, 0.5, 0.25, 0.4, 1.0)
    rec = RunSummary(stats, {"clean": stats}, {"t1": group}, {"ABBA": group}, ProbDiff(0.3, ci))
    d = json.loads(files.dumps(rec.to_dict()))
    assert RunSummary.from_dict(d, "x/summary.json") == rec
    assert list(d)[-3:] == ["mean_prob_diff", "prob_diff_ci95", "by_family"]


@pytest.mark.parametrize(
    "edit, field, what",
    [
        (lambda d: d.pop("accuracy"), "accuracy", "is missing"),
        (lambda d: d.update(n="12"), "n", "must be integer, got string"),
        (lambda d: d["logit_diff_ci95"].pop("low"), "logit_diff_ci95.low", "is missing"),
        (
            lambda d: d["by_family"]["clean"].update(mean_io_prob="x"),
            "by_family.clean.mean_io_prob",
            "must be number or null, got string",
        ),
        (lambda d: d.update(by_order=[]), "by_order", "must be object, got array"),
        (
            lambda d: next(iter(d["by_template"].values())).update(io_top1_rate=True),
            "io_top1_rate",
            "must be number or null, got boolean",
        ),
        (lambda d: d.update(mean_prob_diff=0.5), "prob_diff_ci95", "is missing"),
    ],
)
def test_a_run_summary_field_missing_or_of_the_wrong_type_names_the_file_and_the_field(run_dir, edit, field, what):
    doc = files.read_json(run_dir / "summary.json")
    edit(doc)
    with pytest.raises(AdvgenError) as e:
        RunSummary.from_dict(doc, run_dir / "summary.json")
    assert str(run_dir / "summary.json") in str(e.value) and field in str(e.value) and what in str(e.value)


def test_a_run_summary_from_before_the_breakdowns_still_reads(run_dir, tmp_path):
    doc = files.read_json(run_dir / "summary.json")
    old = {k: v for k, v in doc.items() if k not in ("by_template", "by_order")}  # summary.json before 3a95ab0
    with pytest.raises(AdvgenError, match="'by_template' is missing"):
        RunSummary.from_dict(old, "summary.json")  # the strict reader is the current shape's
    (tmp_path / "summary.json").write_text(files.dumps(old) + "\n")
    rec = load_run_summary(tmp_path)
    assert rec.by_template is None and rec.by_order is None and rec.stats == read_run_summary(doc, "s").stats
    assert files.dumps(rec.to_dict()) == files.dumps(old)  # and writes the old shape again


def test_null_numbers_read_as_nan_and_write_null_again(run_dir):
    doc = files.read_json(run_dir / "summary.json")
    doc["mean_logit_diff"] = None
    doc["accuracy_ci95"]["high"] = None
    rec = RunSummary.from_dict(doc, "summary.json")
    assert math.isnan(rec.stats.mean_logit_diff) and math.isnan(rec.stats.accuracy_ci95.high)
    assert files.dumps(rec.to_dict()) == files.dumps(doc)


def test_the_console_states_the_record_as_it_stated_the_document(run_dir):
    doc = files.read_json(run_dir / "summary.json")
    rec = RunSummary.from_dict(doc, "summary.json")
    assert console.run_summary(doc) == console.run_summary(rec)
    st = rec.stats
    assert (
        f"n=12  mean LD={st.mean_logit_diff:.3f} [{st.logit_diff_ci95.low:.3f}, {st.logit_diff_ci95.high:.3f}]"
        in console.run_summary(rec)
    )
    pd = RunSummary(rec.stats, rec.by_family, rec.by_template, rec.by_order, ProbDiff(0.4191, Interval(0.4, 0.3, 0.5)))
    assert "PD=0.419" in " ".join(console.run_summary(pd, "greater-than").split())
    with pytest.raises(AdvgenError, match="'mean_io_prob' is missing"):
        console.run_summary({k: v for k, v in doc.items() if k != "mean_io_prob"})


# ---- the card's headline figures of any summary.json ----------------------------------------------------------


def test_card_headlines_read_run_scan_and_empty_summaries(run_dir, scan_dir):
    run = headlines(files.read_json(run_dir / "summary.json"), "s")
    assert list(run) == ["all", "clean"] and run["all"].n == 12 and isinstance(run["all"].accuracy, float)
    scan = headlines(files.read_json(scan_dir / "summary.json"), "s")
    assert scan["all"].n == 96 and scan["clean"].accuracy is None  # a scan's group records no accuracy: a blank cell
    adv = headlines(files.read_json(scan_dir / "adversarial" / "summary.json"), "s")
    assert list(adv) == ["all", "clean"] and adv["all"].s_beats_io_rate == 1.0 and headlines({}, "s") == {}
    table = cards._summary_table({"n": 0, "mean_logit_diff": None, "by_family": {}})
    assert "| all | 0 | None |  |  |  |" in table  # null as before ("None"), absent blank
    with pytest.raises(AdvgenError, match=r"x/summary.json: field 'by_family.clean.n' must be number or null, got string"):
        headlines({"n": 1, "by_family": {"clean": {"n": "1"}}}, "x/summary.json")


# ---- scan -------------------------------------------------------------------------------------------------------


def test_the_scan_summaries_read_back_strictly_and_write_the_same_bytes(scan_dir):
    for path in (scan_dir / "summary.json", scan_dir / "adversarial" / "summary.json"):
        rec = ScanSummary.from_dict(files.read_json(path), path)
        assert files.dumps(rec.to_dict()) + "\n" == _text(path)
        assert load_scan_summary(path.parent) == rec and rec.n  # (the random model fails: NaN-free records)
    main = load_scan_summary(scan_dir)
    adv = load_scan_summary(scan_dir / "adversarial")
    assert main.selection == ScanSelection("sample", 96, main.selection.space_size if main.selection else 0, 3)
    assert main.worst_pairs is not None and main.source is None and adv.worst_pairs is None and adv.selection is None
    assert adv.source == ScanSource("..", 96, main.failure_rate) and adv.n == main.failures
    assert main.failure_ci95 == wilson(main.failures, main.n)


def _row(i: int, ld: float, year: str | None = None) -> dict:
    row = {
        "logit_diff": ld,
        "io_prob": 0.5,
        "template_id": f"t{i % 2}",
        "order": "ABBA",
        "family": "clean",
        "io": f"A{i % 3}",
        "s": "B",
        "extra": {},
    }
    if year is not None:
        row.update(task="greater-than", extra={"values": {"YY": year}})
    return row


def test_a_task_scan_summary_with_slots_round_trips_and_keeps_its_intervals():
    tally, bad = Tally(), Tally()
    text = "".join(json.dumps(_row(i, -1.0 if i % 4 == 0 else 2.0, f"{i % 5:02d}")) + "\n" for i in range(40))
    fold_unit(text, tally, bad, io.StringIO())
    rec = tally.record()
    assert rec.by_slot is not None and rec.by_slot["YY"].n_values == 5
    assert rec.failure_ci95 == wilson(10, 40) and rec.failure_rate == 0.25
    assert isinstance(rec.logit_diff_ci95, Interval) and rec.logit_diff_ci95.low < rec.mean_logit_diff < rec.logit_diff_ci95.high
    d = json.loads(files.dumps(rec.to_dict()))
    assert ScanSummary.from_dict(d, "s.json") == rec and list(d["failure_ci95"]) == ["mean", "low", "high"]
    assert list(d)[-2:] == ["by_slot", "worst_pairs"]
    empty = Tally().record()  # no rows: every mean is NaN, written null, read back NaN
    back = ScanSummary.from_dict(json.loads(files.dumps(empty.to_dict())), "s.json")
    assert back.n == 0 and math.isnan(back.failure_rate) and math.isnan(back.failure_ci95.low)
    assert files.dumps(back.to_dict()) == files.dumps(empty.to_dict())


def test_wilson_is_the_interval_it_was():
    assert wilson(0, 0).as_dict().keys() == {"mean", "low", "high"} and math.isnan(wilson(0, 0).mean)
    ci = wilson(1, 2000)
    assert ci.mean == 1 / 2000 and 0 < ci.low < ci.mean < ci.high < 0.01 and wilson(0, 10).low == 0.0


def test_scan_records_round_trip():
    g = FailureGroup(4, 1, 0.25, wilson(1, 4), 1.5)
    rec = ScanSummary(
        4,
        1,
        0.25,
        wilson(1, 4),
        1.5,
        Interval(1.5, 1.0, 2.0),
        0.75,
        0.25,
        0.6,
        {"t": g},
        {"ABBA": g},
        {"clean": g},
        {"YY": SlotValues(1, {"07": g})},
        (WorstPair("A", "B", g),),
        ScanSelection("prefix", 4, 100, None),
        2,
        ScanSource("..", 10, 0.1),
    )
    assert ScanSummary.from_dict(json.loads(files.dumps(rec.to_dict())), "s.json") == rec


@pytest.mark.parametrize(
    "edit, field, what",
    [
        (lambda d: d.pop("failures"), "failures", "is missing"),
        (lambda d: d["failure_ci95"].update(low="0"), "failure_ci95.low", "must be number or null, got string"),
        (lambda d: next(iter(d["by_template"].values())).update(n=1.5), "by_template.", "must be integer, got number"),
        (lambda d: d["selection"].update(space_size=None), "selection.space_size", "must be integer, got null"),
        (lambda d: d.update(worst_pairs={}), "worst_pairs", "must be array, got object"),
        (lambda d: d.update(source={"scan": "..", "n_scanned": 3}), "source.failure_rate", "is missing"),
    ],
)
def test_a_scan_summary_field_missing_or_of_the_wrong_type_names_the_file_and_the_field(scan_dir, edit, field, what):
    path = scan_dir / "summary.json"
    doc = files.read_json(path)
    edit(doc)
    with pytest.raises(AdvgenError) as e:
        ScanSummary.from_dict(doc, path)
    assert str(path) in str(e.value) and field in str(e.value) and what in str(e.value)
