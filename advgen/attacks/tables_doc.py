"""An attack's modes.json (IOI and generic task) and IOI's baseline.json as typed records: each shape stated once.

`tables.mode_tables` / `tables.baseline_doc` (IOI) and `task_tables.mode_tables` (a generic task) write these documents;
the records below are their fields in the file's key order, so a document read and written again keeps its bytes.
`from_dict` reads the current shape strictly: a field missing or of the wrong type is an AdvgenError naming the file
and the dotted field path. `read_modes` / `read_task_modes` / `read_baseline` are the readers
`advgen.attacks.summary_read.read_attack_summary` uses (summary.json says which attack wrote the directory): they also
read older and partial documents, a field they lack being None; a field of the wrong type is an error either way.
Older IOI documents: before control breaks were recorded (2026-12-04) a table had no `control_shared_breaks` and
baseline.json no attributable yield; before the interval over clean prompts (2026-12-01) a prediction had no
`n_prompts`; before `--modes` could run a mode outside the proposal, modes.json had no `mode_notes`.

A generic task's baseline.json is `task_summary_doc.TaskBaseline`. Carried verbatim (Mapping / list): a mode's
`signal`, `skipped_modes` and `mode_notes` (mode -> why, checked strings), a task mode's `doses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from advgen.attacks.task_summary_doc import FamilyStats
from advgen.core import docfields as f
from advgen.core.docspec import PlainRecord, load_record, spec
from advgen.core.types import Interval

MODES_FILE = "modes.json"
BASELINE_FILE = "baseline.json"


@dataclass(frozen=True)
class Prediction(PlainRecord):
    """A mode's prediction check (`tables.prediction_check`): paired LD(attack) - LD(control) on the random sample,
    its interval over clean prompts (null: under two prompts measured), and the verdict."""

    n: int | None = spec("int")
    n_prompts: int | None = spec("int")
    expected_sign: int | None = spec("int")
    attack_minus_control: Interval | None = spec("ci", null=True)
    verdict: str | None = spec("str")


@dataclass(frozen=True)
class ModeTable(PlainRecord):
    """An IOI mode's table of a subset (`tables._table`): its clean partners, controls and attacks, and their breaks."""

    clean: FamilyStats | None = spec("rec", FamilyStats)
    control: FamilyStats | None = spec("rec", FamilyStats)
    attack: FamilyStats | None = spec("rec", FamilyStats)
    breaks: int | None = spec("int")
    control_shared_breaks: int | None = spec("int")
    break_rate: float | None = spec("num")
    explained_fraction: float | None = spec("num")

    @property
    def attacks(self) -> int | None:
        """How many attacks the subset holds (None: not recorded)."""
        return None if self.attack is None else self.attack.n


@dataclass(frozen=True)
class CellTable(PlainRecord):
    """A generic task's table of a set of attacks and their controls (`task_tables.cell_table`)."""

    n: int | None = spec("int")
    breaks: int | None = spec("int")
    attributable_breaks: int | None = spec("int")
    raw_break_rate: float | None = spec("num")
    attributable_break_rate: float | None = spec("num")
    explained: int | None = spec("int")
    explained_fraction: float | None = spec("num")
    mean_ld_attack: float | None = spec("num")
    mean_ld_control: float | None = spec("num")
    control_break_rate: float | None = spec("num")

    @property
    def attacks(self) -> int | None:
        """How many attacks the set holds."""
        return self.n


@dataclass(frozen=True)
class ModeScreening(PlainRecord):
    """An IOI mode's search: candidates searched, their break precision, the sample's breaks, cells left unfunded."""

    searched: int | None = spec("int")
    precision: float | None = spec("num")
    sample_breaks: int | None = spec("int")
    cells_not_funded: tuple[str, ...] | None = spec("strs")


@dataclass(frozen=True)
class IoiMode(PlainRecord):
    """One mode of an IOI modes.json: what it targets, its prediction check, the random sample's and every evaluated
    candidate's tables, the sample's tables by parameter (`by_params`: key -> value -> table), its search."""

    roles: tuple[str, ...] | None = spec("strs")
    mechanism: str | None = spec("str")
    compiled_from: str | None = spec("str", null=True)
    signal: Mapping[str, Any] | None = spec("map")
    natural_failure_rate: float | None = spec("num")
    prediction: Prediction | None = spec("rec", Prediction)
    random_sample: ModeTable | None = spec("rec", ModeTable)
    all: ModeTable | None = spec("rec", ModeTable)
    by_params: Mapping[str, Mapping[str, ModeTable]] | None = spec("map")
    """Read by `ModesDoc.load` (an object of objects of tables, which no field kind states)."""
    screening: ModeScreening | None = spec("rec", ModeScreening)


@dataclass(frozen=True)
class ModesDoc(PlainRecord):
    """The whole of an IOI modes.json: the clean prompts' statistics, skipped modes and notes (why), each mode."""

    natural: FamilyStats | None = spec("rec", FamilyStats)
    skipped_modes: Mapping[str, str] | None = spec("map")
    mode_notes: Mapping[str, str] | None = spec("map")
    modes: Mapping[str, IoiMode] | None = spec("recmap", IoiMode)

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> ModesDoc:
        """The current shape, strictly; `read_modes` reads older ones too."""
        return cls.load(d, str(where), strict=True)

    @classmethod
    def load(cls, d: Any, where: str, strict: bool) -> ModesDoc:
        doc = load_record(cls, d, where, "", strict)
        _checked(doc.natural, where, "natural", strict)
        _strings(doc.skipped_modes, where, "skipped_modes")
        _strings(doc.mode_notes, where, "mode_notes")
        if doc.modes is None:
            return doc
        modes = {}
        for name, m in doc.modes.items():
            at = f.path_of("modes", name)
            for k in ("random_sample", "all"):
                _check_table(getattr(m, k), where, f"{at}.{k}", strict)
            modes[name] = replace(
                m, by_params=None if m.by_params is None else _by_params(m.by_params, where, f"{at}.by_params", strict)
            )
        return replace(doc, modes=modes)

    def mode(self, name: str) -> IoiMode | None:
        return (self.modes or {}).get(name)


@dataclass(frozen=True)
class TaskCell(PlainRecord):
    """One cell (dose, gap) of a task mode: the random sample's and every evaluated row's tables, the cell's verdict."""

    sample: CellTable | None = spec("rec", CellTable)
    all: CellTable | None = spec("rec", CellTable)
    verdict: str | None = spec("str", null=True)


@dataclass(frozen=True)
class TaskModeTables(PlainRecord):
    """One mode of a generic task's modes.json: the compiled mode (`task_compiler.TaskMode.describe`), its cells'
    tables, the prediction check, its measured cause (null when confirmed), the random sample's and every row's table."""

    heads: tuple[str, ...] | None = spec("strs")
    key: str | None = spec("str")
    attack: tuple[str, ...] | None = spec("strs")
    control: tuple[str, ...] | None = spec("strs")
    expected_sign: int | None = spec("int")
    doses: list[Any] | None = spec("list")
    compiled_from: str | None = spec("str")
    mechanism: str | None = spec("str")
    edit: str | None = spec("str")
    signal: Mapping[str, Any] | None = spec("map")
    cells: Mapping[str, TaskCell] | None = spec("recmap", TaskCell)
    prediction: Prediction | None = spec("rec", Prediction)
    cause: str | None = spec("str", null=True)
    random_sample: CellTable | None = spec("rec", CellTable)
    all: CellTable | None = spec("rec", CellTable)


@dataclass(frozen=True)
class TaskModesDoc(PlainRecord):
    """The whole of a generic task's modes.json: the clean prompts' statistics, skipped modes (why), each mode."""

    natural: FamilyStats | None = spec("rec", FamilyStats)
    skipped_modes: Mapping[str, str] | None = spec("map")
    modes: Mapping[str, TaskModeTables] | None = spec("recmap", TaskModeTables)

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> TaskModesDoc:
        """The current shape, strictly; `read_task_modes` reads older ones too."""
        return cls.load(d, str(where), strict=True)

    @classmethod
    def load(cls, d: Any, where: str, strict: bool) -> TaskModesDoc:
        doc = load_record(cls, d, where, "", strict)
        _checked(doc.natural, where, "natural", strict)
        _strings(doc.skipped_modes, where, "skipped_modes")
        return doc

    def mode(self, name: str) -> TaskModeTables | None:
        return (self.modes or {}).get(name)


@dataclass(frozen=True)
class GuidedYield(PlainRecord):
    """baseline.json's `guided`: evaluations, breaks and breaks per 1,000, raw and attributable (the control holds)."""

    evaluations: int | None = spec("int")
    breaks: int | None = spec("int")
    breaks_per_1000: float | None = spec("num")
    control_shared_breaks: int | None = spec("int")
    attributable_breaks: int | None = spec("int")
    attributable_per_1000: float | None = spec("num")


@dataclass(frozen=True)
class RandomYield(PlainRecord):
    """baseline.json's `baseline`: the random-perturbation side's evaluations, breaks and breaks per 1,000."""

    evaluations: int | None = spec("int")
    breaks: int | None = spec("int")
    breaks_per_1000: float | None = spec("num")


@dataclass(frozen=True)
class YieldWords(PlainRecord):
    """baseline.json's `definitions`: the attributable and the raw yield, in words."""

    attributable: str | None = spec("str")
    raw: str | None = spec("str")


@dataclass(frozen=True)
class Baseline(PlainRecord):
    """The whole of an IOI baseline.json (`tables.baseline_doc`): both yields against random perturbation, each
    side's spend and breaks; a ratio is null (NaN) when the random side found no break."""

    budget: int | None = spec("int")
    guided_per_1000: float | None = spec("num")
    random_per_1000: float | None = spec("num")
    attributable_per_1000: float | None = spec("num")
    guided: GuidedYield | None = spec("rec", GuidedYield)
    baseline: RandomYield | None = spec("rec", RandomYield)
    ratio: float | None = spec("num")
    attributable_ratio: float | None = spec("num")
    definitions: YieldWords | None = spec("rec", YieldWords)
    accounting: str | None = spec("str")

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> Baseline:
        """The current shape, strictly; `read_baseline` reads older ones too."""
        return load_record(cls, d, str(where), "", strict=True)


def _checked(s: FamilyStats | None, where: str, at: str, strict: bool) -> None:
    if s is not None:
        s.checked(where, at, strict)


def _strings(m: Mapping[str, Any] | None, where: str, at: str) -> None:
    for k, v in (m or {}).items():
        f.check(v, (str,), where, f.path_of(at, k))


def _check_table(t: ModeTable | None, where: str, at: str, strict: bool) -> None:
    for side in ("clean", "control", "attack"):
        _checked(None if t is None else getattr(t, side), where, f"{at}.{side}", strict)


def read_table(d: Any, where: str | Path, at: str, strict: bool) -> ModeTable:
    """An IOI mode's table (modes.json, and summary.json's copy of it), strictly or leniently, its families checked."""
    t = load_record(ModeTable, d, str(where), at, strict)
    _check_table(t, str(where), at, strict)
    return t


def _by_params(d: Mapping[str, Any], where: str, at: str, strict: bool) -> dict[str, dict[str, ModeTable]]:
    """`by_params`: parameter key -> value -> the random sample's table of the candidates with that value."""
    out: dict[str, dict[str, ModeTable]] = {}
    for key, vals in d.items():
        vals = f.obj(vals, where, f.path_of(at, key))
        out[key] = {v: read_table(t, where, f"{f.path_of(at, key)}.{v}", strict) for v, t in vals.items()}
    return out


def read_modes(d: Any, where: str | Path) -> ModesDoc:
    """An IOI modes.json, typed: fields an older or partial document lacks are None; a wrong type is named."""
    return ModesDoc.load(d, str(where), strict=False)


def read_task_modes(d: Any, where: str | Path) -> TaskModesDoc:
    """A generic task's modes.json, typed: fields a partial document lacks are None; a wrong type is named."""
    return TaskModesDoc.load(d, str(where), strict=False)


def read_baseline(d: Any, where: str | Path) -> Baseline:
    """An IOI baseline.json, typed: the attributable fields (added in issue 28) and others it lacks are None."""
    return load_record(Baseline, d, str(where), "", strict=False)
