"""What every job shares: the model argument, the recorded command line, the evaluation backend."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advgen.circuits.format import Circuit, resolve_circuit
from advgen.model.backends import Backend, RaySettings, make_backend
from advgen.model.loading import LoadedModel, load_model
from advgen.tasks.registry import resolve_task
from advgen.tasks.spec import Task

ModelArg = LoadedModel | str
"""A loaded model, or what `load_model` takes: 'reference', 'planted', 'gpt2', a local HF directory."""


def spec_of(model: ModelArg) -> str:
    """The name a manifest and a run's identity use for the model (what the user asked for)."""
    return model if isinstance(model, str) else model.name


def loaded(model: ModelArg, device: str = "auto", dtype: str = "float32") -> LoadedModel:
    """The model itself, loaded (on `device`, in `dtype`) only when the caller passed its name (checks run before this)."""
    return load_model(model, device=device, dtype=dtype) if isinstance(model, str) else model


def command_line(job: str, *positional: Any, **options: Any) -> str:
    """The `advgen` command that does what this call does: `advgen JOB POS --opt value --flag`.

    Options are written in the order given; None and False are left out, True is a bare flag, and
    `n_clean` becomes `--n-clean`. Jobs record it in the manifest, so a run started from Python and
    the same run started from the shell write the same bytes. `--out` and the options that do not
    change the files (`--overwrite`, `--resume`, the backend, progress) are left out: a run's bytes
    do not depend on where it was written or how it was computed.
    """
    words = ["advgen", job, *(str(p) for p in positional)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        words.append("--" + key.replace("_", "-"))
        if value is not True:
            words.append(",".join(map(str, value)) if isinstance(value, tuple | list) else str(value))
    return shlex.join(words)


def runtime_options(device: str, dtype: str) -> dict[str, str | None]:
    """`--device` / `--dtype` for the recorded command, when not the defaults (auto, float32)."""
    return {"device": None if device == "auto" else device, "dtype": None if dtype == "float32" else dtype}


@contextmanager
def backend_for(
    name: str,
    model_spec: str,
    model: LoadedModel | None,
    workers: int = 2,
    address: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
) -> Iterator[Backend | None]:
    """None for the local backend (the one-process path), else a Ray pool that is closed after the job."""
    if name == "local":
        yield None
        return
    backend = make_backend(name, model_spec, model, RaySettings(workers=workers, address=address, device=device, dtype=dtype))
    try:
        yield backend
    finally:
        backend.close()


CircuitArg = Circuit | str | Path
"""A circuit record, a circuit JSON file, or a built-in circuit's name."""


def circuit_arg(circuit: CircuitArg) -> tuple[str, list[Path]]:
    """(how the command names the circuit, the input files the run directory must not hold); a bad file or
    name fails here, before the model loads."""
    if isinstance(circuit, Circuit):
        return circuit.name, []
    resolve_circuit(circuit)
    return str(circuit), [Path(circuit)] if Path(circuit).exists() else []


def circuit_for(circuit: CircuitArg, model: LoadedModel) -> Circuit:
    """The circuit, checked against the loaded model's layers and heads."""
    c = circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)
    return c.check_against(model.n_layers, model.n_heads)


def default_out(job: str, model: ModelArg, seed: int) -> Path:
    """outputs/JOB-MODEL-sSEED: where a job writes when the caller names no directory."""
    return Path("outputs") / f"{job}-{Path(spec_of(model)).name or 'model'}-s{seed}"


TaskArg = Task | str | Path | None
"""A Task record, a built-in task's name ("ioi", "induction"), or a YAML task file; None is IOI."""


def task_of(task: TaskArg) -> Task:
    """The task, read and checked whole before any model loads (a bad task file fails here, naming file and line)."""
    return resolve_task(task)


def task_option(task: TaskArg) -> str | None:
    """How the recorded command names the task: None (left out) for IOI, so IOI commands keep their bytes."""
    t = task_of(task)
    return None if t.engine == "ioi" else (str(task) if not isinstance(task, Task) else t.source)
