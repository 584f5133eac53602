"""Rows and provenance: how prompts and metrics become the records every run file holds."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from advgen.core.types import Evaluation, Prompt, PromptMetrics


def prompt_row(p: Prompt) -> dict[str, Any]:
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


def metric_row(m: PromptMetrics) -> dict[str, Any]:
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
    out = {"python": sys.version.split()[0]}
    for pkg in ("advgen", "torch", "transformers", "transformer-lens", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def manifest(model: Any, tokenizer_hash: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance for a run directory; no timestamps, so equal runs give equal bytes."""
    return {
        "model": getattr(model, "name", str(model)),
        "model_source": getattr(model, "source", ""),
        "tokenizer_hash": tokenizer_hash,
        "seed": seed,
        "settings": dict(settings),
        "command": "advgen " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "advgen" else " ".join(sys.argv),
        "versions": package_versions(),
    }
