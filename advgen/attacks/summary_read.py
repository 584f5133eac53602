"""The one reader of an attack run directory's summary.json: current ones strictly, older ones by their known shapes.

Only this module knows older run directories: verdicts only in modes.json, the yield only in
baseline.json, no attributable yield before issue 28, no prediction accuracy or causes before
them. modes.json and baseline.json are read through their records (`tables_doc`), never as raw
keys. A generic task's summary.json (`schema_version`) is read strictly through its own record
(`task_summary_doc`) and lifted into the IOI records (`advgen.attacks.summary`), its tables from its modes.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from advgen.attacks.summary import (
    SECTIONS,
    AttackSummary,
    FalsifiedCause,
    ModeSummary,
    PredictionAccuracy,
    RunYield,
    Seen,
    nan_as_none,
    null_as_nan,
)
from advgen.attacks.tables_doc import (
    BASELINE_FILE,
    MODES_FILE,
    Baseline,
    IoiMode,
    ModesDoc,
    TaskModesDoc,
    read_baseline,
    read_modes,
    read_task_modes,
)
from advgen.attacks.task_summary_doc import TaskAttackSummary, TaskYield, read_task_summary
from advgen.core import files
from advgen.core.docfields import NUM, check, obj, opt
from advgen.core.types import AdvgenError


def read_attack_summary(
    summary: Mapping[str, Any], where: str | Path, modes_doc: Any = None, baseline_doc: Any = None
) -> AttackSummary:
    """The typed summary of any attack run directory; `modes_doc` / `baseline_doc` (modes.json / baseline.json, None
    when absent) are read through their records and used only where summary.json predates a section. `where` names
    summary.json in errors; modes.json and baseline.json are named beside it."""
    w = Path(where)
    s = obj(summary, str(w), "")
    task = read_task_summary(s, w)
    mw = w.with_name(MODES_FILE)
    if task is not None:
        return _of_task(task, None if modes_doc is None else read_task_modes(modes_doc, mw))
    modes = None if modes_doc is None else read_modes(modes_doc, mw)
    base = None if baseline_doc is None else read_baseline(baseline_doc, w.with_name(BASELINE_FILE))
    causes = opt(s, "falsified_causes", (dict,), str(w), "") or {}
    acc = opt(s, "prediction_accuracy", (dict,), str(w), "")
    return AttackSummary(
        _modes(s, w, modes),
        _yield(s, w, base),
        opt(s, "natural_failure_rate", NUM, str(w), ""),
        None if acc is None else PredictionAccuracy.from_dict(acc, w),
        {k: FalsifiedCause.from_dict(v, w, f"falsified_causes.{k}") for k, v in causes.items()},
        {k: v for k, v in s.items() if k not in SECTIONS},
        **{k: opt(s, k, (dict,), str(w), "") or {} for k in ("by_family", "evaluations", "baseline", "screening")},
        near_miss_bound=opt(s, "near_miss_bound", NUM, str(w), ""),
    )


def load_attack_summary(run_dir: Path) -> AttackSummary:
    """summary.json of `run_dir` (with modes.json and baseline.json where it is older), typed."""

    def doc(name: str) -> Any:
        return files.read_json(run_dir / name) if (run_dir / name).exists() else None

    summary = doc("summary.json")
    if summary is None:
        raise AdvgenError(f"{run_dir}: no summary.json (not an attack run directory, or an unfinished one)")
    return read_attack_summary(summary, run_dir / "summary.json", doc(MODES_FILE), doc(BASELINE_FILE))


def _yield(s: Mapping[str, Any], w: Path, base: Baseline | None) -> RunYield | None:
    """summary.json's `yield`, strictly once it has the attributable keys (issue 28), the raw keys alone before; a
    summary.json from before `yield` has it from baseline.json's record."""
    y = opt(s, "yield", (dict,), str(w), "")
    if y is not None:
        return RunYield.from_dict(y, w, strict="attributable_per_1000" in y)
    return None if base is None else RunYield.of_baseline_doc(base)


def _modes(s: Mapping[str, Any], w: Path, modes: ModesDoc | None) -> dict[str, ModeSummary]:
    """Per mode, summary.json's record: strictly once it has attributable breaks (issue 28), leniently before. A mode
    whose entry predates the verdicts (no `verdict`) has its prediction and tables from modes.json's record."""
    s_modes = opt(s, "modes", (dict,), str(w), "") or {}
    out = {}
    names: list[str] = [*s_modes, *((modes.modes or {}) if modes else {})]
    for name in dict.fromkeys(names):
        e = check(s_modes.get(name), (dict,), str(w), f"modes.{name}", null=True) or {}
        rec = ModeSummary.from_dict(e, w, f"modes.{name}", strict="attributable_breaks" in e)
        m = None if modes is None else modes.mode(name)
        out[name] = rec if rec.verdict is not None or m is None else _of_modes_json(rec, m)
    return out


def _of_modes_json(rec: ModeSummary, m: IoiMode) -> ModeSummary:
    """A mode of a summary.json from before the verdicts, completed from its mode in modes.json."""
    p = m.prediction
    if p is None:
        return replace(rec, random_sample=m.random_sample, sample_and_search=m.all)
    seen = None if p.n is None and p.attack_minus_control is None else Seen(p.attack_minus_control, p.n)
    return replace(
        rec, predicted_sign=p.expected_sign, seen=seen, verdict=p.verdict, random_sample=m.random_sample, sample_and_search=m.all
    )


def _task_yield(y: TaskYield | None) -> RunYield | None:
    if y is None:
        return None
    return RunYield(
        null_as_nan(y.guided_per_1000),
        null_as_nan(y.random_per_1000),
        nan_as_none(y.ratio),
        null_as_nan(y.attributable_per_1000),
        nan_as_none(y.attributable_ratio),
        y.breaks,
        y.attributable_breaks,
        y.control_shared_breaks,
    )


def _of_task(t: TaskAttackSummary, modes: TaskModesDoc | None) -> AttackSummary:
    """A generic task's summary record as the attack summary the report reads: each mode's pair count and tables
    (`random_sample`, `all`) from modes.json's record, which the task's summary.json does not repeat."""
    out = {}
    for name, e in (t.modes or {}).items():
        m = None if modes is None else modes.mode(name)
        n = None if m is None or m.prediction is None else m.prediction.n
        seen = None if e.seen is None and n is None else Seen(e.seen, n)
        out[name] = ModeSummary(
            e.predicted_sign,
            seen,
            e.verdict,
            e.compiled_from,
            None if m is None else m.random_sample,
            None if m is None else m.all,
            e.breaks,
            e.attributable_breaks,
            nan_as_none(e.explained_fraction),
        )
    d = t.to_dict()
    return AttackSummary(
        out,
        _task_yield(t.yield_),
        nan_as_none(t.natural_failure_rate),
        None,
        {},
        {k: v for k, v in d.items() if k not in SECTIONS},
        by_family=d.get("by_family") or {},
        evaluations=d.get("evaluations") or {},
        screening=d.get("screening") or {},
    )
