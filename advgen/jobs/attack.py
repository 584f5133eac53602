"""The `attack` job: circuit-predicted failure modes with controls, screening, confirmation, random baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.causes import CellCause, explain_falsified
from advgen.attacks.divergence import DivergenceRun, DivergenceSettings, run_divergence
from advgen.attacks.divergence_tables import write_divergence
from advgen.attacks.search import AttackRun, run_attack
from advgen.attacks.tables import write_run
from advgen.attacks.task_attack import TaskRun
from advgen.circuits.behaviour import BehaviourSettings, ensure_records
from advgen.circuits.format import Circuit, resolve_circuit
from advgen.core import options, records, rundir
from advgen.core.types import AdvgenError
from advgen.jobs.common import (
    CircuitArg,
    ModelArg,
    TaskArg,
    backend_for,
    circuit_arg,
    circuit_for,
    command_line,
    default_out,
    loaded,
    runtime_options,
    spec_of,
    task_of,
)
from advgen.model.loading import LoadedModel
from advgen.prompts.templates import tokenizer_hash

OBJECTIVES = options.OBJECTIVES
"""break: prompts that flip the model (the circuit's failure modes); divergence: prompts where circuit and model part."""
FILES = (
    "results.jsonl",
    "results.csv",
    "summary.json",
    "modes.json",
    "adversarial.jsonl",
    "near_misses.jsonl",
    "baseline.json",
    "circuit.json",
    "manifest.json",
    "table.md",
    "causes.json",
)
"""What an attack run directory holds (besides journal/, kept for --resume)."""


@dataclass(frozen=True)
class AttackResult:
    out: Path
    summary: dict[str, Any]
    """summary.json as written."""
    run: AttackRun | TaskRun | DivergenceRun
    """Every evaluated row, the modes, the screening; what the files were written from (TaskRun for a generic task,
    DivergenceRun for `objective="divergence"`)."""
    circuit: Circuit
    """The circuit the attack used (with the behaviour records it measured, if any)."""
    records_note: str = ""
    """Why behaviour records were measured on this model (empty: the circuit's own were used)."""
    causes: tuple[CellCause, ...] = ()
    """The measured cause of every falsified compiled cell (`advgen.attacks.causes`)."""


def _settings_common(cfg: AttackConfig) -> dict[str, Any]:
    return {
        "budget": cfg.budget,
        "n_clean": cfg.n_clean,
        "batch_size": cfg.batch_size,
        "sample_frac": cfg.sample_frac,
        "templates": str(cfg.templates or "ioi"),
        "modes": list(cfg.modes) if cfg.modes else None,
    }


def _settings(cfg: AttackConfig, run: AttackRun) -> dict[str, Any]:
    return {**_settings_common(cfg), "evaluations": run.evals}


def attack(
    model: ModelArg,
    circuit: CircuitArg,
    config: AttackConfig,
    out: str | Path | None = None,
    measure_behaviour: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    backend: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
    task: TaskArg = None,
    objective: str = "break",
    divergence: DivergenceSettings | None = None,
) -> AttackResult:
    """Attack `model` with the failure modes `circuit` predicts; write the whole run directory (FILES).

    `task` (default IOI): a generic task runs the task engine (`advgen.jobs.task_attack`) under the same run-directory rules.
    `objective="divergence"`: search for the prompts where the circuit and the model part most, under `divergence`
    (`advgen.attacks.divergence`), against a random search of the same budget; writes `advgen.attacks.divergence_tables.FILES`."""
    out = Path(out) if out is not None else default_out("attack", model, config.seed)
    if objective not in OBJECTIVES:
        raise AdvgenError(f"--objective {objective!r} is not an attack objective; choose one of {list(OBJECTIVES)}")
    o = _RunOptions(measure_behaviour, resume, overwrite, progress, backend, workers, ray_address, device, dtype, command)
    if objective == "divergence":
        return _divergence(model, circuit, config, divergence or DivergenceSettings(), out, o, task)
    if task_of(task).engine == "generic":
        from advgen.jobs.task_attack import attack_task

        run, summary, c, why = attack_task(
            model,
            circuit,
            config,
            out,
            task,
            measure_behaviour=measure_behaviour,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            backend=backend,
            device=device,
            dtype=dtype,
            command=command,
        )
        return AttackResult(out, summary, run, c, why)
    return _attack_ioi(model, circuit, config, out, o, task)


@dataclass(frozen=True)
class _RunOptions:
    """How an attack job runs, beside what it measures: records, resume and overwrite, progress, where the model runs."""

    measure_behaviour: bool
    resume: bool
    overwrite: bool
    progress: bool
    backend: str
    workers: int
    ray_address: str | None
    device: str
    dtype: str
    command: str | None


def _attack_ioi(
    model: ModelArg, circuit: CircuitArg, config: AttackConfig, out: Path, o: _RunOptions, task: TaskArg
) -> AttackResult:
    """The IOI break search under the run-directory rules (checks before the model loads, lock, manifest, marker)."""
    config.check()  # arguments, the circuit and --out are checked before the model loads
    spec, inputs = circuit_arg(circuit)
    (circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)).check_task(
        task_of(task)
    )  # a circuit of another task: named error
    ident = rundir.identity_of(
        "attack", {"model": spec_of(model), "circuit": spec, "measure_behaviour": o.measure_behaviour, **vars(config)}
    )
    rundir.check_out(out, "attack", ident, o.overwrite, inputs)
    cmd = (
        o.command
        if o.command is not None
        else command_line(
            "attack",
            model=spec_of(model),
            circuit=spec,
            budget=config.budget,
            n_clean=config.n_clean,
            seed=config.seed,
            batch_size=config.batch_size,
            sample_frac=config.sample_frac,
            templates=config.templates,
            modes=config.modes,
            measure_behaviour=o.measure_behaviour,
            **runtime_options(o.device, o.dtype),
        )
    )
    m, c, why = _model_and_circuit(model, circuit, config, o)
    with rundir.writing(out, "attack", ident, o.overwrite, inputs, keep=("journal",)):
        with backend_for(o.backend, spec_of(model), m, o.workers, o.ray_address, o.device, o.dtype) as be:
            run = run_attack(m, c, config, out, resume=o.resume, progress=o.progress, backend=be)
        man = records.manifest(m, tokenizer_hash(m.tokenizer), config.seed, _settings(config, run), cmd)
        man["circuit"] = {"name": c.name, "spec": spec, "n_heads": len(c)}
        causes = tuple(
            explain_falsified(m, c, run.modes, run.screening["cell_verdicts"], run.rows, config.batch_size, config.seed)
        )
        written = write_run(out, run, config, c, man, causes)
    return AttackResult(out, written["summary"], run, c, why or "", causes)


def _model_and_circuit(
    model: ModelArg, circuit: CircuitArg, config: AttackConfig, o: _RunOptions
) -> tuple[LoadedModel, Circuit, str | None]:
    """The loaded model, and the circuit with behaviour records measured on it (and why they were measured, if they were)."""
    m = loaded(model, o.device, o.dtype)
    c = circuit_for(circuit, m)
    # records missing, or from another model, are measured here on min(100, n_clean) prompts (discover's 100;
    # fewer for a small run); circuit.json keeps the records the attack used
    c, why = ensure_records(m, c, BehaviourSettings(n=min(100, config.n_clean)), force=o.measure_behaviour)
    return m, c, why


def _divergence(
    model: ModelArg, circuit: CircuitArg, config: AttackConfig, ds: DivergenceSettings, out: Path, o: _RunOptions, task: TaskArg
) -> AttackResult:
    """The divergence search under the attack's run-directory rules (checks before the model loads, lock, manifest, marker)."""
    if task_of(task).engine == "generic":
        raise AdvgenError(
            f"--objective divergence runs on IOI circuits; task {task_of(task).name!r} has no divergence search yet"
        )
    if o.backend != "local":
        raise AdvgenError("--objective divergence runs locally: drop --backend (Ray serves the break search)")
    config.check()
    ds.check(config)
    spec, inputs = circuit_arg(circuit)
    (circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)).check_task(task_of(task))
    ident = rundir.identity_of(
        "attack",
        {
            "model": spec_of(model),
            "circuit": spec,
            "measure_behaviour": o.measure_behaviour,
            "objective": "divergence",
            **vars(config),
            **vars(ds),
        },
    )
    rundir.check_out(out, "attack", ident, o.overwrite, inputs)
    cmd = (
        o.command
        if o.command is not None
        else command_line(
            "attack",
            model=spec_of(model),
            circuit=spec,
            objective="divergence",
            ablation=ds.ablation,
            divergence=ds.measure,
            top=ds.top,
            controls=ds.controls,
            budget=config.budget,
            n_clean=config.n_clean,
            seed=config.seed,
            batch_size=config.batch_size,
            sample_frac=config.sample_frac,
            templates=config.templates,
            modes=config.modes,
            measure_behaviour=o.measure_behaviour,
            **runtime_options(o.device, o.dtype),
        )
    )
    m, c, why = _model_and_circuit(model, circuit, config, o)
    with rundir.writing(out, "attack", ident, o.overwrite, inputs, keep=("journal",)):
        run = run_divergence(m, c, config, ds, out, resume=o.resume, progress=o.progress)
        settings = {**_settings_common(config), "objective": "divergence", "divergence": vars(ds), "evaluations": run.evals}
        man = records.manifest(m, tokenizer_hash(m.tokenizer), config.seed, settings, cmd)
        man["circuit"] = {"name": c.name, "spec": spec, "n_heads": len(c)}
        summary = write_divergence(out, run, config, c, man)
    return AttackResult(out, summary, run, c, why or "")
