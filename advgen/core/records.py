"""Rows and provenance: how prompts and metrics become the records every run file holds."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

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


def prompt_row(p: Prompt) -> PromptRow:
    return {
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


def _is_advgen_entry(argv0: str) -> bool:
    """`advgen ...` or `python -m advgen ...` (argv[0] is then advgen/__main__.py, a path local to this machine)."""
    p = Path(argv0)
    return p.name == "advgen" or (p.name == "__main__.py" and p.parent.name == "advgen")


def manifest(model: Any, tokenizer_hash: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance for a run directory; no timestamps, so equal runs give equal bytes."""
    return {
        "model": getattr(model, "name", str(model)),
        "model_source": getattr(model, "source", ""),
        "tokenizer_hash": tokenizer_hash,
        "seed": seed,
        "settings": dict(settings),
        "command": "advgen " + " ".join(sys.argv[1:]) if _is_advgen_entry(sys.argv[0]) else " ".join(sys.argv),
        "versions": package_versions(),
    }
