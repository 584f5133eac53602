"""The `scan` job: the model over the prompt space (exhaustive, a prefix, or a seeded sample)."""

from __future__ import annotations

from pathlib import Path

from advgen.jobs.common import ModelArg, command_line, default_out, runtime_options, spec_of, task_option
from advgen.model.backends import LocalBackend, RaySettings, make_backend
from advgen.outputs.scan import ScanConfig, ScanResult, check_scan, run_scan


def scan(
    model: ModelArg,
    config: ScanConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    backend: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    command: str | None = None,
) -> ScanResult:
    """Scan the selected prompts; write summary, manifest, parts, journal and the failing prompts (adversarial/)."""
    config = config or ScanConfig()
    out = Path(out) if out is not None else default_out("scan", model, config.seed)
    check_scan(spec_of(model), config, out, overwrite)
    cmd = (
        command
        if command is not None
        else command_line(
            "scan",
            model=spec_of(model),
            limit=config.limit,
            sample=config.sample,
            seed=config.seed,
            templates=config.templates,
            distractors=config.distractors,
            full_lexicon=config.full_lexicon,
            unit=config.unit,
            batch_size=config.batch_size,
            task=task_option(config.task),
            **runtime_options(device, dtype),
        )
    )
    if backend == "local" and not isinstance(model, str):
        be = LocalBackend(model)
    else:
        be = make_backend(
            backend, spec_of(model), None, RaySettings(workers=workers, address=ray_address, device=device, dtype=dtype)
        )
    try:
        return run_scan(be, config, out, resume=resume, progress=progress, overwrite=overwrite, command=cmd)
    finally:
        be.close()
