"""Do the behaviour records' mention probes predict what the compiled attack's edit does? Writes a markdown table.

    .venv/bin/python benchmarks/probe_transfer.py --model reference --runs RUN_DIR[,RUN_DIR...] \\
        --out docs/benchmarks/probe-transfer-reference.md

The compiled mention modes predict LD(attack) - LD(control) per site from records measured on probes:
by default ("paper") one of the IOI paper's five sentences naming the person, against the same
sentence about "someone". The attack's edit is different: a block of three sentences from the
neutral bank, the first `dose` naming the person. This measures the records both ways on the same
model, circuit and clean prompts (`BehaviourSettings.probe`), compiles the per-site predictions
from each, and puts them beside what the attack runs saw on their random samples (dose-1 cells,
pairs pooled over the runs). Two predictors per probe style:
- "rule": the compiler's mention rule, sum over heads of gain x attention change, plus MLP nodes' write change;
- "write": the sum over every node of its measured write change on the probes (real path), attention ignored.
A prediction's sign either matches what was seen or does not.
The circuit is each run's own circuit.json (the first run's; every run must name the same nodes).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from advgen.attacks.compiler import DOSES, mention_edits
from advgen.circuits.behaviour import PROBES, BehaviourSettings, measure_records, probe_set
from advgen.circuits.format import Circuit
from advgen.circuits.reads import read_heads
from advgen.core import files
from advgen.core.types import AdvgenError, PromptSet
from advgen.model.loading import load_model
from advgen.model.metrics import bootstrap_ci
from advgen.prompts.templates import tokenizer_hash


def seen_per_site(run_dirs: list[Path]) -> dict[tuple[str, str], list[float]]:
    """(mentioned name, site) -> paired LD(attack) - LD(control) of every dose-1 pair in the runs' random samples."""
    out: dict[tuple[str, str], list[float]] = {}
    for d in run_dirs:
        rows = [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()]
        ctl = {r["candidate"]: r["logit_diff"] for r in rows if r["phase"] == "sample" and r["family"] == "control"}
        for r in rows:
            mode = str(r.get("mode") or "")
            if (
                r["phase"] != "sample"
                or r["family"] != "attack"
                or not mode.startswith("compiled_repeat_")
                or r["params"].get("dose") != 1
            ):
                continue
            name = "IO" if mode == "compiled_repeat_io" else "S"
            out.setdefault((name, r["params"]["site"]), []).append(r["logit_diff"] - ctl[r["candidate"]])
    return out


Prediction = dict[tuple[str, str], tuple[float, str]]
"""(mentioned name, site) -> (predicted LD change for one mention, the nodes' terms)."""


def rule_predictions(model: Any, circuit: Circuit, probe: str, n: int) -> Prediction:
    """The compiler's mention rule over records measured with `probe`."""
    recs, nodes = measure_records(
        model, [h.head for h in circuit.heads], [m.layer for m in circuit.mlps], BehaviourSettings(n=n, probe=probe)
    )
    out = {}
    for e in mention_edits(recs, {f"m{k}": v for k, v in nodes.items()}):
        for site, total in e.predicted.items():
            out[(e.name, site)] = (total, ", ".join(f"{c.head} {c.shift:+.2f}" for c in e.contributions if c.site == site))
    return out


def write_predictions(model: Any, circuit: Circuit, probe: str, n: int) -> Prediction:
    """Every node's measured real-path write change on the same probes (the records' clean specs), summed per site."""
    tok = model.tokenizer
    _, pr = probe_set(tok, BehaviourSettings(n=n, probe=probe))
    heads, mlps = [h.head for h in circuit.heads], [m.layer for m in circuit.mlps]
    reads = read_heads(
        model, PromptSet(tuple(p for q in pr for p in (q.attack, q.control)), tokenizer_hash(tok)), heads, 32, mlps
    )
    names = [str(h) for h in heads] + [f"m{x}" for x in mlps]
    out = {}
    for y in ("IO", "S"):
        for site in ("before", "after"):
            ks = [k for k, q in enumerate(pr) if q.mentioned == y and q.site == site]
            if ks:
                d = (reads.path[[2 * k for k in ks]] - reads.path[[2 * k + 1 for k in ks]]).mean(0)
                out[(y, site)] = (float(d.sum()), ", ".join(f"{nm} {v:+.2f}" for nm, v in zip(names, d, strict=True)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument(
        "--runs", required=True, help="comma-separated attack run directories (compiled modes, same model and circuit)"
    )
    ap.add_argument("--n", type=int, default=100, help="clean prompts of the records (the attack's default)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if max(DOSES) != 3:
        raise AdvgenError("the attack's sentence block changed: update this benchmark's description")
    runs = [Path(x) for x in a.runs.split(",")]
    circuit = Circuit.from_dict(files.read_json(runs[0] / "circuit.json"), str(runs[0] / "circuit.json"))
    model = load_model(a.model)
    seen = seen_per_site(runs)
    pred = {
        f"{kind}, `{p}` probes": fn(model, circuit, p, a.n)
        for p in PROBES
        for kind, fn in (("rule", rule_predictions), ("write", write_predictions))
    }
    lines = [
        f"# Mention probes against the attack's edit: `{a.model}`, circuit `{circuit.name}`",
        "",
        f"Command: `python benchmarks/probe_transfer.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"Records measured on {a.n} clean prompts (seed 0) per probe style; seen = dose-1 pairs of the runs' random samples "
        f"({len(runs)} runs), mean [95 % CI]. Nodes: "
        f"{', '.join([str(h.head) for h in circuit.heads] + [m.node for m in circuit.mlps])}. "
        "Each predictor's column: its predicted LD change for one mention, and whether its sign is the seen one.",
        "",
        "| mentioned | site | seen, dose 1 | pairs | " + " | ".join(pred) + " |",
        "|---|---|---|---|" + "---|" * len(pred),
    ]
    right = dict.fromkeys(pred, 0)
    counted = 0
    keys = sorted(set(seen) & set.intersection(*(set(v) for v in pred.values())))
    for key in keys:
        d = np.array(seen[key])
        ci = bootstrap_ci(d, 0).as_dict()
        decided = ci["low"] > 0 or ci["high"] < 0
        counted += decided
        cells = []
        for name, got in pred.items():
            ok = decided and (got[key][0] > 0) == (ci["mean"] > 0)
            right[name] += ok
            cells.append(f"{got[key][0]:+.2f} ({'yes' if ok else 'no' if decided else 'seen inconclusive'})")
        lines.append(
            f"| {key[0]} | {key[1]} | {ci['mean']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}] | {len(d)} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Signs right, of the sites whose seen interval excludes 0: "
        + "; ".join(f"{k} {v} of {counted}" for k, v in right.items())
        + ".",
        "",
        "Node terms (per mention):",
        "",
        "| mentioned | site | " + " | ".join(pred) + " |",
        "|---|---|" + "---|" * len(pred),
    ]
    lines += [f"| {k[0]} | {k[1]} | " + " | ".join(v[k][1] for v in pred.values()) + " |" for k in keys]
    lines.append("")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(a.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
