"""A generic-task attack's summary.json and baseline.json as typed records: one shape per file, stated once.

`task_tables.write_task_run` writes both through these records (`built`: the writer's document checked like a
file, so a drifted key fails at the write, and the bytes are the record's). `from_dict` reads the current shape
strictly: a field missing or of the wrong type is an AdvgenError naming the file and the field's dotted path.
summary.json carries `schema_version` (IOI's summary has none: `is_task_summary` tells them apart); a version
other than `SCHEMA_VERSION` is refused by name. `read_task_summary` is the reader the CLI and the run loader use;
`advgen.attacks.summary_read.read_attack_summary` lifts the record into the attack summary the report and console read.
`read_task_summary` also reads older and partial documents (`cause` was added to each mode on 2026-12-04), a field
they lack being None; a field of the wrong type is an error either way.

Numbers written null read as NaN (`advgen.core.docspec`): a ratio is null when the random side found no break,
an explained fraction when there was no break. Carried verbatim: `screening` (checked an object only; the search
may add keys), `skipped_modes` (mode -> why, strings) and `evaluations` (phase -> count, integers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from advgen.core import docfields as f
from advgen.core.docspec import PlainRecord, load_record, plain_record, spec
from advgen.core.types import AdvgenError, Interval

FILE = "summary.json"
BASELINE_FILE = "baseline.json"
SCHEMA_VERSION = 1
"""summary.json of a generic-task attack: 1 = this layout (IOI's summary has no schema_version and keeps its bytes)."""
_STATS = ("mean_logit_diff", "logit_diff_ci95", "mean_io_prob", "s_beats_io_rate")


@dataclass(frozen=True)
class FamilyStats(PlainRecord):
    """One family's rows (`tables.family_stats`): count, mean LD [bootstrap 95 % CI], IO probability, failure rate.
    An empty family is written {"n": 0} alone, so the statistics are optional and required once n > 0."""

    n: int | None = spec("int")
    mean_logit_diff: float | None = spec("num", opt=True)
    logit_diff_ci95: Interval | None = spec("ci", opt=True)
    mean_io_prob: float | None = spec("num", opt=True)
    s_beats_io_rate: float | None = spec("num", opt=True)

    def checked(self, where: str, at: str, strict: bool) -> FamilyStats:
        if strict and self.n:
            missing = next((k for k in _STATS if getattr(self, k) is None), None)
            if missing:
                raise AdvgenError(f"{where}: field {f.path_of(at, missing)!r} is missing (n = {self.n})")
        return self


@dataclass(frozen=True)
class TaskYield(PlainRecord):
    """summary.json's `yield`: baseline.json's headline lifted out of its nesting, raw then attributable, with the
    rule-of-three lower bound of a ratio that is null (NaN) because the random side found no break."""

    guided_per_1000: float | None = spec("num")
    random_per_1000: float | None = spec("num")
    ratio: float | None = spec("num")
    ratio_lower_bound: float | None = spec("num")
    attributable_per_1000: float | None = spec("num")
    attributable_ratio: float | None = spec("num")
    attributable_ratio_lower_bound: float | None = spec("num")
    breaks: int | None = spec("int")
    attributable_breaks: int | None = spec("int")
    control_shared_breaks: int | None = spec("int")


@dataclass(frozen=True)
class TaskMode(PlainRecord):
    """One compiled mode in summary.json: predicted sign of LD(attack) - LD(control), the random sample's paired
    difference (null: under two prompts measured), verdict, measured cause (null when confirmed), evidence, breaks."""

    predicted_sign: int | None = spec("int")
    seen: Interval | None = spec("ci", null=True)
    verdict: str | None = spec("str")
    cause: str | None = spec("str", null=True)
    compiled_from: str | None = spec("str")
    breaks: int | None = spec("int")
    attributable_breaks: int | None = spec("int")
    explained_fraction: float | None = spec("num")


@dataclass(frozen=True)
class TaskAttackSummary(PlainRecord):
    """The whole of a generic task's summary.json: version, task, each family's statistics, evaluations per phase,
    the yield, the explained share of breaks, per-mode verdicts, skipped modes, natural failure rate, screening.

    `yield_` is the file's `yield` (a Python keyword, so no spec'd field): `to_dict` / `from_dict` place it."""

    schema_version: int | None = spec("int")
    task: str | None = spec("str")
    by_family: Mapping[str, FamilyStats] | None = spec("recmap", FamilyStats)
    evaluations: Mapping[str, int] | None = spec("map")
    explained_fraction: float | None = spec("num")
    modes: Mapping[str, TaskMode] | None = spec("recmap", TaskMode)
    skipped_modes: Mapping[str, str] | None = spec("map")
    natural_failure_rate: float | None = spec("num")
    screening: Mapping[str, Any] | None = spec("map")
    yield_: TaskYield | None = None

    def to_dict(self) -> dict[str, Any]:
        items = list(plain_record(self).items())
        at = next((i + 1 for i, (k, _) in enumerate(items) if k == "evaluations"), len(items))
        return dict([*items[:at], ("yield", None if self.yield_ is None else self.yield_.to_dict()), *items[at:]])

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> TaskAttackSummary:
        """The current shape, strictly; `read_task_summary` reads older ones too."""
        return cls.load(d, str(where), strict=True)

    @classmethod
    def load(cls, d: Any, where: str, strict: bool) -> TaskAttackSummary:
        """Strictly (every field there) or leniently (an absent one is None); either way a schema_version other than
        `SCHEMA_VERSION` is refused first, and a field of the wrong type is named."""
        version = f.req(f.obj(d, where, ""), "schema_version", (int,), where, "")
        if version != SCHEMA_VERSION:
            raise AdvgenError(
                f"{where}: schema_version {version} of a task attack summary; this advgen reads version "
                f"{SCHEMA_VERSION} (a run directory written by another advgen: read it with that version)"
            )
        doc = load_record(cls, d, where, "", strict)
        for k, s in (doc.by_family or {}).items():
            s.checked(where, f.path_of("by_family", k), strict)
        _values(doc.evaluations, (int,), where, "evaluations")
        _values(doc.skipped_modes, (str,), where, "skipped_modes")
        y = (f.req if strict else f.opt)(d, "yield", (dict,), where, "")
        return replace(doc, yield_=None if y is None else load_record(TaskYield, y, where, "yield", strict))


@dataclass(frozen=True)
class GuidedSide(PlainRecord):
    """baseline.json's `guided`: evaluations spent and breaks found, those whose control broke too set apart."""

    evaluations: int | None = spec("int")
    breaks: int | None = spec("int")
    control_shared_breaks: int | None = spec("int")
    attributable_breaks: int | None = spec("int")


@dataclass(frozen=True)
class RandomSide(PlainRecord):
    """baseline.json's `baseline`: the random-perturbation side's evaluations and breaks."""

    evaluations: int | None = spec("int")
    breaks: int | None = spec("int")


@dataclass(frozen=True)
class YieldTerms(PlainRecord):
    """baseline.json's `definitions`: the attributable and raw yields and the lower bound, in words."""

    attributable: str | None = spec("str")
    raw: str | None = spec("str")
    lower_bound: str | None = spec("str")


@dataclass(frozen=True)
class TaskBaseline(PlainRecord):
    """The whole of a generic task's baseline.json: both yields against the random baseline, each side's spend."""

    budget: int | None = spec("int")
    guided_per_1000: float | None = spec("num")
    attributable_per_1000: float | None = spec("num")
    random_per_1000: float | None = spec("num")
    guided: GuidedSide | None = spec("rec", GuidedSide)
    baseline: RandomSide | None = spec("rec", RandomSide)
    ratio: float | None = spec("num")
    attributable_ratio: float | None = spec("num")
    ratio_lower_bound: float | None = spec("num")
    attributable_ratio_lower_bound: float | None = spec("num")
    definitions: YieldTerms | None = spec("rec", YieldTerms)
    accounting: str | None = spec("str")

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> TaskBaseline:
        """The current shape, strictly."""
        return load_record(cls, d, str(where), "", strict=True)


def _values(m: Mapping[str, Any] | None, types: tuple[type, ...], where: str, at: str) -> None:
    """Each value of a verbatim object has one of `types` (a wrong one named by its path)."""
    for k, v in (m or {}).items():
        f.check(v, types, where, f.path_of(at, k))


R = TypeVar("R", TaskAttackSummary, TaskBaseline)


def built(cls: type[R], doc: Mapping[str, Any], file: str) -> R:
    """The record a writer writes, from its document (checked like a file, so a key or type drift fails here)."""
    known = {"yield" if fl.name == "yield_" else fl.name for fl in fields(cls)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise AdvgenError(f"{file} (writing): fields {unknown} are not in {cls.__name__}")
    return cls.from_dict(doc, f"{file} (writing)")


def is_task_summary(d: Any) -> bool:
    """Whether a summary.json document is a generic task's (it has `schema_version`; IOI's has none)."""
    return isinstance(d, Mapping) and "schema_version" in d


def read_task_summary(d: Any, where: str | Path) -> TaskAttackSummary | None:
    """A task attack's summary.json typed: fields an older document lacks (a mode's `cause`, before 2026-12-04) are
    None, a field of the wrong type is an error; None for any other summary.json (IOI's, a run's, a scan's)."""
    return TaskAttackSummary.load(d, str(where), strict=False) if is_task_summary(d) else None
