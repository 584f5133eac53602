"""Jobs on circuits: `discover` (model -> circuit) and `check_claim` (circuit -> faithfulness table).

Both write run directories under the same rules as every other command (`core.rundir`): refused
when occupied by something else, replaced only with `overwrite`, locked while written, finished
by a completion marker, with a manifest that records the command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from advgen.circuits.claims import ClaimResult, ClaimSettings, mlp_mode, write_claims
from advgen.circuits.claims import check_claim as measure_claim
from advgen.circuits.discovery import discover as find_circuit
from advgen.circuits.discovery import write_discovery
from advgen.circuits.discovery_roles import Settings
from advgen.circuits.failures import AgreementSettings, agreement_for
from advgen.circuits.format import Circuit, builtin_names, resolve_circuit
from advgen.circuits.task_claims import TaskClaimResult, TaskClaimSettings, check_task_claim, write_task_claims
from advgen.circuits.task_discovery import TaskDiscoverySettings, discover_task, write_task_discovery
from advgen.core import files, records, rundir
from advgen.core.types import AdvgenError
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
from advgen.outputs.failure_sets import read_failures, source_meta
from advgen.outputs.pipeline import check_args
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.spec import Task

CIRCUIT_FILE = "circuit.json"
"""The circuit a `discover` run directory holds (beside discovery.json, its heatmaps and manifest.json)."""


@dataclass(frozen=True)
class DiscoverResult:
    out: Path
    circuit: Circuit
    report: dict[str, Any]
    """discovery.json's summary: roles found and missing, direct share, Spearman agreement, ..."""
    files: tuple[Path, ...]


@dataclass(frozen=True)
class ClaimRun:
    out: Path
    result: ClaimResult | TaskClaimResult
    """IOI's full claim result, or a generic task's (faithfulness and completeness per ablation and metric)."""
    files: tuple[Path, ...]


def _check_dir_out(out: Path, option: str = "--out") -> None:
    if out.suffix.lower() == ".json":
        raise AdvgenError(
            f"{option} {out} looks like a file; it names the run directory now "
            f"(it holds {CIRCUIT_FILE}, discovery.json, heatmaps and manifest.json): pass a directory"
        )


def discover(
    model: ModelArg,
    out: str | Path,
    settings: Settings | TaskDiscoverySettings | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: Callable[[str], Any] | None = None,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
    task: TaskArg = None,
) -> DiscoverResult:
    """Find the model's circuit; write OUT/circuit.json, discovery.json, heatmaps, manifest.json.

    `task` None (or "ioi") runs IOI's discovery; any other task runs the generic engine (`circuits.task_discovery`)."""
    t = task_of(task)
    if t.engine != "ioi":
        return _discover_generic(model, Path(out), t, task, settings, name, overwrite, device, dtype, command)
    if isinstance(settings, TaskDiscoverySettings):
        raise AdvgenError(
            "discover: TaskDiscoverySettings are for generic tasks (--task induction, a YAML task); IOI takes DiscoverySettings"
        )
    out, s = Path(out), settings or Settings()
    _check_dir_out(out)
    check_args(s.n, s.seed, s.batch_size)
    ident = rundir.identity_of("discover", {"model": spec_of(model), "name": name, **asdict(s)})
    rundir.check_out(out, "discover", ident, overwrite)
    cmd = (
        command
        if command is not None
        else command_line(
            "discover",
            model=spec_of(model),
            n=s.n,
            seed=s.seed,
            batch_size=s.batch_size,
            nm_path=s.nm_path,
            name=name,
            curve_ablation=None if s.curve_ablation == "abc_mean" else s.curve_ablation,
            **runtime_options(device, dtype),
        )
    )
    m = loaded(model, device, dtype)
    found = find_circuit(m, s, name=name, progress=progress)
    with rundir.writing(out, "discover", ident, overwrite) as d:
        written = write_discovery(found, d / CIRCUIT_FILE, cmd)
        man = records.manifest(m, tokenizer_hash(m.tokenizer), s.seed, {**asdict(s), "name": found.circuit.name}, cmd)
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return DiscoverResult(out, found.circuit, dict(found.report), tuple(written))


def check_claim(
    model: ModelArg,
    circuit: CircuitArg,
    out: str | Path,
    settings: ClaimSettings | TaskClaimSettings | None = None,
    overwrite: bool = False,
    progress: bool = False,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
    task: TaskArg = None,
    failures: Sequence[str | Path] = (),
) -> ClaimRun:
    """Faithfulness, completeness, minimality (every metric x ablation) -> OUT/claims.json, claims.md, ...

    `failures`: attack, scan or run directories or validated JSONL files; for each, error agreement (does the circuit
    also get the model's errors wrong?) is added to the claims (`circuits.failures`).
    `task` None (or "ioi") runs IOI's check; any other task runs the generic engine (`circuits.task_claims`)."""
    t = task_of(task)
    if t.engine != "ioi":
        if failures:
            raise AdvgenError(f"check-claim --failures is IOI's error agreement; --task {t.name} does not take it yet")
        return _check_claim_generic(model, circuit, Path(out), t, task, settings, overwrite, device, dtype, command)
    if isinstance(settings, TaskClaimSettings):
        raise AdvgenError(
            "check-claim: TaskClaimSettings are for generic tasks (--task induction, a YAML task); IOI takes ClaimSettings"
        )
    out, settings = Path(out), settings or ClaimSettings()
    _check_claim_settings(settings)
    spec, inputs = circuit_arg(circuit)
    resolved = circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)
    resolved.check_task(t)  # another task's circuit: refused before the model loads
    mlp_mode(settings.mlps, resolved)  # a bad --mlps too
    sources = [
        read_failures(f, settings.failures_max, settings.seed) for f in failures
    ]  # a bad file fails here, before the model loads
    fail_ids = [{"path": src.path, "sha256": src.digest} for src in sources]
    ident = rundir.identity_of(
        "check-claim",
        {"model": spec_of(model), "circuit": spec, **asdict(settings), **({"failures": fail_ids} if fail_ids else {})},
    )
    rundir.check_out(out, "check-claim", ident, overwrite, [*inputs, *(Path(f) for f in failures)])
    cmd = command if command is not None else _claim_command(model, spec, settings, failures, device, dtype)
    m = loaded(model, device, dtype)
    c = circuit_for(circuit, m)
    res = measure_claim(m, c, settings, progress=progress)
    if sources:
        blocks, md = agreement_for(
            m,
            c,
            [(source_meta(src), src.errors, src.successes) for src in sources],
            AgreementSettings(seed=settings.seed, batch_size=settings.batch_size, greedy_steps=settings.agreement_steps),
        )
        res = replace(res, error_agreement=blocks, markdown=res.markdown + md)
    with rundir.writing(out, "check-claim", ident, overwrite, inputs) as d:
        written = write_claims(res, d, cmd)
        man = records.manifest(m, tokenizer_hash(m.tokenizer), settings.seed, {**asdict(settings), "circuit": c.name}, cmd)
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return ClaimRun(out, res, tuple(written))


def _check_claim_settings(settings: ClaimSettings) -> None:
    """IOI's claim settings, checked before the model loads (named errors)."""
    check_args(settings.n, settings.seed, settings.batch_size)
    if (
        settings.greedy_steps < 0
        or settings.worst_k < 0
        or settings.scrub_draws < 1
        or settings.agreement_steps < 0
        or settings.failures_max < 1
    ):
        raise AdvgenError(
            "--greedy-steps, --worst-k and --agreement-steps must be >= 0, --scrub-draws and --failures-max >= 1, got "
            f"{settings.greedy_steps}, {settings.worst_k}, {settings.agreement_steps}, {settings.scrub_draws}, "
            f"{settings.failures_max}"
        )


def _claim_command(
    model: ModelArg, spec: str, settings: ClaimSettings, failures: Sequence[str | Path], device: str, dtype: str
) -> str:
    """The `advgen check-claim` command line that reruns this check (recorded in claims.md and the manifest)."""
    return command_line(
        "check-claim",
        spec,
        model=spec_of(model),
        n=settings.n,
        seed=settings.seed,
        batch_size=settings.batch_size,
        greedy_steps=settings.greedy_steps,
        worst_k=settings.worst_k,
        scrub_draws=settings.scrub_draws,
        no_ladder=not settings.ladder,
        failures=[str(f) for f in failures] or None,
        mlps=None if settings.mlps == "auto" else settings.mlps,
        **_agreement_options(settings, bool(failures)),
        **runtime_options(device, dtype),
    )


def _agreement_options(s: ClaimSettings, used: bool) -> dict[str, int | None]:
    """--failures-max / --agreement-steps for the recorded command, when failures are checked and not the defaults."""
    d = ClaimSettings()
    return {
        "failures_max": s.failures_max if used and s.failures_max != d.failures_max else None,
        "agreement_steps": s.agreement_steps if used and s.agreement_steps != d.agreement_steps else None,
    }


def reference_circuit(task: Task, model: ModelArg) -> Circuit | None:
    """The built-in circuit of this task for this model (its file's task and model fields), if advgen ships one."""
    for nm in builtin_names():
        c = resolve_circuit(nm)
        if c.task == task.name and c.model in (spec_of(model), Path(spec_of(model)).name):
            return c
    return None


def _discover_generic(
    model: ModelArg,
    out: Path,
    t: Task,
    task: TaskArg,
    settings: Settings | TaskDiscoverySettings | None,
    name: str | None,
    overwrite: bool,
    device: str,
    dtype: str,
    command: str | None,
) -> DiscoverResult:
    if isinstance(settings, Settings):
        raise AdvgenError(
            f"discover --task {t.name}: pass TaskDiscoverySettings (n, seed, batch_size, thresholds); DiscoverySettings are IOI's"
        )
    s = settings or TaskDiscoverySettings()
    _check_dir_out(out)
    check_args(s.n, s.seed, s.batch_size)
    opt = task_option(task)
    ident = rundir.identity_of(
        "discover", {"model": spec_of(model), "task": opt, "task_source": t.source, "name": name, **asdict(s)}
    )
    rundir.check_out(out, "discover", ident, overwrite)
    cmd = (
        command
        if command is not None
        else command_line(
            "discover",
            model=spec_of(model),
            task=opt,
            n=s.n,
            seed=s.seed,
            batch_size=s.batch_size,
            name=name,
            **runtime_options(device, dtype),
        )
    )
    ref = reference_circuit(t, model)
    m = loaded(model, device, dtype)
    found = discover_task(m, t, s, name=name, reference=ref)
    with rundir.writing(out, "discover", ident, overwrite) as d:
        written = write_task_discovery(found, d, cmd)
        man = records.manifest(
            m, tokenizer_hash(m.tokenizer), s.seed, {**asdict(s), "task": t.describe(), "name": found.circuit.name}, cmd
        )
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return DiscoverResult(out, found.circuit, dict(found.report), tuple(written))


def _check_claim_generic(
    model: ModelArg,
    circuit: CircuitArg,
    out: Path,
    t: Task,
    task: TaskArg,
    settings: ClaimSettings | TaskClaimSettings | None,
    overwrite: bool,
    device: str,
    dtype: str,
    command: str | None,
) -> ClaimRun:
    if isinstance(settings, ClaimSettings):
        raise AdvgenError(
            f"check-claim --task {t.name}: pass TaskClaimSettings (n, seed, batch_size, ablations, worst_k); ClaimSettings are "
            "IOI's"
        )
    s = settings or TaskClaimSettings()
    check_args(s.n, s.seed, s.batch_size)
    spec, inputs = circuit_arg(circuit)
    c = circuit if isinstance(circuit, Circuit) else resolve_circuit(circuit)
    c.check_task(t)  # a circuit of another task fails here, before the model loads
    opt = task_option(task)
    ident = rundir.identity_of(
        "check-claim", {"model": spec_of(model), "circuit": spec, "task": opt, "task_source": t.source, **asdict(s)}
    )
    rundir.check_out(out, "check-claim", ident, overwrite, inputs)
    cmd = (
        command
        if command is not None
        else command_line(
            "check-claim",
            spec,
            model=spec_of(model),
            task=opt,
            n=s.n,
            seed=s.seed,
            batch_size=s.batch_size,
            worst_k=s.worst_k,
            **runtime_options(device, dtype),
        )
    )
    m = loaded(model, device, dtype)
    res = check_task_claim(m, circuit_for(c, m), t, s)
    with rundir.writing(out, "check-claim", ident, overwrite, inputs) as d:
        written = write_task_claims(res, d, cmd)
        man = records.manifest(
            m, tokenizer_hash(m.tokenizer), s.seed, {**asdict(s), "task": t.describe(), "circuit": c.name}, cmd
        )
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return ClaimRun(out, res, tuple(written))
