"""The end-to-end jobs behind the CLI: generate prompts, validate them, write a run directory.

Every job checks its arguments and its `--out` (`advgen.core.rundir.check_out`) before any work,
and writes its directory through `rundir.writing` (lock, completion marker). Sizes are bounded:
`generate` streams prompts to disk in chunks (memory flat in n) up to `MAX_GENERATE`; `validate`
and `run` measure unit by unit (`backends.evaluate`: the END logits of one unit at a time, the
same bytes as one `validate` call) but hold the run's prompts and rows, so they refuse more than
`MAX_ROWS` prompts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import files, options, records, rundir
from advgen.core.types import AdvgenError, Evaluation, Prompt, PromptSet
from advgen.model.backends import Backend, LocalBackend, evaluate
from advgen.model.loading import LoadedModel
from advgen.model.metrics import bootstrap_ci
from advgen.model.validate import DEFAULT_BATCH
from advgen.outputs.run_summary import ProbDiff, RunSummary, summary_of
from advgen.prompts import datasets
from advgen.prompts import lexicon as lexicon_mod
from advgen.prompts.lexicon import Lexicon, build_lexicon
from advgen.prompts.templates import ORDERS, resolve_templates, tokenizer_hash

MAX_GENERATE = 10_000_000
"""Largest `generate --n` (streamed: memory does not grow with n, time does)."""
MAX_ROWS = 100_000
"""Largest prompt count of one `validate` / `run` (held in memory; see docs/reliability.md)."""
CHUNK = 2048
"""Prompts rendered and written per chunk by `generate`."""
MAX_BATCH = options.MAX_BATCH
"""Largest --batch-size: one forward's activations grow with it."""


@dataclass(frozen=True)
class RunResult:
    out: Path
    evaluation: Evaluation
    summary: dict[str, Any]
    manifest: dict[str, Any]
    rejected: tuple[dict[str, Any], ...] = ()
    """Rows `validate --skip-invalid` left out: {row, line, reason}."""

    @property
    def record(self) -> RunSummary:
        """`summary` (summary.json as written) typed."""
        return RunSummary.from_dict(self.summary, self.out / "summary.json")


def check_args(n: int | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH, limit: int = MAX_ROWS) -> None:
    """Argument checks every job runs before any work (and before a model loads)."""
    if n is not None and not 1 <= n <= limit:
        raise AdvgenError(
            f"--n must be between 1 and {limit:,}, got {n:,}" + (" (see docs/reliability.md, limits)" if n > limit else "")
        )
    if seed < 0:
        raise AdvgenError(f"--seed must be >= 0, got {seed}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise AdvgenError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch_size:,}")


def run_identity(kind: str, model: str, seed: int, **settings: Any) -> str:
    """What makes two run directories 'the same run' (for the --out refusal rules)."""
    return rundir.identity_of(kind, {"model": model, "seed": seed, **settings})


def precheck(
    kind: str,
    out: Path,
    model: str,
    n: int,
    seed: int,
    templates: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    overwrite: bool = False,
) -> None:
    """Everything `generate` / `run` can check before a tokenizer or model loads: arguments, templates, --out."""
    check_args(n, seed, batch_size, MAX_GENERATE if kind == "generate" else MAX_ROWS)
    resolve_templates(templates)
    tmpl = str(templates or "ioi")
    extra = {} if kind == "generate" else {"batch_size": batch_size}
    rundir.check_out(out, kind, run_identity(kind, model, seed, n=n, templates=tmpl, **extra), overwrite)


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


def iter_prompts(
    tokenizer: Any,
    n: int,
    seed: int,
    templates: str | Path | None = None,
    lexicon: Lexicon | None = None,
) -> Iterator[Prompt]:
    """The same prompts as `generate`, one at a time: memory stays flat in n."""
    lex = lexicon or build_lexicon(tokenizer)
    for sp in datasets.iter_specs(resolve_templates(templates), lex, n, seed, ORDERS):
        yield datasets.render_spec(sp, tokenizer)


def _chunked(items: Iterable[Any], k: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, k)):
        yield chunk


def generate_to(
    out: Path,
    tokenizer: Any,
    n: int,
    seed: int,
    templates: str | Path | None,
    lexicon: Lexicon,
    manifest: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Stream n prompts to OUT/prompts.jsonl in chunks (atomic), then manifest.json; returns the path."""
    check_args(n, seed, limit=MAX_GENERATE)
    ident = run_identity("generate", str(manifest.get("model")), seed, n=n, templates=str(templates or "ioi"))
    with rundir.writing(out, "generate", ident, overwrite) as d:
        with files.atomic_open(d / "prompts.jsonl") as f:
            for chunk in _chunked(iter_prompts(tokenizer, n, seed, templates, lexicon), CHUNK):
                f.write(files.jsonl_text(records.prompt_row(p) for p in chunk))
        files.atomic_write_text(d / "manifest.json", files.dumps(manifest) + "\n")
    return out / "prompts.jsonl"


def write_prompts(out: Path, prompts: PromptSet, manifest: dict[str, Any]) -> Path:
    files.atomic_write_text(out / "prompts.jsonl", files.jsonl_text(records.prompt_row(p) for p in prompts))
    files.atomic_write_text(out / "manifest.json", files.dumps(manifest) + "\n")
    return out / "prompts.jsonl"


def write_results(out: Path, ev: Evaluation, manifest: dict[str, Any], seed: int) -> dict[str, Any]:
    """results.jsonl / results.csv / summary.json / manifest.json, each written atomically; summary.json as written.

    summary.json's shape is stated once, in `advgen.outputs.run_summary.RunSummary`.
    """
    rows = records.result_rows(ev)
    pd = None
    if any(p.answer_tokens for p in ev.prompts):  # a set-answer task: its headline metric, PD = p(answers) - p(foils)
        diffs = [m.io_prob - m.s_prob for m in ev.metrics]
        pd = ProbDiff(sum(diffs) / len(diffs), bootstrap_ci(diffs, seed + 3))
    summary = summary_of(ev.metrics, ev.prompts.prompts, seed, pd).to_dict()  # with by_template, by_order and by_family
    files.atomic_write_text(out / "results.jsonl", files.jsonl_text(rows))
    files.atomic_write_text(out / "results.csv", files.csv_text(rows))
    files.atomic_write_text(out / "summary.json", files.dumps(summary) + "\n")
    files.atomic_write_text(out / "manifest.json", files.dumps(manifest) + "\n")
    return summary


@dataclass(frozen=True)
class PromptRows:
    """Rows of a prompt JSONL read and type-checked before any model loads."""

    path: Path
    rows: tuple[dict[str, Any], ...]
    lines: tuple[int, ...]
    """Physical line of each row in `path`."""
    numbers: tuple[int, ...]
    """Row number (1-based, blank lines not counted) of each row."""
    rejected: tuple[dict[str, Any], ...] = ()


def read_prompt_rows(path: str | Path, skip_invalid: bool = False) -> PromptRows:
    """Read prompt rows; with skip_invalid, bad rows become {row, line, reason} instead of an error."""
    rejected: list[dict[str, Any]] | None = [] if skip_invalid else None
    got = files.read_jsonl_lines(path, types=datasets.ROW_TYPES, rejected=rejected, allow_empty=skip_invalid)
    if len(got) > MAX_ROWS:
        raise AdvgenError(f"{path}: {len(got):,} rows; one validate handles at most {MAX_ROWS:,} (split the file)")
    return PromptRows(
        Path(path), tuple(r for _, _, r in got), tuple(n for _, n, _ in got), tuple(k for k, _, _ in got), tuple(rejected or ())
    )


def _prompts_of(
    src: PromptRows,
    tokenizer: Any,
    skip_invalid: bool,
    n_ctx: int | None = None,
) -> tuple[PromptSet, tuple[dict[str, Any], ...]]:
    """Render every row; with skip_invalid a row that does not render (or fit the context) is rejected, not fatal."""
    prompts, rejected = [], list(src.rejected)
    for row, line, k in zip(src.rows, src.lines, src.numbers, strict=True):
        try:
            p = datasets.row_prompt(row, k, f"{src.path}:{line}", tokenizer)
            if n_ctx is not None and len(p) > n_ctx:
                raise AdvgenError(f"{src.path}:{line}: {len(p)} tokens, more than the model's context of {n_ctx}")
            prompts.append(p)
        except AdvgenError as e:
            if not skip_invalid:
                raise
            rejected.append({"row": k, "line": line, "reason": str(e)})
    if not prompts:
        raise AdvgenError(f"{src.path}: no valid rows ({len(rejected)} rejected)")
    rejected.sort(key=lambda r: r["line"])
    return PromptSet(tuple(prompts), tokenizer_hash(tokenizer)), tuple(rejected)


def validate_identity(model: str, path: Path, seed: int, batch_size: int, skip_invalid: bool) -> str:
    digest = rundir.sha256_file(path) if path.is_file() else ""
    return run_identity(
        "validate", model, seed, prompts=str(path), sha256=digest, batch_size=batch_size, skip_invalid=skip_invalid
    )


def validate_rows(
    model: LoadedModel,
    path: str | Path | PromptRows,
    out: Path,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    progress: bool = False,
    skip_invalid: bool = False,
    overwrite: bool = False,
    backend: Backend | None = None,
    command: str = "",
) -> RunResult:
    """Metrics for prompts in a JSONL file (made by `advgen generate` or by anyone in that shape)."""
    check_args(None, seed, batch_size)
    src = path if isinstance(path, PromptRows) else read_prompt_rows(path, skip_invalid)
    ident = validate_identity(model.name, src.path, seed, batch_size, skip_invalid)
    rundir.check_out(out, "validate", ident, overwrite, inputs=[src.path])
    prompts, rejected = _prompts_of(src, model.tokenizer, skip_invalid, model.n_ctx)
    ev = evaluate(backend or LocalBackend(model), prompts, batch_size, progress, model)  # unit by unit: memory flat in n
    settings: dict[str, Any] = {"prompts": str(src.path), "batch_size": batch_size}
    if skip_invalid:
        settings["rejected"] = len(rejected)
    man = records.manifest(model, prompts.tokenizer_hash, seed, settings, command)
    with rundir.writing(out, "validate", ident, overwrite, inputs=[src.path]) as d:
        summary = write_results(d, ev, man, seed)
        if skip_invalid:
            files.atomic_write_text(d / "rejected.jsonl", files.jsonl_text(rejected))
    return RunResult(out, ev, summary, man, rejected)


def run(
    model: LoadedModel,
    n: int,
    seed: int,
    out: Path,
    templates: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    overwrite: bool = False,
    backend: Backend | None = None,
    command: str = "",
) -> RunResult:
    """Generate n prompts, validate them on `model`, write the run directory."""
    check_args(n, seed, batch_size)
    ident = run_identity("run", model.name, seed, n=n, templates=str(templates or "ioi"), batch_size=batch_size)
    rundir.check_out(out, "run", ident, overwrite)
    lex = build_lexicon(model.tokenizer)
    prompts = generate(model.tokenizer, n, seed, templates, lexicon=lex)
    ev = evaluate(backend or LocalBackend(model), prompts, batch_size, progress, model)  # unit by unit: memory flat in n
    settings = {"n": n, "templates": str(templates or "ioi"), "batch_size": batch_size, "lexicon": lexicon_mod.report(lex)}
    man = records.manifest(model, prompts.tokenizer_hash, seed, settings, command)
    with rundir.writing(out, "run", ident, overwrite) as d:
        summary = write_results(d, ev, man, seed)
    return RunResult(out, ev, summary, man)
