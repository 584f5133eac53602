"""CLI subcommands for reports and exports: `advgen report` and `advgen export`."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> None:
    from advgen.outputs.report import build_report

    out = build_report(args.run_dir, args.out, model=args.model, circuit=args.circuit, attention=not args.no_attention,
                       device=args.device, dtype=args.dtype)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def cmd_export(args: argparse.Namespace) -> None:
    from advgen.outputs.exporters import export

    out = export(args.run_dir, args.format, args.out, overwrite=args.overwrite)
    print(f"wrote {args.format} export with dataset card to {out}/")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
    from advgen.cli.device import add_device_args
    from advgen.outputs.exporters import FORMATS

    p = sub.add_parser("report", help="one self-contained HTML report of a run directory")
    p.add_argument("run_dir", type=Path, help="a directory written by advgen run / attack / discover / check-claim")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--model", default=None, help="model for the attention heatmaps (default: the one in manifest.json)")
    p.add_argument("--circuit", default=None, help="circuit JSON or built-in name (default: the run's circuit.json)")
    p.add_argument("--no-attention", action="store_true", help="skip the attention heatmaps (no model run)")
    add_device_args(p)
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("export", help="export a run directory's rows, with a dataset card")
    p.add_argument("run_dir", type=Path, help="a directory written by advgen run / attack / scan")
    p.add_argument("--format", required=True, choices=FORMATS, help="export format: " + ", ".join(FORMATS))
    p.add_argument("--out", type=Path, required=True, help="export directory to write (replaced if it is a previous export)")
    p.add_argument("--overwrite", action="store_true", help="also replace an advgen export that was changed or made by an older version")
    p.set_defaults(func=cmd_export)
