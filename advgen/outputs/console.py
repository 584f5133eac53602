"""What the CLI prints after a run or an attack: at most 100 columns, every term defined.

The full tables stay in the run directory (table.md, summary.json); the console says what was
found and where to look, in the words the report's legend uses.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.attacks.summary import RunYield
from advgen.outputs import glossary, verdict
from advgen.outputs.run_summary import RunSummary

WIDTH = 100

RUN_TERMS = glossary.terms_line(glossary.CONSOLE_RUN)
ATTACK_TERMS = glossary.terms_line(glossary.CONSOLE_ATTACK)


def wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False)


def terms(text: str) -> str:
    return wrap("Terms: " + text)


TASK_RUN_TERMS = glossary.terms_line(glossary.CONSOLE_TASK_RUN)


def run_summary(summary: RunSummary | Mapping[str, Any], task: str = "ioi") -> str:
    """A `run` / `validate` summary (the record, or summary.json as written) in one line, and its terms."""
    s = summary if isinstance(summary, RunSummary) else RunSummary.from_dict(summary, "summary.json")
    st, ci = s.stats, s.stats.logit_diff_ci95
    ioi = task == "ioi"
    line = (
        f"{'' if ioi else f'task {task}  '}n={st.n}  mean LD={st.mean_logit_diff:.3f} [{ci.low:.3f}, {ci.high:.3f}]  "
        f"accuracy={st.accuracy:.3f}  {'S>IO' if ioi else 'foil>answer'}={st.s_beats_io_rate:.3f}  "
        f"{'IO prob' if ioi else 'answer prob'}={st.mean_io_prob:.3f}"
        + (f"  PD={s.prob_diff.mean:.3f}" if s.prob_diff is not None else "")
    )
    return wrap(line) + "\n" + terms(RUN_TERMS if ioi else TASK_RUN_TERMS)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in (1, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        line = "  " + "  ".join(cells).rstrip()
        out.append(line)
    return out


def attack_summary(summary: Mapping[str, Any], run_dir: Path, evaluations: Mapping[str, int] | None = None) -> str:
    """Natural failure rate, one line per mode (predicted vs seen, verdict), the yield, the terms, where the tables are."""
    lines = []
    s = verdict.attack_record(run_dir, summary)
    if s.natural_failure_rate is not None:
        lines.append(
            wrap(f"Natural failure rate: S>IO on {100 * s.natural_failure_rate:.1f} % of the clean prompts, before any attack.")
        )
    vs = verdict.mode_verdicts(s)
    if vs:
        rows = [["mode", "pairs", "predicted", "seen [95 % CI]", "breaks", "verdict"]]
        for v in vs:
            pred = "< 0" if "<" in v.predicted else "> 0" if ">" in v.predicted else v.predicted
            rows.append([v.mode, str(v.n if v.n is not None else "-"), pred, v.seen, v.breaks or "-", v.verdict])
        table = _table(rows)
        if max(map(len, table)) > WIDTH:  # the terms below define the verdicts; drop their reasons to fit
            table = _table([r[:-1] + [re.sub(r"\s*\(.*\)$", "", r[-1])] for r in rows])
        lines += table
    acc = s.prediction_accuracy
    if acc is not None and acc.compiled_cells:
        lines.append(
            wrap(
                f"Compiled predictions: of {acc.compiled_cells} compiled cells, {acc.confirmed} confirmed, "
                f"{acc.falsified} falsified, {acc.inconclusive} inconclusive (each cell's predicted sign of "
                "LD(attack) - LD(control), tested on the random sample)."
            )
        )
    lines += [wrap(f"Falsified {cell}, measured cause ({c.cause}): {c.text}.") for cell, c in s.falsified_causes.items()]
    y = verdict.run_yield(s)
    if y is not None:
        lines += yield_lines(y)
    if evaluations:
        lines.append(wrap("Model evaluations: " + ", ".join(f"{k} {v}" for k, v in evaluations.items()) + "."))
    lines.append(terms(ATTACK_TERMS))
    lines.append(
        wrap(
            f"Full tables (by parameter, explained breaks, screening): {run_dir / 'table.md'}; "
            f"HTML: advgen report {run_dir} --out {run_dir / 'report.html'}"
        )
    )
    return "\n".join(lines)


def _ratio(r: float | None) -> str:
    return "n/a: the random baseline found no break" if r is None else f"ratio {r:.2f}x"


def yield_lines(y: RunYield) -> list[str]:
    """Attributable yield (the headline), then raw yield labelled for test sets."""
    raw = (
        f"Raw yield (for building test sets): {y.guided_per_1000:.1f} breaks per 1,000 guided evaluations, "
        f"{y.random_per_1000:.1f} from random perturbation ({_ratio(y.ratio)})."
    )
    if y.attributable_per_1000 is None:
        return [wrap("Attributable yield: not recorded (run directory from before control_breaks)."), wrap(raw)]
    shared = "" if y.control_shared_breaks is None else f"; {y.control_shared_breaks} breaks whose control broke too left out"
    return [
        wrap(
            f"Attributable yield: {y.attributable_per_1000:.1f} breaks per 1,000 guided evaluations whose control does "
            f"not break, {y.random_per_1000:.1f} from random perturbation ({_ratio(y.attributable_ratio)}{shared})."
        ),
        wrap(raw),
    ]


def wrote(out: Path, names: Sequence[str]) -> str:
    return wrap(f"wrote {out}/: " + ", ".join(names))
