"""claims.md: a claim check's results as Markdown (metric x ablation table, scrubbing, absolute performance,
completeness, minimality).

Text only, from the result dicts `advgen.circuits.claims.check_claim` builds; apart from the
measurement so the wording of the table can change without touching what is measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _num(x: float) -> str:
    return f"{x:.3f}" if x == 0 or abs(x) >= 0.01 or not np.isfinite(x) else f"{x:.2e}"


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return f"{_num(v['mean'])} [{_num(v['low'])}, {_num(v['high'])}]"
    return _num(v)


ROW_NAMES = {
    "mean_ld": "F(C) = mean LD",
    "ratio_to_model": "F(C) / F(M)",
    "faithfulness_gap": "F(M) - F(C)",
    "mean_abs_ld_diff": "mean abs(LD_model - LD_circuit)",
    "kl_model_circuit": "KL(model ‖ circuit)",
    "accuracy": "accuracy (LD > 0)",
    "sign_flip_rate": "sign flips (share of examples)",
    "per_example_sd_pct": "per-example sd (% of F(M))",
    "per_example_quantiles_pct": "per-example 5/25/50/75/95 % (% of F(M))",
    "loss_recovered_nats": "loss recovered (nats)",
    "loss_recovered_pct": "loss recovered (%)",
    "empty_mean_ld": "mean LD, all heads ablated",
}
SCRUB_COLUMN = "causal scrubbing"


def _cell(v: Any) -> str:
    if isinstance(v, dict) and "mean" not in v:
        return " / ".join(f"{x:.0f}" for x in v.values())
    return _fmt(v)


def _table_lines(header: dict[str, Any], table: dict[str, dict[str, Any]], scrub: dict[str, Any]) -> list[str]:
    cols = {**table, **({SCRUB_COLUMN: scrub["metrics"]} if scrub.get("metrics") else {})}
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for k, label in ROW_NAMES.items():
        if k == "empty_mean_ld" and header.get("mlps") == "ablate":  # the empty circuit knocks out every MLP too
            label = "mean LD, all heads and MLPs ablated (causal scrubbing: all heads)"
        lines.append(f"| {label} | " + " | ".join(_cell(c[k]) if k in c else "" for c in cols.values()) + " |")
    if scrub.get("skipped"):
        lines += ["", f"Causal scrubbing skipped: {scrub['skipped']}"]
    elif scrub:
        lines += [
            "",
            f"Causal scrubbing ({scrub['draws']} draw(s) per example): the circuit keeps **{scrub['ld_kept_pct']:.1f} %** of "
            f"the model's LD [{scrub['ld_kept_pct_ci']['low']:.1f}, {scrub['ld_kept_pct_ci']['high']:.1f}], per-example sd "
            f"{scrub['sd']:.1f} %, sign flips {100 * scrub['sign_flip_rate']:.1f} %; everything resampled (empty circuit): "
            f"{scrub['baseline_ld_kept_pct']:.1f} %. Mean p(IO): model {scrub['mean_p_io_model']:.3f}, scrubbed "
            f"{scrub['mean_p_io_scrubbed']:.3f}; the donor's own IO name beats the prompt's IO in "
            f"{100 * scrub['donor_io_beats_io_rate']:.0f} % of scrubbed examples (mean p "
            f"{scrub['mean_p_donor_io_scrubbed']:.3f}). "
            f"Resampling: {scrub['resampling']}.",
        ]
    return lines


def _num_or(v: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and np.isfinite(v) else "n/a"


def _absolute_lines(header: dict[str, Any], a: dict[str, Any]) -> list[str]:
    if not a:
        return []
    lines = [
        "",
        f"Absolute performance (`{header['paper_setting']}` circuit-only model; IOI loss = -log p(IO) at END, nats): "
        f"loss recovered {_num_or(a['loss_recovered_nats'])} nats ({_num_or(a['loss_recovered_pct'], '{:.1f}')} %); "
        f"ladder position of the circuit: **{a['ladder_position']}**"
        + (
            f", like a model with {a['ladder_equivalent_params']:,.0f} parameters ({a['times_smaller']:.1f} x smaller than this "
            f"model's {a['model_parameters']:,})"
            if a.get("ladder_equivalent_params")
            else ""
        )
        + ".",
    ]
    if "placements" not in a:
        return lines
    lines += ["", "| variant | IOI loss (nats) | mean LD | ladder position | like N parameters |", "|---|---|---|---|---|"]
    for k in ("model", "circuit", "scrubbed", "empty"):
        pl = a["placements"][k]
        eq = f"{pl['equivalent_params']:,.0f}" if pl["equivalent_params"] else ""
        lines.append(f"| {k} | {a['ioi_loss'][k]:.3f} | {a['ioi_mean_ld'][k]:.3f} | {pl['position']} | {eq} |")
    lines += [
        "",
        f"Ladder ({a['ladder_basis']}):",
        "",
        "| ladder model | parameters | held-out corpus loss | IOI loss | IOI mean LD | IOI accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for r in a["ladder"]:
        lines.append(
            f"| {r['name']} | {r['parameters']:,} | {r['heldout_loss']:.3f} | {r['ioi_loss']:.3f} | {r['ioi_mean_ld']:.3f} | "
            f"{r['ioi_accuracy']:.3f} |"
        )
    return lines


def _completeness_lines(header: dict[str, Any], comp: dict[str, Any], mini: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Completeness (`{header['paper_setting']}`): F(C) = {comp['F_C']:.3f}; max incompleteness "
        f"abs(F(C\\K) - F(M\\K)) = {comp['max_incompleteness']:.3f}",
        "",
        "| K | F(C\\K) | F(M\\K) | incompleteness |",
        "|---|---|---|---|",
    ]
    for r, d in comp["per_role_K"].items():
        lines.append(f"| role {r} | {d['F_C_minus_K']:.3f} | {d['F_M_minus_K']:.3f} | {d['incompleteness']:.3f} |")
    for d in comp["random_K"]:
        lines.append(
            f"| random {{{', '.join(d['K'])}}} | {d['F_C_minus_K']:.3f} | {d['F_M_minus_K']:.3f} | {d['incompleteness']:.3f} |"
        )
    for j, d in enumerate(comp["greedy_K"], 1):
        lines.append(f"| greedy step {j} {{{', '.join(d['K'])}}} | | | {d['incompleteness']:.3f} |")
    lines += [
        "",
        f"Minimality (threshold {mini['threshold']:.3f} = 1 % of F(M)); all heads needed: {mini['all_needed']}",
        "",
        "| head | max abs(F(C\\(K+v)) - F(C\\K)) | % of F(M) | K | needed |",
        "|---|---|---|---|---|",
    ]
    for h, d in mini["heads"].items():
        lines.append(f"| {h} | {d['score']:.3f} | {d['score_pct_of_F_M']:.1f} | {{{', '.join(d['K'])}}} | {d['needed']} |")
    return lines


def markdown(
    header: dict[str, Any],
    table: dict[str, dict[str, Any]],
    comp: dict[str, Any],
    mini: dict[str, Any],
    scrub: dict[str, Any] | None = None,
    absolute: dict[str, Any] | None = None,
) -> str:
    """claims.md: the metric x ablation table (with the scrubbing column), absolute performance, completeness, minimality."""
    lines = [
        f"## Claim check: circuit `{header['circuit']}` ({header['n_heads_in_circuit']} heads) on `{header['model']}`",
        "",
        f"n = {header['n']} clean IOI prompts, seed {header['seed']}; F(M) = {header['F_M']:.3f}. "
        f"Paper's setting = `{header['paper_setting']}` + mean LD. Intervals: bootstrap 95 %.",
        "",
    ]
    if header.get("mlp_note"):
        lines += [
            f"MLP nodes {', '.join(header.get('mlp_nodes') or []) or 'none'} (--mlps {header['mlps']}): {header['mlp_note']}.",
            "",
        ]
    lines += _table_lines(header, table, scrub or {})
    lines += _absolute_lines(header, absolute or {})
    lines += _completeness_lines(header, comp, mini)
    return "\n".join(lines) + "\n"
