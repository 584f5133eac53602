"""Tables and files of a generic-task attack run (the IOI run directory's contract, with task columns).

Everything here reads labelled rows; nothing runs the model. Both yields are always shown:
attributable (breaks whose matched control holds; the circuit's evidence, the headline) and raw
(every break; the figure for building test sets). When the random side found no break the ratio
is not a number: `None`, with a lower bound from the rule of three (with 0 breaks in N, the
random rate is below 3 / N at 95 %), so the report never shows an infinite or invented ratio.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.tables import ATTRIBUTABLE, RAW, family_stats, prediction_check
from advgen.attacks.task_attack import TaskRun
from advgen.attacks.task_summary_doc import BASELINE_FILE, FILE, SCHEMA_VERSION, TaskAttackSummary, TaskBaseline, built
from advgen.circuits.format import Circuit
from advgen.core import files
from advgen.core.records import AttackRow


def _typed(rows: Sequence[dict[str, Any]]) -> list[AttackRow]:
    """Task rows carry every AttackRow field (plus task/answer/foil): the shared IOI helpers read them as such."""
    return cast("list[AttackRow]", list(rows))


def cell_table(att: Sequence[dict[str, Any]], ctl: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Raw and attributable break rates, explained share and mean LDs of a set of attacks and their controls."""
    breaks = [r for r in att if r["is_break"]]
    attributable = [r for r in breaks if not r["control_breaks"]]
    n = len(att)
    return {
        "n": n,
        "breaks": len(breaks),
        "attributable_breaks": len(attributable),
        "raw_break_rate": len(breaks) / n if n else None,
        "attributable_break_rate": len(attributable) / n if n else None,
        "explained": sum(bool(r["explained"]) for r in breaks),
        "explained_fraction": float(np.mean([bool(r["explained"]) for r in breaks])) if breaks else None,
        "mean_ld_attack": float(np.mean([r["logit_diff"] for r in att])) if att else None,
        "mean_ld_control": float(np.mean([r["logit_diff"] for r in ctl])) if ctl else None,
        "control_break_rate": float(np.mean([r["logit_diff"] < 0 for r in ctl])) if ctl else None,
    }


def _split(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [r for r in rows if r["family"] == "attack"], [r for r in rows if r["family"] == "control"]


def mode_tables(run: TaskRun, seed: int) -> dict[str, Any]:
    """modes.json: per mode the prediction check (random sample), and per cell the sample's and all evaluated rows' tables."""
    clean = [r for r in run.rows if r["family"] == "clean"]
    out: dict[str, Any] = {"natural": family_stats(_typed(clean), seed), "skipped_modes": run.skipped, "modes": {}}
    for m in run.modes:
        mine = [r for r in run.rows if r["mode"] == m.name]
        sample = [r for r in mine if r["phase"] == "sample"]
        cells = {}
        for key in sorted({r["cell"] for r in mine if r["cell"]} | {m.cell_key(d) for d in m.doses if m.edit != "mention"}):
            cells[key] = {
                "sample": cell_table(*_split([r for r in sample if r["cell"] == key])),
                "all": cell_table(*_split([r for r in mine if r["cell"] == key])),
                "verdict": run.screening["cell_verdicts"].get(key),
            }
        pred = prediction_check(_typed(sample), m.expected_sign, seed)
        out["modes"][m.name] = {
            **m.describe(),
            "prediction": pred,
            "cause": cause(sample, pred["verdict"]),
            "random_sample": cell_table(*_split(sample)),
            "all": cell_table(*_split(mine)),
            "cells": cells,
        }
    return out


def cause(sample: Sequence[dict[str, Any]], verdict: str) -> str | None:
    """For a prediction not confirmed: what the signal did, measured on the same paired rows (None when confirmed)."""
    if verdict == "confirmed":
        return None
    shifts = [r["signal_shift"] for r in sample if r["family"] == "attack" and r["signal_shift"] is not None]
    if not shifts:
        return "no paired attack in the random sample"
    mean = float(np.mean(shifts))
    slot = "the inserted values" if sample and sample[0].get("mode") and "E" in (sample[0].get("positions") or {}) else "E2"
    moved = (
        f"the heads' END attention to {slot} rose against the control"
        if mean > 0
        else f"the heads' END attention to {slot} did not rise"
    )
    return f"{moved} (mean shift {mean:+.3f} over {len(shifts)} pairs), and LD did not move with the heads' DLA sign"


def _ratio(guided: float, base: float, base_evals: int) -> dict[str, float | None]:
    bound = 1000 * 3 / base_evals if base_evals else None
    return {
        "ratio": guided / base if base > 0 else None,
        "lower_bound": (guided / bound if bound else None) if base == 0 else None,
    }


def baseline_doc(run: TaskRun, cfg: AttackConfig) -> dict[str, Any]:
    """Both yields against the random baseline, with the evaluations each side spent."""
    e = run.evals
    guided_evals, base_evals = e["clean"] + e["sample"] + e["search"], e["clean"] + e["baseline"]
    att = [r for r in run.rows if r["family"] == "attack"]
    g = sum(r["is_break"] for r in att)
    shared = sum(bool(r["is_break"] and r["control_breaks"]) for r in att)
    b = sum(r["is_break"] for r in run.rows if r["family"] == "baseline")
    gy, ay, by = 1000 * g / guided_evals, 1000 * (g - shared) / guided_evals, 1000 * b / base_evals
    raw, attr = _ratio(gy, by, base_evals), _ratio(ay, by, base_evals)
    return {
        "budget": cfg.budget,
        "guided_per_1000": gy,
        "attributable_per_1000": ay,
        "random_per_1000": by,
        "guided": {"evaluations": guided_evals, "breaks": g, "control_shared_breaks": shared, "attributable_breaks": g - shared},
        "baseline": {"evaluations": base_evals, "breaks": b},
        "ratio": raw["ratio"],
        "attributable_ratio": attr["ratio"],
        "ratio_lower_bound": raw["lower_bound"],
        "attributable_ratio_lower_bound": attr["lower_bound"],
        "definitions": {
            "attributable": ATTRIBUTABLE,
            "raw": RAW,
            "lower_bound": "when the random side found no break: the ratio against its 95 % upper rate 3 / N (rule of three)",
        },
        "accounting": (
            "both sides pay the clean run; guided pays attack + control per sampled candidate and per searched break "
            "(a control prompt shared by candidates is evaluated once), the baseline one prompt each"
        ),
    }


def _fmt(x: float | None, lb: float | None = None) -> str:
    if x is not None:
        return f"{x:.1f}x"
    return f"> {lb:.1f}x (random found no break; rule-of-three bound)" if lb is not None else "n/a"


def markdown(modes: dict[str, Any], base: dict[str, Any]) -> str:
    nat = modes["natural"]
    lines = [
        f"Natural failure rate (clean prompts, foil > answer): {nat.get('s_beats_io_rate', float('nan')):.3f} (n = "
        f"{nat.get('n', 0)})",
        "",
        "| mode | cell | subset | n | raw break rate | attributable break rate | explained | mean LD attack / control | cell "
        "verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x: float | None, p: str = ".3f") -> str:
        return "-" if x is None else format(x, p)

    for name, m in modes["modes"].items():
        for key, c in m["cells"].items():
            for sub in ("sample", "all"):
                t = c[sub]
                lines.append(
                    f"| {name} | {key} | {sub} | {t['n']} | {f(t['raw_break_rate'])} | {f(t['attributable_break_rate'])} | "
                    f"{t['explained']}/{t['breaks']} | {f(t['mean_ld_attack'], '.2f')} / {f(t['mean_ld_control'], '.2f')} | "
                    f"{c['verdict']} |"
                )
    lines += ["", "Predicted vs seen (random sample, paired LD(attack) - LD(control), 95% CI resampling clean prompts):", ""]
    for name, m in modes["modes"].items():
        p, ci = m["prediction"], m["prediction"]["attack_minus_control"]
        seen = f"{ci['mean']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "-"
        why = f" (measured cause: {m['cause']})" if m.get("cause") else ""
        lines.append(
            f"- {name}: predicted {'negative' if p['expected_sign'] < 0 else 'positive'}, seen {seen} (n = {p['n']}): "
            f"{p['verdict']}{why}; "
            f"compiled from {m['compiled_from']}"
        )
    lines += ["", "Skipped modes: " + ("; ".join(f"{k}: {v}" for k, v in modes["skipped_modes"].items()) or "none"), ""]
    g, b = base["guided"], base["baseline"]
    lines += [
        f"Attributable yield: guided {base['attributable_per_1000']:.1f} per 1,000 ({g['attributable_breaks']} in "
        f"{g['evaluations']}; "
        f"{g['control_shared_breaks']} breaks shared by their control left out), random {base['random_per_1000']:.1f} "
        f"({b['breaks']} in {b['evaluations']}); ratio "
        f"{_fmt(base['attributable_ratio'], base['attributable_ratio_lower_bound'])}.",
        f"Raw yield: guided {base['guided_per_1000']:.1f} per 1,000 ({g['breaks']} in {g['evaluations']}), random "
        f"{base['random_per_1000']:.1f}; ratio {_fmt(base['ratio'], base['ratio_lower_bound'])}.",
    ]
    return "\n".join(lines) + "\n"


def summary_doc(run: TaskRun, cfg: AttackConfig, modes: dict[str, Any], base: dict[str, Any], task: str) -> dict[str, Any]:
    """summary.json's document (version, families, yield, per-mode verdicts, screening); written through its record."""
    att = [r for r in run.rows if r["family"] == "attack"]
    breaks = [r for r in att if r["is_break"]]
    fam = {
        f: family_stats(_typed([r for r in run.rows if r["family"] == f]), cfg.seed)
        for f in ("clean", "attack", "control", "baseline")
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "task": task,
        "by_family": fam,
        "evaluations": run.evals,
        "yield": {
            k: base[k]
            for k in (
                "guided_per_1000",
                "random_per_1000",
                "ratio",
                "ratio_lower_bound",
                "attributable_per_1000",
                "attributable_ratio",
                "attributable_ratio_lower_bound",
            )
        }
        | {
            "breaks": base["guided"]["breaks"],
            "attributable_breaks": base["guided"]["attributable_breaks"],
            "control_shared_breaks": base["guided"]["control_shared_breaks"],
        },
        "explained_fraction": float(np.mean([bool(r["explained"]) for r in breaks])) if breaks else None,
        "modes": {
            k: {
                "predicted_sign": v["prediction"]["expected_sign"],
                "seen": v["prediction"]["attack_minus_control"],
                "verdict": v["prediction"]["verdict"],
                "cause": v["cause"],
                "compiled_from": v["compiled_from"],
                "breaks": v["all"]["breaks"],
                "attributable_breaks": v["all"]["attributable_breaks"],
                "explained_fraction": v["all"]["explained_fraction"],
            }
            for k, v in modes["modes"].items()
        },
        "skipped_modes": run.skipped,
        "natural_failure_rate": modes["natural"].get("s_beats_io_rate"),
        "screening": run.screening,
    }


def write_task_run(
    out: Path, run: TaskRun, cfg: AttackConfig, circuit: Circuit, manifest: dict[str, Any], task: str
) -> dict[str, Any]:
    """Every file of the run directory, each written atomically; summary.json and baseline.json through their records
    (`advgen.attacks.task_summary_doc`), so a shape drift fails here. Returns the documents as written."""
    modes = mode_tables(run, cfg.seed)
    base_doc = baseline_doc(run, cfg)
    base = built(TaskBaseline, base_doc, BASELINE_FILE).to_dict()
    summary = built(TaskAttackSummary, summary_doc(run, cfg, modes, base_doc, task), FILE).to_dict()
    rows = run.rows
    outputs: Iterable[tuple[str, str]] = (
        ("results.jsonl", files.jsonl_text(rows)),
        ("results.csv", files.csv_text(rows)),
        (
            "adversarial.jsonl",
            files.jsonl_text(r for r in rows if r["family"] == "attack" and r["is_break"] and not r["control_breaks"]),
        ),
        ("modes.json", files.dumps(modes) + "\n"),
        ("baseline.json", files.dumps(base) + "\n"),
        ("summary.json", files.dumps(summary) + "\n"),
        ("circuit.json", files.dumps(circuit.to_dict()) + "\n"),
        ("manifest.json", files.dumps(manifest) + "\n"),
        ("table.md", markdown(modes, base_doc)),
    )
    for name, text in outputs:
        files.atomic_write_text(out / name, text)
    return {"modes": modes, "baseline": base, "summary": summary}
