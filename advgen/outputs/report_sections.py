"""The report's sections computed from a run's rows: the summary by family, the per-mode tables, the LD histograms,
the dose response and the confirmed adversarial examples.

Every number is computed from results.jsonl's rows (every run kind has them) with bootstrap
intervals, so no section depends on a summary's keys; attack and control rows are labelled by
subset (the unbiased random sample against the screen's search picks), so search rows never pass
for the sample. No model runs here; the page around these sections is `advgen.outputs.report`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from advgen.core.files import read_jsonl, read_text
from advgen.model.metrics import bootstrap_ci
from advgen.outputs import plots, verdict
from advgen.outputs.htmlparts import fmt, img, markdown_html, table
from advgen.outputs.rundata import RunData

MAX_EXAMPLES = 10


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d} if not isinstance(d, list) else {prefix: json.dumps(d)}


def _stats(vals: Sequence[float], seed: int) -> list[Any]:
    v = np.asarray([x for x in vals if x == x], dtype=float)
    if not v.size:
        return [0, "", "", ""]
    ci = bootstrap_ci(v, seed)
    return [int(v.size), f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]", float((v < 0).mean()), None]


def _group_row(name: str, rs: Sequence[Mapping[str, Any]], seed: int) -> list[Any]:
    ld = np.array([r["logit_diff"] for r in rs], dtype=float)
    ci = bootstrap_ci(ld, seed)
    top1 = [r["io_rank"] == 0 for r in rs if "io_rank" in r]
    return [
        name,
        len(rs),
        f"{fmt(ci.mean)} [{fmt(ci.low)}, {fmt(ci.high)}]",
        float((ld > 0).mean()),
        float((ld < 0).mean()),
        float(np.mean([r.get("io_prob", np.nan) for r in rs])),
        float(np.mean(top1)) if top1 else "",
    ]


def section_summary(data: RunData) -> str:
    """Computed from the rows (every run kind has them), so every column is filled for every family."""
    if not data.rows:
        return ""
    fams: dict[str, list[Mapping[str, Any]]] = {}
    for r in data.rows:
        fams.setdefault(str(r.get("family", "clean")), []).append(r)
    out = [_group_row("all", data.rows, data.seed)] + [_group_row(k, v, data.seed) for k, v in fams.items()]
    head = ["group", "n", "mean LD [95 % CI]", "LD > 0", "S > IO", "mean IO prob", "IO top-1"]
    clean = fams.get("clean", [])
    parts = [
        f"<details><summary>Clean prompts by {what} (summary.json: {key})</summary>"
        + table(
            [field, *head[1:]],
            [
                _group_row(v, [r for r in clean if r.get(field) == v], data.seed)
                for v in sorted({str(r.get(field)) for r in clean})
            ],
        )
        + "</details>"
        for what, key, field in (("name order", "by_order", "order"), ("template", "by_template", "template_id"))
        if clean and all(field in r for r in clean)
    ]
    return table(head, out) + "".join(parts)


def by_mode(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    """mode -> {clean (the pairs of its attacks), control, attack} rows; clean-only runs -> by family."""
    modes = sorted({str(r["mode"]) for r in rows if r.get("family") in ("attack", "control") and r.get("mode")})
    if not modes:
        fams: dict[str, list[Mapping[str, Any]]] = {}
        for r in rows:
            fams.setdefault(str(r.get("family", "clean")), []).append(r)
        return {"all prompts": fams}
    clean_by_pair = {r.get("pair_id"): r for r in rows if r.get("family") == "clean"}
    out = {}
    for mode in modes:
        attack = [r for r in rows if r.get("family") == "attack" and r.get("mode") == mode]
        control = [r for r in rows if r.get("family") == "control" and r.get("mode") == mode]
        pairs = {r.get("pair_id") for r in attack + control}
        clean = [clean_by_pair[p] for p in sorted(pairs, key=str) if p in clean_by_pair]
        out[mode] = {"clean": clean, "control": control, "attack": attack}
    return out


SUBSETS = {"sample": "random sample", "search": "search"}
"""Attack rows' `phase`: the unbiased stratified sample, or candidates the screen picked (biased toward breaks)."""


def subset_of(row: Mapping[str, Any]) -> str:
    return SUBSETS.get(str(row.get("phase")), "all (phase not recorded)")


def _mode_row(mode: str, subset: str, fam: str, rs: Sequence[Mapping[str, Any]], seed: int) -> list[Any]:
    st = _stats([r["logit_diff"] for r in rs], seed)
    st[3] = float(np.mean([r.get("io_prob", np.nan) for r in rs]))
    breaks = sum(bool(r.get("is_break")) for r in rs) if fam == "attack" else ""
    expl = [bool(r["explained"]) for r in rs if fam == "attack" and r.get("is_break") and r.get("explained") is not None]
    return [mode, subset, fam, *st, breaks, float(np.mean(expl)) if expl else ""]


def section_modes(data: RunData) -> str:
    groups = by_mode(data.rows)
    if list(groups) == ["all prompts"]:
        return ""
    out = []
    for mode, fams in groups.items():
        if fams["clean"]:
            out.append(_mode_row(mode, "clean partners", "clean", fams["clean"], data.seed))
        subsets = list(dict.fromkeys(subset_of(r) for r in fams["attack"] + fams["control"]))
        for sub in sorted(subsets, key=lambda x: (x != "random sample", x)):
            for fam in ("control", "attack"):
                rs = [r for r in fams[fam] if subset_of(r) == sub]
                if rs:
                    out.append(_mode_row(mode, sub, fam, rs, data.seed))
    html_ = table(
        ["mode", "subset", "family", "n", "mean LD [95 % CI]", "S > IO", "mean IO prob", "breaks", "explained (of breaks)"], out
    )
    html_ += (
        "<p class='note'>Random-sample rows estimate each family's behaviour without bias; search rows were picked by the "
        "screen for a high predicted signal, so their break counts are not rates. Search controls are run only for breaks.</p>"
    )
    table_md = data.run_dir / "table.md"
    if table_md.exists():
        html_ += "<details><summary>The attack's full table (table.md: by parameter, predicted vs seen, yield)</summary>"
        html_ += markdown_html(read_text(table_md, "table")) + "</details>"
    path = data.run_dir / "baseline.json"
    if path.exists():
        flat_b = flatten(verdict.read_json(path))
        html_ += (
            "<details><summary>baseline.json</summary>"
            + table(["metric", "value"], [[k, v] for k, v in flat_b.items()])
            + "</details>"
        )
    return html_


def section_histograms(data: RunData) -> str:
    """One panel per mode; attack and control from the random sample only when the run recorded phases."""
    if not data.rows:
        return ""
    sampled = any(r.get("phase") == "sample" for r in data.rows)
    rows = [r for r in data.rows if not sampled or r.get("family") not in ("attack", "control") or r.get("phase") == "sample"]
    panels = {
        mode: {fam: [r["logit_diff"] for r in rs] for fam, rs in fams.items() if rs} for mode, fams in by_mode(rows).items()
    }
    note = " Attack and control: the random sample (search candidates left out: the screen picked them)." if sampled else ""
    return img(
        plots.png_b64(plots.ld_histograms(panels)),
        "LD histograms",
        "Logit difference per prompt; left of the dashed line S beats IO." + note,
    )


def _dose_series(rows: Sequence[Mapping[str, Any]], seed: int) -> dict[str, list[plots.DosePoint]]:
    series: dict[str, list[plots.DosePoint]] = {}
    for fam in ("attack", "control"):
        rs = [r for r in rows if r.get("family") == fam]
        for dose in sorted({float(r["params"]["dose"]) for r in rs}):
            ld = [r["logit_diff"] for r in rs if float(r["params"]["dose"]) == dose]
            ci = bootstrap_ci(ld, seed)
            series.setdefault(fam, []).append(
                plots.DosePoint(dose, ci.mean, ci.low, ci.high, float(np.mean(np.array(ld) < 0)), len(ld))
            )
    return series


def section_dose(data: RunData) -> str:
    """Plot: the random sample (unbiased); table: every subset, labelled, so search rows never pass for the sample."""
    dosed = [
        r
        for r in data.rows
        if r.get("mode") and isinstance(r.get("params"), Mapping) and isinstance(r["params"].get("dose"), (int, float))
    ]  # any mode with a dose parameter
    if not dosed:
        return ""
    out = []
    for mode in sorted({str(r["mode"]) for r in dosed}):
        mine = [r for r in dosed if r["mode"] == mode]
        subsets = sorted({subset_of(r) for r in mine}, key=lambda x: (x != "random sample", x))
        by_sub = {sub: _dose_series([r for r in mine if subset_of(r) == sub], data.seed) for sub in subsets}
        shown = "random sample" if "random sample" in by_sub else subsets[0]
        fig = plots.dose_response(by_sub[shown], f"{mode}: dose response ({shown})")
        rows = [
            [sub, fam, f"{p.dose:g}", p.n, f"{p.mean:.3f} [{p.low:.3f}, {p.high:.3f}]", p.s_beats_io]
            for sub, series in by_sub.items()
            for fam, ps in series.items()
            for p in ps
        ]
        cap = f"Plotted: the {shown} rows only." + (
            " The search rows below were chosen by the screen (biased toward breaks)." if "search" in by_sub else ""
        )
        out.append(
            img(plots.png_b64(fig), f"dose response {mode}", cap)
            + table(["subset", "family", "dose", "n", "mean LD [95 % CI]", "S > IO"], rows)
        )
    return "".join(out)


def section_examples(data: RunData) -> str:
    path = data.run_dir / "adversarial.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return ""
    rows = read_jsonl(path, required=("text", "io", "s", "logit_diff"))
    clean = {r.get("pair_id"): r for r in data.rows if r.get("family") == "clean"}
    rows = sorted(rows, key=lambda r: r["logit_diff"])[:MAX_EXAMPLES]
    body = [
        [r.get("mode"), r["text"], r["io"], r["s"], clean.get(r.get("pair_id"), {}).get("logit_diff", ""), r["logit_diff"]]
        for r in rows
    ]
    return f"<p class='note'>The {len(body)} strongest confirmed breaks (adversarial.jsonl).</p>" + table(
        ["mode", "attack prompt", "IO", "S", "clean LD", "attack LD"], body
    )
