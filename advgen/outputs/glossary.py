"""The one glossary of the terms advgen's tables use: the report's legend and the console's "Terms:" line.

Each definition is written once, here. The report shows the entries as a definition list; the
console states the same definitions under its own short column labels (`terms_line`).
"""

from __future__ import annotations

from collections.abc import Sequence

from advgen.outputs.htmlparts import esc

LEGEND = {
    "LD": (
        'logit difference, logit(" IO") - logit(" S"), read at each prompt\'s own END token; > 0 means the model prefers the '
        "right name"
    ),
    "mean LD [95 % CI]": "mean LD over the rows, with a seeded percentile-bootstrap 95 % interval",
    "LD > 0": "fraction of prompts where IO beats S (accuracy)",
    "S > IO": "fraction of prompts where the subject beats the indirect object (LD < 0): the failure rate",
    "mean IO prob": 'mean softmax probability of " IO" at END',
    "IO top-1": 'fraction of prompts where " IO" is the model\'s top token',
    "clean / control / attack": (
        "the unmodified prompt; the matched control (same edit without the mechanism); the circuit-predicted attack"
    ),
    "random sample / search": (
        "candidates drawn uniformly (unbiased estimates) / candidates the screen picked by the predicted "
        "signal (biased toward breaks)"
    ),
    "predicted": "the sign of LD(attack) - LD(control) the circuit's mechanism predicts",
    "seen": "the measured paired LD(attack) - LD(control) on the random sample, mean [95 % CI]",
    "verdict": (
        "confirmed: the interval excludes 0 on the predicted side; falsified: it excludes 0 on the other side; "
        "inconclusive: it contains 0"
    ),
    "breaks": "attacks with LD < 0 whose clean prompt had LD > 0",
    "explained (of breaks)": (
        "share of breaks whose predicted internal signal (a circuit head's attention, against its clean prompt) "
        "moved in the predicted direction; it says nothing about the mode's overall prediction: see verdict"
    ),
    "attributable yield": (
        "the headline: guided breaks whose matched control does not break (control LD >= 0), per 1,000 "
        "guided model evaluations, against random-perturbation breaks per 1,000 at the same budget; a break "
        "the control shares is the edit's (its length, its distraction), not the circuit's mechanism"
    ),
    "raw yield": (
        "every confirmed break per 1,000 model evaluations, against random, control-shared ones included: the figure "
        "for building test sets, not evidence for the circuit"
    ),
    "yield": (
        "confirmed breaks per 1,000 model evaluations; ratio = circuit-guided / random-perturbation baseline at the same budget"
    ),
    "dose": "how many times the attack's edit is applied (e.g. repeated IO mentions)",
    "pairs": "attack/control pairs in the unbiased random sample",
    "task LD": "logit(answer) - logit(foil) at the prompt's own END token, by the task's answer and foil rules",
    "task LD > 0": "fraction of prompts where the answer beats the foil (accuracy)",
    "foil > answer": "fraction of prompts where the foil beats the answer (LD < 0): the failure rate",
    "answer prob": "mean softmax probability of the answer at END",
}


RUN_TERMS = ("LD", "mean LD [95 % CI]", "LD > 0", "S > IO", "mean IO prob", "IO top-1")
"""The columns of a plain run's tables (no attack families)."""


CONSOLE_ONLY = ("pairs", "task LD", "task LD > 0", "foil > answer", "answer prob")
"""Entries only the console states (its column labels and task runs); the report's legend leaves them out."""


def legend(terms: Sequence[str] | None = None) -> str:
    """The report's legend: `terms` (None: every report entry)."""
    keys = [k for k in LEGEND if (k in terms if terms is not None else k not in CONSOLE_ONLY)]
    return "<dl class='legend'>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(LEGEND[k])}</dd>" for k in keys) + "</dl>"


def terms_line(labels: Sequence[tuple[str, str]]) -> str:
    """(console label, glossary key) pairs as one "label = definition; ..." line."""
    return "; ".join(f"{label} = {LEGEND[key]}" for label, key in labels) + "."


CONSOLE_RUN = (("LD", "LD"), ("accuracy", "LD > 0"), ("S>IO", "S > IO"), ("IO prob", "mean IO prob"))
CONSOLE_TASK_RUN = (
    ("LD", "task LD"),
    ("accuracy", "task LD > 0"),
    ("foil>answer", "foil > answer"),
    ("answer prob", "answer prob"),
)
CONSOLE_ATTACK = (
    ("LD", "LD"),
    ("pairs", "pairs"),
    ("predicted", "predicted"),
    ("seen", "seen"),
    ("verdict", "verdict"),
    ("break", "breaks"),
    ("attributable yield", "attributable yield"),
    ("raw yield", "raw yield"),
)
