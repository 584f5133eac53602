"""One self-contained HTML report of a run directory: tables, plots as embedded PNGs, no network.

Each section appears only when its inputs exist (results.jsonl, modes.json, duplicated-IO doses,
a circuit, discovery PNGs, claims.md), so a plain `advgen run` directory, an `advgen attack`
directory and a discovery/claims directory all give a report. Only the attention heatmaps run a
model, on two example prompts.
"""

from __future__ import annotations

import base64
import html
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advgen.core.files import atomic_write_text, read_jsonl
from advgen.core.types import AdvgenError
from advgen.model.metrics import bootstrap_ci
from advgen.outputs import plots
from advgen.outputs.rundata import RunData, load_run

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;
display:block;margin:.5em 0}code{background:#f4f4f4;padding:0 .2em}.note{color:#666;font-size:.9em}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}"""
MAX_EXAMPLES = 10


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.3f}"
    return str(x)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float)) else f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>"
        for r in rows
    )
    head = f"<thead><tr>{th}</tr></thead>" if any(header) else ""  # key/value tables need no header row
    return f"<table>{head}<tbody>{body}</tbody></table>"


def img(b64: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdvgenError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d} if not isinstance(d, list) else {prefix: json.dumps(d)}


def _stats(vals: Sequence[float], seed: int) -> list[Any]:
    v = np.asarray([x for x in vals if x == x], dtype=float)
    if not v.size:
        return [0, "", "", ""]
    ci = bootstrap_ci(v, seed)
    return [int(v.size), f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]", float((v < 0).mean()), None]


# ---- sections ----------------------------------------------------------------------------------


def section_run(data: RunData) -> str:
    m = data.manifest
    rows = [["run directory", str(data.run_dir)], ["model", f"{m.get('model', '?')} ({m.get('model_source', '?')})"],
            ["seed", m.get("seed", "?")], ["command", m.get("command", "?")],
            ["circuit", (data.circuit or {}).get("name", "none") if data.circuit else "none"],
            ["versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())]]
    return table(["", ""], rows)


def _group_row(name: str, rs: Sequence[Mapping[str, Any]], seed: int) -> list[Any]:
    ld = np.array([r["logit_diff"] for r in rs], dtype=float)
    ci = bootstrap_ci(ld, seed)
    top1 = [r["io_rank"] == 0 for r in rs if "io_rank" in r]
    return [name, len(rs), f"{fmt(ci.mean)} [{fmt(ci.low)}, {fmt(ci.high)}]", float((ld > 0).mean()), float((ld < 0).mean()),
            float(np.mean([r.get("io_prob", np.nan) for r in rs])), float(np.mean(top1)) if top1 else ""]


def section_summary(data: RunData) -> str:
    """Computed from the rows (every run kind has them), so every column is filled for every family."""
    if not data.rows:
        return ""
    fams: dict[str, list[Mapping[str, Any]]] = {}
    for r in data.rows:
        fams.setdefault(str(r.get("family", "clean")), []).append(r)
    out = [_group_row("all", data.rows, data.seed)] + [_group_row(k, v, data.seed) for k, v in fams.items()]
    return table(["group", "n", "mean LD [95 % CI]", "LD > 0", "S > IO", "mean IO prob", "IO top-1"], out)


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


def section_modes(data: RunData) -> str:
    groups = by_mode(data.rows)
    if list(groups) == ["all prompts"]:
        return ""
    out = []
    for mode, fams in groups.items():
        for fam, rs in fams.items():
            if not rs:
                continue
            st = _stats([r["logit_diff"] for r in rs], data.seed)
            st[3] = float(np.mean([r.get("io_prob", np.nan) for r in rs])) if rs else ""
            breaks = sum(bool(r.get("is_break")) for r in rs) if fam == "attack" else ""
            expl = [r.get("explained") for r in rs if fam == "attack" and r.get("is_break") and r.get("explained") is not None]
            out.append([mode, fam, *st, breaks, float(np.mean(expl)) if expl else ""])
    html_ = table(["mode", "family", "n", "mean LD [95 % CI]", "S > IO", "mean IO prob", "breaks", "explained (of breaks)"], out)
    table_md = data.run_dir / "table.md"
    if table_md.exists():
        html_ += "<details><summary>The attack's full table (table.md: by parameter, predicted vs seen, yield)</summary>"
        html_ += markdown_html(table_md.read_text()) + "</details>"
    path = data.run_dir / "baseline.json"
    if path.exists():
        flat_b = _flatten(_read_json(path))
        html_ += "<details><summary>baseline.json</summary>" + table(["metric", "value"], [[k, v] for k, v in flat_b.items()]) + "</details>"
    return html_


def section_histograms(data: RunData) -> str:
    if not data.rows:
        return ""
    panels = {mode: {fam: [r["logit_diff"] for r in rs] for fam, rs in fams.items() if rs} for mode, fams in by_mode(data.rows).items()}
    return img(plots.png_b64(plots.ld_histograms(panels)), "LD histograms", "Logit difference per prompt; left of the dashed line S beats IO.")


def section_dose(data: RunData) -> str:
    dosed = [r for r in data.rows if "duplicate" in str(r.get("mode") or "") and isinstance(r.get("params"), Mapping)
             and isinstance(r["params"].get("dose"), (int, float))]
    if not dosed:
        return ""
    out = []
    for mode in sorted({str(r["mode"]) for r in dosed}):
        series: dict[str, list[plots.DosePoint]] = {}
        for fam in ("attack", "control"):
            rs = [r for r in dosed if r["mode"] == mode and r.get("family") == fam]
            for dose in sorted({float(r["params"]["dose"]) for r in rs}):
                ld = [r["logit_diff"] for r in rs if float(r["params"]["dose"]) == dose]
                ci = bootstrap_ci(ld, data.seed)
                series.setdefault(fam, []).append(plots.DosePoint(dose, ci.mean, ci.low, ci.high, float(np.mean(np.array(ld) < 0)), len(ld)))
        fig = plots.dose_response(series, f"{mode}: dose response")
        rows = [[fam, f"{p.dose:g}", p.n, f"{p.mean:.3f} [{p.low:.3f}, {p.high:.3f}]", p.s_beats_io] for fam, ps in series.items() for p in ps]
        out.append(img(plots.png_b64(fig), f"dose response {mode}") + table(["family", "dose", "n", "mean LD [95 % CI]", "S > IO"], rows))
    return "".join(out)


def example_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The clean prompt and one attack on it (a confirmed break if there is one)."""
    attacks = [r for r in rows if r.get("family") == "attack"]
    pick = next((r for r in attacks if r.get("is_break")), attacks[0] if attacks else None)
    clean = {r.get("pair_id"): r for r in rows if r.get("family") == "clean"}
    if pick is not None and pick.get("pair_id") in clean:
        return [("clean", clean[pick["pair_id"]]), (f"attack ({pick.get('mode')})", pick)]
    first = next((r for r in rows if r.get("family") == "clean"), rows[0] if rows else None)
    return [("clean", first)] if first is not None else []


def section_attention(data: RunData, model_spec: str | None, circuit_spec: str | None) -> str:
    from advgen.circuits.format import Circuit, resolve_circuit
    from advgen.outputs import attention

    if circuit_spec:
        circuit = resolve_circuit(circuit_spec)
    elif data.circuit:
        circuit = Circuit.from_dict(data.circuit, str(data.run_dir / "circuit.json"))
    else:
        return ""  # no circuit, no heads to draw (`--circuit` names one for a plain run)
    examples = example_rows(data.rows)
    if not examples:
        return ""
    from advgen.model.loading import load_model

    src = str(data.manifest.get("model_source") or "")
    spec = model_spec or (src if src and Path(src).is_dir() else str(data.manifest.get("model") or ""))
    try:
        model = load_model(spec)
    except AdvgenError as e:
        if model_spec:
            raise
        print(f"advgen report: attention heatmaps skipped: {e}", file=sys.stderr)
        return f"<p class='note'>Attention heatmaps skipped: {esc(e)} (pass <code>--model</code>).</p>"
    circuit.check_against(model.n_layers, model.n_heads)
    chosen = attention.pick_heads(circuit)
    exs = attention.patterns(model, [h for h, _ in chosen], examples)
    parts = [f"<p class='note'>Model <code>{esc(model.name)}</code>, circuit <code>{esc(circuit.name)}</code>; "
             f"up to two heads per role. Prompts: " + "; ".join(f"{esc(e.label)}: <code>{esc(r['text'])}</code>"
                                                                for e, (_, r) in zip(exs, examples)) + "</p>"]
    for head, role in chosen:
        fig = plots.attention_pair(str(head), role, [(e.label, e.tokens, e.patterns[head]) for e in exs])
        parts.append(img(plots.png_b64(fig), f"attention {head}"))
    return "".join(parts)


def section_examples(data: RunData) -> str:
    path = data.run_dir / "adversarial.jsonl"
    if not path.exists() or path.stat().st_size == 0:
        return ""
    rows = read_jsonl(path, required=("text", "io", "s", "logit_diff"))
    clean = {r.get("pair_id"): r for r in data.rows if r.get("family") == "clean"}
    rows = sorted(rows, key=lambda r: r["logit_diff"])[:MAX_EXAMPLES]
    body = [[r.get("mode"), r["text"], r["io"], r["s"], clean.get(r.get("pair_id"), {}).get("logit_diff", ""), r["logit_diff"]] for r in rows]
    return f"<p class='note'>The {len(body)} strongest confirmed breaks (adversarial.jsonl).</p>" + table(
        ["mode", "attack prompt", "IO", "S", "clean LD", "attack LD"], body)


def section_discovery(run_dir: Path, exclude: Path) -> str:
    same_dir = exclude.parent.resolve() == run_dir.resolve()
    pngs = sorted(p for p in run_dir.glob("*.png") if not (same_dir and p.name.startswith(exclude.stem)))
    parts = []
    if (run_dir / "discovery.json").exists():
        parts.append("<p class='note'>Scores: discovery.json in the run directory.</p>")
    for p in pngs:
        parts.append(img(base64.b64encode(p.read_bytes()).decode("ascii"), p.name, p.name))
    return "".join(parts) if pngs else ""


def markdown_html(md: str) -> str:
    """The small Markdown subset claims.md uses: headings, pipe tables, lists, paragraphs, `code`."""

    def inline(s: str) -> str:
        s = esc(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)

    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in block[1:] if not all(re.fullmatch(r":?-{2,}:?", c) for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in block[0]) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body) + "</tbody></table>")
            continue
        m = re.match(r"(#{1,6})\s+(.*)", line)
        if m:
            level = min(len(m.group(1)) + 2, 6)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif re.match(r"\s*[-*]\s+", line):
            item = inline(re.sub(r"^\s*[-*]\s+", "", line))
            out.append(f"<ul><li>{item}</li></ul>")
        elif line:
            out.append(f"<p>{inline(line)}</p>")
        i += 1
    return "\n".join(out)


def section_claims(run_dir: Path) -> str:
    parts = []
    if (run_dir / "claims.md").exists():
        parts.append(markdown_html((run_dir / "claims.md").read_text(encoding="utf-8")))
    elif (run_dir / "claims.json").exists():
        parts.append(table(["key", "value"], list(_flatten(_read_json(run_dir / "claims.json")).items())))
    worst = run_dir / "worst_cases.jsonl"
    if worst.exists() and worst.stat().st_size:
        rows = read_jsonl(worst, required=("text",))[:MAX_EXAMPLES]
        keys = [k for k in rows[0] if isinstance(rows[0][k], (str, int, float)) and k not in ("template_id", "order", "pair_id")][:8]
        parts.append("<p class='note'>Worst cases (worst_cases.jsonl):</p>" + table(keys, [[r.get(k, "") for k in keys] for r in rows]))
    return "".join(parts)


def _load(run_dir: Path) -> RunData:
    if (run_dir / "results.jsonl").exists():
        return load_run(run_dir)
    if not run_dir.is_dir():
        raise AdvgenError(f"run directory not found: {run_dir}")
    man = _read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
    circ = _read_json(run_dir / "circuit.json") if (run_dir / "circuit.json").exists() else None
    if not man and not any(run_dir.glob("*.png")) and not (run_dir / "claims.md").exists() and not (run_dir / "claims.json").exists():
        raise AdvgenError(f"{run_dir} has nothing to report: no results.jsonl, manifest.json, PNG heatmaps or claims")
    return RunData(run_dir, (), man, {}, circ)


def build_report(run_dir: str | Path, out_html: str | Path, model: str | None = None, circuit: str | None = None,
                 attention: bool = True) -> Path:
    """Write one self-contained HTML report of `run_dir` to `out_html` (atomically)."""
    d, out = Path(run_dir), Path(out_html)
    data = _load(d)
    sections = [
        ("Run", section_run(data)),
        ("Summary", section_summary(data)),
        ("Failure modes", section_modes(data)),
        ("Logit-difference histograms", section_histograms(data)),
        ("Duplicated-IO dose response", section_dose(data)),
        ("Confirmed adversarial examples", section_examples(data)),
        ("Attention of the circuit's heads", section_attention(data, model, circuit) if attention and data.rows else ""),
        ("Discovery heatmaps", section_discovery(d, out)),
        ("Claim check", section_claims(d)),
    ]
    body = "".join(f"<section><h2>{esc(t)}</h2>{h}</section>\n" for t, h in sections if h)
    title = f"advgen report: {d.resolve().name}"
    doc = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>\n{body}</body></html>\n")
    return atomic_write_text(out, doc)
