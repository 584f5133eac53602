"""The `advgen` command: parse arguments, call the Python API, print. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from advgen.cli import attack, circuits, device, helpfmt, reports, scan
from advgen.cli.task import add_task_arg
from advgen.core.options import check_options
from advgen.core.types import AdvgenError
from advgen.core.version import version

if TYPE_CHECKING:
    from advgen.outputs.run_summary import RunSummary


def _common(p: argparse.ArgumentParser, n: bool = True) -> None:
    p.add_argument("--model", default="reference", help="'reference' (bundled, offline), 'gpt2', or a local HF directory")
    add_task_arg(p)
    if n:
        p.add_argument("--n", type=int, default=300, help="number of clean prompts")
        p.add_argument("--templates", default=None, help="template pack: a YAML file or a built-in name (default: ioi)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (names, templates, bootstrap); same seed, same bytes"
    )
    p.add_argument("--batch-size", type=int, default=32, help="prompts per model forward; results agree across sizes to 1e-5")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: under outputs/)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def cmd_generate(args: argparse.Namespace) -> None:
    from advgen.jobs.prompts import generate

    res = generate(args.model, args.n, args.seed, args.out, args.templates, overwrite=args.overwrite, task=args.task)
    _print_lexicon(res.lexicon, _task_name(args) is None)
    print(f"wrote {res.n} prompts to {res.prompts_path}")


def _task_name(args: argparse.Namespace) -> str | None:
    """The --task the command ran, by name; None for IOI's own engine (its lexicon and terms are IOI's)."""
    from advgen.jobs.common import task_of

    t = task_of(args.task)
    return None if t.engine == "ioi" else t.name


def _print_lexicon(report: dict, ioi: bool) -> None:
    from advgen.outputs.console import wrap

    if not ioi:  # a task's lexicons: {lexicon: {kept, n_dropped, ...}}
        print(
            wrap(
                "lexicons: "
                + ", ".join(f"{k} {v['kept']} words ({v['n_dropped']} dropped: not single tokens)" for k, v in report.items())
            )
        )
        return
    print(
        wrap(
            f"lexicon: {report['names']} names, {report['places']} places, {report['objects']} objects "
            f"({len(report['dropped'])} entries dropped as not single tokens; listed in manifest.json)"
        )
    )


def _print_summary(summary: RunSummary, out: Path, task: str | None) -> None:
    from advgen.outputs import console

    print(console.run_summary(summary, task or "ioi"))  # <= 100 columns, terms defined
    print(console.wrote(out, ["results.jsonl", "results.csv", "summary.json", "manifest.json"]))


def cmd_validate(args: argparse.Namespace) -> None:
    from advgen.jobs.prompts import validate

    res = validate(
        args.model,
        args.prompts,
        args.out,
        args.seed,
        args.batch_size,
        args.skip_invalid,
        args.overwrite,
        not args.no_progress,
        **scan.backend_options(args),
        **device.options(args),
        task=args.task,
    )
    if args.skip_invalid:
        print(f"rejected {len(res.rejected)} invalid row(s); listed with line and reason in {res.out}/rejected.jsonl")
    _print_summary(res.record, res.out, _task_name(args))


def cmd_run(args: argparse.Namespace) -> None:
    from advgen.jobs.prompts import run

    res = run(
        args.model,
        args.n,
        args.seed,
        args.out,
        args.templates,
        args.batch_size,
        args.overwrite,
        not args.no_progress,
        **scan.backend_options(args),
        **device.options(args),
        task=args.task,
    )
    _print_lexicon(res.manifest["settings"]["lexicon"], _task_name(args) is None)
    _print_summary(res.record, res.out, _task_name(args))


def cmd_train_reference(args: argparse.Namespace) -> None:
    if args.ladder:
        from advgen.reference.ladder import build_ladder

        print(f"ladder written to {build_ladder(args.out, seed=args.seed, steps=args.steps, progress=not args.no_progress)}")
        return
    if args.kind == "planted":
        from advgen.reference.planted import SHIPPED_STEP, train_planted
        from advgen.reference.planted_recipe import PlantedSettings

        s = PlantedSettings(seed=args.seed, **({"steps": args.steps} if args.steps else {}))
        stop = args.stop_after if args.stop_after is not None else (SHIPPED_STEP if not args.steps else None)
        out = train_planted(args.out, s, resume=not args.no_resume, progress=not args.no_progress, stop_after=stop)
        print(f"planted model written to {out} (copy its final files into advgen/model/weights/planted/)")
        return
    if args.kind == "greater-than":
        from advgen.reference.greater_than import GTSettings, train_greater_than

        gs = GTSettings(seed=args.seed, **({"steps": args.steps} if args.steps else {}))
        print(
            "greater-than model written to "
            f"{train_greater_than(args.out, gs, resume_run=not args.no_resume, progress=not args.no_progress)}"
        )
        return
    if args.kind == "induction":
        from advgen.reference.ind_model import InductionSettings
        from advgen.reference.induction import train_induction

        ind = InductionSettings(seed=args.seed, **({"steps": args.steps} if args.steps else {}))
        print(
            "induction model written to "
            f"{train_induction(args.out, ind, resume_run=not args.no_resume, progress=not args.no_progress)}"
        )
        return
    from advgen.reference.train import train_reference

    out = train_reference(args.out, seed=args.seed, steps=args.steps, resume=not args.no_resume, progress=not args.no_progress)
    print(f"reference model written to {out}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="advgen", description="Circuit-driven adversarial prompts for interpretability claims.")
    ap.add_argument("--version", action="version", version=f"advgen {version()}", help="print advgen's version and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", help="render seeded prompts of a task (IOI by default; no model run)")
    _common(p)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("validate", help="run the model on prompts from a JSONL file")
    p.add_argument("prompts", type=Path, help="JSONL with at least text, io, s per row")
    _common(p, n=False)
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="measure the valid rows and list the others (row, line, reason) in OUT/rejected.jsonl",
    )
    scan.add_backend_args(p)
    device.add_device_args(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="generate + validate + export")
    _common(p)
    scan.add_backend_args(p)
    device.add_device_args(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("train-reference", help="retrain the bundled reference model (about 10-15 min on 2 CPU cores)")
    p.add_argument("--out", type=Path, required=True, help="output directory; checkpoints go to OUT/checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus, initialisation and batch order")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped model's)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in OUT/checkpoints and start over")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help=(
            "planted: stop after this step and write that step's "
            "model (the schedule still spans --steps; default: step 2000 of the default schedule, the shipped "
            "model; every step with --steps; --stop-after 2400 runs the whole default schedule)"
        ),
    )
    p.add_argument(
        "--kind",
        choices=("reference", "planted", "greater-than", "induction"),
        default="reference",
        help=(
            "reference: natural training (default); planted: GPT-2's IOI circuit imposed by "
            "interchange-intervention training, warm-started from the bundled reference (about 25 min to the shipped step on 2 "
            "cores); "
            "greater-than: the year-comparison model (advgen/model/weights/greater-than/, about 15 min on one thread); "
            "induction: the 2-layer attention-only copying model (advgen/model/weights/induction/, a few minutes)"
        ),
    )
    p.add_argument(
        "--ladder",
        action="store_true",
        help="train the ladder of smaller models (OUT holds their checkpoints) and write advgen/model/weights/ladder/ladder.json",
    )
    p.set_defaults(func=cmd_train_reference)
    for module in (circuits, attack, reports, scan):
        module.register(sub)
    return helpfmt.apply(ap)  # every subcommand's --help shows its defaults


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_options(args)  # one check per option, shared by every command, before any work
        args.func(args)
    except AdvgenError as e:
        print(f"advgen: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: the environment, named, not a traceback
        print(f"advgen: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advgen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
