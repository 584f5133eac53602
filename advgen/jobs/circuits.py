"""Jobs on circuits: `discover` (model -> circuit) and `check_claim` (circuit -> faithfulness table).

Both write run directories under the same rules as every other command (`core.rundir`): refused
when occupied by something else, replaced only with `overwrite`, locked while written, finished
by a completion marker, with a manifest that records the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from advgen.circuits.claims import ClaimResult, ClaimSettings, write_claims
from advgen.circuits.claims import check_claim as measure_claim
from advgen.circuits.discovery import Settings, write_discovery
from advgen.circuits.discovery import discover as find_circuit
from advgen.circuits.format import Circuit
from advgen.core import files, records, rundir
from advgen.core.types import AdvgenError
from advgen.jobs.common import CircuitArg, ModelArg, circuit_arg, circuit_for, command_line, loaded, runtime_options, spec_of
from advgen.outputs.pipeline import check_args
from advgen.prompts.templates import tokenizer_hash

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
    result: ClaimResult
    files: tuple[Path, ...]


def _check_dir_out(out: Path, option: str = "--out") -> None:
    if out.suffix.lower() == ".json":
        raise AdvgenError(f"{option} {out} looks like a file; it names the run directory now "
                          f"(it holds {CIRCUIT_FILE}, discovery.json, heatmaps and manifest.json): pass a directory")


def discover(model: ModelArg, out: str | Path, settings: Settings | None = None, name: str | None = None,
             overwrite: bool = False, progress: Callable[[str], Any] | None = None, device: str = "auto", dtype: str = "float32", command: str | None = None) -> DiscoverResult:
    """Find the model's circuit; write OUT/circuit.json, discovery.json, heatmaps, manifest.json."""
    out, s = Path(out), settings or Settings()
    _check_dir_out(out)
    check_args(s.n, s.seed, s.batch_size)
    ident = rundir.identity_of("discover", {"model": spec_of(model), "name": name, **asdict(s)})
    rundir.check_out(out, "discover", ident, overwrite)
    cmd = command if command is not None else command_line(
        "discover", model=spec_of(model), n=s.n, seed=s.seed, batch_size=s.batch_size, nm_path=s.nm_path, name=name,
        curve_ablation=None if s.curve_ablation == "abc_mean" else s.curve_ablation, **runtime_options(device, dtype))
    m = loaded(model, device, dtype)
    found = find_circuit(m, s, name=name, progress=progress)
    with rundir.writing(out, "discover", ident, overwrite) as d:
        written = write_discovery(found, d / CIRCUIT_FILE, cmd)
        man = records.manifest(m, tokenizer_hash(m.tokenizer), s.seed, {**asdict(s), "name": found.circuit.name}, cmd)
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return DiscoverResult(out, found.circuit, dict(found.report), tuple(written))


def check_claim(model: ModelArg, circuit: CircuitArg, out: str | Path, settings: ClaimSettings | None = None,
                overwrite: bool = False, progress: bool = False, device: str = "auto", dtype: str = "float32", command: str | None = None) -> ClaimRun:
    """Faithfulness, completeness, minimality (every metric x ablation) -> OUT/claims.json, claims.md, ..."""
    out, settings = Path(out), settings or ClaimSettings()
    check_args(settings.n, settings.seed, settings.batch_size)
    if settings.greedy_steps < 0 or settings.worst_k < 0 or settings.scrub_draws < 1:
        raise AdvgenError("--greedy-steps and --worst-k must be >= 0 and --scrub-draws >= 1, got "
                          f"{settings.greedy_steps}, {settings.worst_k}, {settings.scrub_draws}")
    spec, inputs = circuit_arg(circuit)
    ident = rundir.identity_of("check-claim", {"model": spec_of(model), "circuit": spec, **asdict(settings)})
    rundir.check_out(out, "check-claim", ident, overwrite, inputs)
    cmd = command if command is not None else command_line(
        "check-claim", spec, model=spec_of(model), n=settings.n, seed=settings.seed, batch_size=settings.batch_size,
        greedy_steps=settings.greedy_steps, worst_k=settings.worst_k, scrub_draws=settings.scrub_draws, no_ladder=not settings.ladder, **runtime_options(device, dtype))
    m = loaded(model, device, dtype)
    c = circuit_for(circuit, m)
    res = measure_claim(m, c, settings, progress=progress)
    with rundir.writing(out, "check-claim", ident, overwrite, inputs) as d:
        written = write_claims(res, d, cmd)
        man = records.manifest(m, tokenizer_hash(m.tokenizer), settings.seed, {**asdict(settings), "circuit": c.name}, cmd)
        written.append(files.atomic_write_text(d / "manifest.json", files.dumps(man) + "\n"))
    return ClaimRun(out, res, tuple(written))
