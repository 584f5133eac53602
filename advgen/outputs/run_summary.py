"""The `run` / `validate` summary.json as typed records: one writer, one reader.

`pipeline.write_results` builds summary.json through `RunSummary`, so its shape is stated once (the numbers
are `advgen.model.metrics.summarize`'s). `RunSummary.from_dict` reads the current shape strictly: a field
missing or of the wrong type is an AdvgenError naming the file and the field. `read_run_summary` is the one
reader of any run directory's summary.json: it also reads those from before the by_template / by_order
breakdowns. `Headline` is what a dataset card states of any summary.json (run, attack, scan), leniently.
Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import docfields as f
from advgen.core import files
from advgen.core.types import AdvgenError, Interval, Prompt, PromptMetrics
from advgen.model.metrics import summarize


@dataclass(frozen=True)
class GroupStats:
    """One group of a breakdown (`by_template`, `by_order`): `advgen.model.metrics.BREAKDOWN_KEYS`."""

    n: int
    mean_logit_diff: float
    logit_diff_ci95: Interval
    """Seeded percentile bootstrap of the mean."""
    accuracy: float
    s_beats_io_rate: float
    mean_io_prob: float
    io_top1_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean_logit_diff": self.mean_logit_diff,
            "logit_diff_ci95": self.logit_diff_ci95.as_dict(),
            "accuracy": self.accuracy,
            "s_beats_io_rate": self.s_beats_io_rate,
            "mean_io_prob": self.mean_io_prob,
            "io_top1_rate": self.io_top1_rate,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str) -> GroupStats:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(
            f.count(d, "n", w, at),
            f.number(d, "mean_logit_diff", w, at),
            f.interval(d, "logit_diff_ci95", w, at),
            *(f.number(d, k, w, at) for k in ("accuracy", "s_beats_io_rate", "mean_io_prob", "io_top1_rate")),
        )


@dataclass(frozen=True)
class RunStats:
    """The aggregate of a set of prompts (`summarize` without breakdowns): LD, accuracy, probabilities, rank."""

    n: int
    mean_logit_diff: float
    logit_diff_ci95: Interval
    accuracy: float
    """Fraction with LD > 0."""
    accuracy_ci95: Interval
    s_beats_io_rate: float
    """Fraction with LD < 0: the failure rate."""
    mean_io_prob: float
    io_prob_ci95: Interval
    mean_s_prob: float
    io_top1_rate: float
    median_io_rank: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "mean_logit_diff": self.mean_logit_diff,
            "logit_diff_ci95": self.logit_diff_ci95.as_dict(),
            "accuracy": self.accuracy,
            "accuracy_ci95": self.accuracy_ci95.as_dict(),
            "s_beats_io_rate": self.s_beats_io_rate,
            "mean_io_prob": self.mean_io_prob,
            "io_prob_ci95": self.io_prob_ci95.as_dict(),
            "mean_s_prob": self.mean_s_prob,
            "io_top1_rate": self.io_top1_rate,
            "median_io_rank": self.median_io_rank,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str | Path, at: str = "") -> RunStats:
        w = str(where)
        d = f.obj(d, w, at)
        return cls(
            f.count(d, "n", w, at),
            f.number(d, "mean_logit_diff", w, at),
            f.interval(d, "logit_diff_ci95", w, at),
            f.number(d, "accuracy", w, at),
            f.interval(d, "accuracy_ci95", w, at),
            f.number(d, "s_beats_io_rate", w, at),
            f.number(d, "mean_io_prob", w, at),
            f.interval(d, "io_prob_ci95", w, at),
            f.number(d, "mean_s_prob", w, at),
            f.number(d, "io_top1_rate", w, at),
            f.number(d, "median_io_rank", w, at),
        )

    @classmethod
    def of_metrics(cls, metrics: Sequence[PromptMetrics], seed: int) -> RunStats:
        return cls.from_dict(summarize(metrics, seed), "summarize (metrics)")


@dataclass(frozen=True)
class ProbDiff:
    """A set-answer task's headline metric PD = p(answers) - p(foils): its mean and seeded bootstrap interval."""

    mean: float
    ci95: Interval


@dataclass(frozen=True)
class RunSummary:
    """The whole of a `run` / `validate` summary.json.

    `by_template` / `by_order` are None in a run directory from before the breakdowns; `prob_diff` is None but
    for a set-answer task (greater-than).
    """

    stats: RunStats
    by_family: Mapping[str, RunStats]
    by_template: Mapping[str, GroupStats] | None = None
    by_order: Mapping[str, GroupStats] | None = None
    prob_diff: ProbDiff | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.stats.to_dict()
        for key, groups in (("by_template", self.by_template), ("by_order", self.by_order)):
            if groups is not None:
                out[key] = {k: g.to_dict() for k, g in groups.items()}
        if self.prob_diff is not None:
            out["mean_prob_diff"] = self.prob_diff.mean
            out["prob_diff_ci95"] = self.prob_diff.ci95.as_dict()
        out["by_family"] = {k: s.to_dict() for k, s in self.by_family.items()}
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> RunSummary:
        """The current shape, strictly; `read_run_summary` reads older ones too."""
        return _read(d, str(where), strict=True)

    @classmethod
    def of_groups(cls, stats: Mapping[str, Any], by_family: Mapping[str, Any], prob_diff: ProbDiff | None) -> RunSummary:
        """From `summarize`'s documents (the run's, with breakdowns; each family's): what write_results writes."""
        fam = {k: RunStats.from_dict(v, "summarize (metrics)", f"by_family.{k}") for k, v in by_family.items()}
        s = _read({**stats, "by_family": {}}, "summarize (metrics)", strict=True)
        return cls(s.stats, fam, s.by_template, s.by_order, prob_diff)


def _groups(d: Mapping[str, Any], key: str, w: str, strict: bool) -> dict[str, GroupStats] | None:
    if key not in d and not strict:
        return None
    return {k: GroupStats.from_dict(v, w, f"{key}.{k}") for k, v in f.table(d, key, w, "").items()}


def _read(d: Any, w: str, strict: bool) -> RunSummary:
    d = f.obj(d, w, "")
    pd = None
    if "mean_prob_diff" in d or "prob_diff_ci95" in d:
        pd = ProbDiff(f.number(d, "mean_prob_diff", w, ""), f.interval(d, "prob_diff_ci95", w, ""))
    fam = {k: RunStats.from_dict(v, w, f"by_family.{k}") for k, v in f.table(d, "by_family", w, "").items()}
    return RunSummary(RunStats.from_dict(d, w), fam, _groups(d, "by_template", w, strict), _groups(d, "by_order", w, strict), pd)


def read_run_summary(d: Any, where: str | Path) -> RunSummary:
    """Any `run` / `validate` run directory's summary.json, typed: the breakdowns may be absent (older runs)."""
    return _read(d, str(where), strict=False)


def load_run_summary(run_dir: Path) -> RunSummary:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise AdvgenError(f"{run_dir}: no summary.json (not a run directory, or an unfinished one)")
    return read_run_summary(files.read_json(path), path)


def summary_of(metrics: Sequence[PromptMetrics], prompts: Sequence[Prompt], seed: int, prob_diff: ProbDiff | None) -> RunSummary:
    """The record write_results writes: the run's statistics with breakdowns, PD where given, and each family's."""
    fams = sorted({p.family for p in prompts})
    by_family = {fam: summarize([m for p, m in zip(prompts, metrics, strict=False) if p.family == fam], seed) for fam in fams}
    return RunSummary.of_groups(summarize(metrics, seed, prompts), by_family, prob_diff)


# ---- what a dataset card states of any summary.json ------------------------------------------------------------


HEADLINE_KEYS = ("n", "mean_logit_diff", "accuracy", "s_beats_io_rate", "mean_io_prob")


@dataclass(frozen=True)
class Headline:
    """A group's headline figures in any summary.json (run, attack, scan): None where the group does not record one,
    NaN where it was written null (a scan's group records no accuracy; an empty set's means are null)."""

    n: int | float | None
    mean_logit_diff: int | float | None
    accuracy: int | float | None
    s_beats_io_rate: int | float | None
    mean_io_prob: int | float | None

    def figures(self) -> tuple[int | float | None, ...]:
        return (self.n, self.mean_logit_diff, self.accuracy, self.s_beats_io_rate, self.mean_io_prob)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str, at: str) -> Headline:
        def one(k: str) -> int | float | None:
            if k not in d:
                return None
            v = f.check(d[k], f.NUM, where, f.path_of(at, k), null=True)
            return math.nan if v is None else v

        return cls(*(one(k) for k in HEADLINE_KEYS))


def headlines(summary: Mapping[str, Any], where: str | Path) -> dict[str, Headline]:
    """ "all" (the document's own figures) and each of its `by_family` groups; {} for an empty document."""
    w = str(where)
    if not summary:
        return {}
    fams = f.check(summary.get("by_family", {}), (dict,), w, "by_family")
    groups = {"all": Headline.from_dict(summary, w, "")}
    groups.update({k: Headline.from_dict(f.obj(v, w, f"by_family.{k}"), w, f"by_family.{k}") for k, v in fams.items()})
    return groups
