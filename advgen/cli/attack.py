"""`advgen attack`: circuit-driven attacks with controls, screening, confirmation and a random baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from advgen.cli.device import add_device_args, options
from advgen.cli.scan import add_backend_args, backend_options
from advgen.cli.task import add_task_arg
from advgen.core import options as opts


def cmd_attack(args: argparse.Namespace) -> None:
    from advgen.attacks.attack_setup import AttackConfig
    from advgen.attacks.divergence import DivergenceSettings
    from advgen.attacks.task_summary_doc import read_task_summary
    from advgen.core.types import AdvgenError
    from advgen.jobs.attack import FILES, attack
    from advgen.outputs import console

    if args.list_modes:
        _list_modes(args.circuit, args.task)
        return
    if args.circuit is None or args.budget is None:
        raise AdvgenError("advgen attack needs --circuit and --budget (or --list-modes)")
    cfg = AttackConfig(
        budget=args.budget,
        n_clean=args.n_clean,
        seed=args.seed,
        batch_size=args.batch_size,
        sample_frac=args.sample_frac,
        templates=args.templates,
        modes=tuple(m.strip() for m in args.modes.split(",")) if args.modes else None,
    )
    div = DivergenceSettings(ablation=args.ablation, measure=args.divergence, top=args.top, controls=args.controls)
    res = attack(
        args.model,
        args.circuit,
        cfg,
        args.out,
        args.measure_behaviour,
        args.resume,
        args.overwrite,
        not args.no_progress,
        **backend_options(args),
        **options(args),
        task=args.task,
        objective=args.objective,
        divergence=div,
    )
    if res.records_note:
        print(f"behaviour records measured on {args.model}: {res.records_note}")
    if args.objective == "divergence":
        from advgen.attacks.divergence_tables import FILES as DIVERGENCE_FILES

        print((res.out / "table.md").read_text(encoding="utf-8"), end="")
        print(console.wrote(res.out, list(DIVERGENCE_FILES)))
        return
    if read_task_summary(res.summary, res.out / "summary.json") is not None:  # a generic task's run (typed): its own tables
        from advgen.jobs.task_attack import FILES as TASK_FILES

        print((res.out / "table.md").read_text(encoding="utf-8"), end="")
        print(console.wrote(res.out, list(TASK_FILES)))
        return
    print(console.attack_summary(res.summary, res.out, {**res.run.evals, "budget per side": cfg.budget}))
    print(console.wrote(res.out, list(FILES)))


def _list_modes(circuit_spec: str | None, task: str = "ioi") -> None:
    from advgen.attacks.catalogue import catalogue_markdown
    from advgen.attacks.compiler import compile_modes, compiled_markdown
    from advgen.circuits.format import resolve_circuit
    from advgen.jobs.common import task_of

    circuit = resolve_circuit(circuit_spec) if circuit_spec else None
    t = task_of(task)
    if t.engine == "generic":
        from advgen.attacks.task_compiler import modes_markdown
        from advgen.attacks.task_setup import compiled_for

        if circuit is None or not all(h.behaviour for h in circuit.heads):
            print(
                f"Task {t.name!r}: modes are compiled from the circuit's task records, measured on the model by `advgen attack`."
            )
            return
        modes, why = compiled_for(circuit.check_task(t), t)
        print(modes_markdown(modes, why), end="")
        return
    print(catalogue_markdown(circuit), end="")
    if circuit is not None:
        compiled, why = compile_modes(circuit)
        print(
            "\n## Compiled from the circuit's behaviour records\n\n"
            + (compiled_markdown(compiled) or "; ".join(why.values()) + "\n"),
            end="",
        )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
    p = sub.add_parser("attack", help="circuit-driven attacks: candidates, screening, confirmation, random baseline")
    p.add_argument("--model", default="reference", help="'reference' (bundled), 'gpt2', or a local HF directory")
    p.add_argument(
        "--circuit",
        default=None,
        help="circuit JSON file or built-in name, e.g. gpt2-small-ioi, reference-ioi (no default: required unless --list-modes)",
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="model evaluations per side, guided and random baseline each (no default: required)",
    )
    p.add_argument("--n-clean", type=int, default=100, help="clean prompts to attack (their run counts against the budget)")
    p.add_argument(
        "--sample-frac",
        type=float,
        default=0.5,
        help=(
            "stratified random sample size: int(guided budget x this / 2) candidates (at most this share of the budget; less "
            "when controls are shared)"
        ),
    )
    p.add_argument("--templates", default=None, help="template pack (default: ioi)")
    p.add_argument(
        "--modes",
        default=None,
        help=(
            "comma-separated failure modes to run; 'compiled' = the modes compiled from the circuit's behaviour records "
            "(default: compiled; records missing from the circuit, or measured on another model, are measured first)"
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice; same seed and inputs, same bytes")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="prompts per model forward (memory vs speed; results agree across sizes to 1e-5)",
    )
    _run_dir_args(p)
    p.add_argument(
        "--measure-behaviour",
        action="store_true",
        help=(
            "measure the circuit's behaviour records on this model again even when it has valid ones (records that "
            "are missing or were measured on another model are always measured first, so compiled modes run)"
        ),
    )
    p.add_argument(
        "--list-modes", action="store_true", help="print the failure-mode catalogue (and what --circuit implies), run nothing"
    )
    _objective_args(p)
    add_task_arg(p)
    add_backend_args(p)
    add_device_args(p)
    p.set_defaults(func=cmd_attack)


def _run_dir_args(p: argparse.ArgumentParser) -> None:
    """Where the run directory goes, and how an earlier one there is treated."""
    p.add_argument("--out", type=Path, default=None, help="run directory (default: outputs/attack-MODEL-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its journal")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _objective_args(p: argparse.ArgumentParser) -> None:
    """--objective and the divergence search's options, in their own group of the help."""
    g = p.add_argument_group(
        "objective", "what the search maximises (break: the default; divergence: where the circuit and the model part)"
    )
    g.add_argument(
        "--objective",
        choices=opts.OBJECTIVES,
        default="break",
        help=(
            "break: prompts that flip the model, as the circuit predicts; divergence: prompts that maximise the circuit's "
            "divergence from the model, against a random search of the same budget (worst prompts exported as results.jsonl)"
        ),
    )
    g.add_argument(
        "--ablation",
        default="abc_mean",
        help=(
            "divergence: heads outside the circuit replaced by their output on the prompt's own ABC twin "
            "(abc_mean) or by zeros (zero)"
        ),
    )
    g.add_argument(
        "--divergence",
        default="ld",
        choices=opts.DIVERGENCE_MEASURES,
        help="divergence: |LD_model - LD_circuit| (ld) or KL(model || circuit) at END (kl)",
    )
    g.add_argument(
        "--top", type=int, default=100, help="divergence: worst guided prompts written as the test set (results.jsonl)"
    )
    g.add_argument(
        "--controls",
        type=int,
        default=20,
        help="divergence: worst attack prompts whose matched control is measured (from the guided budget)",
    )
