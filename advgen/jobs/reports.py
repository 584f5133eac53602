"""Jobs that read run directories and never run the model for metrics: `report` (HTML) and `export`."""

from __future__ import annotations

from pathlib import Path

from advgen.outputs.exporters import export as export_rows
from advgen.outputs.report import build_report


def report(
    run_dir: str | Path,
    out: str | Path,
    model: str | None = None,
    circuit: str | None = None,
    attention: bool = True,
    device: str = "auto",
    dtype: str = "float32",
) -> Path:
    """One self-contained HTML report of a run, attack, scan, discover or check-claim directory."""
    return build_report(run_dir, out, model=model, circuit=circuit, attention=attention, device=device, dtype=dtype)


def export(run_dir: str | Path, fmt: str, out: str | Path, overwrite: bool = False, only_attributable: bool = False) -> Path:
    """The run's rows in `fmt` (jsonl, csv, parquet, hf, auto-circuit, lm-eval) with a dataset card; `eap-ig`: the run's
    circuit."""
    return export_rows(run_dir, fmt, out, overwrite=overwrite, only_attributable=only_attributable)
