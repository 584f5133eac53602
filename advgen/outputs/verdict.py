"""The report's first screen: what the run found (per-mode verdicts, yield) and a legend of every column.

Attack runs are read through one typed record (advgen.attacks.summary_read.read_attack_summary), which
also knows older run directories (verdicts only in modes.json, the yield only in baseline.json) and
reads those two through their records (advgen.attacks.tables_doc); nothing here reads a document's
keys itself. A claim check's claims.json is read through advgen.circuits.claims_doc.load_claims, a
discovery's discovery.json through advgen.circuits.discovery_doc.read_discovery. Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.attacks.summary import AttackSummary, ModeSummary, RunYield, Seen
from advgen.attacks.summary_read import read_attack_summary
from advgen.circuits.claims_doc import load_claims
from advgen.circuits.discovery_doc import read_discovery
from advgen.core import files
from advgen.outputs.htmlparts import Raw, esc, table


@dataclass(frozen=True)
class ModeVerdict:
    """One failure mode's prediction against what the random sample showed, as the panel and console word it."""

    mode: str
    predicted: str
    seen: str
    n: int | None
    verdict: str
    breaks: str


def read_json(path: Path) -> Any:
    """JSON of a run-directory file, or None when it is absent; a broken file names itself. The caller reads it
    through its record, which names a field of the wrong type."""
    if not path.exists():
        return None
    return files.read_json(path)  # not UTF-8, a directory, bad JSON: named errors (advgen.core.files)


def attack_record(run_dir: Path, summary: Mapping[str, Any]) -> AttackSummary:
    """`summary` (run_dir's summary.json, as read) typed; modes.json and baseline.json through their records."""
    return read_attack_summary(
        summary, run_dir / "summary.json", read_json(run_dir / "modes.json"), read_json(run_dir / "baseline.json")
    )


def _sign_word(sign: int | None) -> str:
    if not sign:
        return "not recorded"
    return "LD(attack) < LD(control)" if sign < 0 else "LD(attack) > LD(control)"


def _seen_text(seen: Seen | None) -> str:
    if seen is None:
        return "not recorded"
    ci = seen.interval
    if ci is None:
        return "no pairs measured" if not seen.n else "not recorded"
    if any(math.isnan(x) for x in (ci.mean, ci.low, ci.high)):
        return "no pairs measured" if not seen.n else "n/a"  # NaN is written null
    return f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}]"


def _breaks(m: ModeSummary) -> str:
    got = m.sample_breaks
    return "" if got is None else f"{got[0]} of {'?' if got[1] is None else got[1]}"


def mode_verdicts(s: AttackSummary) -> list[ModeVerdict]:
    """Per mode: predicted sign, seen paired difference [95 % CI], verdict, breaks in the random sample."""
    return [
        ModeVerdict(
            name,
            _sign_word(m.predicted_sign),
            _seen_text(m.seen),
            None if m.seen is None else m.seen.n,
            m.verdict or "not recorded",
            _breaks(m),
        )
        for name, m in s.modes.items()
    ]


def run_yield(s: AttackSummary) -> RunYield | None:
    """The run's yield, raw and attributable (None: the run directory records none)."""
    return s.yield_


def verdict_class(verdict: str) -> str:
    v = verdict.lower()
    return "ok" if v.startswith("confirmed") else "bad" if v.startswith("falsified") else "unclear"


def _ratio(r: float | None) -> str:
    return "n/a (the random baseline found no break)" if r is None else f"{r:.2f}x"


def _yield_html(y: RunYield) -> str:
    """Attributable yield first (the circuit's evidence), raw yield beside it (for test sets)."""
    raw = (
        f"<b>Raw yield</b> (every break; the figure for building test sets): circuit-guided {y.guided_per_1000:.1f} vs random "
        f"{y.random_per_1000:.1f} confirmed breaks per 1,000 model evaluations; ratio {esc(_ratio(y.ratio))}."
    )
    if y.attributable_per_1000 is None:
        return (
            f"<p class='yield'>{raw}</p><p class='note'>Attributable yield: not recorded (a run directory from before "
            "advgen recorded whether each break's control broke too).</p>"
        )
    r = y.attributable_ratio
    better = (
        ""
        if r is None or r == 1
        else " (the circuit's mechanism beat random perturbation)"
        if r > 1
        else " (random perturbation found breaks faster than the circuit's mechanism)"
    )
    shared = "" if y.control_shared_breaks is None else f"; {y.control_shared_breaks} breaks shared by their control left out"
    return (
        f"<p class='yield'><b>Attributable yield</b>: circuit-guided {y.attributable_per_1000:.1f} breaks whose control does "
        f"not break vs random {y.random_per_1000:.1f} breaks per 1,000 model evaluations; ratio <b>{esc(_ratio(r))}</b>"
        f"{esc(better)}{esc(shared)}.</p><p class='note'>{raw}</p>"
    )


def attack_panel(run_dir: Path, summary: Mapping[str, Any]) -> str:
    s = attack_record(run_dir, summary)
    verdicts = mode_verdicts(s)
    if not verdicts:
        return ""
    rows = [
        [
            v.mode,
            v.predicted,
            v.seen,
            v.n if v.n is not None else "",
            Raw(f"<span class='v {verdict_class(v.verdict)}'>{esc(v.verdict)}</span>"),
            v.breaks,
        ]
        for v in verdicts
    ]
    html_ = table(
        ["mode", "predicted", "seen: LD(attack) - LD(control) [95 % CI]", "n pairs", "verdict", "breaks (random sample)"],
        rows,
        cls="verdict",
    )
    y, nat = run_yield(s), s.natural_failure_rate
    html_ += _yield_html(y) if y else "<p class='note'>Yield: not recorded (no baseline.json).</p>"
    if nat is not None:
        html_ += f"<p class='note'>Natural failure rate (S &gt; IO on the unmodified clean prompts): {nat:.3f}.</p>"
    causes = s.falsified_causes
    if causes:  # collapsed: the panel must still fit the first screen
        items = "".join(f"<li><code>{esc(k)}</code> ({esc(c.cause)}): {esc(c.text)}</li>" for k, c in causes.items())
        html_ += f"<details><summary>{len(causes)} falsified cell(s): measured cause</summary><ul>{items}</ul></details>"
    return html_


def run_panel(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain run's finding: how often the model prefers IO, and by how much."""
    clean = [r for r in rows if r.get("family", "clean") == "clean"] or list(rows)
    if not clean:
        return ""
    ld = [float(r["logit_diff"]) for r in clean]
    acc = sum(x > 0 for x in ld) / len(ld)
    return (
        f"<p class='finding'>On {len(ld)} clean prompts the model puts IO above S in <b>{100 * acc:.1f} %</b> "
        f"(mean LD {sum(ld) / len(ld):.2f}).</p>"
    )


def discovery_panel(run_dir: Path) -> str:
    """Discovery's headline from its typed record: heads kept, roles found and missing ('' without roles_found)."""
    doc = read_discovery(run_dir)
    if doc is None or doc.roles_found is None:
        return ""
    heads, found, missing = doc.heads or {}, doc.roles_found, doc.roles_missing or ()
    return (
        f"<p class='finding'>Discovery kept <b>{len(heads)} heads</b>; roles found: <b>{esc(', '.join(found) or 'none')}</b>; "
        f"missing: {esc(', '.join(missing) or 'none')}.</p>"
    )


def claims_panel(run_dir: Path) -> str:
    """A claim check's headline from its typed record ('' without claims.json or its table)."""
    c = load_claims(run_dir)
    if c is None or c.table is None:
        return ""
    row = c.paper_row
    ratio = None if row is None or row.ratio_to_model is None else row.ratio_to_model.mean
    if ratio is None or math.isnan(ratio):
        return ""
    needed = None if c.minimality is None else c.minimality.all_needed
    circuit = "?" if c.circuit is None else c.circuit
    return (
        f"<p class='finding'>Circuit <code>{esc(circuit)}</code> keeps <b>F(C)/F(M) = {ratio:.3f}</b> of the "
        f"model's mean LD under the paper's ablation (<code>{esc(c.paper_setting)}</code>); every head needed (minimality): "
        f"{esc(needed)}.</p>"
    )


def panel(run_dir: Path, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The verdict panel: attack verdicts and yield, else the run's, discovery's or claim check's headline."""
    return attack_panel(run_dir, summary) or "".join(
        p for p in (run_panel(rows) if rows else "", discovery_panel(run_dir), claims_panel(run_dir)) if p
    )
