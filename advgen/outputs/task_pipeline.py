"""`generate`, `validate` and `run` for tasks other than IOI: the same run directory, the task's prompts.

The files are IOI's (prompts.jsonl, results.jsonl/csv, summary.json, manifest.json) with three more
columns per row (task, answer, foil); the manifest records the task (its name, source file and
metric) and what its lexicons kept, so a run says which behaviour it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advgen.core import files, records, rundir
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.backends import Backend, LocalBackend, evaluate
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.outputs.pipeline import MAX_GENERATE, MAX_ROWS, PromptRows, RunResult, check_args, run_identity, write_results
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.lexicons import Lexicons, resolve_lexicons
from advgen.tasks.render import render_task_prompt
from advgen.tasks.sample import iter_task_specs, render_spec
from advgen.tasks.spec import Task, TaskError


def task_settings(task: Task, lex: Lexicons | None = None, **more: Any) -> dict[str, Any]:
    """What a task run's manifest records about the task."""
    return {"task": task.describe(), **more, **({"lexicon": lex.report()} if lex is not None else {})}


def task_identity(kind: str, model: str, seed: int, task: Task, **settings: Any) -> str:
    return run_identity(kind, model, seed, task=task.name, task_source=task.source, **settings)


def task_prompts(task: Task, tokenizer: Any, n: int, seed: int) -> tuple[PromptSet, Lexicons]:
    """n seeded clean prompts of the task for this tokenizer (lexicons filtered to single tokens first)."""
    lex = resolve_lexicons(task, tokenizer)
    prompts = tuple(render_spec(task, sp, tokenizer) for sp in iter_task_specs(task, lex, n, seed, tokenizer=tokenizer))
    return PromptSet(prompts, tokenizer_hash(tokenizer)), lex


def precheck(
    kind: str, out: Path, model: str, task: Task, n: int, seed: int, batch_size: int = DEFAULT_BATCH, overwrite: bool = False
) -> None:
    check_args(n, seed, batch_size, MAX_GENERATE if kind == "generate" else MAX_ROWS)
    extra = {} if kind == "generate" else {"batch_size": batch_size}
    rundir.check_out(out, kind, task_identity(kind, model, seed, task, n=n, **extra), overwrite)


def generate_to(
    out: Path, task: Task, tokenizer: Any, n: int, seed: int, model: str, command: str, overwrite: bool = False
) -> tuple[Path, Lexicons]:
    """OUT/prompts.jsonl and manifest.json for n task prompts (no model run)."""
    prompts, lex = task_prompts(task, tokenizer, n, seed)
    man = records.manifest(model, prompts.tokenizer_hash, seed, task_settings(task, lex, n=n), command)
    with rundir.writing(out, "generate", task_identity("generate", model, seed, task, n=n), overwrite) as d:
        files.atomic_write_text(d / "prompts.jsonl", files.jsonl_text(records.prompt_row(p) for p in prompts))
        files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n")
    return out / "prompts.jsonl", lex


def run(
    model: LoadedModel,
    task: Task,
    n: int,
    seed: int,
    out: Path,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    overwrite: bool = False,
    backend: Backend | None = None,
    command: str = "",
) -> RunResult:
    """Generate n task prompts, validate them on `model`, write the run directory."""
    ident = task_identity("run", model.name, seed, task, n=n, batch_size=batch_size)
    rundir.check_out(out, "run", ident, overwrite)
    prompts, lex = task_prompts(task, model.tokenizer, n, seed)
    ev = evaluate(backend or LocalBackend(model), prompts, batch_size, progress, model)
    man = records.manifest(model, prompts.tokenizer_hash, seed, task_settings(task, lex, n=n, batch_size=batch_size), command)
    with rundir.writing(out, "run", ident, overwrite) as d:
        summary = write_results(d, ev, man, seed)
    return RunResult(out, ev, summary, man)


def row_prompt(task: Task, row: Mapping[str, Any], where: str, tokenizer: Any) -> Prompt:
    """A task prompt from a prompts.jsonl row: re-rendered from its template and slot values, then checked against its text."""
    if row.get("task", task.name) != task.name:
        raise TaskError(
            f"{where}: row is a {row.get('task')!r} prompt, the run's task is {task.name!r} (pass --task {row.get('task')})"
        )
    extra = row.get("extra") or {}
    values = extra.get("values")
    tid = str(row.get("template_id", ""))
    tmpl = {t.id: t for t in task.templates}.get(tid)
    if tmpl is None or not isinstance(values, dict):
        raise TaskError(
            f"{where}: a {task.name!r} row needs 'template_id' (one of {sorted(t.id for t in task.templates)}) and "
            f"'extra.values' (the slot values), got template_id {tid!r}"
        )
    p = render_task_prompt(
        task,
        tmpl,
        {str(k): str(v) for k, v in values.items()},
        tokenizer,
        family=str(row.get("family", "clean")),
        pair_id=str(row.get("pair_id", "")),
    )
    if p.text != row.get("text"):
        raise TaskError(f"{where}: text {row.get('text')!r} is not what template {tid!r} renders from its values ({p.text!r})")
    if (row.get("io"), row.get("s")) != (p.answer, p.foil):
        raise TaskError(
            f"{where}: answer/foil {row.get('io')!r}/{row.get('s')!r} differ from the task's rules ({p.answer!r}/{p.foil!r})"
        )
    return p


def task_rows(task: Task, src: PromptRows, tokenizer: Any, n_ctx: int) -> PromptSet:
    prompts = []
    for row, line in zip(src.rows, src.lines, strict=True):
        p = row_prompt(task, row, f"{src.path}:{line}", tokenizer)
        if len(p) > n_ctx:
            raise AdvgenError(f"{src.path}:{line}: {len(p)} tokens, more than the model's context of {n_ctx}")
        prompts.append(p)
    return PromptSet(tuple(prompts), tokenizer_hash(tokenizer))


def validate_rows(
    model: LoadedModel,
    task: Task,
    src: PromptRows,
    out: Path,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
    backend: Backend | None = None,
    command: str = "",
) -> RunResult:
    """Metrics for a task's prompts.jsonl (as `generate --task` writes it)."""
    ident = task_identity(
        "validate", model.name, seed, task, prompts=str(src.path), sha256=rundir.sha256_file(src.path), batch_size=batch_size
    )
    rundir.check_out(out, "validate", ident, overwrite, inputs=[src.path])
    prompts = task_rows(task, src, model.tokenizer, model.n_ctx)
    ev = evaluate(backend or LocalBackend(model), prompts, batch_size, progress, model)
    man = records.manifest(
        model, prompts.tokenizer_hash, seed, task_settings(task, prompts=str(src.path), batch_size=batch_size), command
    )
    with rundir.writing(out, "validate", ident, overwrite, inputs=[src.path]) as d:
        summary = write_results(d, ev, man, seed)
    return RunResult(out, ev, summary, man)
