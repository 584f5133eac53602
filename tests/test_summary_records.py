"""summary.json's typed records (advgen/attacks/summary.py): what the writer writes, the strict reader reads back
unchanged; a field missing or of the wrong type names the file and the field; older run directories still read.

The run is built from hand-made measured rows (no model) and written by the attack's own `write_run`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from rundirs import hand_row

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.catalogue import mode_named
from advgen.attacks.search import AttackRun
from advgen.attacks.signals import label_rows, signal_doc
from advgen.attacks.summary import (
    AttackSummary,
    FalsifiedCause,
    ModeSummary,
    PredictionAccuracy,
    RunYield,
    Seen,
)
from advgen.attacks.summary_read import load_attack_summary, read_attack_summary
from advgen.attacks.tables import write_run
from advgen.attacks.tables_doc import ModeTable
from advgen.attacks.task_summary_doc import FamilyStats
from advgen.circuits.format import make_circuit
from advgen.core import files
from advgen.core.types import AdvgenError, Interval, Role
from advgen.outputs import console, verdict

N = 12


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A written attack run: half the attacks break (LD -1 on clean +2), every control holds, 1 in 3 random perturbations
    breaks."""
    rows = []
    for i in range(N):
        p = f"p{i}"
        rows += [
            hand_row("clean", p, 2.0, "clean", None),
            hand_row("attack", p, -1.0 if i % 2 else 1.0 + 0.1 * i, "sample", f"{p}:a"),
            hand_row("control", p, 1.5, "sample", f"{p}:a"),
            hand_row("baseline", p, -0.5 if i % 3 == 0 else 1.0, "baseline", f"{p}:r"),
        ]
    circuit = make_circuit("hand-made", "none", {Role.NAME_MOVER: ["a0.h1"]}, 2, 2)
    mode = mode_named("duplicated_io")
    screening = {
        "cell_verdicts": {"compiled_x:0": "confirmed", "compiled_x:1": "falsified"},
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
        {},
        {},
        {mode.name: signal_doc(mode, circuit)},
        screening,
    )
    out = tmp_path_factory.mktemp("records") / "run"
    out.mkdir()
    write_run(out, run, AttackConfig(budget=5 * N, n_clean=N, seed=0), circuit, {"model": "hand-made", "seed": 0})
    return out


def _copy(run_dir: Path, dest: Path, edit) -> Path:
    shutil.copytree(run_dir, dest)
    doc = json.loads((dest / "summary.json").read_text())
    (dest / "summary.json").write_text(json.dumps(edit(doc)))
    return dest


def _table(breaks: int, n: int) -> ModeTable:
    """A mode's table (modes.json, copied into summary.json) with `breaks` of `n` attacks, every field filled."""
    fam = FamilyStats(n, -0.5, Interval(-0.5, -0.9, -0.1), 0.3, 0.5) if n else FamilyStats(0)
    return ModeTable(fam, fam, fam, breaks, 0, breaks / n if n else 0.0, 0.5)


RECORDS = [
    RunYield(12.5, 3.0, 4.1666, 10.0, 3.3333, 5, 4, 1),
    RunYield(12.5, 0.0, None, 10.0, None, 5, 4, 1),  # the random baseline found no break: no ratio
    Seen(Interval(-1.3, -1.5, -1.1), 12),
    Seen(None, 1),  # one prompt: no interval
    ModeSummary(
        -1, Seen(Interval(0.8, 0.5, 1.1), 12), "falsified", "compiled from heads a0.h1", _table(1, 12), _table(3, 20), 3, 2, 0.5
    ),
    ModeSummary(1, Seen(None, 0), "inconclusive", None, _table(0, 0), _table(0, 0), 0, 0, None),
    PredictionAccuracy(3, 1, 1, 1, ("compiled_a:0",)),
    FalsifiedCause("gain", "the circuit's nodes moved LD +2.89 against the predicted -0.33"),
]


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips(rec):
    assert type(rec).from_dict(json.loads(files.dumps(rec.to_dict())), "summary.json") == rec


def test_the_written_summary_reads_back_strictly_and_writes_the_same_bytes(run_dir):
    text = (run_dir / "summary.json").read_text()
    rec = AttackSummary.from_dict(json.loads(text), run_dir / "summary.json")
    assert files.dumps(rec.to_dict()) + "\n" == text  # every key, in order, every number: the record is the whole file
    assert rec == load_attack_summary(run_dir) and AttackSummary.from_dict(rec.to_dict(), "x") == rec
    m = rec.modes["duplicated_io"]
    assert m.predicted_sign == -1 and isinstance(m.seen, Seen) and isinstance(m.seen.interval, Interval) and m.seen.n == N
    assert rec.yield_ is not None and rec.yield_.breaks == N // 2 and rec.yield_.control_shared_breaks == 0
    assert rec.prediction_accuracy == PredictionAccuracy(2, 1, 1, 0, ("compiled_x:1",))
    assert m.sample_breaks == (N // 2, N) and rec.falsified_causes == {}


def test_summary_json_keeps_its_keys_in_their_order(run_dir):
    """The records write the file the dict-building code wrote (issue 21): the same keys, in the same order."""
    s = json.loads((run_dir / "summary.json").read_text())
    assert list(s) == [
        "n",
        "mean_logit_diff",
        "logit_diff_ci95",
        "mean_io_prob",
        "s_beats_io_rate",
        "by_family",
        "evaluations",
        "yield",
        "modes",
        "natural_failure_rate",
        "baseline",
        "screening",
        "near_miss_bound",
        "prediction_accuracy",
        "falsified_causes",
    ]
    assert list(s["yield"]) == [
        "guided_per_1000",
        "random_per_1000",
        "ratio",
        "attributable_per_1000",
        "attributable_ratio",
        "breaks",
        "attributable_breaks",
        "control_shared_breaks",
    ]
    m = s["modes"]["duplicated_io"]
    assert list(m) == [
        "predicted_sign",
        "seen",
        "verdict",
        "compiled_from",
        "random_sample",
        "all",
        "breaks",
        "attributable_breaks",
        "explained_fraction",
    ]
    assert (
        list(m["seen"]) == ["mean", "low", "high", "n"]
        and m["random_sample"] == json.loads((run_dir / "modes.json").read_text())["modes"]["duplicated_io"]["random_sample"]
    )
    assert list(s["prediction_accuracy"]) == ["compiled_cells", "confirmed", "falsified", "inconclusive", "falsified_cells"]
    assert s["baseline"] == json.loads((run_dir / "baseline.json").read_text())


@pytest.mark.parametrize(
    "edit, field, what",
    [
        (
            lambda d: d["modes"]["duplicated_io"].update(predicted_sign="negative"),
            "modes.duplicated_io.predicted_sign",
            "must be integer, got string",
        ),
        (lambda d: d["modes"]["duplicated_io"].pop("verdict"), "modes.duplicated_io.verdict", "is missing"),
        (lambda d: d["modes"]["duplicated_io"]["seen"].pop("n"), "modes.duplicated_io.seen.n", "is missing"),
        (
            lambda d: d["modes"]["duplicated_io"]["seen"].update(low="low"),
            "modes.duplicated_io.seen.low",
            "must be number or null",
        ),
        (lambda d: d["yield"].pop("breaks"), "yield.breaks", "is missing"),
        (lambda d: d["yield"].update(ratio=[3]), "yield.ratio", "must be number or null, got array"),
        (
            lambda d: d["prediction_accuracy"].update(confirmed="1"),
            "prediction_accuracy.confirmed",
            "must be integer, got string",
        ),
        (lambda d: d.update(falsified_causes={"c:0": {"cause": "gain"}}), "falsified_causes.c:0.text", "is missing"),
        (lambda d: d.update(natural_failure_rate="0.1"), "natural_failure_rate", "must be number or null, got string"),
    ],
)
def test_a_field_missing_or_of_the_wrong_type_names_the_file_and_the_field(run_dir, tmp_path, edit, field, what):
    def edited(doc: dict) -> dict:
        edit(doc)
        return doc

    d = _copy(run_dir, tmp_path / "bad", edited)
    with pytest.raises(AdvgenError) as e:
        load_attack_summary(d)
    assert str(d / "summary.json") in str(e.value) and repr(field) in str(e.value) and what in str(e.value)
    with pytest.raises(AdvgenError, match=what):  # and the strict reader, on the same document
        AttackSummary.from_dict(json.loads((d / "summary.json").read_text()), d / "summary.json")


def test_an_old_run_directory_reads_its_verdicts_from_modes_json_and_its_yield_from_baseline_json(run_dir, tmp_path):
    """Before verdicts and the yield were in summary.json: the same verdicts, the raw yield, no attributable yield."""
    new = load_attack_summary(run_dir)
    keep = ("n", "mean_logit_diff", "by_family", "evaluations", "natural_failure_rate")
    d = _copy(
        run_dir,
        tmp_path / "old",
        lambda s: {**{k: s[k] for k in keep}, "modes": {k: {"attack": v["all"]["attack"]} for k, v in s["modes"].items()}},
    )
    base = {k: v for k, v in json.loads((d / "baseline.json").read_text()).items() if "attributable" not in k}
    base["guided"] = {k: v for k, v in base["guided"].items() if k in ("evaluations", "breaks", "breaks_per_1000")}
    (d / "baseline.json").write_text(json.dumps(base))  # as written before issue 28
    old = load_attack_summary(d)
    m, was = old.modes["duplicated_io"], new.modes["duplicated_io"]
    assert (m.predicted_sign, m.seen, m.verdict, m.sample_breaks) == (
        was.predicted_sign,
        was.seen,
        was.verdict,
        was.sample_breaks,
    )
    assert m.attributable_breaks is None and old.prediction_accuracy is None and old.falsified_causes == {}
    assert new.yield_ is not None and old.yield_ is not None
    assert (old.yield_.guided_per_1000, old.yield_.random_per_1000, old.yield_.ratio) == (
        new.yield_.guided_per_1000,
        new.yield_.random_per_1000,
        new.yield_.ratio,
    )
    assert old.yield_.attributable_per_1000 is None and old.yield_.attributable_ratio is None
    assert old.yield_.breaks == new.yield_.breaks and old.yield_.control_shared_breaks is None
    text = console.attack_summary(json.loads((d / "summary.json").read_text()), d)
    assert "Attributable yield: not recorded" in text and "duplicated_io" in text
    assert [v.verdict for v in verdict.mode_verdicts(old)] == [was.verdict]


def test_a_summary_from_before_issue_28_reads_without_attributable_fields(run_dir, tmp_path):
    """Verdicts in summary.json, but no attributable breaks and a yield of the raw keys only."""

    def pre28(s: dict) -> dict:
        for m in s["modes"].values():
            del m["attributable_breaks"]
        s["yield"] = {k: s["yield"][k] for k in ("guided_per_1000", "random_per_1000", "ratio")}
        return {k: v for k, v in s.items() if k not in ("prediction_accuracy", "falsified_causes")}

    d = _copy(run_dir, tmp_path / "pre28", pre28)
    (d / "modes.json").unlink()  # not needed: summary.json has the verdicts
    got, new = load_attack_summary(d), load_attack_summary(run_dir)
    assert got.modes["duplicated_io"].seen == new.modes["duplicated_io"].seen and got.modes["duplicated_io"].verdict
    y = new.yield_
    assert y is not None and got.yield_ == RunYield(y.guided_per_1000, y.random_per_1000, y.ratio)  # the rest: not recorded


def test_an_old_modes_json_of_the_wrong_type_names_modes_json(run_dir, tmp_path):
    d = _copy(run_dir, tmp_path / "oldbad", lambda s: {"modes": {}})
    doc = json.loads((d / "modes.json").read_text())
    doc["modes"]["duplicated_io"]["prediction"]["expected_sign"] = "negative"
    (d / "modes.json").write_text(json.dumps(doc))
    with pytest.raises(
        AdvgenError, match=r"modes\.json: field 'modes\.duplicated_io\.prediction\.expected_sign' must be integer"
    ):
        load_attack_summary(d)


def test_a_generic_task_summary_reads_leniently(tmp_path):
    """A task attack's summary.json (schema_version; seen without n) is not this record's shape, and still reads."""
    summary = {
        "schema_version": 1,
        "task": "greater-than",
        "modes": {
            "m": {
                "predicted_sign": -1,
                "seen": {"mean": -0.5, "low": -0.9, "high": -0.1},
                "verdict": "confirmed",
                "cause": None,
                "compiled_from": "x",
                "breaks": 2,
                "attributable_breaks": 1,
                "explained_fraction": None,
            }
        },
        "yield": {
            "guided_per_1000": 3.0,
            "random_per_1000": 1.0,
            "ratio": 3.0,
            "ratio_lower_bound": 1.2,
            "attributable_per_1000": 2.0,
            "attributable_ratio": 2.0,
            "attributable_ratio_lower_bound": 0.8,
            "breaks": 2,
            "attributable_breaks": 1,
            "control_shared_breaks": 1,
        },
    }
    modes = {"modes": {"m": {"prediction": {"expected_sign": -1, "n": 7}}}}
    got = read_attack_summary(summary, tmp_path / "summary.json", modes)
    assert got.modes["m"].seen == Seen(Interval(-0.5, -0.9, -0.1), 7) and got.modes["m"].attributable_breaks == 1
    assert got.yield_ == RunYield(3.0, 1.0, 3.0, 2.0, 2.0, 2, 1, 1)


def test_null_numbers_read_as_nan_and_say_so(tmp_path):
    """NaN is written null: the interval reads as nan, and the verdict table says n/a rather than a number."""
    s = {
        "modes": {
            "m": {"predicted_sign": -1, "seen": {"mean": None, "low": None, "high": None, "n": 4}, "verdict": "inconclusive"}
        }
    }
    got = read_attack_summary(s, tmp_path / "summary.json")
    ci = got.modes["m"].seen.interval if got.modes["m"].seen else None
    assert ci is not None and math.isnan(ci.mean)
    assert verdict.mode_verdicts(got)[0].seen == "n/a"
