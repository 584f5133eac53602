"""Circuit-guided yield vs the random baseline at equal budget, in one run; writes docs/benchmarks/attack.md.

    .venv/bin/python benchmarks/bench_attack.py --model reference --circuit reference-ioi --budget 2000 --n-clean 200

Yield = confirmed breaks (attack LD < 0 while the clean prompt's LD > 0) per 1,000 model
evaluations; both sides pay the clean run, the guided side also pays a control per candidate.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from advgen.attacks.search import AttackConfig, run_attack
from advgen.attacks.tables import write_run
from advgen.circuits.format import resolve_circuit
from advgen.core import files, records
from advgen.model.loading import load_model
from advgen.prompts.templates import tokenizer_hash

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="reference")
    ap.add_argument("--circuit", default="reference-ioi")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--n-clean", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-attack")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks" / "attack.md")
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_attack.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    model = load_model(args.model)
    circuit = resolve_circuit(args.circuit, model.n_layers, model.n_heads)
    cfg = AttackConfig(budget=args.budget, n_clean=args.n_clean, seed=args.seed)
    t0 = time.perf_counter()
    run = run_attack(model, circuit, cfg, args.out)
    secs = time.perf_counter() - t0
    man = records.manifest(model, tokenizer_hash(model.tokenizer), cfg.seed, {"budget": cfg.budget, "n_clean": cfg.n_clean})
    man["circuit"] = {"name": circuit.name, "spec": args.circuit}
    res = write_run(args.out, run, cfg, circuit, man)
    b, scr = res["baseline"], res["screening"]
    g, r = b["guided"], b["baseline"]
    ratio = b["ratio"]
    verdict = ("n/a: the random baseline found no break at this budget" if ratio is None
               else f"{ratio:.1f}x ({'meets' if ratio >= 5 else 'falls short of'} the 5x goal)")
    per_mode = ["| mode | searched | precision | sample breaks | recall on sample |", "|---|---|---|---|---|"]
    for name, m in res["modes"]["modes"].items():
        s = m["screening"]
        fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        per_mode.append(f"| {name} | {s['searched']} | {fmt(s['precision'])} | {s['sample_breaks']} | {fmt(s['recall_on_sample'])} |")
    text = f"""# Attack yield: circuit-guided vs random perturbations

Command (run from the repository root; wall time {secs:.0f} s on this machine, model evaluations counted exactly):

    {cmd}

Model `{args.model}`, circuit `{circuit.name}` ({len(circuit)} heads), seed {cfg.seed}, {cfg.n_clean} clean prompts,
budget {cfg.budget} model evaluations per side. Natural failure rate (S > IO on the clean prompts):
{res['modes']['natural']['s_beats_io_rate']:.3f}.

| side | model evaluations | confirmed breaks | breaks per 1,000 evaluations |
|---|---|---|---|
| circuit-guided (clean run + random sample with controls + screened search, control only for breaks) | {g['evaluations']} | {g['breaks']} | {g['breaks_per_1000']:.1f} |
| random perturbations (same clean prompts) | {r['evaluations']} | {r['breaks']} | {r['breaks_per_1000']:.1f} |

Ratio: {verdict}.

Screening (predicted break = selected by the signal screen): precision {scr['precision'] if scr['precision'] is None else round(scr['precision'], 3)}
on {scr['n_search']} searched candidates; recall {scr['recall_on_random_sample'] if scr['recall_on_random_sample'] is None else round(scr['recall_on_random_sample'], 3)}
on the stratified random sample of {scr['n_sample']} candidates (break rate there
{scr['sample_break_rate'] if scr['sample_break_rate'] is None else round(scr['sample_break_rate'], 3)}). {scr['note']}.

{chr(10).join(per_mode)}
"""
    files.atomic_write_text(args.doc, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
