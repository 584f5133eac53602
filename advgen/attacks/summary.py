"""The IOI attack's summary.json as typed records: the shape stated once.

`write_run` (attacks/tables.py) builds summary.json through these records, so its shape is stated
once; `advgen.attacks.summary_read.read_attack_summary` is the one reader, and the only code that
knows older run directories. A record of the current shape is read strictly (`from_dict`): a field
missing or of the wrong type is an AdvgenError naming the file and the field; leniently (`strict=False`)
for the shapes older documents have. modes.json and baseline.json are read through their records
(`tables_doc`), never as raw keys. Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.attacks.causes import CellCause
from advgen.attacks.compiler import VERDICTS, prediction_accuracy
from advgen.attacks.tables_doc import Baseline, CellTable, ModeTable, read_table
from advgen.core.docfields import NUM, check, obj, opt, req
from advgen.core.types import Interval


def null_as_nan(x: float | None) -> float:
    """A number as read: null (how NaN is written) is nan."""
    return float("nan") if x is None else x


def nan_as_none(x: float | None) -> float | None:
    """A record's number as these records hold it: null (NaN as read) is None."""
    return None if x is None or math.isnan(x) else x


def _get(d: Mapping[str, Any], key: str, types: tuple[type, ...], where: str, at: str, strict: bool, null: bool = False) -> Any:
    """Strictly a field the current shape writes (absent: named); leniently one an older document may lack (None)."""
    return req(d, key, types, where, at, null) if strict else opt(d, key, types, where, at)


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
        return cls(
            base["guided_per_1000"],
            base["random_per_1000"],
            base["ratio"],
            base["attributable_per_1000"],
            base["attributable_ratio"],
            g["breaks"],
            g["attributable_breaks"],
            g["control_shared_breaks"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "guided_per_1000": self.guided_per_1000,
            "random_per_1000": self.random_per_1000,
            "ratio": self.ratio,
            "attributable_per_1000": self.attributable_per_1000,
            "attributable_ratio": self.attributable_ratio,
            "breaks": self.breaks,
            "attributable_breaks": self.attributable_breaks,
            "control_shared_breaks": self.control_shared_breaks,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "yield", strict: bool = True) -> RunYield:
        """Strictly the current shape; leniently one from before issue 28 (the raw keys only: the rest None)."""
        w = str(where)
        d = obj(d, w, at)
        num = [null_as_nan(_get(d, k, NUM, w, at, strict, null=True)) for k in ("guided_per_1000", "random_per_1000")]
        ratios = [_get(d, k, NUM, w, at, strict, null=True) for k in ("ratio", "attributable_ratio")]
        counts = [_get(d, k, (int,), w, at, strict) for k in ("breaks", "attributable_breaks", "control_shared_breaks")]
        attributable = _get(d, "attributable_per_1000", NUM, w, at, strict, null=True)
        return cls(num[0], num[1], ratios[0], null_as_nan(attributable) if strict else attributable, ratios[1], *counts)

    @classmethod
    def of_baseline_doc(cls, b: Baseline) -> RunYield | None:
        """From baseline.json's record (a run directory whose summary.json predates `yield`); None without its numbers."""
        g, r = b.guided, b.baseline
        if g is None or g.breaks_per_1000 is None:
            return None
        return cls(
            g.breaks_per_1000,
            null_as_nan(None if r is None else r.breaks_per_1000),
            nan_as_none(b.ratio),
            nan_as_none(g.attributable_per_1000),
            nan_as_none(b.attributable_ratio),
            g.breaks,
            g.attributable_breaks,
            g.control_shared_breaks,
        )


def _interval(d: Mapping[str, Any], where: str, at: str, strict: bool = True) -> Interval:
    """mean / low / high, each a number or null (NaN); leniently an absent one is NaN too."""
    return Interval(*(null_as_nan(_get(d, k, NUM, where, at, strict, null=True)) for k in ("mean", "low", "high")))


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
    def from_dict(cls, d: Any, where: str | Path, at: str = "seen", strict: bool = True) -> Seen:
        """No interval is written when under two prompts were measured; leniently `n` may be absent too."""
        w = str(where)
        d = obj(d, w, at)
        has = any(k in d for k in ("mean", "low", "high"))
        return cls(_interval(d, w, at, strict) if has else None, _get(d, "n", (int,), w, at, strict))


@dataclass(frozen=True)
class ModeSummary:
    """One failure mode in summary.json: its prediction against the random sample, and its breaks.

    `random_sample` and `sample_and_search` are modes.json's tables of the mode (`tables_doc`): an IOI
    run's `ModeTable`, a generic task's `CellTable`. None marks what an older run directory did not record.
    """

    predicted_sign: int | None
    """-1: LD(attack) < LD(control) predicted; +1: >."""
    seen: Seen | None
    verdict: str | None
    compiled_from: str | None = None
    random_sample: ModeTable | CellTable | None = None
    sample_and_search: ModeTable | CellTable | None = None
    breaks: int | None = None
    attributable_breaks: int | None = None
    explained_fraction: float | None = None

    @classmethod
    def of_table(cls, m: Mapping[str, Any]) -> ModeSummary:
        """From one mode of modes.json (tables.mode_tables): the verdict lifted out, the tables kept."""
        p, t = m["prediction"], m["all"]
        ci = p["attack_minus_control"]
        rs, every = (read_table(m[k], "modes.json (writing)", f"modes.?.{k}", strict=True) for k in ("random_sample", "all"))
        return cls(
            p["expected_sign"],
            Seen(Interval(ci["mean"], ci["low"], ci["high"]) if ci else None, p["n"]),
            p["verdict"],
            m["compiled_from"],
            rs,
            every,
            t["breaks"],
            t["breaks"] - t["control_shared_breaks"],
            t["explained_fraction"],
        )

    @property
    def sample_breaks(self) -> tuple[int, int | None] | None:
        """(breaks, attacks) in the random sample; None when not recorded."""
        rs = self.random_sample
        return None if rs is None or rs.breaks is None else (rs.breaks, rs.attacks)

    def to_dict(self) -> dict[str, Any]:
        tables = [None if t is None else t.to_dict() for t in (self.random_sample, self.sample_and_search)]
        return {
            "predicted_sign": self.predicted_sign,
            "seen": None if self.seen is None else self.seen.to_dict(),
            "verdict": self.verdict,
            "compiled_from": self.compiled_from,
            "random_sample": tables[0],
            "all": tables[1],
            "breaks": self.breaks,
            "attributable_breaks": self.attributable_breaks,
            "explained_fraction": self.explained_fraction,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "modes.?", strict: bool = True) -> ModeSummary:
        """Strictly the current shape; leniently one from before issue 28 (no attributable breaks) or partial."""
        w = str(where)
        d = obj(d, w, at)
        seen, rs, t = (_get(d, k, (dict,), w, at, strict) for k in ("seen", "random_sample", "all"))
        return cls(
            _get(d, "predicted_sign", (int,), w, at, strict),
            None if seen is None else Seen.from_dict(seen, w, f"{at}.seen", strict),
            _get(d, "verdict", (str,), w, at, strict),
            _get(d, "compiled_from", (str,), w, at, strict, null=True),
            None if rs is None else read_table(rs, w, f"{at}.random_sample", strict),
            None if t is None else read_table(t, w, f"{at}.all", strict),
            _get(d, "breaks", (int,), w, at, strict),
            _get(d, "attributable_breaks", (int,), w, at, strict),
            _get(d, "explained_fraction", NUM, w, at, strict, null=True),
        )


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
        return {
            "compiled_cells": self.compiled_cells,
            **{v: counts[v] for v in VERDICTS},
            "falsified_cells": list(self.falsified_cells),
        }

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


SECTIONS = (
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
)
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
        return {
            **self.overall,
            "by_family": self.by_family,
            "evaluations": self.evaluations,
            "yield": None if self.yield_ is None else self.yield_.to_dict(),
            "modes": {k: m.to_dict() for k, m in self.modes.items()},
            "natural_failure_rate": self.natural_failure_rate,
            "baseline": self.baseline,
            "screening": self.screening,
            "near_miss_bound": self.near_miss_bound,
            "prediction_accuracy": None if self.prediction_accuracy is None else self.prediction_accuracy.to_dict(),
            "falsified_causes": {k: c.to_dict() for k, c in self.falsified_causes.items()},
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> AttackSummary:
        """The current shape, strictly; `read_attack_summary` reads older ones too."""
        w = str(where)
        d = obj(d, w, "")
        modes = req(d, "modes", (dict,), w, "")
        causes = req(d, "falsified_causes", (dict,), w, "")
        return cls(
            {k: ModeSummary.from_dict(v, w, f"modes.{k}") for k, v in modes.items()},
            RunYield.from_dict(req(d, "yield", (dict,), w, ""), w),
            req(d, "natural_failure_rate", NUM, w, "", null=True),
            PredictionAccuracy.from_dict(req(d, "prediction_accuracy", (dict,), w, ""), w),
            {k: FalsifiedCause.from_dict(v, w, f"falsified_causes.{k}") for k, v in causes.items()},
            {k: v for k, v in d.items() if k not in SECTIONS},
            **{k: req(d, k, (dict,), w, "") for k in ("by_family", "evaluations", "baseline", "screening")},
            near_miss_bound=req(d, "near_miss_bound", NUM, w, "", null=True),
        )
