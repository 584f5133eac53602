"""The report's first screen: what the run found (per-mode verdicts, yield) and a legend of every column.

Attack runs record their verdicts in summary.json (`modes.<m>.predicted_sign / seen / verdict`,
top-level `yield`); older run directories only have them in modes.json (`prediction`) and
baseline.json, so both are read, newest first. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import files
from advgen.outputs.docschema import check_doc
from advgen.outputs.htmlparts import Raw, esc, table


@dataclass(frozen=True)
class ModeVerdict:
    """One failure mode's prediction against what the random sample showed."""

    mode: str
    predicted: str
    seen: str
    n: int | None
    verdict: str
    breaks: str


@dataclass(frozen=True)
class Yield:
    """Confirmed breaks per 1,000 model evaluations, circuit-guided against the random baseline.

    `guided`/`ratio` are the raw yield (every break: for building test sets); `attributable` and
    `attributable_ratio` count only breaks whose matched control does not break (the circuit's
    evidence, the headline). Run directories older than issue 28 lack them (None).
    """

    guided: float
    random: float
    ratio: float | None
    attributable: float | None = None
    attributable_ratio: float | None = None
    control_shared: int | None = None
    """Guided breaks whose control broke too."""


def read_json(path: Path) -> Any:
    """JSON of a run-directory file, or None when it is absent; a broken file names itself."""
    if not path.exists():
        return None
    doc = files.read_json(path)  # not UTF-8, a directory, bad JSON: named errors (advgen.core.files)
    check_doc(doc, path)  # a field of the wrong type: named too (advgen.outputs.docschema)
    return doc


def _sign_word(sign: Any) -> str:
    if isinstance(sign, str):
        return sign
    if isinstance(sign, (int, float)) and sign:
        return "LD(attack) < LD(control)" if sign < 0 else "LD(attack) > LD(control)"
    return "not recorded"


def _seen_text(seen: Any) -> str:
    if isinstance(seen, Mapping) and {"mean", "low", "high"} <= set(seen):
        if not all(isinstance(seen[k], (int, float)) for k in ("mean", "low", "high")):
            return "no pairs measured" if not seen.get("n") else "n/a"  # NaN is written null
        return f"{seen['mean']:+.2f} [{seen['low']:+.2f}, {seen['high']:+.2f}]"
    if isinstance(seen, Mapping):
        return "no pairs measured" if not seen.get("n") else "not recorded"
    if isinstance(seen, (int, float)) and not isinstance(seen, bool):
        return f"{seen:+.2f}"
    return "not recorded" if seen is None else str(seen)


def _breaks(entry: Mapping[str, Any] | None) -> str:
    rs = (entry or {}).get("random_sample") or {}
    att = rs.get("attack") or {}
    if "breaks" not in rs:
        return ""
    return f"{rs['breaks']} of {att.get('n', '?')}"


def mode_verdicts(summary: Mapping[str, Any], modes_doc: Mapping[str, Any] | None) -> list[ModeVerdict]:
    """Per mode: predicted sign, seen paired difference [95 % CI], verdict; summary.json first, then modes.json."""
    raw = summary.get("modes")
    s_modes: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    m_modes = (modes_doc or {}).get("modes") or {}
    out = []
    for name in list(dict.fromkeys([*s_modes, *m_modes])):
        s = s_modes.get(name) or {}
        pred = (m_modes.get(name) or {}).get("prediction") or {}
        sign = s.get("predicted_sign", pred.get("expected_sign"))
        seen = s.get("seen", pred.get("attack_minus_control"))
        n = seen.get("n") if isinstance(seen, Mapping) and "n" in seen else pred.get("n")
        verdict = str(s.get("verdict") or pred.get("verdict") or "not recorded")
        out.append(ModeVerdict(name, _sign_word(sign), _seen_text(seen), n, verdict, _breaks(m_modes.get(name) or s)))
    return out


def run_yield(summary: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> Yield | None:
    y = summary.get("yield")
    if isinstance(y, Mapping) and "guided_per_1000" in y:
        att = y.get("attributable_per_1000")
        return Yield(_num(y["guided_per_1000"]), _num(y.get("random_per_1000")), y.get("ratio"),
                     None if att is None else _num(att), y.get("attributable_ratio"), y.get("control_shared_breaks"))
    b = baseline or (summary.get("baseline") if isinstance(summary.get("baseline"), Mapping) else None)
    if b and isinstance(b.get("guided"), Mapping) and "breaks_per_1000" in b["guided"]:
        g = b["guided"]
        att = g.get("attributable_per_1000")
        return Yield(_num(g["breaks_per_1000"]), _num((b.get("baseline") or {}).get("breaks_per_1000")), b.get("ratio"),
                     None if att is None else _num(att), b.get("attributable_ratio"), g.get("control_shared_breaks"))
    return None


def _num(x: Any) -> float:
    """A number as read (null, for NaN, and absence become nan)."""
    return float(x) if isinstance(x, (int, float)) else float("nan")


def verdict_class(verdict: str) -> str:
    v = verdict.lower()
    return "ok" if v.startswith("confirmed") else "bad" if v.startswith("falsified") else "unclear"


def _ratio(r: float | None) -> str:
    return "n/a (the random baseline found no break)" if r is None else f"{r:.2f}x"


def _yield_html(y: Yield) -> str:
    """Attributable yield first (the circuit's evidence), raw yield beside it (for test sets)."""
    raw = (f"<b>Raw yield</b> (every break; the figure for building test sets): circuit-guided {y.guided:.1f} vs random "
           f"{y.random:.1f} confirmed breaks per 1,000 model evaluations; ratio {esc(_ratio(y.ratio))}.")
    if y.attributable is None:
        return (f"<p class='yield'>{raw}</p><p class='note'>Attributable yield: not recorded (a run directory from before "
                "advgen recorded whether each break's control broke too).</p>")
    r = y.attributable_ratio
    better = ("" if r is None or r == 1 else " (the circuit's mechanism beat random perturbation)" if r > 1
              else " (random perturbation found breaks faster than the circuit's mechanism)")
    shared = "" if y.control_shared is None else f"; {y.control_shared} breaks shared by their control left out"
    return (f"<p class='yield'><b>Attributable yield</b>: circuit-guided {y.attributable:.1f} breaks whose control does not "
            f"break vs random {y.random:.1f} breaks per 1,000 model evaluations; ratio <b>{esc(_ratio(r))}</b>{esc(better)}"
            f"{esc(shared)}.</p><p class='note'>{raw}</p>")


def attack_panel(run_dir: Path, summary: Mapping[str, Any]) -> str:
    modes_doc = read_json(run_dir / "modes.json")
    verdicts = mode_verdicts(summary, modes_doc)
    if not verdicts:
        return ""
    rows = [[v.mode, v.predicted, v.seen, v.n if v.n is not None else "", Raw(f"<span class='v {verdict_class(v.verdict)}'>{esc(v.verdict)}</span>"),
             v.breaks] for v in verdicts]
    html_ = table(["mode", "predicted", "seen: LD(attack) - LD(control) [95 % CI]", "n pairs", "verdict", "breaks (random sample)"],
                  rows, cls="verdict")
    y = run_yield(summary, read_json(run_dir / "baseline.json"))
    nat = summary.get("natural_failure_rate")
    html_ += _yield_html(y) if y else "<p class='note'>Yield: not recorded (no baseline.json).</p>"
    if isinstance(nat, (int, float)):
        html_ += f"<p class='note'>Natural failure rate (S &gt; IO on the unmodified clean prompts): {nat:.3f}.</p>"
    causes = summary.get("falsified_causes")
    if isinstance(causes, Mapping) and causes:  # collapsed: the panel must still fit the first screen
        items = "".join(f"<li><code>{esc(k)}</code> ({esc(c.get('cause', '?'))}): {esc(c.get('text', ''))}</li>" for k, c in causes.items())
        html_ += f"<details><summary>{len(causes)} falsified cell(s): measured cause</summary><ul>{items}</ul></details>"
    return html_


def run_panel(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain run's finding: how often the model prefers IO, and by how much."""
    clean = [r for r in rows if r.get("family", "clean") == "clean"] or list(rows)
    if not clean:
        return ""
    ld = [float(r["logit_diff"]) for r in clean]
    acc = sum(x > 0 for x in ld) / len(ld)
    return (f"<p class='finding'>On {len(ld)} clean prompts the model puts IO above S in <b>{100 * acc:.1f} %</b> "
            f"(mean LD {sum(ld) / len(ld):.2f}).</p>")


def discovery_panel(run_dir: Path) -> str:
    doc = read_json(run_dir / "discovery.json")
    if not isinstance(doc, Mapping) or "roles_found" not in doc:
        return ""
    heads = doc.get("heads") or {}
    found, missing = doc.get("roles_found") or [], doc.get("roles_missing") or []
    return (f"<p class='finding'>Discovery kept <b>{len(heads)} heads</b>; roles found: <b>{esc(', '.join(found) or 'none')}</b>; "
            f"missing: {esc(', '.join(missing) or 'none')}.</p>")


def claims_panel(run_dir: Path) -> str:
    doc = read_json(run_dir / "claims.json")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("table"), Mapping):
        return ""
    paper = doc.get("paper_setting")
    row = doc["table"].get(paper) or {}
    ratio = row.get("ratio_to_model")
    if isinstance(ratio, Mapping):
        ratio = ratio.get("mean")
    if not isinstance(ratio, (int, float)):
        return ""
    needed = (doc.get("minimality") or {}).get("all_needed")
    return (f"<p class='finding'>Circuit <code>{esc(doc.get('circuit', '?'))}</code> keeps <b>F(C)/F(M) = {ratio:.3f}</b> of the "
            f"model's mean LD under the paper's ablation (<code>{esc(paper)}</code>); every head needed (minimality): {esc(needed)}.</p>")


def panel(run_dir: Path, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The verdict panel: attack verdicts and yield, else the run's, discovery's or claim check's headline."""
    return attack_panel(run_dir, summary) or "".join(
        p for p in (run_panel(rows) if rows else "", discovery_panel(run_dir), claims_panel(run_dir)) if p)
