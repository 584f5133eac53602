"""CLI subcommands for circuits: `advgen discover` and `advgen check-claim` (thin: parse, call, print)."""

from __future__ import annotations

import argparse
from pathlib import Path

from advgen.cli.device import add_device_args, options
from advgen.cli.task import add_task_arg
from advgen.core import options as opts


class StageBar:
    """A progress bar over discover's named stages; its clock ticks every second, other messages print above it."""

    def __init__(self, stages: tuple[str, ...], enabled: bool) -> None:
        import threading

        from tqdm.auto import tqdm

        self.stages, self.enabled = stages, enabled
        self.bar = tqdm(
            total=len(stages),
            desc="discover",
            unit="step",
            disable=not enabled,
            bar_format="{desc}{n_fmt}/{total_fmt} steps |{bar}| {elapsed} elapsed",
        )
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        if enabled:
            self.ticker.start()

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            self.bar.refresh()

    def __call__(self, message: str) -> None:
        if message in self.stages:
            self.bar.n = self.stages.index(message)
            self.bar.set_description(f"discover: {message}")
        elif self.enabled:
            self.bar.write(message)
        else:
            print(message)

    def close(self) -> None:
        self.stop.set()
        self.bar.n = len(self.stages)
        self.bar.set_description("discover: done")
        self.bar.close()


def cmd_discover_task(args: argparse.Namespace) -> None:
    """discover --task T (a generic task): the generic engine's settings and summary."""
    from advgen.circuits.task_discovery import TaskDiscoverySettings
    from advgen.core.types import AdvgenError
    from advgen.jobs.circuits import discover

    if args.nm_path != "mlp" or args.curve_ablation != "abc_mean":
        raise AdvgenError(f"--nm-path and --curve-ablation are IOI's discover options; --task {args.task} does not take them")
    settings = TaskDiscoverySettings(n=args.n, seed=args.seed, batch_size=args.batch_size)
    res = discover(args.model, args.out, settings, args.name, args.overwrite, None, **options(args), task=args.task)
    r, t = res.report, res.report["thresholds"]
    print(f"circuit: {len(res.circuit)} heads, MLP nodes: {', '.join(r['mlp_nodes']) or 'none'}")
    for h in res.circuit.heads:
        print(f"  {h.head!s:8} {h.role.value:20} {','.join(h.positions):6} {h.note}")
    for u in r["unassigned"]:
        print(f"  unassigned: {u['head']} effect {u['effect']:+.3f}, attention {u['signatures']}")
    print(
        f"member threshold |effect| >= {t['effect']:.3f} (largest {t['largest_abs_effect']:.3f}); roles missing: "
        f"{', '.join(r['roles_missing']) or 'none'}"
    )
    if "reference" in r:
        print(
            f"against {r['reference']['reference']}: precision {r['reference']['precision']:.2f}, recall "
            f"{r['reference']['recall']:.2f}"
        )
    print("wrote " + ", ".join(str(p) for p in res.files))


def cmd_discover(args: argparse.Namespace) -> None:
    from advgen.circuits.discovery import STAGES
    from advgen.circuits.discovery_roles import Settings
    from advgen.jobs.circuits import discover
    from advgen.jobs.common import task_of

    if task_of(args.task).engine != "ioi":
        return cmd_discover_task(args)
    settings = Settings(
        n=args.n, seed=args.seed, batch_size=args.batch_size, nm_path=args.nm_path, curve_ablation=args.curve_ablation
    )
    bar = StageBar(STAGES, enabled=not args.no_progress)
    try:
        res = discover(args.model, args.out, settings, args.name, args.overwrite, bar, **options(args))
    finally:
        bar.close()
    r = res.report
    print(f"circuit: {len(res.circuit)} heads")
    for h in res.circuit.heads:
        print(f"  {h.head!s:8} {h.role.value:20} {','.join(h.positions):5} {h.note}")
    print(f"roles found:   {', '.join(r['roles_found']) or 'none'}")
    print(f"roles missing: {', '.join(r['roles_missing']) or 'none'}")
    print(f"heads' direct share of LD: {r['heads_direct_share_of_ld']:.2f} (rest via MLPs/embeddings)")
    print(
        "attribution vs activation patching, Spearman: "
        + ", ".join(f"{k} {v:.3f}" for k, v in r["attribution_vs_activation_spearman"].items())
    )
    fc = r["faithfulness_curves"]
    print(
        f"faithfulness curve ({fc['ablation']}, MIB sizes over {fc['n_nodes']} heads): CPR {fc['cpr']:.3f} (signed ranking), CMD "
        f"{fc['cmd']:.3f} (absolute ranking)"
    )
    print("wrote " + ", ".join(str(p) for p in res.files))


def cmd_check_claim(args: argparse.Namespace) -> None:
    from advgen.circuits.claims import ClaimSettings
    from advgen.circuits.task_claims import TaskClaimSettings
    from advgen.core.types import AdvgenError
    from advgen.jobs.circuits import check_claim
    from advgen.jobs.common import task_of

    if task_of(args.task).engine != "ioi":
        if args.greedy_steps != 4 or args.scrub_draws != 1 or args.no_ladder or args.failures or args.mlps != "auto":
            raise AdvgenError(
                "--greedy-steps, --scrub-draws, --no-ladder, --failures and --mlps are IOI's check-claim options; --task "
                f"{args.task} "
                "does not take them"
            )
        res = check_claim(
            args.model,
            args.circuit,
            args.out,
            TaskClaimSettings(n=args.n, seed=args.seed, batch_size=args.batch_size, worst_k=args.worst_k),
            args.overwrite,
            not args.no_progress,
            **options(args),
            task=args.task,
        )
        print(res.result.markdown)
        print("wrote " + ", ".join(str(p) for p in res.files))
        return
    settings = ClaimSettings(
        n=args.n,
        seed=args.seed,
        batch_size=args.batch_size,
        greedy_steps=args.greedy_steps,
        worst_k=args.worst_k,
        scrub_draws=args.scrub_draws,
        ladder=not args.no_ladder,
        failures_max=args.failures_max,
        agreement_steps=args.agreement_steps,
        mlps=args.mlps,
    )
    failures = [f for arg in args.failures or [] for f in arg.split(",") if f]
    res = check_claim(
        args.model, args.circuit, args.out, settings, args.overwrite, not args.no_progress, **options(args), failures=failures
    )
    print(res.result.markdown)
    print("wrote " + ", ".join(str(p) for p in res.files))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this group's subcommands to the advgen parser."""
    _register_discover(sub)
    _register_check_claim(sub)


def _register_discover(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "discover", help="find a task's circuit in a model (IOI by default; --task for others) and write it as JSON"
    )
    p.add_argument("--model", default="reference", help="'reference', 'gpt2', or a local HF directory")
    p.add_argument(
        "--out", type=Path, required=True, help="run directory: circuit.json, discovery.json, heatmaps (PNG) and manifest.json"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--n", type=int, default=100, help="clean prompts (each with ABC and S1 twins)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts and detector sequences; same seed, same circuit")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per model forward")
    p.add_argument("--no-progress", action="store_true", help="print stage messages instead of the progress bar")
    p.add_argument("--name", default=None, help="circuit name (default: discovered-<model>)")
    p.add_argument(
        "--nm-path",
        choices=opts.NM_PATHS,
        default="mlp",
        help="head -> logits path of the name-mover rule: later MLPs recomputed (the IOI paper's) or direct only",
    )
    p.add_argument(
        "--curve-ablation",
        choices=opts.ABLATIONS,
        default="abc_mean",
        help="knockout of the heads outside each top-k circuit in the faithfulness curve (CPR, CMD)",
    )
    add_task_arg(p)
    add_device_args(p)
    p.set_defaults(func=cmd_discover)


def _register_check_claim(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check-claim", help="faithfulness / completeness / minimality of a circuit under several metrics and ablations"
    )
    p.add_argument("circuit", help="circuit JSON file or built-in name (e.g. gpt2-small-ioi, reference-ioi)")
    p.add_argument("--model", default="reference", help="'reference', 'gpt2', or a local HF directory")
    p.add_argument(
        "--out", type=Path, required=True, help="run directory: claims.json, claims.md, worst_cases.jsonl, manifest.json"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an --out directory that holds another advgen run")
    p.add_argument("--n", type=int, default=100, help="clean IOI prompts (each with its ABC twin)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompts, random K sets and bootstrap intervals")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per model forward")
    p.add_argument("--greedy-steps", type=int, default=4, help="size of the greedy completeness set K")
    p.add_argument("--worst-k", type=int, default=20, help="prompts in the worst-case list")
    p.add_argument("--scrub-draws", type=int, default=1, help="causal scrubbing: name twins resampled per example")
    p.add_argument("--no-ladder", action="store_true", help="skip placing the circuit on the ladder of reference models")
    p.add_argument(
        "--mlps",
        choices=("auto", "keep", "ablate"),
        default="auto",
        help=(
            "MLPs in the faithfulness table and completeness: keep every MLP (the heads' claim), or ablate every MLP output "
            "the circuit's MLP nodes do not name; auto: ablate when the circuit has MLP nodes"
        ),
    )
    p.add_argument(
        "--failures",
        action="append",
        metavar="PATH",
        help=(
            "error agreement over the model's mistakes: an attack, scan or run directory or a validated JSONL "
            "(repeat, or separate by commas, for several; default: none, no error agreement)"
        ),
    )
    p.add_argument(
        "--failures-max",
        type=int,
        default=300,
        help="at most this many errors and this many successes per failure set (seeded sample)",
    )
    p.add_argument("--agreement-steps", type=int, default=3, help="heads the error-agreement search adds back, one per step")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_task_arg(p)
    add_device_args(p)
    p.set_defaults(func=cmd_check_claim)
