"""Worst-case circuit-model divergence: the guided search against random search at equal budget.

Writes docs/benchmarks/divergence.md:

    .venv/bin/python benchmarks/bench_divergence.py --models reference,planted --seeds 0,1,2 --budget 3000 --n-clean 300

Each run is `advgen attack --objective divergence` (`advgen.attacks.divergence`): per prompt,
|LD_model - LD_circuit| with every head outside the circuit replaced by its output on the prompt's
own ABC twin (or KL with --measure kl). Both sides get --budget evaluations; the guided side pays
its clean run and the controls of its worst prompts out of it. The worst prompt of each side is
measured again alone (batch size 1, no padding) and must give the same divergence to 1e-4.
Each table row is one run; the spread is min / median / max over seeds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import advgen
from advgen.attacks.divergence import DivergenceSettings, measure_divergence
from advgen.core import files
from advgen.core.types import AdvgenError
from advgen.model.loading import LoadedModel, load_model
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.rows import prompt_of_row

ROOT = Path(__file__).resolve().parents[1]
CIRCUITS = {"reference": "reference-ioi", "planted": "planted-ioi"}
TWIN = " (each head outside the circuit replaced by its output on the prompt's own ABC twin)"


def recheck(model: LoadedModel, circuit: Any, row: dict[str, Any], ds: DivergenceSettings, seed: int) -> float:
    """The row's divergence measured again alone (batch 1); returns |new - recorded|."""
    p = prompt_of_row(row, model.tokenizer, "worst case")
    (again,) = measure_divergence(
        model, circuit, [p], [{"phase": "recheck"}], ds, build_lexicon(model.tokenizer).name_texts, 1, seed
    )
    return abs(again["divergence"] - row["divergence"])


def one(model: LoadedModel, name: str, seed: int, args: argparse.Namespace, ds: DivergenceSettings) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        res = advgen.attack(
            model,
            CIRCUITS[name],
            advgen.AttackConfig(budget=args.budget, n_clean=args.n_clean, seed=seed),
            Path(tmp) / "run",
            objective="divergence",
            divergence=ds,
        )
        s = res.summary
        rows = [r for r in files.read_jsonl(Path(tmp) / "run" / "evaluated.jsonl")]
    worst = {
        side: max(
            (r for r in rows if (r["phase"] == "baseline") == (side == "random")), key=lambda r: (r["divergence"], r["text"])
        )
        for side in ("guided", "random")
    }
    err = max(recheck(model, res.circuit, worst[side], ds, seed) for side in worst)
    if err > 1e-4:
        raise AdvgenError(f"{name} seed {seed}: a worst prompt measured alone differs by {err:.2e} from its batched measurement")
    return {
        "model": name,
        "seed": seed,
        "guided_max": s["guided"]["max"],
        "random_max": s["random"]["max"],
        "ratio": s["worst_case_ratio"],
        "top10_ratio": s["top10_mean_ratio"],
        "clean_max": s["clean"]["max"],
        "guided_n": s["guided"]["n"],
        "random_n": s["random"]["n"],
        "worst_mode": s["worst_case"]["guided"]["mode"] or "clean",
        "worst_model_ld": s["worst_case"]["guided"]["logit_diff"],
        "worst_circuit_ld": s["worst_case"]["guided"]["circuit_logit_diff"],
        "controls": s["controls"],
        "recheck_err": err,
        "sample_max": s["guided_by_phase"]["sample"]["max"],
        "search_max": s["guided_by_phase"]["search"]["max"],
        "sample_n": s["guided_by_phase"]["sample"]["n"],
        "search_n": s["guided_by_phase"]["search"]["n"],
    }


def _spread(xs: list[float]) -> str:
    return f"{min(xs):.2f} / {float(np.median(xs)):.2f} / {max(xs):.2f}"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    unit = "|LD_model - LD_circuit|" if args.measure == "ld" else "KL(model || circuit), nats"
    out = [
        "# Divergence search: worst case, guided vs random at equal budget",
        "",
        f"Command: `{command}`",
        "",
        f"Divergence: {unit}, ablation {args.ablation}{TWIN if args.ablation == 'abc_mean' else ''}; budget {args.budget} "
        "evaluations "
        f"per side, {args.n_clean} clean prompts "
        "(paid by the guided side). Each worst prompt was measured again alone (batch 1): largest difference "
        f"{max(r['recheck_err'] for r in rows):.1e}.",
        "",
        "| model | seed | guided max | random max | worst-case ratio | top-10 mean ratio | clean max | uniform sample max (n) | "
        "search max (n) | worst prompt: mode, LD model / circuit | controls of the 20 worst: attack - control [95 % CI] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        c = r["controls"]["attack_minus_control"]
        ctl = f"{c['mean']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] (n={r['controls']['n']})" if c else "n/a"
        out.append(
            f"| {r['model']} | {r['seed']} | {r['guided_max']:.3f} | {r['random_max']:.3f} | {r['ratio']:.2f}x | "
            f"{r['top10_ratio']:.2f}x | "
            f"{r['clean_max']:.3f} | {r['sample_max']:.3f} ({r['sample_n']}) | {r['search_max']:.3f} ({r['search_n']}) | "
            f"{r['worst_mode']}, {r['worst_model_ld']:+.2f} / {r['worst_circuit_ld']:+.2f} | {ctl} |"
        )
    out += [
        "",
        "The uniform sample draws the guided side's candidates (the circuit's failure modes) at random; the search then "
        "spends the rest of the guided budget where divergence was found. Their maxima separate what the candidates contribute "
        "from what the search does.",
        "",
        "Per model, min / median / max over seeds:",
        "",
    ]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        wins = sum(r["guided_max"] > r["random_max"] for r in mine)
        out.append(
            f"- {name}: worst-case ratio {_spread([r['ratio'] for r in mine])}x, top-10 mean ratio "
            f"{_spread([r['top10_ratio'] for r in mine])}x; the guided worst case exceeds random's at {wins} of {len(mine)} "
            "seeds; "
            f"the search's maximum exceeds the uniform sample's at {sum(r['search_max'] > r['sample_max'] for r in mine)} of "
            f"{len(mine)}."
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="reference,planted")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--n-clean", type=int, default=300)
    ap.add_argument("--ablation", default="abc_mean")
    ap.add_argument("--measure", default="ld", choices=("ld", "kl"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "divergence.md")
    args = ap.parse_args(argv)
    ds = DivergenceSettings(ablation=args.ablation, measure=args.measure)
    rows = []
    for name in args.models.split(","):
        model = load_model(name)
        for seed in (int(x) for x in args.seeds.split(",")):
            rows.append(one(model, name, seed, args, ds))
            r = rows[-1]
            print(
                f"{name} seed {seed}: guided {r['guided_max']:.3f} random {r['random_max']:.3f} ({r['ratio']:.2f}x)", flush=True
            )
    command = "python benchmarks/bench_divergence.py " + shlex.join((argv if argv is not None else sys.argv[1:]))
    files.atomic_write_text(args.out, markdown(rows, args, command.strip()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
