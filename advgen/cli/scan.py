"""`advgen scan` and the backend options shared by scan, validate and run (`--backend ray`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advgen.cli.device import add_device_args, options
from advgen.cli.task import add_task_arg
from advgen.core import options as opts
from advgen.core.types import AdvgenError


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """--backend / --ray-address / --workers: where evaluation units run (the output is the same)."""
    p.add_argument(
        "--backend",
        choices=opts.BACKENDS,
        default="local",
        help="run evaluation units in this process (local) or on Ray actors, one model replica each",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="an existing Ray cluster (e.g. 10.0.0.5:6379 or ray://head:10001); default: start a local Ray instance",
    )
    p.add_argument(
        "--workers", type=int, default=2, help="Ray actors (model replicas); each takes a GPU where the cluster has them"
    )


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend options as the jobs take them (`backend`, `workers`, `ray_address`)."""
    return {"backend": args.backend, "workers": args.workers, "ray_address": args.ray_address}


def cmd_scan(args: argparse.Namespace) -> None:
    from advgen.jobs.scan import scan
    from advgen.outputs.scan import ScanConfig

    cfg = ScanConfig(
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        templates=args.templates,
        distractors=args.distractors,
        full_lexicon=args.full_lexicon,
        unit=args.unit,
        batch_size=args.batch_size,
        task=None if args.task == "ioi" else args.task,
    )
    res = scan(
        args.model,
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **backend_options(args),
        **options(args),
    )
    out = res.out
    s = res.record
    sel, ci = s.selection, s.failure_ci95
    if sel is None:
        raise AdvgenError(f"{out}/summary.json: field 'selection' is missing")
    print(
        f"scanned {s.n} of {sel.space_size} prompts ({sel.kind}"
        + (f", seed {sel.sample_seed}" if sel.kind == "sample" else "")
        + ")"
        + (f"; reused {res.reused_units} journal units" if res.reused_units else "")
    )
    what = "S > IO" if args.task == "ioi" else "foil > answer"
    print(
        f"natural failure rate ({what}): {100 * s.failure_rate:.3f} % [{100 * ci.low:.3f}, {100 * ci.high:.3f}] "
        f"(Wilson 95 %), {s.failures} prompts; mean LD {s.mean_logit_diff:.3f}"
    )
    if sel.kind == "prefix":
        print("note: a prefix of the enumeration is not a random sample; use --sample N for an unbiased estimate")
    print(
        f"wrote {out}/summary.json, manifest.json, parts/ ({len(list((out / 'parts').glob('*.jsonl')))} files); "
        f"failing prompts: {out}/adversarial/results.jsonl (export with `advgen export {out}/adversarial --format F --out DIR`)"
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `advgen scan` to the advgen parser."""
    p = sub.add_parser("scan", help="run the model over the prompt space (exhaustive, --limit or seeded --sample)")
    p.add_argument("--model", default="reference", help="'reference' (bundled, offline), 'gpt2', or a local HF directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--limit", type=int, default=None, help="the first N prompts of the enumeration (default: all)")
    g.add_argument(
        "--sample",
        type=int,
        default=None,
        help="N prompts sampled without replacement, seeded by --seed (default: scan every prompt)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice; same seed and inputs, same bytes")
    add_task_arg(p)
    p.add_argument("--templates", default=None, help="template pack: a YAML file or a built-in name (default: ioi)")
    p.add_argument(
        "--distractors", action="store_true", help="add the paper's 5 distractor sentences naming IO or S as a dimension"
    )
    p.add_argument(
        "--full-lexicon", action="store_true", help="every single-token name, place and object, not only the paper's lists"
    )
    p.add_argument("--unit", type=int, default=512, help="prompts per evaluation unit (journal entry, Ray task, part file)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="prompts per model forward (memory vs speed; results agree across sizes to 1e-5)",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory (default: under outputs/)")
    p.add_argument("--resume", action="store_true", help="reuse the units already in OUT/journal")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_backend_args(p)
    add_device_args(p)
    p.set_defaults(func=cmd_scan)
