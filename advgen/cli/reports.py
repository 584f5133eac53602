"""CLI subcommands for reports and exports: `advgen report`, `advgen export` (and `advgen unlock`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from advgen.cli.device import add_device_args


def cmd_report(args: argparse.Namespace) -> None:
    from advgen.jobs.reports import report

    out = report(
        args.run_dir,
        args.out,
        model=args.model,
        circuit=args.circuit,
        attention=not args.no_attention,
        device=args.device,
        dtype=args.dtype,
    )
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def cmd_export(args: argparse.Namespace) -> None:
    from advgen.jobs.reports import export

    out = export(args.run_dir, args.format, args.out, overwrite=args.overwrite, only_attributable=args.attributable_only)
    which = " (attributable breaks only)" if args.attributable_only else ""
    print(f"wrote {args.format} export{which} with dataset card to {out}/")


def cmd_unlock(args: argparse.Namespace) -> None:
    from advgen.core.locks import unlock

    state = unlock(args.dir)
    print(
        f"cleared the lock of {args.dir} ({state.why}); the directory stays incomplete until the command that "
        "writes it runs again (same settings, or --overwrite)"
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
    from advgen.outputs.exporters import ALL_FORMATS as FORMATS

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
    p.add_argument(
        "--overwrite", action="store_true", help="also replace an advgen export that was changed or made by an older version"
    )
    p.add_argument(
        "--attributable-only",
        action="store_true",
        help="attack runs: leave out breaks whose matched control also broke (and those control rows); the card says so",
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("unlock", help="clear the lock an interrupted writer left in a run directory (refused while it runs)")
    p.add_argument("dir", type=Path, help="a run directory holding .advgen.lock")
    p.set_defaults(func=cmd_unlock)
