"""The IOI attack's summary.json as typed records: one writer, one reader.

`write_run` (attacks/tables.py) builds summary.json through these records, so its shape is stated
once; `read_attack_summary` is the one reader, and the only code that knows older run directories
(verdicts only in modes.json, the yield only in baseline.json, no attributable yield before issue 28,
no prediction accuracy or causes before them). A record of the current shape is read strictly: a
field missing or of the wrong type is an AdvgenError naming the file and the field. A generic task's
summary.json (`schema_version`) is read strictly through its own record (`task_summary_doc`) and
lifted into these, its tables from modes.json. Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.attacks.causes import CellCause
from advgen.attacks.compiler import VERDICTS, prediction_accuracy
from advgen.attacks.task_summary_doc import TaskAttackSummary, TaskYield, read_task_summary
from advgen.core import files
from advgen.core.docfields import NUM, check, obj, opt, req
from advgen.core.types import AdvgenError, Interval


def _nan(x: float | None) -> float:
    """A number as read: null (how NaN is written) is nan."""
    return float("nan") if x is None else x


@dataclass(frozen=True)
class RunYield:
    """summary.json's `yield`: confirmed breaks per 1,000 model evaluations, guided against random.

    The raw keys (every break; for test sets) come first, then the attributable ones (breaks whose
    matched control holds: the circuit's evidence). None: not recorded (a run from before issue 28);
    a ratio is None when the random baseline found no break.
    """

    guided_per_1000: float
    random_per_1000: float
    ratio: float | None
    attributable_per_1000: float | None = None
    attributable_ratio: float | None = None
    breaks: int | None = None
    attributable_breaks: int | None = None
    control_shared_breaks: int | None = None

    @classmethod
    def of_baseline(cls, base: Mapping[str, Any]) -> RunYield:
        """From baseline.json's document (tables.baseline_doc): the headline numbers, lifted out of its nesting."""
        g = base["guided"]
        return cls(base["guided_per_1000"], base["random_per_1000"], base["ratio"], base["attributable_per_1000"],
                   base["attributable_ratio"], g["breaks"], g["attributable_breaks"], g["control_shared_breaks"])

    def to_dict(self) -> dict[str, Any]:
        return {"guided_per_1000": self.guided_per_1000, "random_per_1000": self.random_per_1000, "ratio": self.ratio,
                "attributable_per_1000": self.attributable_per_1000, "attributable_ratio": self.attributable_ratio,
                "breaks": self.breaks, "attributable_breaks": self.attributable_breaks,
                "control_shared_breaks": self.control_shared_breaks}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "yield") -> RunYield:
        w = str(where)
        d = obj(d, w, at)
        num = [_nan(req(d, k, NUM, w, at, null=True)) for k in ("guided_per_1000", "random_per_1000")]
        ratios = [req(d, k, NUM, w, at, null=True) for k in ("ratio", "attributable_ratio")]
        counts = [req(d, k, (int,), w, at) for k in ("breaks", "attributable_breaks", "control_shared_breaks")]
        return cls(num[0], num[1], ratios[0], _nan(req(d, "attributable_per_1000", NUM, w, at, null=True)), ratios[1], *counts)


def _interval(d: Mapping[str, Any], where: str, at: str) -> Interval:
    """mean / low / high, each a number or null (NaN)."""
    return Interval(*(_nan(req(d, k, NUM, where, at, null=True)) for k in ("mean", "low", "high")))


@dataclass(frozen=True)
class Seen:
    """The paired LD(attack) - LD(control) on the random sample: mean [95 % CI] over clean prompts, and n pairs.

    `interval` is None when fewer than two prompts were measured (no interval to state).
    """

    interval: Interval | None
    n: int | None

    def to_dict(self) -> dict[str, Any]:
        return {**(self.interval.as_dict() if self.interval else {}), **({} if self.n is None else {"n": self.n})}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "seen") -> Seen:
        w = str(where)
        d = obj(d, w, at)
        has = any(k in d for k in ("mean", "low", "high"))
        return cls(_interval(d, w, at) if has else None, req(d, "n", (int,), w, at))


@dataclass(frozen=True)
class ModeSummary:
    """One failure mode in summary.json: its prediction against the random sample, and its breaks.

    `random_sample` and `sample_and_search` are modes.json's tables of the mode, carried verbatim
    (not typed here). None marks what an older run directory did not record.
    """

    predicted_sign: int | None
    """-1: LD(attack) < LD(control) predicted; +1: >."""
    seen: Seen | None
    verdict: str | None
    compiled_from: str | None = None
    random_sample: Mapping[str, Any] | None = None
    sample_and_search: Mapping[str, Any] | None = None
    breaks: int | None = None
    attributable_breaks: int | None = None
    explained_fraction: float | None = None

    @classmethod
    def of_table(cls, m: Mapping[str, Any]) -> ModeSummary:
        """From one mode of modes.json (tables.mode_tables): the verdict lifted out, the tables kept."""
        p, t = m["prediction"], m["all"]
        ci = p["attack_minus_control"]
        return cls(p["expected_sign"], Seen(Interval(ci["mean"], ci["low"], ci["high"]) if ci else None, p["n"]), p["verdict"],
                   m["compiled_from"], m["random_sample"], t, t["breaks"], t["breaks"] - t["control_shared_breaks"],
                   t["explained_fraction"])

    @property
    def sample_breaks(self) -> tuple[int, int | None] | None:
        """(breaks, attacks) in the random sample; None when not recorded."""
        rs = self.random_sample or {}
        att, b = rs.get("attack"), rs.get("breaks")
        n = att.get("n") if isinstance(att, Mapping) else None
        return (b, n if isinstance(n, int) else None) if isinstance(b, int) else None

    def to_dict(self) -> dict[str, Any]:
        return {"predicted_sign": self.predicted_sign, "seen": None if self.seen is None else self.seen.to_dict(),
                "verdict": self.verdict, "compiled_from": self.compiled_from, "random_sample": self.random_sample,
                "all": self.sample_and_search, "breaks": self.breaks, "attributable_breaks": self.attributable_breaks,
                "explained_fraction": self.explained_fraction}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "modes.?") -> ModeSummary:
        w = str(where)
        d = obj(d, w, at)
        rs = req(d, "random_sample", (dict,), w, at)
        req(rs, "breaks", (int,), w, f"{at}.random_sample")
        req(req(rs, "attack", (dict,), w, f"{at}.random_sample"), "n", (int,), w, f"{at}.random_sample.attack")
        return cls(req(d, "predicted_sign", (int,), w, at), Seen.from_dict(req(d, "seen", (dict,), w, at), w, f"{at}.seen"),
                   req(d, "verdict", (str,), w, at), req(d, "compiled_from", (str,), w, at, null=True), rs,
                   req(d, "all", (dict,), w, at), req(d, "breaks", (int,), w, at), req(d, "attributable_breaks", (int,), w, at),
                   req(d, "explained_fraction", NUM, w, at, null=True))


@dataclass(frozen=True)
class PredictionAccuracy:
    """Over the run's compiled cells: how many the random sample confirmed, falsified or left inconclusive."""

    compiled_cells: int
    confirmed: int
    falsified: int
    inconclusive: int
    falsified_cells: tuple[str, ...]

    @classmethod
    def of_verdicts(cls, cell_verdicts: Mapping[str, str]) -> PredictionAccuracy:
        return cls.from_dict(prediction_accuracy(cell_verdicts), "prediction_accuracy (compiler)", "")

    def to_dict(self) -> dict[str, Any]:
        counts = {"confirmed": self.confirmed, "falsified": self.falsified, "inconclusive": self.inconclusive}
        return {"compiled_cells": self.compiled_cells, **{v: counts[v] for v in VERDICTS}, "falsified_cells": list(self.falsified_cells)}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "prediction_accuracy") -> PredictionAccuracy:
        w = str(where)
        d = obj(d, w, at)
        cells = req(d, "falsified_cells", (list,), w, at)
        for i, c in enumerate(cells):
            check(c, (str,), w, f"{at}.falsified_cells[{i}]")
        c = {k: req(d, k, (int,), w, at) for k in ("compiled_cells", "confirmed", "falsified", "inconclusive")}
        return cls(c["compiled_cells"], c["confirmed"], c["falsified"], c["inconclusive"], tuple(cells))


@dataclass(frozen=True)
class FalsifiedCause:
    """summary.json's `falsified_causes.<cell>`: the measured cause of a falsified compiled cell (causes.json has the detail)."""

    cause: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "text": self.text}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "falsified_causes.?") -> FalsifiedCause:
        w = str(where)
        d = obj(d, w, at)
        return cls(req(d, "cause", (str,), w, at), req(d, "text", (str,), w, at))


SECTIONS = ("by_family", "evaluations", "yield", "modes", "natural_failure_rate", "baseline", "screening", "near_miss_bound",
            "prediction_accuracy", "falsified_causes")
"""summary.json's keys after the statistics of every row, in the order written."""


@dataclass(frozen=True)
class AttackSummary:
    """The whole of summary.json. `overall` (statistics of every row), `by_family`, `evaluations`, `baseline` (baseline.json)
    and `screening` are carried verbatim, not typed here; empty when an older run directory lacks them."""

    modes: Mapping[str, ModeSummary]
    yield_: RunYield | None = None
    natural_failure_rate: float | None = None
    prediction_accuracy: PredictionAccuracy | None = None
    falsified_causes: Mapping[str, FalsifiedCause] = field(default_factory=dict)
    overall: Mapping[str, Any] = field(default_factory=dict)
    by_family: Mapping[str, Any] = field(default_factory=dict)
    evaluations: Mapping[str, Any] = field(default_factory=dict)
    baseline: Mapping[str, Any] = field(default_factory=dict)
    screening: Mapping[str, Any] = field(default_factory=dict)
    near_miss_bound: float | None = None

    @staticmethod
    def causes_of(causes: Sequence[CellCause]) -> dict[str, FalsifiedCause]:
        return {c.cell: FalsifiedCause(c.cause, c.text) for c in causes}

    def to_dict(self) -> dict[str, Any]:
        return {**self.overall, "by_family": self.by_family, "evaluations": self.evaluations,
                "yield": None if self.yield_ is None else self.yield_.to_dict(),
                "modes": {k: m.to_dict() for k, m in self.modes.items()}, "natural_failure_rate": self.natural_failure_rate,
                "baseline": self.baseline, "screening": self.screening, "near_miss_bound": self.near_miss_bound,
                "prediction_accuracy": None if self.prediction_accuracy is None else self.prediction_accuracy.to_dict(),
                "falsified_causes": {k: c.to_dict() for k, c in self.falsified_causes.items()}}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> AttackSummary:
        """The current shape, strictly; `read_attack_summary` reads older ones too."""
        w = str(where)
        d = obj(d, w, "")
        modes = req(d, "modes", (dict,), w, "")
        causes = req(d, "falsified_causes", (dict,), w, "")
        return cls({k: ModeSummary.from_dict(v, w, f"modes.{k}") for k, v in modes.items()},
                   RunYield.from_dict(req(d, "yield", (dict,), w, ""), w),
                   req(d, "natural_failure_rate", NUM, w, "", null=True),
                   PredictionAccuracy.from_dict(req(d, "prediction_accuracy", (dict,), w, ""), w),
                   {k: FalsifiedCause.from_dict(v, w, f"falsified_causes.{k}") for k, v in causes.items()},
                   {k: v for k, v in d.items() if k not in SECTIONS},
                   **{k: req(d, k, (dict,), w, "") for k in ("by_family", "evaluations", "baseline", "screening")},
                   near_miss_bound=req(d, "near_miss_bound", NUM, w, "", null=True))


# ---- the one reader: current run directories strictly, older ones by their known shapes --------------------------


def read_attack_summary(summary: Mapping[str, Any], where: str | Path, modes_doc: Any = None,
                        baseline_doc: Any = None) -> AttackSummary:
    """The typed summary of any attack run directory; `modes_doc` / `baseline_doc` (modes.json / baseline.json, None
    when absent) are read only where summary.json predates a section. `where` names summary.json in errors."""
    w = Path(where)
    s = obj(summary, str(w), "")
    task = read_task_summary(s, w)
    if task is not None:
        return _of_task(task, w, modes_doc)
    causes = opt(s, "falsified_causes", (dict,), str(w), "") or {}
    acc = s.get("prediction_accuracy")
    return AttackSummary(
        _modes(s, w, modes_doc), _yield(s, w, baseline_doc), opt(s, "natural_failure_rate", NUM, str(w), ""),
        None if acc is None else PredictionAccuracy.from_dict(acc, w),
        {k: FalsifiedCause.from_dict(v, w, f"falsified_causes.{k}") for k, v in causes.items()},
        {k: v for k, v in s.items() if k not in SECTIONS},
        **{k: opt(s, k, (dict,), str(w), "") or {} for k in ("by_family", "evaluations", "baseline", "screening")},
        near_miss_bound=opt(s, "near_miss_bound", NUM, str(w), ""))


def load_attack_summary(run_dir: Path) -> AttackSummary:
    """summary.json of `run_dir` (with modes.json and baseline.json where it is older), typed."""
    def doc(name: str) -> Any:
        return files.read_json(run_dir / name) if (run_dir / name).exists() else None
    summary = doc("summary.json")
    if summary is None:
        raise AdvgenError(f"{run_dir}: no summary.json (not an attack run directory, or an unfinished one)")
    return read_attack_summary(summary, run_dir / "summary.json", doc("modes.json"), doc("baseline.json"))


def _yield(s: Mapping[str, Any], w: Path, baseline_doc: Any) -> RunYield | None:
    """summary.json's `yield`; before issue 28 it had only the raw keys; before that only baseline.json had it."""
    y = opt(s, "yield", (dict,), str(w), "")
    if y is not None and "attributable_per_1000" in y:
        return RunYield.from_dict(y, w)
    if y is not None and "guided_per_1000" in y:
        num = [opt(y, k, NUM, str(w), "yield") for k in ("guided_per_1000", "random_per_1000", "ratio", "attributable_per_1000",
                                                             "attributable_ratio")]
        ints = [opt(y, k, (int,), str(w), "yield") for k in ("breaks", "attributable_breaks", "control_shared_breaks")]
        return RunYield(_nan(num[0]), _nan(num[1]), *num[2:], *ints)
    where, at = (w.with_name("baseline.json"), "") if baseline_doc else (w, "baseline")
    b = baseline_doc or s.get("baseline")
    if not isinstance(b, Mapping) or not isinstance(b.get("guided"), Mapping) or "breaks_per_1000" not in b["guided"]:
        return None
    g, r = b["guided"], opt(b, "baseline", (dict,), str(where), at) or {}
    gat = f"{at}.guided" if at else "guided"
    ints = [opt(g, k, (int,), str(where), gat) for k in ("breaks", "attributable_breaks", "control_shared_breaks")]
    return RunYield(_nan(opt(g, "breaks_per_1000", NUM, str(where), gat)),
                    _nan(opt(r, "breaks_per_1000", NUM, str(where), f"{at}.baseline" if at else "baseline")),
                    opt(b, "ratio", NUM, str(where), at), opt(g, "attributable_per_1000", NUM, str(where), gat),
                    opt(b, "attributable_ratio", NUM, str(where), at), *ints)


def _modes(s: Mapping[str, Any], w: Path, modes_doc: Any) -> dict[str, ModeSummary]:
    """Per mode, summary.json's record; a mode from before issue 28 is read leniently, its verdict from modes.json's
    `prediction` where summary.json lacks one."""
    s_modes = opt(s, "modes", (dict,), str(w), "") or {}
    mw = str(w.with_name("modes.json"))
    m_modes = opt(check(modes_doc, (dict,), mw, "", null=True) or {}, "modes", (dict,), mw, "") or {}
    out = {}
    for name in dict.fromkeys([*s_modes, *m_modes]):
        e = check(s_modes.get(name), (dict,), str(w), f"modes.{name}", null=True) or {}
        if "attributable_breaks" in e:
            out[name] = ModeSummary.from_dict(e, w, f"modes.{name}")
        else:
            out[name] = _older_mode(e, check(m_modes.get(name), (dict,), mw, f"modes.{name}", null=True) or {}, w, name)
    return out


def _older_mode(e: Mapping[str, Any], m: Mapping[str, Any], w: Path, name: str) -> ModeSummary:
    """A mode of an older summary.json `e`, completed from modes.json's mode `m`."""
    sw, mw, at = str(w), str(w.with_name("modes.json")), f"modes.{name}"
    pred = opt(m, "prediction", (dict,), mw, at) or {}
    pat = f"{at}.prediction"
    sign = opt(e, "predicted_sign", NUM, sw, at) if "predicted_sign" in e else opt(pred, "expected_sign", NUM, mw, pat)
    raw, src, sat = (e["seen"], sw, f"{at}.seen") if "seen" in e else (pred.get("attack_minus_control"), mw, f"{pat}.attack_minus_control")
    n = opt(pred, "n", (int,), mw, pat)
    seen = None if n is None else Seen(None, n)  # no interval (under two prompts): the pairs counted all the same
    if raw is not None:
        raw = obj(raw, src, sat)
        full = {"mean", "low", "high"} <= set(raw)
        seen = Seen(_interval(raw, src, sat) if full else None, opt(raw, "n", (int,), src, sat) if "n" in raw else n)
    verdict = opt(e, "verdict", (str,), sw, at) or opt(pred, "verdict", (str,), mw, pat)
    src_rs, rs_w = (m, mw) if m else (e, sw)
    table = opt(e, "all", (dict,), sw, at) or opt(m, "all", (dict,), mw, at)
    return ModeSummary(None if sign is None else int(math.copysign(1, sign)) if sign else 0, seen, verdict,
                       opt(e, "compiled_from", (str,), sw, at), opt(src_rs, "random_sample", (dict,), rs_w, at), table,
                       opt(e, "breaks", (int,), sw, at), opt(e, "attributable_breaks", (int,), sw, at),
                       opt(e, "explained_fraction", NUM, sw, at))


def _number(x: float | None) -> float | None:
    """A record's number as these records hold it: null (NaN as read) is None."""
    return None if x is None or math.isnan(x) else x


def _task_yield(y: TaskYield | None) -> RunYield | None:
    if y is None:
        return None
    return RunYield(_nan(y.guided_per_1000), _nan(y.random_per_1000), _number(y.ratio), _nan(y.attributable_per_1000),
                    _number(y.attributable_ratio), y.breaks, y.attributable_breaks, y.control_shared_breaks)


def _of_task(t: TaskAttackSummary, w: Path, modes_doc: Any) -> AttackSummary:
    """A generic task's summary record as the attack summary the report reads: each mode's pair count and tables
    (`random_sample`, `all`) from modes.json, which the task's summary.json does not repeat."""
    mw = str(w.with_name("modes.json"))
    m_modes = opt(check(modes_doc, (dict,), mw, "", null=True) or {}, "modes", (dict,), mw, "") or {}
    modes = {}
    for name, e in (t.modes or {}).items():
        at = f"modes.{name}"
        m = check(m_modes.get(name), (dict,), mw, at, null=True) or {}
        n = opt(opt(m, "prediction", (dict,), mw, at) or {}, "n", (int,), mw, f"{at}.prediction")
        seen = None if e.seen is None and n is None else Seen(e.seen, n)
        modes[name] = ModeSummary(e.predicted_sign, seen, e.verdict, e.compiled_from, opt(m, "random_sample", (dict,), mw, at),
                                  opt(m, "all", (dict,), mw, at), e.breaks, e.attributable_breaks, _number(e.explained_fraction))
    d = t.to_dict()
    return AttackSummary(modes, _task_yield(t.yield_), _number(t.natural_failure_rate), None, {},
                         {k: v for k, v in d.items() if k not in SECTIONS}, by_family=d.get("by_family") or {},
                         evaluations=d.get("evaluations") or {}, screening=d.get("screening") or {})
