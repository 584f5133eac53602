"""The failure-mode interface every attack mode implements, hand-written or compiled.

What a mode is (roles it exploits, mechanism, expected sign, internal signal, a grid of cells)
and the bookkeeping it inherits (TextAttack style: a mode overrides only `edit`): splitting the
clean template text where sentences can go, drawing extra names, rendering attack and control
with verified positions. The hand-written modes are `advgen.attacks.catalogue`; modes compiled
from behaviour records are `advgen.attacks.compiler`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from advgen.circuits.format import Circuit
from advgen.core.types import AdvgenError, Head, Prompt, Role
from advgen.prompts.datasets import Spec
from advgen.prompts.lexicon import Lexicon
from advgen.prompts.sentences import SentenceBank
from advgen.prompts.templates import SLOT_RE, Fill, Template, render

Cell = Mapping[str, Any]
"""One point of a mode's free-parameter grid, e.g. {"dose": 2, "insertion": "after"}."""


@dataclass(frozen=True)
class Signal:
    """Attention of a role's heads (or of named heads) from a query slot to key slots, expected to move one way.

    The value is the attention mass on `keys` minus the mass on `minus`. With `group` the keys
    are every mention of one name, so a mention one prompt lacks contributes 0 (the mass on a name
    is defined in every prompt); otherwise only keys present in both compared prompts count.
    """

    role: Role
    query: str
    keys: tuple[str, ...]
    direction: int
    """+1: the attack should raise it relative to its control; -1: lower it."""
    heads: tuple[Head, ...] = ()
    """Heads to read (compiled modes name them); empty: every circuit head with `role`."""
    minus: tuple[str, ...] = ()
    group: bool = False
    signs: tuple[int, ...] = ()
    """Per head in `heads`, the way that head's value should move (+1 / -1); the signal is their signed mean."""

    def heads_in(self, circuit: Circuit) -> tuple[Head, ...]:
        return self.heads or circuit.heads_with(self.role)

    def describe(self) -> str:
        keys = "/".join(self.keys) + (" minus " + "/".join(self.minus) if self.minus else "")
        if self.signs:
            moves = ", ".join(
                f"{h} {'rises' if s * self.direction > 0 else 'falls'}" for h, s in zip(self.heads, self.signs, strict=True)
            )
            return f"attention {self.query} -> {keys}: {moves}"
        who = ", ".join(map(str, self.heads)) if self.heads else f"{self.role.value} heads"
        return f"{who}, attention {self.query} -> {keys}, {'rises' if self.direction > 0 else 'falls'}"


@dataclass(frozen=True)
class Variant:
    """One candidate: the attack and control template texts for one clean spec and one cell."""

    mode: str
    cell: Cell
    params: Mapping[str, Any]
    attack_text: str
    control_text: str
    fill: Fill


@dataclass(frozen=True)
class Parts:
    """The clean template text in the prompt's name order, split where sentences can go."""

    text: str
    head: str | None
    """Text up to and including the sentence break before {S2} (None if S2 is in sentence one)."""
    rest: str | None
    after_s2: str
    """What follows {S2} up to the end, e.g. " gave a {OBJECT} to"."""
    first_clause_order: str
    """"S-IO" if {S1} precedes {IO} in the text, else "IO-S"."""

    @classmethod
    def of(cls, spec: Spec) -> Parts:
        text = spec.template.in_order(spec.order)
        s2 = text.index("{S2}")
        cut = text.rfind(". ", 0, s2)
        head, rest = (text[: cut + 2], text[cut + 2 :]) if cut >= text.index("{IO}") else (None, None)
        order = "S-IO" if text.index("{S1}") < text.index("{IO}") else "IO-S"
        return cls(text, head, rest, text[s2 + len("{S2}") :], order)

    def insert(self, before: Sequence[str] = (), after: Sequence[str] = (), lead: bool | None = None) -> str:
        """Sentences before the whole text and/or after clause one.

        A text-initial name would be a different token (no leading space), so a leading name slot
        gets "Earlier, " in front (`lead`: force it on or off, so attack and control match).
        """
        out = self.text
        if after:
            if self.head is None or self.rest is None:
                raise AdvgenError("template has no sentence break before S2; cannot insert after the first clause")
            out = self.head + " ".join(after) + " " + self.rest
        if before:
            first = before[0]
            if before[0].startswith("{") if lead is None else lead:
                first = "Earlier, " + (first if first.startswith("{") else first[0].lower() + first[1:])
            out = " ".join([first, *before[1:]]) + " " + out
        return out


def slot_names(text: str) -> list[str]:
    return SLOT_RE.findall(text)


class FailureMode(ABC):
    """A circuit-predicted failure: roles needed, mechanism, transforms, expected sign, signal."""

    name: ClassVar[str]
    roles: ClassVar[tuple[Role, ...]]
    """Roles the mode exploits; the circuit must have at least one of them for the mode to be proposed."""
    mechanism: ClassVar[str]
    unambiguous: ClassVar[str]
    """Why a human still reads IO as the answer in the attack."""
    expected_sign: ClassVar[int] = -1
    """Expected sign of LD(attack) - LD(control)."""
    signals: ClassVar[tuple[Signal, ...]]
    """The internal signal; the first whose role the circuit has is used."""
    cells: ClassVar[tuple[Cell, ...]]
    group_by: ClassVar[tuple[str, ...]] = ()
    """Params the per-mode table breaks down by (e.g. dose)."""
    draws: ClassVar[int] = 1
    """Candidates per clean prompt and cell, each with its own random draw of sentences and names."""

    @abstractmethod
    def edit(self, parts: Parts, cell: Cell, rng: random.Random, bank: SentenceBank) -> tuple[str, str, dict[str, Any]]:
        """(attack text, control text, params) for one clean template text; the one override point."""

    def applicable(self, parts: Parts, cell: Cell) -> bool:
        return parts.head is not None or cell.get("insertion", "before") == "before"

    def signal_for(self, circuit: Circuit) -> Signal | None:
        return next((s for s in self.signals if s.heads_in(circuit)), None)

    def predicted_shift(self, cell: Cell) -> float | None:
        """Predicted LD(attack) - LD(control) in logits for a cell, where the mode's source gives one (compiled modes)."""
        return None

    def share_key(self, cell: Cell) -> str | None:
        """Cells of this mode whose candidates on one clean prompt have the same control (same key, same draws), or None.

        Candidates that share a key are drawn from one random stream, so their controls are the
        same prompt; the search evaluates such a control once and the sample takes them together.
        """
        return None

    def cell_key(self, index: int) -> str:
        """The id of one cell ("mode:index"), carried in every row of the cell."""
        return f"{self.name}:{index}"

    def variant(self, spec: Spec, cell: Cell, rng: random.Random, bank: SentenceBank, lexicon: Lexicon) -> Variant | None:
        parts = Parts.of(spec)
        if not applicable_template(spec) or not self.applicable(parts, cell):
            return None
        pool = [n for n in lexicon.name_texts if n not in (spec.fill.io, spec.fill.s)]
        extra = tuple(rng.sample(pool, 2))
        attack, control, params = self.edit(parts, cell, rng, bank)
        xs = sorted({s for s in slot_names(attack) + slot_names(control) if s.startswith("X")})
        fill = replace(spec.fill, x=extra[: len(xs)])
        return Variant(self.name, dict(cell), {**dict(cell), **params}, attack, control, fill)

    def render(self, spec: Spec, v: Variant, tokenizer: Any) -> tuple[Prompt, Prompt]:
        """Attack and control prompts with verified positions, order label kept from the clean spec."""
        out = []
        for family, text in (("attack", v.attack_text), ("control", v.control_text)):
            t = Template(id=f"{spec.template.id}+{self.name}", text=text, pack="attack", source=f"mode {self.name}")
            p = render(
                t,
                t.written_order,
                v.fill,
                tokenizer,
                family=family,
                pair_id=spec.pair_id,
                extra={"mode": self.name, "params": dict(v.params)},
            )
            out.append(replace(p, order=spec.order))
        return out[0], out[1]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": [r.value for r in self.roles],
            "mechanism": self.mechanism,
            "unambiguous": self.unambiguous,
            "expected_sign": self.expected_sign,
            "signals": [s.describe() for s in self.signals],
            "cells": [dict(c) for c in self.cells],
        }


def applicable_template(spec: Spec) -> bool:
    """Modes number their extra names from {X}; a template that already uses X slots is skipped."""
    return not any(s.startswith("X") for s in spec.template.slots)


def pick(rng: random.Random, pool: Sequence[str], k: int) -> list[str]:
    return rng.sample(list(pool), k) if len(pool) >= k else [rng.choice(pool) for _ in range(k)]


@dataclass(frozen=True)
class Proposal:
    """The modes a circuit implies, and why the others were left out."""

    modes: tuple[FailureMode, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    """Per chosen mode run outside its default proposal: why it runs and where its signal comes from."""
