"""Failure modes of a generic task's circuit, compiled from its heads' behaviour records.

A rule reads measurements (`advgen.circuits.task_records`), never a task's or a model's name:

- **copy split.** A head whose END attention concentrates on the token after an earlier copy of
  END's token (`copy_next`) and writes what it attends to (DLA to answer - foil > 0) is an
  induction-like copier. Inserting, at the task's insertion point, another copy of END's token
  followed by the foil (`{E1} {E2}`, E1 = END's token, E2 = the foil) gives it a second
  `copy_next` target: its attention splits onto the foil and the metric moves against the DLA's
  sign. Control: the same insertion with E1 a fresh filler word (the foil gains the same mention,
  but no copy of END's token precedes it).
- **foil mention.** A head whose END attention goes to the answer token's own mention (not as a
  `copy_next`) and copies it: inserting extra foil mentions (`{E1} {E2}`, E1 a filler, E2 the
  foil) splits it onto the foil. Control: E2 a second filler (no extra foil mention).

Each mode's internal signal is its heads' END attention to the E2 mentions, which should rise
against the control. Cells are doses 1..`task.edits.max_dose` inserted pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advgen.circuits.format import Circuit
from advgen.core.types import Head

MIN_MASS = 0.25
"""A head 'concentrates' on a key group when its mean END attention there is at least this and no other group gets more."""
VALUE_KINDS = ("end", "foil", "filler")
"""What an inserted slot holds: END's token, the foil, or a fresh word of the filler lexicon."""


@dataclass(frozen=True)
class TaskMode:
    name: str
    heads: tuple[Head, ...]
    key: str
    """The record's key group the rule fired on (the clean prompt's attention there orders candidates)."""
    attack: tuple[str, str]
    """Kinds of E1 and E2 in the attack (VALUE_KINDS)."""
    control: tuple[str, str]
    expected_sign: int
    """Predicted sign of LD(attack) - LD(control), from the heads' DLA signs."""
    doses: tuple[int, ...]
    dla: float
    """Sum of the heads' mean DLA to answer - foil (the prior's shift scale)."""
    evidence: str
    mechanism: str
    edit: str = "pair"
    """"pair": `{E1} {E2}` pairs of VALUE_KINDS; "mention": values of the set rule's compared slot (`edits.mention`),
    of kind "foil_side" (a value the foil rule holds for, other than the clean one) or "same" (the clean value)."""

    @property
    def signal_slot(self) -> str:
        """The inserted slot whose mentions the heads' END attention is read on."""
        return "E" if self.edit == "mention" else "E2"

    def signal_names(self, dose: int) -> list[str]:
        return [self.signal_slot, *(f"{self.signal_slot}@{k}" for k in range(2, dose + 1))]

    def cell_key(self, dose: int) -> str:
        return f"{self.name}:dose={dose}"

    def predicted_shift(self, dose: int) -> float:
        """A rough LD shift for the prior: the heads' write moves from the answer to the foil by share dose / (dose + 1), both
        ways."""
        share = dose / (dose + 1)
        return -(2 if self.key == "copy_next" else 1) * share * self.dla

    def describe(self) -> dict[str, Any]:
        return {
            "heads": [str(h) for h in self.heads],
            "key": self.key,
            "attack": list(self.attack),
            "control": list(self.control),
            "expected_sign": self.expected_sign,
            "doses": list(self.doses),
            "compiled_from": self.evidence,
            "mechanism": self.mechanism,
            "edit": self.edit,
            "signal": {"query": "END", "keys": f"{self.signal_slot} (every mention)", "direction": "+1 vs the control"},
            "cells": self.cells(),
        }

    def cells(self) -> list[str]:
        """Cell keys: one per dose; a value-mention mode's also by gap (near or far from the clean value)."""
        gaps = ("near", "far") if self.edit == "mention" else ("",)
        return [self.cell_key(d) + (f":gap={g}" if g else "") for d in self.doses for g in gaps]


RULES: tuple[tuple[str, str, tuple[str, str], tuple[str, str], str], ...] = (
    (
        "compiled_copy_split",
        "copy_next",
        ("end", "foil"),
        ("filler", "foil"),
        "heads that attend from END to the token after an earlier copy of END's token split that attention onto the foil "
        "when another copy of END's token precedes it",
    ),
    (
        "compiled_foil_mention",
        "answer_mention",
        ("filler", "foil"),
        ("filler", "filler"),
        "heads that attend from END to the answer's own mention split that attention onto extra foil mentions",
    ),
)


def _concentrates(rec: Mapping[str, Any], key: str) -> bool:
    att = rec.get("attention", {})
    return att.get(key, 0.0) >= MIN_MASS and att.get(key, 0.0) >= max(att.values(), default=0.0)


def _why_not(h: Head, rec: Mapping[str, Any]) -> str:
    att = rec.get("attention", {})
    if not att:
        return f"{h}: no task record"
    top = max(sorted(att), key=lambda k: att[k])
    return f"{h}: END attention mostly on {top} ({att[top]:.2f}), DLA {rec.get('dla', 0.0):+.2f}"


def compile_task_modes(circuit: Circuit, max_dose: int) -> tuple[list[TaskMode], dict[str, str]]:
    """Modes the records imply, and for each rule that fired on no head, why (naming each head's measured attention)."""
    recs = {h.head: dict(h.behaviour) for h in circuit.heads}
    modes: list[TaskMode] = []
    skipped: dict[str, str] = {}
    for name, key, attack, control, mechanism in RULES:
        hits = [
            (h, r)
            for h, r in sorted(recs.items(), key=lambda kv: (kv[0].layer, kv[0].head))
            if _concentrates(r, key) and r.get("dla", 0.0) != 0.0
        ]
        if not hits:
            skipped[name] = f"no head attends from END mostly to {key} (>= {MIN_MASS}): " + "; ".join(
                _why_not(h, r) for h, r in recs.items()
            )
            continue
        dla = sum(float(r["dla"]) for _, r in hits)
        evidence = "; ".join(
            f"{h} (END attention to {key} {r['attention'][key]:.2f}, DLA {r['dla']:+.2f}: "
            f"{'copies' if r['dla'] > 0 else 'suppresses'} what it attends to, n = {r.get('n')})"
            for h, r in hits
        )
        modes.append(
            TaskMode(
                name,
                tuple(h for h, _ in hits),
                key,
                attack,
                control,
                -1 if dla > 0 else 1,
                tuple(range(1, max_dose + 1)),
                dla,
                evidence,
                mechanism,
            )
        )
    return modes, skipped


def signal_value(mode: TaskMode, signals: Mapping[str, float], dose: int) -> float:
    """Mean over the mode's heads of their END attention summed over the inserted mentions (E2, or E for a value mention)."""
    return sum(signals.get(f"{h}:END->{n}", 0.0) for h in mode.heads for n in mode.signal_names(dose)) / len(mode.heads)


def signal_reads(mode: TaskMode, dose: int) -> list[tuple[Head, str, str]]:
    return [(h, "END", n) for h in mode.heads for n in mode.signal_names(dose)]


DISTRACTOR = "compiled_value_distractor"
DISTRACTOR_MECHANISM = (
    "heads that carry the compared value from its mention to END also read an inserted value of the same kind; "
    "one on the foil side of the rule (e.g. an earlier year, for 'greater than') moves the answer set's "
    "probability to foils, against a control that inserts the clean value itself"
)


def compile_distractor(circuit: Circuit, compared: str, max_dose: int) -> tuple[list[TaskMode], dict[str, str]]:
    """The set-rule mode: heads whose END attention goes mostly to the compared slot's mention (record
    `attention_by_position`, >= MIN_MASS and no other position more). Its sign needs no DLA: a head whose read value
    reaches the answer through later MLPs is as much a carrier as one that writes it directly."""
    recs = {h.head: dict(h.behaviour) for h in circuit.heads}
    hits = []
    for h, r in sorted(recs.items(), key=lambda kv: (kv[0].layer, kv[0].head)):
        att = r.get("attention_by_position", {})
        if att.get(compared, 0.0) >= MIN_MASS and att.get(compared, 0.0) >= max(att.values(), default=0.0):
            hits.append((h, r))
    if not hits:
        why = "; ".join(
            f"{h}: END attention to {compared} {r.get('attention_by_position', {}).get(compared, 0.0):.2f}"
            for h, r in recs.items()
        )
        return [], {
            DISTRACTOR: f"no head attends from END mostly to the compared slot {compared} (>= {MIN_MASS}): {why or 'no heads'}"
        }
    evidence = "; ".join(
        f"{h} (END attention to {compared} {r['attention_by_position'][compared]:.2f}, DLA {r.get('dla', 0.0):+.2f}, "
        f"n = {r.get('n')})"
        for h, r in hits
    )
    dla = sum(float(r.get("dla", 0.0)) for _, r in hits)
    return [
        TaskMode(
            DISTRACTOR,
            tuple(h for h, _ in hits),
            compared,
            ("foil_side", "foil_side"),
            ("same", "same"),
            -1,
            tuple(range(1, max_dose + 1)),
            abs(dla),
            evidence,
            DISTRACTOR_MECHANISM,
            edit="mention",
        )
    ], {}


def modes_markdown(modes: Sequence[TaskMode], skipped: Mapping[str, str]) -> str:
    lines = [
        f"- `{m.name}` (predicted sign {m.expected_sign:+d}; cells {', '.join(m.cells())}): {m.mechanism}; "
        f"compiled from {m.evidence}"
        for m in modes
    ]
    lines += [f"- `{k}` not compiled: {v}" for k, v in skipped.items()]
    return "\n".join(lines) + "\n"
