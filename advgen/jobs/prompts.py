"""Jobs on prompts: `generate` (no model run), `validate` (existing prompts), `run` (both)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import records, rundir
from advgen.core.types import AdvgenError
from advgen.jobs.common import (
    ModelArg,
    TaskArg,
    backend_for,
    command_line,
    default_out,
    loaded,
    runtime_options,
    spec_of,
    task_of,
    task_option,
)
from advgen.model.loading import load_tokenizer
from advgen.model.validate import DEFAULT_BATCH
from advgen.outputs import pipeline, task_pipeline
from advgen.outputs.pipeline import RunResult
from advgen.prompts.lexicon import build_lexicon, report
from advgen.prompts.templates import tokenizer_hash


@dataclass(frozen=True)
class GenerateResult:
    out: Path
    prompts_path: Path
    n: int
    lexicon: dict[str, Any]
    """What the lexicon kept and dropped (also in manifest.json)."""


def generate(
    model: str = "reference",
    n: int = 300,
    seed: int = 0,
    out: str | Path | None = None,
    templates: str | Path | None = None,
    overwrite: bool = False,
    command: str | None = None,
    task: TaskArg = None,
) -> GenerateResult:
    """Render n seeded prompts of the task (IOI by default) with `model`'s tokenizer into OUT/prompts.jsonl (no model run)."""
    out = Path(out) if out is not None else default_out("generate", model, seed)
    t = task_of(task)
    if t.engine != "ioi":
        _no_templates(templates, t.name)
        task_pipeline.precheck("generate", out, model, t, n, seed, overwrite=overwrite)
        cmd = command if command is not None else command_line("generate", model=model, n=n, seed=seed, task=task_option(task))
        path, lex = task_pipeline.generate_to(out, t, load_tokenizer(model), n, seed, model, cmd, overwrite)
        return GenerateResult(out, path, n, lex.report())
    pipeline.precheck("generate", out, model, n, seed, templates, overwrite=overwrite)
    tok = load_tokenizer(model)
    lex = build_lexicon(tok)
    settings = {"n": n, "templates": str(templates or "ioi"), "lexicon": report(lex)}
    cmd = command if command is not None else command_line("generate", model=model, n=n, seed=seed, templates=templates)
    man = records.manifest(model, tokenizer_hash(tok), seed, settings, cmd)
    path = pipeline.generate_to(out, tok, n, seed, templates, lex, man, overwrite=overwrite)
    return GenerateResult(out, path, n, settings["lexicon"])


def validate(
    model: ModelArg,
    prompts: str | Path,
    out: str | Path | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    skip_invalid: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    backend: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
    task: TaskArg = None,
) -> RunResult:
    """Metrics for the prompts of a JSONL file (`text`, `io`, `s` per row; a task's rows as `generate --task` writes them)."""
    out = Path(out) if out is not None else default_out("validate", model, seed)
    pipeline.check_args(None, seed, batch_size)
    t = task_of(task)
    src = pipeline.read_prompt_rows(prompts, skip_invalid)
    if t.engine != "ioi":
        if skip_invalid:
            raise AdvgenError(
                f"--skip-invalid is for IOI prompt files; a {t.name!r} file is re-rendered from its templates and must be whole"
            )
        cmd = command
        if cmd is None:
            cmd = command_line(
                "validate",
                prompts,
                model=spec_of(model),
                seed=seed,
                batch_size=batch_size,
                task=task_option(task),
                **runtime_options(device, dtype),
            )
        m = loaded(model, device, dtype)
        with backend_for(backend, spec_of(model), m, workers, ray_address, device, dtype) as be:
            return task_pipeline.validate_rows(m, t, src, out, batch_size, seed, progress, overwrite, be, cmd)
    ident = pipeline.validate_identity(spec_of(model), src.path, seed, batch_size, skip_invalid)
    rundir.check_out(out, "validate", ident, overwrite, inputs=[src.path])
    cmd = command
    if cmd is None:
        cmd = command_line(
            "validate",
            prompts,
            model=spec_of(model),
            seed=seed,
            batch_size=batch_size,
            skip_invalid=skip_invalid,
            **runtime_options(device, dtype),
        )
    m = loaded(model, device, dtype)
    with backend_for(backend, spec_of(model), m, workers, ray_address, device, dtype) as be:
        return pipeline.validate_rows(
            m, src, out, batch_size, seed, progress, skip_invalid=skip_invalid, overwrite=overwrite, backend=be, command=cmd
        )


def run(
    model: ModelArg = "reference",
    n: int = 300,
    seed: int = 0,
    out: str | Path | None = None,
    templates: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    overwrite: bool = False,
    progress: bool = False,
    backend: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
    task: TaskArg = None,
) -> RunResult:
    """Generate n prompts of the task (IOI by default), validate them on the model, write the run directory."""
    out = Path(out) if out is not None else default_out("run", model, seed)
    t = task_of(task)
    if t.engine != "ioi":
        _no_templates(templates, t.name)
        task_pipeline.precheck("run", out, spec_of(model), t, n, seed, batch_size, overwrite)
        cmd = (
            command
            if command is not None
            else command_line(
                "run",
                model=spec_of(model),
                n=n,
                seed=seed,
                batch_size=batch_size,
                task=task_option(task),
                **runtime_options(device, dtype),
            )
        )
        m = loaded(model, device, dtype)
        with backend_for(backend, spec_of(model), m, workers, ray_address, device, dtype) as be:
            return task_pipeline.run(m, t, n, seed, out, batch_size, progress, overwrite, be, cmd)
    pipeline.precheck("run", out, spec_of(model), n, seed, templates, batch_size, overwrite)
    cmd = (
        command
        if command is not None
        else command_line(
            "run",
            model=spec_of(model),
            n=n,
            seed=seed,
            templates=templates,
            batch_size=batch_size,
            **runtime_options(device, dtype),
        )
    )
    m = loaded(model, device, dtype)
    with backend_for(backend, spec_of(model), m, workers, ray_address, device, dtype) as be:
        return pipeline.run(m, n, seed, out, templates, batch_size, progress, overwrite=overwrite, backend=be, command=cmd)


def _no_templates(templates: str | Path | None, task: str) -> None:
    """--templates picks an IOI template pack; a task brings its own templates."""
    if templates is not None:
        raise AdvgenError(f"--templates is for IOI; task {task!r} brings its own templates (edit its YAML file instead)")
