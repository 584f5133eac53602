"""The Task interface: the one place that knows what a task is.

A task names its slots and their lexicons, its templates, each prompt's answer and foil rule,
its metric, its corrupted twin (for patching and ablation means), its role vocabulary with each
role's attention signature, and which edits failure-mode rules may make. Everything downstream
(prompts, metrics, discovery, claims, the compiler, the scan, exports) reads these records, never
a task's name. IOI keeps its own engines (its records say so with `engine="ioi"`); every other
task, built in or written in YAML, runs on the generic engines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from advgen.core.types import AdvgenError

SLOT_RE = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")
"""A template slot: {A}, {COUNTRY}, {F1}."""
POSITION_RE = re.compile(r"^(END|ALL|[A-Za-z][A-Za-z0-9_]*(@[2-9])?(\+1)?)$")
"""A position name: END, ALL, a slot (its first mention), SLOT@2 (its second mention), SLOT+1 (the token after)."""
METRICS = ("logit_diff", "prob_diff")


class TaskError(AdvgenError):
    """A task file or task use that cannot work; the message names file, line and slot."""


@dataclass(frozen=True)
class TaskTemplate:
    id: str
    text: str
    source: str = "<memory>"
    """"file:line" of the template, for error messages."""

    @property
    def slots(self) -> tuple[str, ...]:
        """Slot names in order of first mention."""
        return tuple(dict.fromkeys(SLOT_RE.findall(self.text)))


COMPARES = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
"""Set rules: every word w of a lexicon with float(w) <op> float(value), e.g. the years greater than YY."""


@dataclass(frozen=True)
class AnswerRule:
    """Which token(s) a prompt's answer (or foil) is: a slot's value, a mapping from it, or a set compared to it."""

    slot: str
    mapping: Mapping[str, str] = field(default_factory=dict)
    """Empty: the slot's own value; else value -> answer word (e.g. France -> Paris, dog -> is)."""
    compare: str = ""
    """A set rule: ">", ">=", "<" or "<=": the words of lexicon `over` that compare so to the slot's value."""
    over: tuple[str, ...] = ()
    """The words a set rule ranges over (e.g. "00".."99")."""
    space: bool = True
    """Whether the answer token carries a leading space (" Paris"); False for a token glued to the text ("17" + "32")."""

    def word(self, values: Mapping[str, str]) -> str:
        """The single answer word, or a set rule's description ("> 32")."""
        v = values[self.slot]
        if self.compare:
            return f"{self.compare} {v}"
        if not self.mapping:
            return v
        if v not in self.mapping:
            raise TaskError(f"slot {{{self.slot}}} value {v!r} has no entry in the answer mapping")
        return self.mapping[v]

    def words(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """Every answer word: one for a slot or mapping rule, the compared set for a set rule."""
        if not self.compare:
            return (self.word(values),)
        x = float(values[self.slot])
        return tuple(w for w in self.over if COMPARES[self.compare](float(w), x))


@dataclass(frozen=True)
class RoleSpec:
    """A role of the task's vocabulary: where its heads act, and the attention that identifies them."""

    name: str
    query: str
    """Position the role's heads attend from (END, SLOT, SLOT+1, ...)."""
    key: str
    """Position they attend to."""
    description: str = ""

    @property
    def positions(self) -> tuple[str, ...]:
        """Default positions a circuit keeps a head of this role at: where it reads (its query)."""
        return (self.query,)


@dataclass(frozen=True)
class Corruption:
    """The corrupted twin: one mention of one slot given a fresh value, so the mechanism has nothing to use."""

    slot: str
    mention: int = 1
    """Which mention of the slot to replace (1 = the first)."""
    value: str = ""
    """A fixed replacement (greater-than's "01" twin); empty: a fresh value of the slot's lexicon, drawn per prompt."""


@dataclass(frozen=True)
class Edits:
    """What failure-mode rules may change: where text may be inserted, and the lexicon of fresh tokens."""

    insert_before: str
    """Insertions go right before this position's token (e.g. A: before the first A, so the answer rule still holds)."""
    filler: str
    """Lexicon that fresh tokens (controls, random perturbations) are drawn from."""
    max_dose: int = 3
    mention: str = ""
    """How an inserted value of a set rule's compared slot is written, with {E} for the value and the prompt's own
    values in any other slot (e.g. "{XX}{E}": a year of the prompt's century). Empty: no value-mention edits."""


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    templates: tuple[TaskTemplate, ...]
    lexicons: Mapping[str, tuple[str, ...] | str]
    """Lexicon name -> inline words, or a generated lexicon's name ("vocab-words": the tokenizer's single-token words)."""
    slots: Mapping[str, str]
    """Slot -> lexicon. Slots of one lexicon take distinct values within a prompt."""
    answer: AnswerRule
    foil: AnswerRule
    metric: str = "logit_diff"
    corrupt: Corruption | None = None
    roles: tuple[RoleSpec, ...] = ()
    edits: Edits | None = None
    source: str = "<memory>"
    engine: str = "generic"
    """"generic": the task engines read this record; "ioi": IOI's own engines (slots IO/S, ABBA/BABA, ABC twins)."""

    def role(self, name: str) -> RoleSpec:
        for r in self.roles:
            if r.name == name:
                return r
        raise TaskError(f"task {self.name!r} has no role {name!r}; its roles: {[r.name for r in self.roles]}")

    @property
    def sets(self) -> bool:
        """Whether answers are token sets (metrics then sum probabilities / log-sum-exp logits over each set)."""
        return bool(self.answer.compare or self.foil.compare)

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def describe(self) -> dict[str, object]:
        """The task as run documents record it (manifests, circuit provenance)."""
        return {
            "name": self.name,
            "source": self.source,
            "metric": self.metric,
            "engine": self.engine,
            "templates": len(self.templates),
            "roles": list(self.role_names),
        }
