"""`advgen attack`: circuit-driven attacks with controls, screening, confirmation and a random baseline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_attack(args: argparse.Namespace) -> None:
    from advgen.attacks.search import AttackConfig
    from advgen.circuits.format import resolve_circuit
    from advgen.core import rundir
    from advgen.core.types import AdvgenError
    from advgen.model.loading import load_model

    if args.list_modes:
        from advgen.attacks.catalogue import catalogue_markdown
        from advgen.attacks.compiler import compile_modes, compiled_markdown

        circuit = resolve_circuit(args.circuit) if args.circuit else None
        print(catalogue_markdown(circuit), end="")
        if circuit is not None:
            compiled, why = compile_modes(circuit)
            print("\n## Compiled from the circuit's behaviour records\n\n" + (compiled_markdown(compiled) or "; ".join(why.values()) + "\n"), end="")
        return
    if args.circuit is None or args.budget is None:
        raise AdvgenError("advgen attack needs --circuit and --budget (or --list-modes)")
    cfg = AttackConfig(budget=args.budget, n_clean=args.n_clean, seed=args.seed, batch_size=args.batch_size,
                       sample_frac=args.sample_frac, templates=args.templates,
                       modes=tuple(m.strip() for m in args.modes.split(",")) if args.modes else None)
    out = args.out or Path("outputs") / f"attack-{Path(args.model).name}-s{args.seed}"
    cfg.check()  # arguments, the circuit file and --out are checked before the model loads
    resolve_circuit(args.circuit)
    ident = rundir.identity_of("attack", {"model": args.model, "circuit": str(args.circuit), "measure_behaviour": args.measure_behaviour, **vars(cfg)})
    inputs = [Path(args.circuit)] if Path(args.circuit).exists() else []
    rundir.check_out(out, "attack", ident, args.overwrite, inputs)
    model = load_model(args.model)
    circuit = resolve_circuit(args.circuit, model.n_layers, model.n_heads)
    from advgen.circuits.behaviour import BehaviourSettings, ensure_records

    # circuit.json keeps the records it used; probes on min(100, n-clean) prompts (discover's 100; fewer for a small run)
    circuit, why = ensure_records(model, circuit, BehaviourSettings(n=min(100, cfg.n_clean)), force=args.measure_behaviour)
    if why:
        print(f"behaviour records measured on {model.name}: {why}")
    with rundir.writing(out, "attack", ident, args.overwrite, inputs, keep=("journal",)):
        res, run = _run_and_write(args, model, circuit, cfg, out)
    from advgen.outputs import console

    print(console.attack_summary(res["summary"], out, {**run.evals, "budget per side": cfg.budget}))
    print(console.wrote(out, ["results.jsonl", "results.csv", "summary.json", "modes.json", "adversarial.jsonl",
                              "near_misses.jsonl", "baseline.json", "circuit.json", "manifest.json", "table.md"]))


def _run_and_write(args: argparse.Namespace, model: Any, circuit: Any, cfg: Any, out: Path) -> tuple[dict[str, Any], Any]:
    from advgen.attacks.search import run_attack
    from advgen.attacks.tables import write_run
    from advgen.cli.scan import backend_for
    from advgen.core import records
    from advgen.model.backends import portable_command
    from advgen.prompts.templates import tokenizer_hash

    with backend_for(args, model) as backend:
        run = run_attack(model, circuit, cfg, out, resume=args.resume, progress=not args.no_progress, backend=backend)
    settings = {"budget": cfg.budget, "n_clean": cfg.n_clean, "batch_size": cfg.batch_size, "sample_frac": cfg.sample_frac,
                "templates": str(cfg.templates or "ioi"), "modes": list(cfg.modes) if cfg.modes else None,
                "evaluations": run.evals}
    man = records.manifest(model, tokenizer_hash(model.tokenizer), cfg.seed, settings)
    man["circuit"] = {"name": circuit.name, "spec": str(args.circuit), "n_heads": len(circuit)}
    man["command"] = portable_command(man["command"])  # without --resume and the backend options
    return write_run(out, run, cfg, circuit, man), run


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
    p = sub.add_parser("attack", help="circuit-driven attacks: candidates, screening, confirmation, random baseline")
    p.add_argument("--model", default="reference", help="'reference' (bundled), 'gpt2', or a local HF directory")
    p.add_argument("--circuit", default=None, help="circuit JSON file or built-in name, e.g. gpt2-small-ioi, reference-ioi (no default: required unless --list-modes)")
    p.add_argument("--budget", type=int, default=None, help="model evaluations per side, guided and random baseline each (no default: required)")
    p.add_argument("--n-clean", type=int, default=100, help="clean prompts to attack (their run counts against the budget)")
    p.add_argument("--sample-frac", type=float, default=0.5,
                   help="stratified random sample size: int(guided budget x this / 2) candidates (at most this share of the budget; less when controls are shared)")
    p.add_argument("--templates", default=None, help="template pack (default: ioi)")
    p.add_argument("--modes", default=None, help="comma-separated failure modes to run; 'compiled' = the modes compiled from the circuit's behaviour records "
                   "(default: compiled; records missing from the circuit, or measured on another model, are measured first)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice; same seed and inputs, same bytes")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per model forward (memory vs speed; results agree across sizes to 1e-5)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: outputs/attack-MODEL-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out from its journal")
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--measure-behaviour", action="store_true",
                   help="measure the circuit's behaviour records on this model again even when it has valid ones (records that "
                        "are missing or were measured on another model are always measured first, so compiled modes run)")
    p.add_argument("--list-modes", action="store_true", help="print the failure-mode catalogue (and what --circuit implies), run nothing")
    from advgen.cli.scan import add_backend_args

    add_backend_args(p)
    p.set_defaults(func=cmd_attack)
