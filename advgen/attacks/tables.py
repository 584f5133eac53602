"""Tables and files of an attack run: per-mode clean / control / attack, screening, baseline yield.

Everything here reads result rows; nothing runs the model. The natural failure rate (S > IO on
the clean prompts) is carried into every table so attack rates are never shown without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.bandit import verdict
from advgen.attacks.causes import CellCause, causes_markdown
from advgen.attacks.search import AttackRun
from advgen.attacks.summary import AttackSummary, ModeSummary, PredictionAccuracy, RunYield
from advgen.circuits.format import Circuit
from advgen.core import files
from advgen.core.records import AttackRow
from advgen.model.metrics import bootstrap_ci

NEAR_MISS_SD = 0.15
"""A near miss: not a break, but attack LD in [0, NEAR_MISS_SD x SD of the clean LDs) on a clean prompt with LD > 0."""


def near_miss_threshold(rows: Sequence[AttackRow]) -> float:
    """The near-miss bound in logits, relative to this model's spread of clean LDs."""
    ld = [r["logit_diff"] for r in rows if r["family"] == "clean"]
    return NEAR_MISS_SD * float(np.std(ld, ddof=1)) if len(ld) > 1 else 0.0


def family_stats(rows: Sequence[AttackRow], seed: int) -> dict[str, Any]:
    ld = np.array([r["logit_diff"] for r in rows], dtype=float)
    if not len(ld):
        return {"n": 0}
    return {
        "n": len(ld),
        "mean_logit_diff": float(ld.mean()),
        "logit_diff_ci95": bootstrap_ci(ld, seed).as_dict(),
        "mean_io_prob": float(np.mean([r["io_prob"] for r in rows])),
        "s_beats_io_rate": float((ld < 0).mean()),
    }


def _table(rows: Sequence[AttackRow], clean_by_pair: dict[str, AttackRow], seed: int) -> dict[str, Any]:
    att = [r for r in rows if r["family"] == "attack"]
    ctl = [r for r in rows if r["family"] == "control"]
    pairs = sorted({r["pair_id"] for r in att})
    breaks = [r for r in att if r["is_break"]]
    return {
        "clean": family_stats([clean_by_pair[p] for p in pairs], seed),
        "control": family_stats(ctl, seed),
        "attack": family_stats(att, seed),
        "breaks": len(breaks),
        "control_shared_breaks": sum(bool(r.get("control_breaks")) for r in breaks),
        "break_rate": len(breaks) / len(att) if att else float("nan"),
        "explained_fraction": float(np.mean([bool(r["explained"]) for r in breaks])) if breaks else None,
    }


def prediction_check(rows: Sequence[AttackRow], expected_sign: int, seed: int) -> dict[str, Any]:
    """Paired LD(attack) - LD(control) on the random sample: does its sign match the prediction?

    The interval resamples clean prompts, not candidates: a mode's candidates on one clean prompt
    (its doses, which share one control) are not independent, so each prompt contributes the
    mean of its paired differences.
    """
    ctl = {r["candidate"]: r["logit_diff"] for r in rows if r["family"] == "control"}
    by_prompt: dict[str, list[float]] = {}
    for r in rows:
        if r["family"] == "attack" and r["candidate"] in ctl:
            by_prompt.setdefault(r["pair_id"], []).append(r["logit_diff"] - ctl[r["candidate"]])
    v, ci = verdict([float(np.mean(d)) for _, d in sorted(by_prompt.items())], expected_sign, seed)
    return {
        "n": sum(map(len, by_prompt.values())),
        "n_prompts": len(by_prompt),
        "expected_sign": expected_sign,
        "attack_minus_control": ci,
        "verdict": v,
    }


def mode_tables(run: AttackRun, seed: int) -> dict[str, Any]:
    """modes.json: per mode, the unbiased random sample and all evaluated candidates, plus dose-style breakdowns."""
    clean = [r for r in run.rows if r["family"] == "clean"]
    clean_by_pair = {r["pair_id"]: r for r in clean}
    natural = family_stats(clean, seed)
    out: dict[str, Any] = {"natural": natural, "skipped_modes": run.skipped, "mode_notes": run.notes, "modes": {}}
    for m in run.modes:
        mine = [r for r in run.rows if r["mode"] == m.name]
        sample = [r for r in mine if r["phase"] == "sample"]
        search = [r for r in mine if r["phase"] == "search"]
        by: dict[str, dict[str, Any]] = {}
        for key in m.group_by:  # "dose", or a combination such as "source+dose"

            def val_of(r: AttackRow, key: str = key) -> str:
                return ",".join(str(r["params"].get(k)) for k in key.split("+"))

            for val in sorted({val_of(r) for r in sample}):
                by.setdefault(key, {})[val] = _table([r for r in sample if val_of(r) == val], clean_by_pair, seed)
        s_breaks = [r for r in sample if r["family"] == "attack" and r["is_break"]]
        search_att = [r for r in search if r["family"] == "attack"]
        out["modes"][m.name] = {
            "roles": [r.value for r in m.roles],
            "mechanism": m.mechanism,
            "compiled_from": m.describe().get("compiled_from"),
            "signal": run.signals[m.name],
            "natural_failure_rate": natural.get("s_beats_io_rate"),
            "prediction": prediction_check(sample, m.expected_sign, seed),
            "random_sample": _table(sample, clean_by_pair, seed),
            "all": _table(mine, clean_by_pair, seed),
            "by_params": by,
            "screening": {
                "searched": len(search_att),
                "precision": (sum(r["is_break"] for r in search_att) / len(search_att)) if search_att else None,
                "sample_breaks": len(s_breaks),
                "cells_not_funded": sorted({r["cell"] for r in mine if r["cell"]} & set(run.screening["not_funded"])),
            },
        }
    return out


def screening_totals(run: AttackRun) -> dict[str, Any]:
    s_att = [r for r in run.rows if r["phase"] == "sample" and r["family"] == "attack"]
    s_breaks = [r for r in s_att if r["is_break"]]
    search = [r for r in run.rows if r["phase"] == "search" and r["family"] == "attack"]
    sc = run.screening
    return {
        "search": (
            "Thompson sampling over cells: prior from the prediction, updated by every observed attack and rewarded only "
            "by "
            "attributable breaks (the control does not break); cells the random sample falsified (or predicted not to "
            "lower LD) get no search budget"
        ),
        "precision": sum(r["is_break"] for r in search) / len(search) if search else None,
        "attributable_precision": sum(bool(r["is_break"] and not r["control_breaks"]) for r in search) / len(search)
        if search
        else None,
        "sample_break_rate": len(s_breaks) / len(s_att) if s_att else None,
        "n_pool": sc["n_pool"],
        "n_sample": sc["n_sample"],
        "n_search": sc["n_search"],
        "controls_reused": sc.get("controls_reused", 0),
        "not_funded": sc["not_funded"],
        "cell_verdicts": sc["cell_verdicts"],
        "searched_per_cell": sc["searched_per_cell"],
        "posterior_break_rate": sc["posterior_break_rate"],
    }


ATTRIBUTABLE = (
    "attributable yield: guided breaks whose matched control does not break (LD >= 0), per 1,000 guided "
    "evaluations, against random-perturbation breaks per 1,000; the headline for validating the circuit"
)
RAW = "raw yield: every guided break per 1,000 guided evaluations, against random; the figure for building test sets"


def baseline_doc(run: AttackRun, cfg: AttackConfig) -> dict[str, Any]:
    """Both yields: attributable (the control holds; the circuit's evidence) and raw (every break; for test sets)."""
    e = run.evals
    guided_evals = e["clean"] + e["sample"] + e["search"]
    base_evals = e["clean"] + e["baseline"]
    g_breaks = sum(r["is_break"] for r in run.rows if r["family"] == "attack")
    shared = sum(bool(r["is_break"] and r["control_breaks"]) for r in run.rows if r["family"] == "attack")
    b_breaks = sum(r["is_break"] for r in run.rows if r["family"] == "baseline")
    gy = 1000 * g_breaks / guided_evals
    ay = 1000 * (g_breaks - shared) / guided_evals
    by = 1000 * b_breaks / base_evals
    return {
        "budget": cfg.budget,
        "guided_per_1000": gy,
        "random_per_1000": by,
        "attributable_per_1000": ay,
        "guided": {
            "evaluations": guided_evals,
            "breaks": g_breaks,
            "breaks_per_1000": gy,
            "control_shared_breaks": shared,
            "attributable_breaks": g_breaks - shared,
            "attributable_per_1000": ay,
        },
        "baseline": {"evaluations": base_evals, "breaks": b_breaks, "breaks_per_1000": by},
        "ratio": gy / by if by > 0 else None,
        "attributable_ratio": ay / by if by > 0 else None,
        "definitions": {"attributable": ATTRIBUTABLE, "raw": RAW},
        "accounting": "both sides pay the clean run; guided pays attack + control per candidate, the baseline one prompt each",
    }


def markdown(modes: dict[str, Any], base: dict[str, Any], screening: dict[str, Any]) -> str:
    """The tables as Markdown, printed by the CLI and copied into docs verbatim."""
    nat = modes["natural"]
    lines = [
        f"Natural failure rate (clean prompts, S > IO): {nat['s_beats_io_rate']:.3f} (n = {nat['n']}, mean LD "
        f"{nat['mean_logit_diff']:.2f})",
        "",
    ]
    lines += _mode_table_lines(modes)
    lines += _prediction_lines(modes)
    lines += _yield_lines(base, screening)
    return "\n".join(lines) + "\n"


def _ld(s: dict[str, Any]) -> str:
    return (
        f"{s['mean_logit_diff']:.2f} [{s['logit_diff_ci95']['low']:.2f}, {s['logit_diff_ci95']['high']:.2f}]"
        if s.get("n")
        else "-"
    )


def _table_row(name: str, subset: str, t: dict[str, Any]) -> str:
    c, k, a = t["clean"], t["control"], t["attack"]
    ex = "-" if t["explained_fraction"] is None else f"{t['explained_fraction']:.2f}"
    return (
        f"| {name} | {subset} | {a.get('n', 0)} | {_ld(c)} | {_ld(k)} | {_ld(a)} | "
        f"{c.get('mean_io_prob', float('nan')):.2f} / {k.get('mean_io_prob', float('nan')):.2f} / "
        f"{a.get('mean_io_prob', float('nan')):.2f} | "
        f"{c.get('s_beats_io_rate', float('nan')):.3f} / {k.get('s_beats_io_rate', float('nan')):.3f} / "
        f"{a.get('s_beats_io_rate', float('nan')):.3f} | "
        f"{t['breaks']} | {ex} |"
    )


def _mode_table_lines(modes: dict[str, Any]) -> list[str]:
    """Per mode: the random sample, sample + search, and the sample by each parameter; breaks shared by their control."""
    lines = [
        "| mode | subset | n | clean LD [95% CI] | control LD [95% CI] | attack LD [95% CI] | IO prob clean / ctrl / attack | "
        "S>IO clean / ctrl / attack | breaks | explained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in modes["modes"].items():
        lines.append(_table_row(name, "random sample", m["random_sample"]))
        lines.append(_table_row(name, "sample + search", m["all"]))
    for name, m in modes["modes"].items():
        for key, vals in m["by_params"].items():
            for val, t in vals.items():
                lines.append(_table_row(name, f"sample, {key}={val}", t))
    lines += [
        "",
        "Breaks whose matched control also breaks (LD < 0; not attributable to the mechanism): "
        + "; ".join(f"{name} {m['all']['control_shared_breaks']} of {m['all']['breaks']}" for name, m in modes["modes"].items()),
    ]
    return lines


def _prediction_lines(modes: dict[str, Any]) -> list[str]:
    """Predicted vs seen per mode, what compiled modes were compiled from, skipped modes and modes run outside the proposal."""
    lines = ["", "Predicted vs seen (random sample, paired LD(attack) - LD(control); 95% CI resampling clean prompts):", ""]
    for name, m in modes["modes"].items():
        p = m["prediction"]
        ci = p["attack_minus_control"]
        if ci:
            lines.append(
                f"- {name}: predicted {'negative' if p['expected_sign'] < 0 else 'positive'}, seen {ci['mean']:+.2f} "
                f"[{ci['low']:+.2f}, {ci['high']:+.2f}] (n = {p['n']} on {p['n_prompts']} clean prompts): {p['verdict']}"
            )
    compiled = [(name, m["compiled_from"]) for name, m in modes["modes"].items() if m.get("compiled_from")]
    if compiled:
        lines += ["", "Compiled modes and the evidence they were compiled from (behaviour records of the circuit's heads):", ""]
        lines += [f"- {name}: {why}" for name, why in compiled]
    lines += ["", "Skipped modes: " + ("; ".join(f"{k}: {v}" for k, v in modes["skipped_modes"].items()) or "none"), ""]
    if modes.get("mode_notes"):
        lines += [
            "Modes run outside the circuit's proposal: " + "; ".join(f"{k}: {v}" for k, v in modes["mode_notes"].items()),
            "",
        ]
    return lines


def _ratio(x: float | None) -> str:
    return "n/a (baseline found no break)" if x is None else f"{x:.1f}x"


def _yield_lines(base: dict[str, Any], screening: dict[str, Any]) -> list[str]:
    """The attributable and raw yield against the random baseline, and what the search spent."""
    g, b = base["guided"], base["baseline"]
    return [
        f"Attributable yield (breaks whose control does not break, per 1,000 model evaluations): guided "
        f"{g['attributable_per_1000']:.1f} ({g['attributable_breaks']} in {g['evaluations']}; {g['control_shared_breaks']} "
        f"breaks shared by their control left out), random baseline {b['breaks_per_1000']:.1f} ({b['breaks']} in "
        f"{b['evaluations']}); ratio {_ratio(base['attributable_ratio'])}.",
        f"Raw yield (every confirmed break, the figure for building test sets): guided {g['breaks_per_1000']:.1f} "
        f"({g['breaks']} in {g['evaluations']}), random baseline {b['breaks_per_1000']:.1f}; ratio {_ratio(base['ratio'])}.",
        f"Search: precision {_f(screening['precision'])} (attributable {_f(screening['attributable_precision'])}) on "
        f"{screening['n_search']} searched candidates; random sample "
        f"{screening['n_sample']} candidates, break rate {_f(screening['sample_break_rate'])}; controls reused (evaluated once, "
        f"shared by candidates of one clean prompt): {screening['controls_reused']}; cells not funded: "
        f"{', '.join(screening['not_funded']) or 'none'}.",
    ]


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_run(
    out: Path, run: AttackRun, cfg: AttackConfig, circuit: Circuit, manifest: dict[str, Any], causes: Sequence[CellCause] = ()
) -> dict[str, Any]:
    """All files of the run-directory contract, each written atomically; `causes`: the falsified cells' measured causes."""
    modes = mode_tables(run, cfg.seed)
    base = baseline_doc(run, cfg)
    screening = screening_totals(run)
    rows = run.rows
    fam = {f: family_stats([r for r in rows if r["family"] == f], cfg.seed) for f in ("clean", "attack", "control", "baseline")}
    bound = near_miss_threshold(rows)
    summary = AttackSummary(  # summary.json's shape is stated once, in attacks/summary.py
        modes={k: ModeSummary.of_table(v) for k, v in modes["modes"].items()},
        yield_=RunYield.of_baseline(base),
        natural_failure_rate=modes["natural"].get("s_beats_io_rate"),
        prediction_accuracy=PredictionAccuracy.of_verdicts(screening["cell_verdicts"]),
        falsified_causes=AttackSummary.causes_of(causes),
        overall=family_stats(rows, cfg.seed),
        by_family=fam,
        evaluations=run.evals,
        baseline=base,
        screening=screening,
        near_miss_bound=bound,
    ).to_dict()
    near = [
        r
        for r in rows
        if r["family"] == "attack" and not r["is_break"] and r["clean_logit_diff"] > 0 and 0 <= r["logit_diff"] < bound
    ]
    outputs: Iterable[tuple[str, str]] = (
        ("results.jsonl", files.jsonl_text(rows)),
        ("results.csv", files.csv_text(rows)),
        ("adversarial.jsonl", files.jsonl_text(r for r in rows if r["family"] == "attack" and r["is_break"])),
        ("near_misses.jsonl", files.jsonl_text(near)),
        ("modes.json", files.dumps(modes) + "\n"),
        ("baseline.json", files.dumps(base) + "\n"),
        ("summary.json", files.dumps(summary) + "\n"),
        ("circuit.json", files.dumps(circuit.to_dict()) + "\n"),
        ("manifest.json", files.dumps(manifest) + "\n"),
        ("causes.json", files.dumps({"causes": [c.to_dict() for c in causes]}) + "\n"),
        ("table.md", markdown(modes, base, screening) + causes_markdown(causes)),
    )
    for name, text in outputs:
        files.atomic_write_text(out / name, text)
    return {"modes": modes, "baseline": base, "screening": screening, "summary": summary}
