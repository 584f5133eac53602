"""Failure modes compiled from a circuit's head behaviour records, not written by hand for one model.

The rules read only the records (`advgen.circuits.behaviour`): never a model name, never how a
mode fared. One rule so far, the mention rule:

- a head that copies what it attends to (write gain > 0) and whose attention to a name grows
  when that name is mentioned again moves the logits towards that name with every mention; a
  head that suppresses (gain < 0) moves them away. Summed over the circuit's heads, the records
  predict the LD change of "mention name Y once more at site P":
  shift(Y, P) = sum_h gain_h * (d mass_IO,h - d mass_S,h).
  Each mentioned name becomes a mode (repeat S, repeat IO) whose cells are site x dose, with the
  predicted sign of LD(attack) - LD(control) and the heads whose records carry the prediction.

Edits go through the template engine like the catalogue's: sentences from the grammar bank with
the name as a numbered slot ({S3}, {IO2}), the matched control being the same sentences about
"someone" (same words, same length, no extra mention), and `check_unambiguous` on every pair.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advgen.attacks.catalogue import CATALOGUE, modes_for
from advgen.attacks.failure_mode import Cell, FailureMode, Parts, Proposal, Signal, pick
from advgen.circuits.behaviour_records import MENTIONED, SITES, HeadBehaviour, MLPBehaviour
from advgen.circuits.format import Circuit
from advgen.core.types import AdvgenError, Head, Role
from advgen.prompts.sentences import SentenceBank, name_slot

DOSES = (1, 2, 3)
DRAWS = 4
"""Independent draws of a site's sentences per clean prompt: the search can spend its budget on the cells that break most
instead of running out of them (each draw is its own unit with its own control; draw 0 is what a single draw would give)."""
EVIDENCE_SHARE = 0.1
"""A head is cited as evidence when its contribution has the total's sign and >= this share of the largest."""


@dataclass(frozen=True)
class Contribution:
    head: Head | str
    """A head, or an MLP node's name ("m3")."""
    site: str
    shift: float
    """Head: gain * (d mass_IO - d mass_S); MLP node: its measured LD change. Predicted LD change for one more mention."""
    d_mentioned: float
    """Head: change of attention mass on the mentioned name minus that on the other name; MLP node: = shift."""


@dataclass(frozen=True)
class CompiledEdit:
    """One edit the records imply: mention `name` more, with the predicted LD shift per site."""

    name: str
    """"S" or "IO"."""
    predicted: Mapping[str, float]
    """site -> predicted LD(attack) - LD(control) for one extra mention (summed over heads)."""
    contributions: tuple[Contribution, ...]

    @property
    def predicted_sign(self) -> int:
        total = sum(self.predicted.values())
        return -1 if total < 0 else +1

    def evidence(self) -> tuple[Contribution, ...]:
        """The contributions that carry the prediction (same sign, not negligible), largest first."""
        sign = self.predicted_sign
        best = {str(c.head): c for c in sorted(self.contributions, key=lambda c: abs(c.shift))}
        top = max((abs(c.shift) for c in best.values()), default=0.0)
        keep = [c for c in best.values() if c.shift * sign > 0 and abs(c.shift) >= EVIDENCE_SHARE * top]
        return tuple(sorted(keep, key=lambda c: -abs(c.shift)))


def records_of(circuit: Circuit) -> dict[Head, HeadBehaviour]:
    """The behaviour records stored in a circuit (heads without one are left out)."""
    return {
        h.head: HeadBehaviour.from_dict(h.behaviour, f"circuit {circuit.name!r}, head {h.head}")
        for h in circuit.heads
        if h.behaviour
    }


def mlp_records_of(circuit: Circuit) -> dict[str, MLPBehaviour]:
    """The MLP node records stored in a circuit (nodes without one are left out)."""
    return {
        m.node: MLPBehaviour.from_dict(m.behaviour, f"circuit {circuit.name!r}, MLP node {m.node}")
        for m in circuit.mlps
        if m.behaviour
    }


def mention_edits(records: Mapping[Head, HeadBehaviour], mlps: Mapping[str, MLPBehaviour] | None = None) -> list[CompiledEdit]:
    """The mention rule over every record: one edit per mentioned name with a measured site.

    Heads contribute gain x their attention shift; an MLP node contributes its measured change
    (its input depends on the whole model, so no attention rule predicts it).
    """
    out = []
    for y in MENTIONED:
        contribs, predicted = [], {}
        for site in SITES:
            here: list[Contribution] = []
            for h, r in sorted(records.items()):
                m = r.mention.get(y, {}).get(site)
                if m is None:
                    continue
                d_y = (m.d_mass_io - m.d_mass_s) if y == "IO" else (m.d_mass_s - m.d_mass_io)
                here.append(Contribution(h, site, r.write_gain * (m.d_mass_io - m.d_mass_s), d_y))
            for node, mr in sorted((mlps or {}).items()):
                w = mr.mention.get(y, {}).get(site)
                if w is not None:
                    here.append(Contribution(node, site, w.d_write, w.d_write))
            if here:
                predicted[site] = sum(c.shift for c in here)
                contribs += here
        if predicted:
            out.append(CompiledEdit(y, predicted, tuple(contribs)))
    return out


class CompiledMention(FailureMode):
    """Mention one name more often; the subclass made by `compile_modes` fixes the name and the records' numbers."""

    mentioned: str = "S"
    edit_spec: CompiledEdit
    evidence_text: str = ""
    draws = DRAWS

    def edit(self, parts: Parts, cell: Cell, rng: random.Random, bank: SentenceBank) -> tuple[str, str, dict[str, Any]]:
        """max(DOSES) sentences (a `length` cell: that many) at the site; the first `dose` name the mentioned name, the others
        (and all in the control) 'someone'. The short edit exists because added text alone can break a model (the control).

        Holding the added words fixed across doses isolates the mention count (the records'
        per-mention evidence) from the length of the edit, and makes the control the same prompt
        for every dose and both names at a site: `share_key` lets the search evaluate it once.
        """
        sents = pick(rng, bank.neutral, cell.get("length", max(DOSES)))
        slot = (lambda i: f"IO{i + 2}") if self.mentioned == "IO" else (lambda i: f"S{i + 3}")
        ctl = [s.replace("{N}", "Someone") for s in sents]
        att = [name_slot(s, slot(i)) for i, s in enumerate(sents[: cell["dose"]])] + ctl[cell["dose"] :]
        if cell["site"] == "before":
            return parts.insert(before=att, lead=True), parts.insert(before=ctl, lead=True), {"sentences": sents}
        return parts.insert(after=att), parts.insert(after=ctl), {"sentences": sents}

    def applicable(self, parts: Parts, cell: Cell) -> bool:
        return parts.head is not None or cell["site"] == "before"

    def share_key(self, cell: Cell) -> str | None:
        """Every compiled mention mode draws its sentences per site (and edit length), so its cells there share one control."""
        return f"compiled_mention:{cell['site']}" + (f":{cell['length']}" if "length" in cell else "")

    def predicted_shift(self, cell: Cell) -> float:
        """The records' LD(attack) - LD(control) for this cell: dose x the site's one-mention shift."""
        return cell["dose"] * self.edit_spec.predicted[cell["site"]]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "compiled_from": self.evidence_text,
            "predicted_shift_per_mention": dict(self.edit_spec.predicted),
        }


def _gain_text(r: HeadBehaviour) -> str:
    """The gain the rule used, and the direct-only figure beside it when the record has both."""
    if r.write_path == "direct" or r.write_gain_direct is None:
        return f"{r.write_gain:+.2f} direct"
    return f"{r.write_gain:+.2f} via later MLPs, direct {r.write_gain_direct:+.2f}"


def _cite(c: Contribution, records: Mapping[Head, HeadBehaviour], name: str, other: str) -> str:
    if not isinstance(c.head, Head):
        return f"{c.head} (MLP node, measured LD change {c.shift:+.3f} per mention {c.site})"
    r = records[c.head]
    return (
        f"{c.head} ({r.write_sign}, gain {_gain_text(r)}, mass on {name} minus {other} {c.d_mentioned:+.3f} "
        f"per mention {c.site}, shift {c.shift:+.3f})"
    )


def _mode(e: CompiledEdit, records: Mapping[Head, HeadBehaviour], roles: Mapping[Head, Role]) -> FailureMode:
    ev = e.evidence()
    hev = [c for c in ev if isinstance(c.head, Head)]
    heads = tuple(c.head for c in hev if isinstance(c.head, Head))
    other = "S" if e.name == "IO" else "IO"
    keys = ("IO", "IO2", "IO3", "IO4") if e.name == "IO" else ("S1", "S2", "S3", "S4", "S5")
    minus = ("S1", "S2", "S3", "S4", "S5") if e.name == "IO" else ("IO", "IO2", "IO3", "IO4")
    signs = tuple(1 if c.d_mentioned >= 0 else -1 for c in hev)  # each cited head's own predicted move
    cited = "; ".join(_cite(c, records, e.name, other) for c in ev)
    nodes = [str(c.head) for c in ev if not isinstance(c.head, Head)]
    evidence = (
        f"compiled from heads {', '.join(map(str, heads)) or 'none'}"
        + (f" and MLP nodes {', '.join(nodes)}" if nodes else "")
        + f": {cited}"
    )
    sign_word = "lowers" if e.predicted_sign < 0 else "raises"
    attrs = {
        "name": f"compiled_repeat_{e.name.lower()}",
        "roles": tuple(dict.fromkeys(roles[h] for h in heads)),
        "mechanism": (
            f"heads that write what they attend to shift their attention with each mention of a name; summed over the "
            f"circuit's records, one more mention of {e.name} {sign_word} LD by "
            + ", ".join(f"{v:+.3f} ({k})" for k, v in sorted(e.predicted.items()))
            + f". {evidence}"
        ),
        "unambiguous": (
            f"the added sentences only say how {e.name} felt or what {e.name} did, with no giving and no other "
            "name; the first and final clauses are the clean ones; the control says the same about 'someone'"
        ),
        "expected_sign": e.predicted_sign,
        "signals": (
            Signal(
                roles[heads[0]] if heads else Role.NAME_MOVER, "END", keys, +1, heads=heads, minus=minus, group=True, signs=signs
            ),
        ),
        "cells": tuple({"dose": k, "site": site} for site in sorted(e.predicted) for k in DOSES)
        + tuple({"dose": 1, "site": site, "length": 1} for site in sorted(e.predicted)),  # the short edit: one sentence
        "group_by": ("dose", "site"),
        "mentioned": e.name,
        "edit_spec": e,
        "evidence_text": evidence,
    }
    return type(f"CompiledRepeat{e.name}", (CompiledMention,), attrs)()


def compile_modes(circuit: Circuit) -> tuple[tuple[FailureMode, ...], dict[str, str]]:
    """Modes the circuit's behaviour records imply, and why none could be compiled (if so)."""
    recs, nodes = records_of(circuit), mlp_records_of(circuit)
    if not recs and not nodes:
        return (), {"compiled": f"circuit {circuit.name!r} has no behaviour records (advgen attack measures them on the model)"}
    modes = []
    skipped = {}
    for e in mention_edits(recs, nodes):
        if not e.evidence():
            skipped[f"compiled_repeat_{e.name.lower()}"] = "no head's or MLP node's record carries a prediction"
            continue
        modes.append(_mode(e, recs, {h.head: h.role for h in circuit.heads if isinstance(h.role, Role)}))
    return tuple(modes), skipped


def has_records(circuit: Circuit) -> bool:
    return any(h.behaviour for h in circuit.heads) or any(m.behaviour for m in circuit.mlps)


def compiled_markdown(modes: Sequence[FailureMode]) -> str:
    out = []
    for m in modes:
        out += [
            f"### {m.name}",
            "",
            f"- mechanism: {m.mechanism}",
            f"- predicted sign of LD(attack) - LD(control): {'negative' if m.expected_sign < 0 else 'positive'}",
            f"- answer stays unambiguous because {m.unambiguous}",
            f"- cells: {', '.join(str(dict(c)) for c in m.cells)}",
            "",
        ]
    return "\n".join(out)


def select_modes(circuit: Circuit, requested: Sequence[str] | None = None) -> Proposal:
    """The modes to run: compiled ones by default when the circuit has behaviour records, else the catalogue's proposal.

    `requested` may name "compiled" beside catalogue modes (e.g. "compiled,distant_s2").
    """
    want_compiled = has_records(circuit) if requested is None else "compiled" in requested
    rest = None if requested is None else [r for r in requested if r != "compiled"]
    if not want_compiled:
        return modes_for(circuit, requested=rest)
    modes, skipped = compile_modes(circuit)
    if not modes and requested is None:  # the default: say why, and run the catalogue instead
        cat = modes_for(circuit)
        return Proposal(cat.modes, {**cat.skipped, **skipped}, cat.notes)
    if not modes:
        raise AdvgenError(f"--modes compiled: nothing compiled from circuit {circuit.name!r}: " + "; ".join(skipped.values()))
    if rest:
        cat = modes_for(circuit, requested=rest)
        return Proposal(modes + cat.modes, {**skipped, **cat.skipped}, cat.notes)
    return Proposal(
        modes, {**skipped, **{m.name: "catalogue mode; compiled modes run instead (--modes to add it)" for m in CATALOGUE}}, {}
    )


VERDICTS = ("confirmed", "falsified", "inconclusive")


def prediction_accuracy(cell_verdicts: Mapping[str, str]) -> dict[str, Any]:
    """Over the run's compiled cells: how many had their predicted sign of LD(attack) - LD(control) confirmed, falsified or
    left inconclusive by the random sample (each cell judged against its own predicted sign, as screening does)."""
    got = [v for k, v in sorted(cell_verdicts.items()) if k.startswith("compiled_")]
    counts = {v: got.count(v) for v in VERDICTS}
    return {
        "compiled_cells": len(got),
        **counts,
        "falsified_cells": sorted(k for k, v in cell_verdicts.items() if k.startswith("compiled_") and v == "falsified"),
    }
