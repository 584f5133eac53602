"""The end-to-end jobs behind the CLI: generate prompts, validate them, write a run directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import files, records
from advgen.core.types import AdvgenError, Evaluation, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import summarize
from advgen.model.validate import DEFAULT_BATCH, validate
from advgen.prompts import datasets
from advgen.prompts import lexicon as lexicon_mod
from advgen.prompts.lexicon import Lexicon, build_lexicon
from advgen.prompts.templates import ORDERS, resolve_templates


@dataclass(frozen=True)
class RunResult:
    out: Path
    evaluation: Evaluation
    summary: dict[str, Any]
    manifest: dict[str, Any]


def generate(
    tokenizer: Any,
    n: int,
    seed: int,
    templates: str | Path | None = None,
    orders: Sequence[str] = ORDERS,
    lexicon: Lexicon | None = None,
    abc: bool = False,
) -> PromptSet:
    """n clean IOI prompts (or their ABC twins) for this tokenizer, balanced and seeded."""
    lex = lexicon or build_lexicon(tokenizer)
    specs = datasets.sample_specs(resolve_templates(templates), lex, n, seed, orders)
    return datasets.build(specs, tokenizer, abc=abc)


def write_prompts(out: Path, prompts: PromptSet, manifest: dict[str, Any]) -> Path:
    files.atomic_write_text(out / "prompts.jsonl", files.jsonl_text(records.prompt_row(p) for p in prompts))
    files.atomic_write_text(out / "manifest.json", files.dumps(manifest) + "\n")
    return out / "prompts.jsonl"


def write_results(out: Path, ev: Evaluation, manifest: dict[str, Any], seed: int) -> dict[str, Any]:
    """results.jsonl / results.csv / summary.json / manifest.json, each written atomically."""
    rows = records.result_rows(ev)
    summary = summarize(ev.metrics, seed)
    summary["by_family"] = {
        fam: summarize([m for p, m in zip(ev.prompts, ev.metrics) if p.family == fam], seed)
        for fam in sorted({p.family for p in ev.prompts})
    }
    files.atomic_write_text(out / "results.jsonl", files.jsonl_text(rows))
    files.atomic_write_text(out / "results.csv", files.csv_text(rows))
    files.atomic_write_text(out / "summary.json", files.dumps(summary) + "\n")
    files.atomic_write_text(out / "manifest.json", files.dumps(manifest) + "\n")
    return summary


def validate_rows(
    model: LoadedModel, path: str | Path, out: Path, batch_size: int = DEFAULT_BATCH, seed: int = 0, progress: bool = False
) -> RunResult:
    """Metrics for prompts in a JSONL file (made by `advgen generate` or by anyone in that shape)."""
    rows = files.read_jsonl(path)
    prompts = datasets.from_rows(rows, model.tokenizer, source=str(path))
    ev = validate(model, prompts, batch_size, progress=progress)
    man = records.manifest(model, prompts.tokenizer_hash, seed, {"prompts": str(path), "batch_size": batch_size})
    return RunResult(out, ev, write_results(out, ev, man, seed), man)


def run(
    model: LoadedModel,
    n: int,
    seed: int,
    out: Path,
    templates: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> RunResult:
    """Generate n prompts, validate them on `model`, write the run directory."""
    if n < 1:
        raise AdvgenError(f"--n must be >= 1, got {n}")
    lex = build_lexicon(model.tokenizer)
    prompts = generate(model.tokenizer, n, seed, templates, lexicon=lex)
    ev = validate(model, prompts, batch_size, progress=progress)
    settings = {"n": n, "templates": str(templates or "ioi"), "batch_size": batch_size, "lexicon": lexicon_mod.report(lex)}
    man = records.manifest(model, prompts.tokenizer_hash, seed, settings)
    return RunResult(out, ev, write_results(out, ev, man, seed), man)
