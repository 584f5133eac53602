"""Compiled attack on a generic task (induction first): guided vs random yield per seed; writes a Markdown section.

    .venv/bin/python benchmarks/bench_task_attack.py --model induction --task induction \\
        --circuit auto --seeds 0,1,2,3,4 --budget 2000 --n-clean 400 --out /tmp/ta/bench

Each seed is one `advgen attack --task` run (the job itself: run directory, records measured on the
model when the circuit has none). Raw yield = breaks (attack LD < 0 while the clean LD > 0) per
1,000 guided evaluations; attributable yield counts only breaks whose matched control holds (the
headline); both against random-filler breaks per 1,000. When the random side finds no break the
ratio has no value and the rule-of-three lower bound is shown instead, marked ">". Every break
is recomputed with one unbatched, unpadded forward.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.attacks.attack_setup import AttackConfig
from advgen.core import files
from advgen.jobs.attack import attack
from advgen.model.loading import LoadedModel, load_model
from advgen.model.validate import model_device, single_logit_diff
from advgen.prompts.templates import single_token_id
from advgen.tasks.lexicons import answer_token
from advgen.tasks.registry import resolve_task
from advgen.tasks.spec import Task


def set_ld(model: LoadedModel, ids: Sequence[int], task: Task, values: Mapping[str, str]) -> float:
    """A set task's LD = log p(answers) - log p(foils) from one unbatched, unpadded forward."""
    with torch.inference_mode():
        logits = model.bridge(torch.tensor([list(ids)], device=model_device(model)))[0, -1].double()
    toks = [
        [answer_token(model.tokenizer, w, rule.space, "set") for w in rule.words(values)] for rule in (task.answer, task.foil)
    ]
    return float(logits[toks[0]].logsumexp(0) - logits[toks[1]].logsumexp(0))


def unbatched(model: LoadedModel, rows: Sequence[Mapping[str, Any]], task: Task) -> tuple[int, int]:
    """(guided breaks, those whose LD is < 0 again in one unbatched, unpadded forward of the row's text)."""
    tok = model.tokenizer
    breaks = [r for r in rows if r["family"] == "attack" and r["is_break"]]
    ok = 0
    for r in breaks:
        ids = [tok.bos_token_id, *tok(r["text"], add_special_tokens=False)["input_ids"]]
        if task.sets:
            ok += set_ld(model, ids, task, r["extra"]["values"]) < 0
        else:
            ok += single_logit_diff(model, ids, single_token_id(tok, r["answer"]), single_token_id(tok, r["foil"])) < 0
    return len(breaks), ok


def circuit_from_training_info(model: LoadedModel, task: str, out: Path) -> Path:
    """A circuit file written from the trainer's measured heads (training_info.json beside the weights): previous-token
    heads at A+1, induction heads at END. Not a built-in circuit: the file is written into the benchmark's --out."""
    info = files.read_json(Path(model.source) / "training_info.json", "training info")
    heads = [
        {"head": f"a{a}.h{b}", "role": role, "positions": [pos], "note": "from training_info.json"}
        for key, role, pos in (("previous_token_heads", "previous_token", "A+1"), ("induction_heads", "induction", "END"))
        for a, b in info.get(key, [])
    ]
    if not any(h["role"] == "induction" for h in heads):
        raise SystemExit(f"{model.source}/training_info.json lists no induction head; pass --circuit FILE")
    doc = {
        "format": "advgen-circuit/1",
        "name": f"{model.name}-from-training-info",
        "task": task,
        "model": model.name,
        "n_layers": model.n_layers,
        "n_heads": model.n_heads,
        "provenance": {"source": "training_info.json"},
        "heads": heads,
    }
    path = out / "circuit-from-training-info.json"
    files.atomic_write_text(path, files.dumps(doc, indent=2) + "\n")
    return path


def one_seed(model: LoadedModel, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    cfg = AttackConfig(budget=args.budget, n_clean=args.n_clean, seed=seed, batch_size=args.batch_size)
    out = Path(args.out) / f"s{seed}"
    t0 = time.perf_counter()
    res = attack(model, args.circuit_path, cfg, out, task=args.task, resume=args.resume, overwrite=True)
    wall = time.perf_counter() - t0
    y, s = res.summary["yield"], res.summary
    n, ok = unbatched(model, res.run.rows, resolve_task(args.task))
    return {
        "seed": seed,
        "yield": y,
        "explained": s["explained_fraction"],
        "modes": s["modes"],
        "skipped": s["skipped_modes"],
        "evaluations": s["evaluations"],
        "unbatched": (n, ok),
        "wall": wall,
        "note": res.records_note,
    }


def ratio(x: float | None, lb: float | None) -> str:
    return f"{x:.1f}x" if x is not None else f"> {lb:.1f}x" if lb is not None else "n/a"


def ratio_value(x: float | None, lb: float | None) -> float:
    """The ratio, or its lower bound when the random side found no break (so min/median are bounds too)."""
    return x if x is not None else lb if lb is not None else float("nan")


def markdown(runs: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"## {args.task}: `{args.model}` with circuit `{args.circuit}`, seeds {', '.join(str(r['seed']) for r in runs)}",
        "",
        f"Command: `{command}`",
        "",
        "| seed | attributable / 1,000 | random / 1,000 | attributable ratio | raw / 1,000 | raw ratio | breaks | control also "
        "breaks "
        "| explained (vs control) | LD < 0 unbatched | evaluations guided / random | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        y, e = r["yield"], r["evaluations"]
        ex = "-" if r["explained"] is None else f"{r['explained'] * 100:.0f}%"
        lines.append(
            f"| {r['seed']} | {y['attributable_per_1000']:.1f} | {y['random_per_1000']:.1f} | "
            f"{ratio(y['attributable_ratio'], y['attributable_ratio_lower_bound'])} | {y['guided_per_1000']:.1f} | "
            f"{ratio(y['ratio'], y['ratio_lower_bound'])} | {y['breaks']} | {y['control_shared_breaks']} | {ex} | "
            f"{r['unbatched'][1]}/{r['unbatched'][0]} | {e['clean'] + e['sample'] + e['search']} / {e['clean'] + e['baseline']} "
            f"| {r['wall']:.0f} |"
        )
    att = [ratio_value(r["yield"]["attributable_ratio"], r["yield"]["attributable_ratio_lower_bound"]) for r in runs]
    raw = [ratio_value(r["yield"]["ratio"], r["yield"]["ratio_lower_bound"]) for r in runs]
    bounds = sum(r["yield"]["ratio"] is None for r in runs)
    exp = [r["explained"] if r["explained"] is not None else float("nan") for r in runs]
    worst = runs[int(np.argmin(att))]["seed"]

    def mmm(v: list[float], f: str = ".1f") -> str:
        return " / ".join(format(x, f) for x in (min(v), float(np.median(v)), max(v)))

    lines += [
        "",
        f"Over {len(runs)} seeds, min / median / max: attributable ratio {mmm(att)}, raw ratio {mmm(raw)}, explained share "
        f'{mmm([100 * x for x in exp], ".0f")} %; worst seed (attributable) {worst}. A ratio shown as "> x" is a lower bound '
        f"(the random side found no break; rule of three); {bounds} of {len(runs)} seeds' ratios are such bounds, and the "
        "spread above uses the bound for them.",
        "",
        "Per mode (random sample, paired LD(attack) - LD(control), 95 % CI over clean prompts; predicted sign from the records):",
        "",
        "| seed | mode | predicted | seen | verdict | breaks | attributable | explained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for name, m in r["modes"].items():
            ci = m["seen"]
            seen = f"{ci['mean']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "-"
            ex = "-" if m["explained_fraction"] is None else f"{m['explained_fraction'] * 100:.0f}%"
            lines.append(
                f"| {r['seed']} | {name} | {'< 0' if m['predicted_sign'] < 0 else '> 0'} | {seen} | "
                f"{m['verdict']}{' (' + m['cause'] + ')' if m.get('cause') else ''} | "
                f"{m['breaks']} | {m['attributable_breaks']} | {ex} |"
            )
    r0 = runs[0]
    lines += [
        "",
        "Compiled from (seed "
        + str(r0["seed"])
        + "): "
        + "; ".join(f"`{k}`: {v['compiled_from']}" for k, v in r0["modes"].items()),
        "",
        "Not compiled: " + ("; ".join(f"`{k}`: {v}" for k, v in r0["skipped"].items()) or "none"),
        "",
        "Records: "
        + (f"measured by the attack on the loaded model ({r0['note']})" if r0["note"] else "from the circuit file")
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--model", default="induction")
    p.add_argument("--task", default="induction")
    p.add_argument(
        "--circuit", default="auto", help="circuit file of the task; 'auto': written from the model's training_info.json"
    )
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--n-clean", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="/tmp/advgen-bench-task-attack")
    p.add_argument("--doc", default=None, help="write the Markdown section here (default: print it)")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    command = "python benchmarks/bench_task_attack.py " + shlex.join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"
    )
    model = load_model(args.model)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.circuit_path = circuit_from_training_info(model, args.task, Path(args.out)) if args.circuit == "auto" else args.circuit
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(one_seed(model, args, seed))
        y = runs[-1]["yield"]
        print(
            f"seed {seed}: attributable {ratio(y['attributable_ratio'], y['attributable_ratio_lower_bound'])}, raw "
            f"{ratio(y['ratio'], y['ratio_lower_bound'])}, explained {runs[-1]['explained']}, {runs[-1]['wall']:.0f} s",
            flush=True,
        )
    text = markdown(runs, args, command)
    if args.doc:
        files.atomic_write_text(Path(args.doc), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
