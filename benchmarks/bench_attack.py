"""Circuit-guided yield vs the random baseline at equal budget, per model and seed; writes docs/benchmarks/attack.md.

    .venv/bin/python benchmarks/bench_attack.py --models reference,planted --seeds 0,1,2,3,4,5,6,7,8,9 --budget 3000 --n-clean 300
    .venv/bin/python benchmarks/bench_attack.py --speed-only     # evaluations per second on the GPT-2-shaped random model

Raw yield = confirmed breaks (attack LD < 0 while the clean prompt's LD > 0) per 1,000 model
evaluations; attributable yield counts only the breaks whose matched control does not break (the
headline: a break the control shares is the edit's, not the circuit's). Both sides pay the clean
run, the guided side also pays a control per sampled candidate and per break. The circuit of each
model: `reference-ioi` (discovered, with behaviour records) and `planted-ioi` (planted by training;
behaviour records measured here when the file has none). Modes default to the compiled ones. Every
confirmed break is recomputed with one unbatched, unpadded forward. Each table row is one run; the
spread is min / median / max over seeds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.search import run_attack
from advgen.attacks.tables import write_run
from advgen.circuits.behaviour import ensure_records
from advgen.circuits.format import Circuit, make_circuit, resolve_circuit
from advgen.core import files, records
from advgen.core.types import Role
from advgen.model.loading import LoadedModel, load_model
from advgen.model.validate import single_logit_diff
from advgen.prompts.templates import single_token_id, tokenizer_hash

ROOT = Path(__file__).resolve().parents[1]
CIRCUITS = {"reference": "reference-ioi", "planted": "planted-ioi"}


def circuit_for(model: LoadedModel, name: str, spec: str | None = None) -> tuple[Circuit, str]:
    c = resolve_circuit(spec or CIRCUITS.get(name, name), model.n_layers, model.n_heads)
    done, why = ensure_records(model, c)  # as `advgen attack` does: missing or foreign records are measured on this model
    return (
        done,
        "behaviour records from the circuit file" if why is None else f"behaviour records measured by this benchmark ({why})",
    )


def unbatched_check(model: LoadedModel, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(confirmed breaks, those whose LD stays < 0 in one unbatched forward)."""
    tok = model.tokenizer
    breaks = [r for r in rows if r["family"] == "attack" and r["is_break"]]
    ok = 0
    for r in breaks:
        ids = [tok.bos_token_id, *tok(r["text"], add_special_tokens=False)["input_ids"]]
        io, s = (single_token_id(tok, n) for n in (r["io"], r["s"]))
        ok += single_logit_diff(model, ids, io, s) < 0
    return len(breaks), ok


def one_run(model: LoadedModel, circuit: Circuit, cfg: AttackConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = run_attack(model, circuit, cfg, out, resume=resume)
    secs = time.perf_counter() - t0
    man = records.manifest(model, tokenizer_hash(model.tokenizer), cfg.seed, {"budget": cfg.budget, "n_clean": cfg.n_clean})
    res = write_run(out, run, cfg, circuit, man)
    y = res["summary"]["yield"]
    breaks = [r for r in run.rows if r["family"] == "attack" and r["is_break"]]
    n, held = unbatched_check(model, [dict(r) for r in run.rows])
    modes = res["summary"]["modes"]
    paired = [
        (r["is_break"], float(r["signal_shift"])) for r in run.rows if r["family"] == "attack" and r["signal_shift"] is not None
    ]
    shift = {k: float(np.mean([v for b, v in paired if b == k] or [float("nan")])) for k in (True, False)}
    sc, e = run.screening, run.evals
    acc = {
        "clean": e["clean"],
        "sample_attacks": sc["n_sample"],
        "sample_controls": e["sample"] - sc["n_sample"],
        "search_attacks": sc["n_search"],
        "search_controls": e["search"] - sc["n_search"],
        "reused": sc["controls_reused"],
        "unspent": cfg.budget - e["clean"] - e["sample"] - e["search"],
        "baseline": e["baseline"],
        "sample_breaks": sum(r["is_break"] for r in breaks if r["phase"] == "sample"),
        "search_breaks": sum(r["is_break"] for r in breaks if r["phase"] == "search"),
        "base_breaks": y_base(run),
    }
    return {
        "seed": cfg.seed,
        "shift": shift,
        "secs": secs,
        "yield": y,
        "evals": run.evals,
        "breaks": len(breaks),
        "acc": acc,
        "cells": shared_by_cell(run.rows),
        "explained": sum(bool(r["explained"]) for r in breaks),
        "unbatched": (n, held),
        "modes": {k: (v["predicted_sign"], v["seen"], v["verdict"]) for k, v in modes.items()},
        "compiled": {m.name: m.describe().get("compiled_from") for m in run.modes},
        "doses": {k: v["by_params"].get("dose", {}) for k, v in res["modes"]["modes"].items()},
    }


def shared_by_cell(rows: Any) -> dict[str, dict[str, float]]:
    """Per mode and cell parameters: breaks, those the control shares, and what tells them apart (edit length, clean LD)."""
    clean_tokens = {r["pair_id"]: r["n_tokens"] for r in rows if r["family"] == "clean"}
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["family"] == "attack" and r["is_break"]:
            key = f"{r['mode']} " + ", ".join(
                f"{k}={v}" for k, v in sorted(r["params"].items()) if k in ("site", "dose", "insertion")
            )
            kind = "shared" if r["control_breaks"] else "attributable"
            c = out.setdefault(key, {"shared": [], "attributable": [], "added_shared": [], "added_attributable": []})
            c[kind].append(r["clean_logit_diff"])
            c["added_" + kind].append(r["n_tokens"] - clean_tokens[r["pair_id"]])
    return {
        k: {
            "breaks": len(v["shared"]) + len(v["attributable"]),
            "shared": len(v["shared"]),
            "clean_ld_shared": _mean(v["shared"]),
            "clean_ld_attributable": _mean(v["attributable"]),
            "added_shared": _mean(v["added_shared"]),
            "added_attributable": _mean(v["added_attributable"]),
        }
        for k, v in sorted(out.items())
    }


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def spread(xs: list[float | None]) -> str:
    """min / median / max of the finite values (n/a where a ratio had no random break)."""
    v = [x for x in xs if x is not None]
    extra = f" ({len(xs) - len(v)} n/a)" if len(v) < len(xs) else ""
    return f"{min(v):.1f} / {float(np.median(v)):.1f} / {max(v):.1f}{extra}" if v else "n/a"


def shared_table(runs: list[dict[str, Any]]) -> list[str]:
    """Control-shared breaks per mode and cell, summed over seeds, with the edit length and clean LD of each kind."""
    tot: dict[str, dict[str, float]] = {}
    for r in runs:
        for k, c in r["cells"].items():
            t = tot.setdefault(k, {"breaks": 0, "shared": 0, "ld_s": 0.0, "ld_a": 0.0, "add_s": 0.0, "add_a": 0.0})
            n_a = c["breaks"] - c["shared"]
            t["breaks"] += c["breaks"]
            t["shared"] += c["shared"]
            for col, src, n in (
                ("ld_s", "clean_ld_shared", c["shared"]),
                ("ld_a", "clean_ld_attributable", n_a),
                ("add_s", "added_shared", c["shared"]),
                ("add_a", "added_attributable", n_a),
            ):
                t[col] += c[src] * n if n else 0.0
    lines = [
        f"Breaks whose control breaks too, by cell (all {len(runs)} seeds together; added tokens = attack minus its clean "
        "prompt; clean LD = the clean prompt's LD):",
        "",
        "| mode, cell | breaks | control also breaks | share | added tokens: shared / attributable | "
        "clean LD: shared / attributable |",
        "|---|---|---|---|---|---|",
    ]
    for k, t in tot.items():
        n_s, n_a = t["shared"], t["breaks"] - t["shared"]

        def avg(x: float, n: float) -> str:
            return f"{x / n:.1f}" if n else "-"

        lines.append(
            f"| {k} | {t['breaks']:.0f} | {n_s:.0f} | {n_s / t['breaks']:.0%} | {avg(t['add_s'], n_s)} / {avg(t['add_a'], n_a)} "
            "| "
            f"{avg(t['ld_s'], n_s)} / {avg(t['ld_a'], n_a)} |"
        )
    return lines


def weights_line(name: str) -> str:
    """Which weights a bundled model's numbers are from (its safetensors' sha256); empty for other models."""
    import hashlib

    from advgen.model.loading import bundled_dir

    f = bundled_dir(name) / "model.safetensors" if name in ("reference", "planted") else None
    return (
        f"\nWeights: `{f.relative_to(ROOT)}`, sha256 `{hashlib.sha256(f.read_bytes()).hexdigest()}`.\n"
        if f and f.is_file()
        else ""
    )


def y_base(run: Any) -> int:
    return sum(bool(r["is_break"]) for r in run.rows if r["family"] == "baseline")


def accounting(runs: list[dict[str, Any]]) -> list[str]:
    """Where each side's evaluations went, per seed (breaks in brackets)."""
    lines = [
        "Where the evaluations go (breaks in brackets; a reused control is a row, not an evaluation):",
        "",
        "| seed | guided: clean | sample: attacks + controls | search: attacks + controls | controls reused | unspent | "
        "random: clean + perturbations |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        a = r["acc"]
        lines.append(
            f"| {r['seed']} | {a['clean']} (0) | {a['sample_attacks']} + {a['sample_controls']} ({a['sample_breaks']}) | "
            f"{a['search_attacks']} + {a['search_controls']} ({a['search_breaks']}) | {a['reused']} | {a['unspent']} | "
            f"{a['clean']} + {a['baseline']} ({a['base_breaks']}) |"
        )
    return lines


def speed(tokenizer_dir: Path, work: Path) -> list[str]:
    """Attack evaluations per second on the GPT-2-shaped random model, with and without the learning search."""
    from transformers import AutoTokenizer

    from advgen.model.toymodels import GPT2_SMALL_SHAPE, make_random_gpt2

    d = make_random_gpt2(work / "gpt2-shaped", tokenizer_dir, seed=0, **GPT2_SMALL_SHAPE)
    model = load_model(str(d))
    fresh = AutoTokenizer.from_pretrained(str(tokenizer_dir))  # a new object: its first hash is computed
    t0 = time.perf_counter()
    tokenizer_hash(fresh)
    t1 = time.perf_counter()
    tokenizer_hash(fresh)
    t2 = time.perf_counter()
    circuit = make_circuit(
        "all-roles",
        "random",
        {
            Role.PREVIOUS_TOKEN: ["a2.h2"],
            Role.DUPLICATE_TOKEN: ["a3.h0"],
            Role.INDUCTION: ["a5.h5"],
            Role.S_INHIBITION: ["a7.h3"],
            Role.NAME_MOVER: ["a9.h9", "a10.h0"],
        },
        12,
        12,
    )
    lines = [
        f"tokenizer_hash of GPT-2's tokenizer: first call {t1 - t0:.2f} s, then cached ({1e6 * (t2 - t1):.0f} us per call).",
        "",
        "| search | model evaluations (both sides) | wall s | evaluations / s |",
        "|---|---|---|---|",
    ]
    for label, frac in (("with the learning search (sample 50 %)", 0.5), ("without (random sample only)", 1.0)):
        cfg = AttackConfig(budget=240, n_clean=40, seed=0, sample_frac=frac)
        t = time.perf_counter()
        run = run_attack(model, circuit, cfg, work / f"speed-{frac}")
        secs = time.perf_counter() - t
        n = sum(run.evals.values())
        lines.append(f"| {label} | {n} | {secs:.1f} | {n / secs:.1f} |")
    return lines


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1f}x"


def _fmt_seen(seen: dict[str, Any]) -> str:
    return f"{seen['mean']:+.2f} [{seen['low']:+.2f}, {seen['high']:+.2f}]" if "mean" in seen else "n/a"


def model_section(name: str, circuit: Circuit, origin: str, runs: list[dict[str, Any]], cfg: AttackConfig) -> list[str]:
    lines = [
        f"## `{name}` with circuit `{circuit.name}` ({len(circuit)} heads; {origin})",
        "",
        "Attributable = breaks whose matched control does not break (the circuit's evidence, the headline); raw = every "
        "break (the figure for building test sets). Both per 1,000 evaluations of the guided side, against random "
        "perturbation breaks per 1,000 of the random side.",
        "",
        "| seed | attributable / 1,000 | random / 1,000 | attributable ratio | raw / 1,000 | raw ratio | breaks | "
        "control also breaks | explained (vs control) | signal shift: breaks / other paired attacks | LD < 0 unbatched | wall s "
        "|",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        y, (n, held) = r["yield"], r["unbatched"]
        expl = f"{r['explained']}/{r['breaks']}" + (f" ({r['explained'] / r['breaks']:.0%})" if r["breaks"] else "")
        shared = f"{y['control_shared_breaks']}" + (f" ({y['control_shared_breaks'] / r['breaks']:.0%})" if r["breaks"] else "")
        lines.append(
            f"| {r['seed']} | {y['attributable_per_1000']:.1f} | {y['random_per_1000']:.1f} | {_x(y['attributable_ratio'])} | "
            f"{y['guided_per_1000']:.1f} | {_x(y['ratio'])} | {r['breaks']} | {shared} | {expl} | "
            f"{r['shift'][True]:.3f} / {r['shift'][False]:.3f} | {held}/{n} | {r['secs']:.0f} |"
        )
    att = [r["yield"]["attributable_ratio"] for r in runs]
    finite = [x for x in att if x is not None]
    goal = (
        "meets the 5x goal in every seed"
        if finite and min(finite) >= 5 and len(finite) == len(att)
        else "misses the 5x goal in at least one seed"
    )
    lines += [
        "",
        f"Over {len(runs)} seeds ({', '.join(str(r['seed']) for r in runs)}), min / median / max:",
        "",
        "| | attributable | raw |",
        "|---|---|---|",
        f"| guided breaks / 1,000 | {spread([r['yield']['attributable_per_1000'] for r in runs])} | "
        f"{spread([r['yield']['guided_per_1000'] for r in runs])} |",
        f"| random breaks / 1,000 | {spread([r['yield']['random_per_1000'] for r in runs])} | (same) |",
        f"| ratio to random | {spread(att)} | {spread([r['yield']['ratio'] for r in runs])} |",
        "",
        f"Attributable ratio {goal} (the 5x goal is on the attributable yield, issue 28).",
        "",
        *shared_table(runs),
    ]
    lines += ["", *accounting(runs)]
    lines += [
        "",
        "Per mode (random sample, paired LD(attack) - LD(control), 95 % CI over clean prompts; predicted sign from the records):",
        "",
        "| seed | mode | predicted | seen | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        for mode, (sign, seen, verdict) in r["modes"].items():
            lines.append(f"| {r['seed']} | {mode} | {'< 0' if sign < 0 else '> 0'} | {_fmt_seen(seen)} | {verdict} |")
    doses = {m: d for m, d in runs[0]["doses"].items() if d}
    if doses:
        lines += [
            "",
            f"By dose (seed {runs[0]['seed']}, random sample, both sites; every dose adds the same sentences, "
            "`dose` of them naming the name):",
            "",
            "| mode | dose | n | break rate | mean LD attack / control | S > IO control |",
            "|---|---|---|---|---|---|",
        ]
        for m, d in doses.items():
            for k, tb in sorted(d.items(), key=lambda kv: int(kv[0])):
                lines.append(
                    f"| {m} | {k} | {tb['attack']['n']} | {tb['break_rate']:.2f} | {tb['attack']['mean_logit_diff']:.2f} / "
                    f"{tb['control']['mean_logit_diff']:.2f} | {tb['control']['s_beats_io_rate']:.2f} |"
                )
    compiled = {k: v for k, v in runs[0]["compiled"].items() if v}
    if compiled:
        lines += ["", "Compiled from (seed " + str(runs[0]["seed"]) + "):", ""] + [f"- `{k}`: {v}" for k, v in compiled.items()]
    return lines + [""]


def write_doc(doc_path: Path, sections: Path) -> str:
    """The doc: the fixed introduction, then every kept section in name order."""
    doc = "\n".join(
        [
            "# Attack yield: circuit-guided vs random perturbations",
            "",
            "Produced by `benchmarks/bench_attack.py` (run from the repository root); each section names the command that "
            "produced it. Model evaluations are counted exactly; wall times are on this shared 2-core machine.",
            "",
            "Guided side: the clean run; a stratified random sample of int((budget - n_clean) x 0.5 / 2) candidates, each an "
            "attack and its control, where candidates of one clean prompt that share a control (every dose of both compiled "
            "modes at one site) are drawn together and their control is evaluated once; then a Thompson-sampling search with "
            "the rest (attack; its control only for a break, and only if that control was not evaluated already). Random side: "
            "the same clean run, then one random perturbation per remaining evaluation of a clean prompt with LD > 0, through "
            "the same unambiguity check. Both sides are charged the clean run. Raw yield = confirmed breaks per 1,000 model "
            "evaluations of that side (a guided side that runs out of candidates is charged only what it spent); attributable "
            "yield = the guided breaks whose matched control (the one the mode's verdict compares against, reused or not) does "
            "not break, per 1,000 guided evaluations, against the same random breaks per 1,000. Attributable yield is the "
            "headline (issue 28): a break its control shares is the edit's, not the circuit's; raw yield is the figure for "
            "building test sets. The search is rewarded by attributable breaks only.",
            "",
            *(p.read_text() for p in sorted(sections.glob("*.md"))),
        ]
    )
    files.atomic_write_text(doc_path, doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="reference,planted")
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--n-clean", type=int, default=300)
    ap.add_argument(
        "--circuit", default=None, help="circuit for every model of this call (default: reference-ioi / planted-ioi by name)"
    )
    ap.add_argument("--label", default=None, help="section name for the doc (default: the model spec)")
    ap.add_argument("--modes", default=None, help="default: compiled when the circuit has behaviour records")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench-attack")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks" / "attack.md")
    ap.add_argument("--no-speed", action="store_true", help="skip the evaluations-per-second measurement")
    ap.add_argument("--speed-only", action="store_true", help="only the evaluations-per-second measurement")
    ap.add_argument(
        "--resume", action="store_true", help="reuse finished journal units of earlier runs in --out (same results, less time)"
    )
    args = ap.parse_args(argv)
    cmd = "python benchmarks/bench_attack.py " + shlex.join(
        a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"
    )
    sections = args.doc.parent / "attack-sections"
    """Each model's section (and the speed section) is kept with the command that made it; the doc joins them."""
    for name in [] if args.speed_only else args.models.split(","):
        model = load_model(name)
        weights = weights_line(name)  # read when the model is loaded, before the runs
        circuit, origin = circuit_for(model, name, args.circuit)
        runs = []
        seeds = [int(x) for x in args.seeds.split(",")]
        for seed in seeds:
            cfg = AttackConfig(
                budget=args.budget, n_clean=args.n_clean, seed=seed, modes=tuple(args.modes.split(",")) if args.modes else None
            )
            runs.append(one_run(model, circuit, cfg, args.out / f"{args.label or Path(name).name}-s{seed}", args.resume))
            print(f"{name} seed {seed}: {runs[-1]['yield']}", flush=True)
            # rewritten after every seed, so an interrupted benchmark leaves the seeds it finished, and says so
            left = (
                ""
                if len(runs) == len(seeds)
                else (
                    f"\n\n**Partial**: {len(runs)} of the {len(seeds)} seeds of this command "
                    f"finished ({', '.join(str(r['seed']) for r in runs)}) when this was written."
                )
            )
            text = "\n".join(model_section(name, circuit, origin, runs, cfg)) + weights
            files.atomic_write_text(sections / f"{args.label or Path(name).name}.md", f"Command: `{cmd}`{left}\n\n" + text)
            write_doc(args.doc, sections)
    if args.speed_only or not args.no_speed:
        with tempfile.TemporaryDirectory() as tmp:
            text = "\n".join(
                [
                    "## Speed: attack evaluations per second (GPT-2-shaped random model, 12 x 12 heads)",
                    "",
                    *speed(ROOT / "tests" / "data" / "gpt2-tokenizer", Path(tmp)),
                    "",
                ]
            )
        files.atomic_write_text(sections / "zz-speed.md", f"Command: `{cmd}`\n\n" + text)
    print(write_doc(args.doc, sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
