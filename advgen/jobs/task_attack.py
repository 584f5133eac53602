"""The `attack` job for a generic task (not IOI): the task engine under the same run-directory rules as IOI's attack.

The circuit must be one of the task's (`Circuit.check_task`, checked before the model loads);
records missing from it, or measured on another model, are measured on the loaded model on the
task's prompts (a seed apart from the attacked ones) and the reason is returned, as IOI's
`ensure_records` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.task_attack import TaskRun, run_task_attack
from advgen.attacks.task_setup import check_attackable
from advgen.attacks.task_tables import write_task_run
from advgen.circuits.format import Circuit, resolve_circuit
from advgen.circuits.task_records import ensure_task_records
from advgen.core import records, rundir
from advgen.core.types import AdvgenError, PromptSet
from advgen.jobs.common import (
    CircuitArg,
    ModelArg,
    TaskArg,
    circuit_arg,
    circuit_for,
    command_line,
    loaded,
    runtime_options,
    spec_of,
    task_of,
    task_option,
)
from advgen.model.loading import LoadedModel
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.sample import iter_task_specs, render_spec
from advgen.tasks.spec import Task

RECORD_SEED = 1_000_003
"""Seed of the prompts records are measured on: apart from every attack seed's clean prompts."""
RECORD_N = 100
"""Prompts records are measured on (discover's 100; fewer for a smaller --n-clean)."""

FILES = (
    "results.jsonl",
    "results.csv",
    "summary.json",
    "modes.json",
    "adversarial.jsonl",
    "baseline.json",
    "circuit.json",
    "manifest.json",
    "table.md",
)
"""What a task attack's run directory holds (besides journal/, kept for --resume)."""


def _check(config: AttackConfig, circuit: CircuitArg, task: TaskArg, backend: str) -> Circuit:
    config.check()
    if config.templates is not None:
        raise AdvgenError(
            f"--templates is IOI's template pack; task {task_of(task).name!r} takes its templates from the task file"
        )
    if backend != "local":
        raise AdvgenError(f"--backend {backend}: task attacks run on the local backend only")
    check_attackable(task_of(task))
    c = circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)
    return c.check_task(task_of(task))


def attack_task(
    model: ModelArg,
    circuit: CircuitArg,
    config: AttackConfig,
    out: Path,
    task: TaskArg,
    *,
    measure_behaviour: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    backend: str = "local",
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
) -> tuple[TaskRun, dict[str, Any], Circuit, str]:
    """Run and write a generic task's attack; (run, summary.json, the circuit used, why records were measured or "")."""
    t = task_of(task)
    c0 = _check(config, circuit, task, backend)  # arguments, task, circuit and --out are checked before the model loads
    spec, inputs = circuit_arg(circuit)
    opt = task_option(task)
    ident = rundir.identity_of(
        "attack", {"model": spec_of(model), "task": opt, "circuit": spec, "measure_behaviour": measure_behaviour, **vars(config)}
    )
    rundir.check_out(out, "attack", ident, overwrite, inputs)
    cmd = command
    if cmd is None:
        cmd = command_line(
            "attack",
            model=spec_of(model),
            task=opt,
            circuit=spec,
            budget=config.budget,
            n_clean=config.n_clean,
            seed=config.seed,
            batch_size=config.batch_size,
            sample_frac=config.sample_frac,
            modes=config.modes,
            measure_behaviour=measure_behaviour,
            **runtime_options(device, dtype),
        )
    m = loaded(model, device, dtype)
    c = circuit_for(c0, m)
    c, why = ensure_task_records(m, c, _record_prompts(m, t, config), config.batch_size, force=measure_behaviour)
    with rundir.writing(out, "attack", ident, overwrite, inputs, keep=("journal",)):
        run = run_task_attack(m, t, c, config, out, resume=resume, progress=progress)
        settings = {
            "budget": config.budget,
            "n_clean": config.n_clean,
            "batch_size": config.batch_size,
            "sample_frac": config.sample_frac,
            "modes": list(config.modes) if config.modes else None,
            "evaluations": run.evals,
        }
        man = records.manifest(m, tokenizer_hash(m.tokenizer), config.seed, settings, cmd)
        man["circuit"] = {"name": c.name, "spec": spec, "n_heads": len(c), "task": c.task}
        man["task"] = t.describe()
        written = write_task_run(out, run, config, c, man, t.name)
    return run, written["summary"], c, why or ""


def _record_prompts(m: LoadedModel, t: Task, config: AttackConfig) -> PromptSet:
    """The prompts behaviour records are measured on when missing: min(RECORD_N, n_clean) of the task's, seed RECORD_SEED."""
    lex = resolve_lexicons(t, m.tokenizer)
    specs = iter_task_specs(t, lex, min(RECORD_N, config.n_clean), RECORD_SEED)
    return PromptSet(tuple(render_spec(t, sp, m.tokenizer) for sp in specs), tokenizer_hash(m.tokenizer))
