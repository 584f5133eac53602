"""Rows and provenance: how prompts and metrics become the records every run file holds."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import metadata
from typing import Any, NotRequired, TypedDict

from advgen.core.manifest_doc import MANIFEST_SCHEMA, Manifest, Runtime
from advgen.core.types import Evaluation, Prompt, PromptMetrics
from advgen.core.version import version


class PromptRow(TypedDict):
    """What a row says about its prompt (one schema from validation to export)."""

    text: str
    io: str
    s: str
    template_id: str
    order: str
    family: str
    pair_id: str
    positions: dict[str, int]
    n_tokens: int
    extra: dict[str, Any]
    task: NotRequired[str]
    """Only for tasks other than IOI (IOI rows keep their exact columns): the task, its answer and foil words."""
    answer: NotRequired[str]
    foil: NotRequired[str]


class MetricRow(TypedDict):
    logit_diff: float
    io_logit: float
    s_logit: float
    io_prob: float
    s_prob: float
    io_rank: int
    s_beats_io: bool


class MeasuredRow(PromptRow, MetricRow):
    """An attack-run row as measured, before labelling: which mode, cell, phase and candidate it belongs to."""

    mode: str | None
    """Failure mode name ("random" for the baseline, None for clean prompts)."""
    cell: str | None
    """"mode:index" of the mode's parameter cell (None for clean and baseline rows)."""
    params: dict[str, Any]
    head_signals: dict[str, float]
    phase: str
    """"clean", "sample", "search" or "baseline"."""
    candidate: str | None


class AttackRow(MeasuredRow):
    """A labelled attack-run row (built once from a MeasuredRow; never changed afterwards)."""

    clean_logit_diff: float
    is_break: bool
    """attack or baseline LD < 0 while the clean prompt's LD > 0."""
    explained: bool | None
    """For a confirmed break: the predicted signal moved against the control by more than the threshold."""
    signal_shift: float | None
    """Signal(attack) - signal(control), oriented by the predicted direction; None without a control."""
    control_breaks: bool | None
    """For a guided break: its matched control (the one the verdict compares against, reused or not) also has LD < 0,
    so the edit, not the circuit's mechanism, may have done the breaking. None for every other row."""


def prompt_row(p: Prompt) -> PromptRow:
    row: PromptRow = {
        "text": p.text,
        "io": p.io,
        "s": p.s,
        "template_id": p.template_id,
        "order": p.order,
        "family": p.family,
        "pair_id": p.pair_id,
        "positions": dict(p.positions),
        "n_tokens": len(p),
        "extra": dict(p.extra),
    }
    if p.task != "ioi":
        row["task"], row["answer"], row["foil"] = p.task, p.answer, p.foil
    return row


def metric_row(m: PromptMetrics) -> MetricRow:
    return {
        "logit_diff": m.logit_diff,
        "io_logit": m.io_logit,
        "s_logit": m.s_logit,
        "io_prob": m.io_prob,
        "s_prob": m.s_prob,
        "io_rank": m.io_rank,
        "s_beats_io": m.s_beats_io,
    }


def result_rows(ev: Evaluation) -> list[dict[str, Any]]:
    rows = []
    for i, (p, m) in enumerate(zip(ev.prompts, ev.metrics, strict=True)):
        row = {**prompt_row(p), **metric_row(m)}
        if ev.head_signals:
            row["head_signals"] = {k: v[i] for k, v in ev.head_signals.items()}
        rows.append(row)
    return rows


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "advgen": version()}
    for pkg in ("torch", "transformers", "transformer-lens", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def manifest(model: Any, tokenizer_hash: str, seed: int, settings: Mapping[str, Any], command: str = "") -> dict[str, Any]:
    """Provenance for a run directory (its shape: `advgen.core.manifest_doc.Manifest`); no timestamps, so equal runs
    give equal bytes.

    `command` is given by the caller (a job builds the equivalent `advgen` command line), never read
    from `sys.argv`, which in a notebook is the kernel's command line.
    """
    return Manifest(
        schema_version=MANIFEST_SCHEMA,
        model=getattr(model, "name", str(model)),
        model_source=getattr(model, "source", ""),
        runtime=Runtime(**model.runtime) if hasattr(model, "runtime") else None,
        tokenizer_hash=tokenizer_hash,
        seed=seed,
        settings=dict(settings),
        command=command,
        versions=package_versions(),
    ).to_dict()
