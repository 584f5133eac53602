"""The divergence search's run directory: the test set of worst prompts, every measured row, the comparison.

results.jsonl / results.csv: the `top` guided prompts where circuit and model part most, worst
first, as ordinary result rows (so `advgen export` and `advgen report` read them like any run),
each with its circuit LD, divergence, rank, its clean prompt's divergence and (for the worst
attack prompts) its control's. evaluated.jsonl: every prompt either side measured. summary.json:
guided against random at the same budget (max, top-10 mean, median), per mode, the controls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.divergence import DivergenceRun, Row
from advgen.attacks.journal import REUSED
from advgen.circuits.format import Circuit
from advgen.core import files
from advgen.model.metrics import bootstrap_ci

TOP_K = 10
"""The worst-case summary beside the maximum: the mean of the k largest divergences (less noisy than one prompt)."""


def side_stats(rows: Sequence[Row]) -> dict[str, Any]:
    """Worst case and spread of one side's divergences (measured rows only: a reused control is not a new prompt)."""
    d = np.sort(np.array([r["divergence"] for r in rows if REUSED not in r["extra"]], dtype=float))[::-1]
    if not d.size:
        return {"n": 0, "max": None, f"top{TOP_K}_mean": None, "p99": None, "median": None, "mean": None}
    return {
        "n": int(d.size),
        "max": float(d[0]),
        f"top{TOP_K}_mean": float(d[:TOP_K].mean()),
        "p99": float(np.quantile(d, 0.99)),
        "median": float(np.median(d)),
        "mean": float(d.mean()),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _worst(rows: Sequence[Row]) -> Row | None:
    return min(rows, key=lambda r: (-r["divergence"], r["text"]), default=None)


def _brief(r: Row | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "text": r["text"],
        "family": r["family"],
        "mode": r["mode"],
        "divergence": r["divergence"],
        "logit_diff": r["logit_diff"],
        "circuit_logit_diff": r["circuit_logit_diff"],
        "circuit_kl": r["circuit_kl"],
        "phase": r["phase"],
    }


def by_mode(rows: Sequence[Row], tau: float) -> dict[str, Any]:
    """Per mode (clean prompts as "clean", baseline as "random"): count, mean, max and share at or above tau."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if REUSED in r["extra"] or r["phase"] == "control":
            continue
        groups.setdefault(r["mode"] or "clean", []).append(r["divergence"])
    return {
        k: {
            "n": len(v),
            "mean": float(np.mean(v)),
            "max": float(np.max(v)),
            "share_at_or_above_threshold": float(np.mean(np.array(v) >= tau)),
        }
        for k, v in sorted(groups.items())
    }


def control_doc(guided: Sequence[Row], seed: int) -> dict[str, Any]:
    """The worst attack prompts against their matched controls: how much of the divergence the edit made."""
    attack = {r["candidate"]: r for r in guided if r["family"] == "attack" and r["phase"] != "control"}
    pairs = [
        (attack[r["candidate"]]["divergence"], r["divergence"])
        for r in guided
        if r["phase"] == "control" and r["candidate"] in attack
    ]
    if not pairs:
        return {"n": 0, "attack_minus_control": None, "share_attack_larger": None}
    diff = [a - c for a, c in pairs]
    return {
        "n": len(pairs),
        "attack_minus_control": bootstrap_ci(diff, seed).as_dict(),
        "share_attack_larger": float(np.mean(np.array(diff) > 0)),
    }


def worst_prompts(run: DivergenceRun) -> list[Row]:
    """The `top` worst guided prompts (each text once), worst first, with rank, clean and control divergence in `extra`."""
    clean = {r["pair_id"]: r["divergence"] for r in run.guided if r["family"] == "clean"}
    control = {r["candidate"]: r["divergence"] for r in run.guided if r["phase"] == "control"}
    seen: set[str] = set()
    out: list[Row] = []
    for r in sorted(run.guided, key=lambda r: (-r["divergence"], r["text"], r["candidate"] or "")):
        if r["text"] in seen:
            continue
        seen.add(r["text"])
        extra = {**r["extra"], "divergence_rank": len(out) + 1, "clean_divergence": clean.get(r["pair_id"])}
        if r["family"] == "attack" and r["candidate"] in control:
            extra["control_divergence"] = control[r["candidate"]]
        out.append({**r, "extra": extra})
        if len(out) == run.settings.top:
            break
    return out


def summary_doc(run: DivergenceRun, cfg: AttackConfig) -> dict[str, Any]:
    g, b = side_stats(run.guided), side_stats(run.random)
    k = f"top{TOP_K}_mean"
    clean = side_stats([r for r in run.guided if r["family"] == "clean"])
    return {
        "objective": "divergence",
        "measure": run.settings.measure,
        "ablation": run.settings.ablation,
        "seed": cfg.seed,
        "budget_per_side": cfg.budget,
        "evaluations": run.evals,
        "skipped_no_twin": run.skipped,
        "guided": g,
        "random": b,
        "clean": clean,
        "guided_by_phase": {
            ph: side_stats([r for r in run.guided if r["phase"] == ph]) for ph in ("clean", "sample", "search", "control")
        },
        "worst_case_ratio": _ratio(g["max"], b["max"]),
        f"{k}_ratio": _ratio(g[k], b[k]),
        "guided_worst_exceeds_random": None if g["max"] is None or b["max"] is None else g["max"] > b["max"],
        "worst_case": {"guided": _brief(_worst(run.guided)), "random": _brief(_worst(run.random))},
        "threshold": run.threshold,
        "by_mode": by_mode([*run.guided, *run.random], run.threshold),
        "controls": control_doc(run.guided, cfg.seed),
        "search": run.search,
        "failure_modes": [m.name for m in run.modes],
        "settings": asdict(run.settings),
    }


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def markdown(doc: dict[str, Any], tests: Sequence[Row]) -> str:
    unit = "|LD_model - LD_circuit|" if doc["measure"] == "ld" else "KL(model || circuit), nats"
    k = f"top{TOP_K}_mean"
    lines = [
        f"# Divergence search: where the circuit and the model part ({unit}; ablation {doc['ablation']}, seed {doc['seed']})",
        "",
        f"Budget per side: {doc['budget_per_side']} evaluations (one = a prompt run through model and circuit).",
        "",
        f"| side | prompts | max | top-{TOP_K} mean | p99 | median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in ("guided", "random", "clean"):
        s = doc[side]
        lines.append(f"| {side} | {s['n']} | {_f(s['max'])} | {_f(s[k])} | {_f(s['p99'])} | {_f(s['median'])} |")
    lines += [
        "",
        f"Worst case, guided / random: {_f(doc['worst_case_ratio'], '{:.2f}')}x; top-{TOP_K} mean: "
        f"{_f(doc[k + '_ratio'], '{:.2f}')}x "
        f"(the clean rows are the guided side's first {doc['evaluations']['clean']} evaluations).",
        "",
    ]
    c = doc["controls"]
    if c["n"]:
        ci = c["attack_minus_control"]
        lines += [
            f"Controls of the {c['n']} worst attack prompts: attack - control divergence {ci['mean']:+.3f} [{ci['low']:+.3f}, "
            f"{ci['high']:+.3f}]; "
            f"the attack parts more in {100 * c['share_attack_larger']:.0f} %.",
            "",
        ]
    lines += ["| mode | prompts | mean | max | at or above threshold |", "|---|---:|---:|---:|---:|"]
    for name, m in doc["by_mode"].items():
        lines.append(f"| {name} | {m['n']} | {m['mean']:.3f} | {m['max']:.3f} | {100 * m['share_at_or_above_threshold']:.1f} % |")
    lines += [
        "",
        f"Worst {min(len(tests), 5)} of the test set (results.jsonl):",
        "",
        "| # | divergence | LD model | LD circuit | mode | text |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for r in tests[:5]:
        text = r["text"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['extra']['divergence_rank']} | {r['divergence']:.3f} | {r['logit_diff']:+.3f} | "
            f"{r['circuit_logit_diff']:+.3f} | "
            f"{r['mode'] or r['family']} | {text} |"
        )
    return "\n".join(lines) + "\n"


FILES = ("results.jsonl", "results.csv", "evaluated.jsonl", "summary.json", "circuit.json", "manifest.json", "table.md")
"""What a divergence run directory holds (besides journal/, kept for --resume)."""


def write_divergence(
    out: Path, run: DivergenceRun, cfg: AttackConfig, circuit: Circuit, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Every file of FILES, each written atomically; returns summary.json as written."""
    doc = summary_doc(run, cfg)
    tests = worst_prompts(run)
    for name, text in (
        ("results.jsonl", files.jsonl_text(tests)),
        ("results.csv", files.csv_text(tests)),
        ("evaluated.jsonl", files.jsonl_text([*run.guided, *run.random])),
        ("summary.json", files.dumps(doc) + "\n"),
        ("circuit.json", files.dumps(circuit.to_dict()) + "\n"),
        ("manifest.json", files.dumps(manifest) + "\n"),
        ("table.md", markdown(doc, tests)),
    ):
        files.atomic_write_text(out / name, text)
    return doc
