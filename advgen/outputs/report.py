"""One self-contained HTML report of a run directory: verdict first, then tables, plots, no network.

The first screen says what the run found (per-mode verdicts and the yield for an attack run; the
headline of a plain run, a discovery or a claim check) and defines every column. Each further
section appears only when its inputs exist (results.jsonl, modes.json, duplicated-IO doses, a
circuit, discovery PNGs, claims.md). Only the attention views run a model, on two example prompts;
the interactive one inlines the circuitsvis bundle, so the file opens offline. The sections computed
from the rows are `advgen.outputs.report_sections`.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.circuits.discovery_doc import Curves, DiscoveryDoc, read_discovery
from advgen.core.files import atomic_write_text, read_jsonl, read_text
from advgen.core.manifest_doc import read_manifest
from advgen.core.types import AdvgenError
from advgen.outputs import claims_view, glossary, plots, verdict
from advgen.outputs.htmlparts import esc, fmt, img, markdown_html, table
from advgen.outputs.report_sections import (
    MAX_EXAMPLES,
    flatten,
    section_dose,
    section_examples,
    section_histograms,
    section_modes,
    section_summary,
)
from advgen.outputs.rundata import RunData, load_run, read_circuit
from advgen.outputs.runinfo import provenance, section_run, source_label

__all__ = ["build_report", "esc", "fmt", "img", "markdown_html", "provenance", "section_run", "table"]

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;
display:block;margin:.5em 0}code{background:#f4f4f4;padding:0 .2em}.note{color:#666;font-size:.9em}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}#verdict{border:2px solid #444;border-radius:6px;padding:.2em 1em .6em;background:#fafafa}
#verdict h2{margin-top:.6em}table.verdict{font-size:1em}.v{font-weight:bold;padding:0 .3em;border-radius:3px}
.v.ok{background:#d4edda;color:#155724}.v.bad{background:#f8d7da;color:#721c24}.v.unclear{background:#eee;color:#555}
.finding,.yield{font-size:1.05em}dl.legend{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.85em;
margin:.4em 0}dl.legend dt{font-weight:bold}dl.legend dd{margin:0}"""


def _read_json(path: Path) -> Any:
    return verdict.read_json(path)


def example_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The clean prompt and one attack on it (a confirmed break if there is one)."""
    attacks = [r for r in rows if r.get("family") == "attack"]
    pick = next((r for r in attacks if r.get("is_break")), attacks[0] if attacks else None)
    clean = {r.get("pair_id"): r for r in rows if r.get("family") == "clean"}
    if pick is not None and pick.get("pair_id") in clean:
        return [("clean", clean[pick["pair_id"]]), (f"attack ({pick.get('mode')})", pick)]
    first = next((r for r in rows if r.get("family") == "clean"), rows[0] if rows else None)
    return [("clean", first)] if first is not None else []


def section_attention(
    data: RunData, model_spec: str | None, circuit_spec: str | None, device: str = "auto", dtype: str = "float32"
) -> tuple[str, str]:
    """(heatmaps, interactive circuitsvis view) of the circuit's heads on the example prompts; one model run."""
    from advgen.circuits.format import resolve_circuit
    from advgen.outputs import attention

    if circuit_spec:
        circuit = resolve_circuit(circuit_spec)
    elif data.circuit is not None:
        circuit = data.circuit
    else:
        return "", ""  # no circuit, no heads to draw (`--circuit` names one for a plain run)
    examples = example_rows(data.rows)
    if not examples:
        return "", ""
    from advgen.model.loading import load_model

    spec = model_spec or data.model_spec
    try:
        model = load_model(spec, device=device, dtype=dtype)
    except AdvgenError as e:
        if model_spec:
            raise
        print(f"advgen report: attention views skipped: {e}", file=sys.stderr)
        return f"<p class='note'>Attention heatmaps skipped: {esc(e)} (pass <code>--model</code>).</p>", ""
    circuit.check_against(model.n_layers, model.n_heads)
    every = attention.pick_heads(circuit, per_role=8)  # the interactive view shows more heads than the figures
    chosen = attention.pick_heads(circuit)
    exs = attention.patterns(model, [h for h, _ in every], examples)
    name = source_label(model.name) if Path(model.name).is_absolute() else model.name
    parts = [
        f"<p class='note'>Model <code>{esc(name)}</code>, circuit <code>{esc(circuit.name)}</code>; "
        f"up to two heads per role (up to eight in the interactive view). Prompts: "
        + "; ".join(f"{esc(e.label)}: <code>{esc(r['text'])}</code>" for e, (_, r) in zip(exs, examples, strict=True))
        + "</p>"
    ]
    for head, role in chosen:
        fig = plots.attention_pair(str(head), role, [(e.label, e.tokens, e.patterns[head]) for e in exs])
        parts.append(img(plots.png_b64(fig), f"attention {head}"))
    try:
        view = (
            "<p class='note'>circuitsvis <code>AttentionHeads</code>: pick a head, hover a token to see where it "
            "attends (rows: query, columns: key).</p>" + attention.interactive_html(exs, every)
        )
    except AdvgenError as e:
        print(f"advgen report: interactive attention view skipped: {e}", file=sys.stderr)
        view = f"<p class='note'>Interactive view skipped: {esc(e)}</p>"
    return "".join(parts), f"<div id='advgen-circuitsvis'>{view}</div>"


def section_discovery(run_dir: Path, exclude: Path) -> str:
    from advgen.circuits.discovery_plots import FILE_TITLES

    titles = {
        **FILE_TITLES,
        "attribution_vs_activation.png": "attribution estimate against activation patching effect, per head and position",
    }
    same_dir = exclude.parent.resolve() == run_dir.resolve()
    order = list(titles)
    pngs = sorted(
        (p for p in run_dir.glob("*.png") if not (same_dir and p.name.startswith(exclude.stem))),
        key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name),
    )
    parts, curves, doc = [], "", read_discovery(run_dir)
    if doc is not None:
        curves = _curves_html(doc.faithfulness_curves if isinstance(doc, DiscoveryDoc) else None)
        parts += ["<p class='note'>Scores: discovery.json in the run directory.</p>", curves]
    for p in pngs:
        cap = f"{p.name}: {titles[p.name]}" if p.name in titles else p.name
        parts.append(img(base64.b64encode(p.read_bytes()).decode("ascii"), p.name, cap))
    return "".join(parts) if pngs or curves else ""


def _curves_html(fc: Curves | None) -> str:
    """Faithfulness at MIB's sizes per ranking, with CPR and CMD (advgen.circuits.curves); '' before the curves existed."""
    if fc is None or fc.signed is None:
        return ""
    curves = fc.rankings()
    rows = [
        [f"{p.size:g} ({p.n_heads} heads)", *(fmt(q.faithfulness if (q := c.at(p.size)) else None) for c in curves.values())]
        for p in fc.signed.sizes or ()
        if p.size is not None
    ]
    rows += [
        ["CPR (area under)", *(fmt(c.cpr) for c in curves.values())],
        ["CMD (area between it and 1)", *(fmt(c.cmd) for c in curves.values())],
    ]
    return (
        "<p class='note'>Faithfulness (mean LD, (m(C) - m(empty)) / (m(M) - m(empty))) of the top-k heads by "
        f"{esc(fc.rank_score)}, "
        f"{esc(fc.ablation)} ablation of the rest, at MIB's sizes over {fc.n_nodes} heads (MLPs kept). MIB reads CPR off the "
        "signed ranking and CMD off the absolute one.</p>" + table(["size", *curves], rows)
    )


def section_claims(run_dir: Path) -> str:
    parts = []
    if (run_dir / "claims.md").exists():
        parts.append(markdown_html(read_text(run_dir / "claims.md", "claims table")))
    elif (run_dir / "claims.json").exists():
        parts.append(table(["key", "value"], list(flatten(_read_json(run_dir / "claims.json")).items())))
    worst = run_dir / "worst_cases.jsonl"
    if worst.exists() and worst.stat().st_size:
        rows = read_jsonl(worst, required=("text",))[:MAX_EXAMPLES]
        keys = [k for k in rows[0] if isinstance(rows[0][k], (str, int, float)) and k not in ("template_id", "order", "pair_id")][
            :8
        ]
        parts.append(
            "<p class='note'>Worst cases (worst_cases.jsonl):</p>" + table(keys, [[r.get(k, "") for k in keys] for r in rows])
        )
    return "".join(parts)


MEASURED = ("results.jsonl", "discovery.json", "claims.md", "claims.json")


def _load(run_dir: Path) -> RunData:
    """The run's data; a directory with nothing measured (e.g. `advgen generate` output) is refused, naming what it holds."""
    if (run_dir / "results.jsonl").exists():
        return load_run(run_dir)
    if not run_dir.is_dir():
        raise AdvgenError(f"run directory not found: {run_dir}")
    if not any((run_dir / f).exists() for f in MEASURED) and not any(run_dir.glob("*.png")):
        held = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
        hint = (
            f"; prompts without model outputs: run `advgen validate {run_dir / 'prompts.jsonl'} --out DIR` and report DIR"
            if "prompts.jsonl" in held
            else ""
        )
        raise AdvgenError(
            f"{run_dir} has nothing to report: no results.jsonl, discovery.json, claims or PNG heatmaps "
            f"(it holds: {', '.join(held) or 'nothing'}){hint}"
        )
    man = read_manifest(run_dir / "manifest.json")  # its record, or a named error (advgen.core.manifest_doc)
    return RunData(run_dir, (), man, {}, read_circuit(run_dir))


def _check_report_out(run_dir: Path, out: Path) -> None:
    """Refuse --out naming a directory or one of the run's own files (the report reads them)."""
    if out.is_dir():
        raise AdvgenError(f"--out {out} is an existing directory; name the HTML file to write, e.g. {out / 'report.html'}")
    inside = run_dir.is_dir() and out.resolve().parent == run_dir.resolve()
    if out.exists() and inside and out.suffix.lower() not in (".html", ".htm"):
        raise AdvgenError(f"--out {out} is one of the run's own input files; write the report to an .html path")


def _sections(d: Path, out: Path, data: RunData, heatmaps: str, view: str) -> tuple[str, list[tuple[str, str]]]:
    """The verdict panel and every titled section (the caller drops empty ones)."""
    if data.summary.get("objective") == "divergence":  # a divergence search: its comparison is the verdict
        md = read_text(d / "table.md") if (d / "table.md").is_file() else ""
        panel = (
            "<p class='note'>A divergence search (advgen attack --objective divergence): the guided search against a random "
            "search of the same budget, and the prompts where the circuit and the model part most. The rows below are that "
            "test set (results.jsonl), worst first.</p>" + markdown_html(md)
        )
    else:
        panel = verdict.panel(d, data.summary, data.rows)
    return panel, [
        ("Run", section_run(data)),
        ("Summary", section_summary(data)),
        ("Failure modes", section_modes(data)),
        ("Logit-difference histograms", section_histograms(data)),
        ("Duplicated-IO dose response", section_dose(data)),
        ("Confirmed adversarial examples", section_examples(data)),
        ("Attention of the circuit's heads", heatmaps),
        ("Interactive attention (circuitsvis)", view),
        ("Discovery heatmaps", section_discovery(d, out)),
        ("Claim check", section_claims(d)),
        ("Claim check: causal scrubbing and absolute performance", claims_view.section(d)),
        ("Claim check: does the circuit make the model's errors?", claims_view.agreement_section(d)),
    ]


def build_report(
    run_dir: str | Path,
    out_html: str | Path,
    model: str | None = None,
    circuit: str | None = None,
    attention: bool = True,
    device: str = "auto",
    dtype: str = "float32",
) -> Path:
    """Write one self-contained HTML report of `run_dir` to `out_html` (atomically)."""
    d, out = Path(run_dir), Path(out_html)
    _check_report_out(d, out)
    data = _load(d)
    heatmaps, view = section_attention(data, model, circuit, device, dtype) if attention and data.rows else ("", "")
    try:  # documents are typed when read (their records); a field no schema names still ends in a named error
        panel, sections = _sections(d, out, data, heatmaps, view)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise AdvgenError(
            f"{d}: a document of this run has a field of a type the report cannot read "
            f"({type(e).__name__}: {str(e)[:120]}); rerun the command that wrote it"
        ) from None
    terms = None if any(r.get("family") == "attack" for r in data.rows) else glossary.RUN_TERMS
    key = glossary.legend(terms) if data.rows else ""
    first = ""
    if panel:
        legend = f"<details open><summary>Legend: every column in this report</summary>{key}</details>" if key else ""
        first = f"<section id='verdict'><h2>Verdict</h2>{panel}{legend}</section>\n"
    elif key:
        sections.insert(2, ("Legend", key))
    body = first + "".join(f"<section><h2>{esc(t)}</h2>{h}</section>\n" for t, h in sections if h)
    title = f"advgen report: {d.resolve().name}"
    doc = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>\n{body}</body></html>\n"
    )
    return atomic_write_text(out, doc)
