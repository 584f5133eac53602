"""The failure-mode catalogue: what a circuit's roles say will break, as attack + control transforms.

Each mode is one short class (TextAttack style: the base, `advgen.attacks.failure_mode`, does the
bookkeeping, a mode overrides only `edit`). A mode edits the clean prompt's *template text* (in the prompt's name order) by
inserting sentences whose names are numbered slots ({IO2}, {S3}, {X}); rendering then verifies
every mention's token position, so the internal signal can be read at exactly the right tokens.
Attack and control receive the same edit except for the one ingredient the mechanism needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from advgen.attacks.failure_mode import FailureMode, Parts, Proposal, Signal, pick
from advgen.circuits.format import Circuit
from advgen.core.types import AdvgenError, Role
from advgen.prompts.sentences import name_slot


class DuplicatedIO(FailureMode):
    name = "duplicated_io"
    roles = (Role.DUPLICATE_TOKEN, Role.INDUCTION)
    mechanism = (
        "S is found as the duplicated name (duplicate-token/induction heads at S2, carried to END by S-inhibition), "
        "so mentioning IO again makes IO look duplicated and suppressed too."
    )
    unambiguous = (
        "the added sentences only say how IO felt, contain no other name and no giving; the final clause is the "
        "clean one, so IO stays the only person besides the giver S"
    )
    signals = (
        Signal(Role.S_INHIBITION, "END", ("IO", "IO2", "IO3", "IO4"), +1, group=True),
        Signal(Role.NAME_MOVER, "END", ("IO", "IO2", "IO3", "IO4"), -1, group=True),
        Signal(Role.DUPLICATE_TOKEN, "IO2", ("IO",), +1),
    )
    cells = tuple(
        [
            {"dose": d, "insertion": p, "source": "paper"}
            for d in (1, 2, 3)
            for p in ("before", "after", "split")
            if not (d == 1 and p == "split")
        ]
        + [{"dose": d, "insertion": "after", "source": "grammar"} for d in (1, 2, 3)]
    )
    group_by = ("dose", "insertion", "source", "source+dose")

    def edit(self, parts, cell, rng, bank):
        pool = bank.paper if cell["source"] == "paper" else bank.neutral[len(bank.paper) :]
        sents = pick(rng, pool, cell["dose"])
        att = [name_slot(s, f"IO{i + 2}") for i, s in enumerate(sents)]
        ctl = [name_slot(s, f"S{i + 3}") for i, s in enumerate(sents)]
        return _place(parts, cell["insertion"], att, ctl) + ({"sentences": sents},)


def _place(parts: Parts, where: str, att: list[str], ctl: list[str]) -> tuple[str, str]:
    lead = att[0].startswith("{")
    if where == "before":
        return parts.insert(before=att, lead=lead), parts.insert(before=ctl, lead=lead)
    if where == "after":
        return parts.insert(after=att), parts.insert(after=ctl)
    if where == "split":
        return parts.insert(before=att[:1], after=att[1:], lead=lead), parts.insert(before=ctl[:1], after=ctl[1:], lead=lead)
    raise AdvgenError(f"unknown insertion point {where!r}")


class DistantS2(FailureMode):
    name = "distant_s2"
    roles = (Role.S_INHIBITION,)
    mechanism = (
        "S-inhibition heads mostly carry a position signal ('the duplicated name sat there'); pushing S2 away from "
        "the first clause with name-free filler weakens that signal, while the control adds the same filler before "
        "the first clause, keeping the length and the clause-S2 distance."
    )
    unambiguous = "the filler sentences contain no name at all, so the cast (IO, S) and the final clause are unchanged"
    signals = (Signal(Role.S_INHIBITION, "END", ("S2",), -1), Signal(Role.NAME_MOVER, "END", ("IO",), -1))
    cells = tuple({"n_sentences": k, "insertion": "after"} for k in (1, 2, 3))
    group_by = ("n_sentences",)

    def edit(self, parts, cell, rng, bank):
        sents = pick(rng, bank.filler, cell["n_sentences"])
        return parts.insert(after=sents), parts.insert(before=sents), {"sentences": sents, "control_insertion": "before"}


class ExtraName(FailureMode):
    name = "extra_name"
    roles = (Role.NAME_MOVER,)
    mechanism = (
        "name movers copy whichever non-duplicated name they attend to; a fresh name X is not suppressed by "
        "S-inhibition, so it competes with IO for the name movers' attention and lowers the IO logit."
    )
    unambiguous = (
        "X appears only in a sentence that puts X somewhere else (stayed at home, far away, had left), so X cannot be "
        "the recipient; the control says the same about 'someone'"
    )
    signals = (Signal(Role.NAME_MOVER, "END", ("IO",), -1), Signal(Role.BACKUP_NAME_MOVER, "END", ("IO",), -1))
    cells = tuple({"n_names": k, "insertion": p} for k in (1, 2) for p in ("before", "after"))
    group_by = ("n_names", "insertion")

    def edit(self, parts, cell, rng, bank):
        sents = pick(rng, bank.away, cell["n_names"])
        att = [name_slot(s, "X" if i == 0 else f"X{i + 1}") for i, s in enumerate(sents)]
        ctl = [s.replace("{N}", "Someone") for s in sents]
        a, c = _place(parts, cell["insertion"], att, ctl)
        return a, c, {"sentences": sents}


class ReversedTransfer(FailureMode):
    name = "reversed_transfer"
    roles = (Role.INDUCTION,)
    mechanism = (
        "induction heads predict what followed the previous occurrence of the current context; an earlier sentence in "
        "which IO did the same action *to S* ('... gave a drink to S') makes the copy at END point at S, while the "
        "control reverses the earlier transfer (S to IO) with the same names and words."
    )
    unambiguous = (
        "only IO and S exist; in the final clause S gives, and one does not give to oneself, so the recipient is IO "
        "(returning the favour); the control is the same sentence with the two names exchanged"
    )
    signals = (Signal(Role.INDUCTION, "END", ("S3",), +1), Signal(Role.NAME_MOVER, "END", ("S3",), +1))
    cells = tuple({"insertion": p} for p in ("before", "after"))
    group_by = ("insertion",)

    def edit(self, parts, cell, rng, bank):
        att = ["{IO2}" + parts.after_s2 + " {S3}."]
        ctl = ["{S3}" + parts.after_s2 + " {IO2}."]
        return _place(parts, cell["insertion"], att, ctl) + ({"sentences": [att[0]]},)


class SwappedPair(FailureMode):
    name = "swapped_pair"
    roles = (Role.PREVIOUS_TOKEN,)
    mechanism = (
        "previous-token heads store, at the token after each name, which name preceded it, and the induction heads at "
        "S2 look that up to find S's earlier copy; restating the pair in swapped order ('IO and S ...') gives IO "
        "the 'name followed by and' context S had, blurring which name the lookup identifies as duplicated; the "
        "control restates the pair in the original order."
    )
    unambiguous = (
        "the added sentence only restates that the same two people are friends/colleagues/etc., in both orders in "
        "attack and control; no new person and no transfer is added"
    )
    signals = (
        Signal(Role.INDUCTION, "S2", ("S1+1",), -1),
        Signal(Role.DUPLICATE_TOKEN, "S2", ("S1",), -1),
        Signal(Role.S_INHIBITION, "END", ("S2",), -1),
    )
    cells = tuple({"insertion": p} for p in ("before", "after"))
    group_by = ("insertion",)

    def edit(self, parts, cell, rng, bank):
        s = rng.choice(bank.pair)
        same = ("{S3}", "{IO2}") if parts.first_clause_order == "S-IO" else ("{IO2}", "{S3}")
        ctl = [s.replace("{A}", same[0]).replace("{B}", same[1])]
        att = [s.replace("{A}", same[1]).replace("{B}", same[0])]
        return _place(parts, cell["insertion"], att, ctl) + ({"sentences": [s]},)


CATALOGUE: tuple[FailureMode, ...] = (DuplicatedIO(), DistantS2(), ExtraName(), ReversedTransfer(), SwappedPair())


def modes_for(circuit: Circuit, catalogue: Sequence[FailureMode] = CATALOGUE, requested: Sequence[str] | None = None) -> Proposal:
    """Propose the modes whose roles the circuit has (and which have a readable signal).

    `requested` names modes to run instead of the default proposal. A requested mode whose
    exploited roles the circuit lacks still runs when one of its signals can be read from the
    circuit's heads (a test of the mode's mechanism on a circuit that does not claim it); the
    note in `forced` says so, and reports carry it.
    """
    have = circuit.roles
    names = {m.name for m in catalogue}
    unknown = sorted(set(requested or ()) - names)
    if unknown:
        raise AdvgenError(f"unknown failure mode(s) {unknown}; catalogue: {sorted(names)}")
    chosen, skipped, forced = [], {}, {}
    for m in catalogue:
        want = requested is None or m.name in requested
        has_roles = any(r in have for r in m.roles)
        signal = m.signal_for(circuit)
        if not want:
            skipped[m.name] = "not requested (--modes)"
        elif signal is None:
            roles = sorted({s.role.value for s in m.signals})
            skipped[m.name] = f"circuit {circuit.name!r} has none of the roles whose attention is this mode's signal ({roles})"
        elif not has_roles and requested is None:
            skipped[m.name] = (
                f"circuit {circuit.name!r} has no {' or '.join(r.value for r in m.roles)} heads, which this mode exploits"
            )
        else:
            chosen.append(m)
            if not has_roles:
                forced[m.name] = (
                    f"requested although circuit {circuit.name!r} has no {' or '.join(r.value for r in m.roles)} heads; "
                    f"signal read from its {signal.role.value} heads"
                )
    return Proposal(tuple(chosen), skipped, forced)


def mode_named(name: str) -> FailureMode:
    for m in CATALOGUE:
        if m.name == name:
            return m
    raise AdvgenError(f"unknown failure mode {name!r}; modes: {[m.name for m in CATALOGUE]}")


def catalogue_markdown(circuit: Circuit | None = None) -> str:
    """The catalogue as Markdown; with a circuit, which modes it implies and why others are skipped."""
    out = []
    for m in CATALOGUE:
        d = m.describe()
        out += [
            f"### {m.name}",
            "",
            f"- roles exploited (the circuit needs at least one): {', '.join(d['roles'])}",
            f"- mechanism: {m.mechanism}",
            f"- internal signal (first role present in the circuit is used): {'; '.join(d['signals'])}",
            f"- expected sign of LD(attack) - LD(control): {'negative' if m.expected_sign < 0 else 'positive'}",
            f"- answer stays unambiguous because {m.unambiguous}",
            f"- free parameters (cells): {', '.join(str(dict(c)) for c in m.cells)}; plus the sentence(s) and extra names, drawn "
            "per candidate",
            "",
        ]
    if circuit is not None:
        prop = modes_for(circuit)
        out.append(f"Circuit {circuit.name!r} implies: {', '.join(m.name for m in prop.modes) or 'nothing'}.")
        for k, v in prop.skipped.items():
            out.append(f"Skipped {k}: {v}.")
    return "\n".join(out) + "\n"
