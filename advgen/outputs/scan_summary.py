"""The `scan` summary.json (and its adversarial/summary.json) as typed records: one writer, one reader.

`scan.Tally` builds both documents through `ScanSummary`, so their shape is stated once. Failure rates carry a
Wilson score 95 % interval (`wilson`), the mean LD a normal-approximation one; both are `Interval`s, written
{mean, low, high} as before. `ScanSummary.from_dict` reads strictly: a field missing or of the wrong type is an
AdvgenError naming the file and the field. The sections only some scans write (`by_slot` and
`excluded_unrenderable`: a task's scan; `worst_pairs` and `selection`: summary.json; `source`:
adversarial/summary.json) are None where absent. Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import docfields as f
from advgen.core import files
from advgen.core.types import AdvgenError, Interval

Z95 = 1.959963984540054


def wilson(k: int, n: int) -> Interval:
    """Wilson score 95 % interval of a proportion k / n (sound near 0, where failure rates live)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    p = k / n
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return Interval(p, max(0.0, mid - half), min(1.0, mid + half))


@dataclass(frozen=True)
class FailureGroup:
    """One group of a breakdown (by template, order, family, slot value; a worst pair): its failures (LD < 0)."""

    n: int
    failures: int
    failure_rate: float
    failure_ci95: Interval
    """Wilson score 95 %."""
    mean_logit_diff: float

    @classmethod
    def of_counts(cls, n: int, failures: int, sum_ld: float) -> FailureGroup:
        return cls(n, failures, failures / n, wilson(failures, n), sum_ld / n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "failures": self.failures,
            "failure_rate": self.failure_rate,
            "failure_ci95": self.failure_ci95.as_dict(),
            "mean_logit_diff": self.mean_logit_diff,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str) -> FailureGroup:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(
            f.count(d, "n", w, at),
            f.count(d, "failures", w, at),
            f.number(d, "failure_rate", w, at),
            f.interval(d, "failure_ci95", w, at),
            f.number(d, "mean_logit_diff", w, at),
        )


@dataclass(frozen=True)
class WorstPair:
    """A name pair (IO, S) among the most failing ones, with its failures."""

    io: str
    s: str
    group: FailureGroup

    def to_dict(self) -> dict[str, Any]:
        return {"io": self.io, "s": self.s, **self.group.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str) -> WorstPair:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(f.req(d, "io", (str,), w, at), f.req(d, "s", (str,), w, at), FailureGroup.from_dict(d, w, at))


@dataclass(frozen=True)
class SlotValues:
    """A task slot's failure rate by value: every value, or the worst ones when the slot has many (`n_values`)."""

    n_values: int
    values: Mapping[str, FailureGroup]

    def to_dict(self) -> dict[str, Any]:
        return {"n_values": self.n_values, "values": {k: g.to_dict() for k, g in self.values.items()}}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str) -> SlotValues:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(f.count(d, "n_values", w, at), _groups(d, "values", w, at))


@dataclass(frozen=True)
class ScanSource:
    """adversarial/summary.json's `source`: the scan the failing prompts came from."""

    scan: str
    n_scanned: int
    failure_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {"scan": self.scan, "n_scanned": self.n_scanned, "failure_rate": self.failure_rate}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "source") -> ScanSource:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(f.req(d, "scan", (str,), w, at), f.count(d, "n_scanned", w, at), f.number(d, "failure_rate", w, at))


@dataclass(frozen=True)
class ScanSelection:
    """summary.json's `selection` (`advgen.prompts.space.Selection.describe`): which prompts of the space were scanned."""

    kind: str
    """"prefix" (the first n of the enumeration) or "sample" (n drawn without replacement)."""
    n: int
    space_size: int
    sample_seed: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "space_size": self.space_size, "sample_seed": self.sample_seed}

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "selection") -> ScanSelection:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(
            f.req(d, "kind", (str,), w, at),
            f.count(d, "n", w, at),
            f.count(d, "space_size", w, at),
            f.req(d, "sample_seed", (int,), w, at, null=True),
        )


HEAD = (
    "n",
    "failures",
    "failure_rate",
    "failure_ci95",
    "mean_logit_diff",
    "logit_diff_ci95",
    "accuracy",
    "s_beats_io_rate",
    "mean_io_prob",
)
"""The scanned set's figures, first and in this order; then the breakdowns and the optional sections."""


@dataclass(frozen=True)
class ScanSummary:
    """A scan's summary.json, or the adversarial/summary.json of its failing prompts (no worst pairs; a source)."""

    n: int
    failures: int
    failure_rate: float
    failure_ci95: Interval
    """Wilson score 95 %."""
    mean_logit_diff: float
    logit_diff_ci95: Interval
    """Normal approximation: mean +- z * sd / sqrt(n)."""
    accuracy: float
    s_beats_io_rate: float
    mean_io_prob: float
    by_template: Mapping[str, FailureGroup]
    by_order: Mapping[str, FailureGroup]
    by_family: Mapping[str, FailureGroup]
    by_slot: Mapping[str, SlotValues] | None = None
    worst_pairs: tuple[WorstPair, ...] | None = None
    selection: ScanSelection | None = None
    excluded_unrenderable: int | None = None
    source: ScanSource | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "failures": self.failures,
            "failure_rate": self.failure_rate,
            "failure_ci95": self.failure_ci95.as_dict(),
            "mean_logit_diff": self.mean_logit_diff,
            "logit_diff_ci95": self.logit_diff_ci95.as_dict(),
            "accuracy": self.accuracy,
            "s_beats_io_rate": self.s_beats_io_rate,
            "mean_io_prob": self.mean_io_prob,
        }
        for key, groups in (("by_template", self.by_template), ("by_order", self.by_order), ("by_family", self.by_family)):
            out[key] = {k: g.to_dict() for k, g in groups.items()}
        if self.by_slot is not None:
            out["by_slot"] = {k: v.to_dict() for k, v in self.by_slot.items()}
        if self.worst_pairs is not None:
            out["worst_pairs"] = [p.to_dict() for p in self.worst_pairs]
        if self.selection is not None:
            out["selection"] = self.selection.to_dict()
        if self.excluded_unrenderable is not None:
            out["excluded_unrenderable"] = self.excluded_unrenderable
        if self.source is not None:
            out["source"] = self.source.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> ScanSummary:
        w = str(where)
        d = f.obj(d, w, "")
        slots = (
            None
            if "by_slot" not in d
            else {k: SlotValues.from_dict(v, w, f"by_slot.{k}") for k, v in f.table(d, "by_slot", w, "").items()}
        )
        pairs = None
        if "worst_pairs" in d:
            pairs = tuple(
                WorstPair.from_dict(p, w, f"worst_pairs[{i}]") for i, p in enumerate(f.req(d, "worst_pairs", (list,), w, ""))
            )
        sel = None if "selection" not in d else ScanSelection.from_dict(d["selection"], w)
        excluded = None if "excluded_unrenderable" not in d else f.count(d, "excluded_unrenderable", w, "")
        source = None if "source" not in d else ScanSource.from_dict(d["source"], w)
        num = {
            k: f.number(d, k, w, "") for k in ("failure_rate", "mean_logit_diff", "accuracy", "s_beats_io_rate", "mean_io_prob")
        }
        return cls(
            f.count(d, "n", w, ""),
            f.count(d, "failures", w, ""),
            num["failure_rate"],
            f.interval(d, "failure_ci95", w, ""),
            num["mean_logit_diff"],
            f.interval(d, "logit_diff_ci95", w, ""),
            num["accuracy"],
            num["s_beats_io_rate"],
            num["mean_io_prob"],
            _groups(d, "by_template", w, ""),
            _groups(d, "by_order", w, ""),
            _groups(d, "by_family", w, ""),
            slots,
            pairs,
            sel,
            excluded,
            source,
        )


def _groups(d: Mapping[str, Any], key: str, w: str, at: str) -> dict[str, FailureGroup]:
    return {k: FailureGroup.from_dict(v, w, f"{f.path_of(at, key)}.{k}") for k, v in f.table(d, key, w, at).items()}


def load_scan_summary(path: Path) -> ScanSummary:
    """A scan directory's summary.json (or its adversarial/summary.json), typed; `path` is the file or its directory."""
    p = path / "summary.json" if path.is_dir() else path
    if not p.is_file():
        raise AdvgenError(f"{path}: no summary.json (not a scan directory, or an unfinished one)")
    return ScanSummary.from_dict(files.read_json(p), p)
