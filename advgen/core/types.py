"""The vocabulary of advgen: small frozen records shared by every module.

Keeping them in one module means every stage (templates, validator, circuits, attacks, export)
speaks the same language and a reader can see the whole data model in one screen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SlotName = str
"""A template slot, e.g. "IO", "S1", "S2", "PLACE"; derived positions add "S1+1" and "END"."""


class AdvgenError(Exception):
    """Base class of every error advgen reports to a user; the CLI prints it and exits non-zero."""

    def __str__(self) -> str:
        # a message quoting hostile text (a lone surrogate) must still print: unencodable characters as \udXXX
        return super().__str__().encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Prompt:
    """One rendered, tokenized prompt whose token positions are known and verified.

    `positions` maps slot names (IO, S1, S1+1, S2, END, PLACE, ...) to token indices in
    `token_ids`; END is the last token, where the answer is read. `io_token` / `s_token` are the
    single-token ids of " IO" and " S" (with the leading space); for a task other than IOI they are
    the answer and foil tokens (the field names stay so IOI files keep their columns).
    """

    text: str
    io: str
    s: str
    token_ids: tuple[int, ...]
    positions: Mapping[SlotName, int]
    io_token: int
    s_token: int
    template_id: str
    order: str
    """Name-order pattern: "ABBA", "BABA" (IOI) or "ABC" (three distinct names, no duplicate)."""
    family: str = "clean"
    """Which distribution the prompt belongs to: "clean", "abc", or an attack/control family."""
    pair_id: str = ""
    """Links an attack or control to the clean prompt it came from (equal pair ids = one group)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form provenance (filled slot values, third name, dose, ...), exported as-is."""
    task: str = "ioi"
    """The task the prompt belongs to; for other tasks `io`/`s` hold the answer and foil words."""
    answer_tokens: tuple[int, ...] = ()
    """A set-answer task's answer tokens (greater-than: the years above YY); empty: the one `io_token`."""
    foil_tokens: tuple[int, ...] = ()
    """A set-answer task's foil tokens; empty: the one `s_token`."""

    @property
    def answer(self) -> str:
        """The word the behaviour predicts (IOI: the IO name)."""
        return self.io

    @property
    def foil(self) -> str:
        """The word the metric compares against (IOI: the S name)."""
        return self.s

    @property
    def end(self) -> int:
        return self.positions["END"]

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class PromptSet:
    """An ordered collection of prompts tokenized by one tokenizer (named by its hash)."""

    prompts: tuple[Prompt, ...]
    tokenizer_hash: str

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Iterator[Prompt]:
        return iter(self.prompts)

    def __getitem__(self, i: int) -> Prompt:
        return self.prompts[i]

    def batches(self, batch_size: int) -> Iterator[list[int]]:
        """Index batches grouped by length so right padding stays small; order is deterministic."""
        if batch_size < 1:
            raise AdvgenError(f"batch size must be >= 1, got {batch_size}")
        order = sorted(range(len(self.prompts)), key=lambda i: (len(self.prompts[i]), i))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


@dataclass(frozen=True)
class PromptMetrics:
    """What the validator measured for one prompt, read at that prompt's own END position."""

    logit_diff: float
    io_logit: float
    s_logit: float
    io_prob: float
    s_prob: float
    io_rank: int
    """0 = IO is the model's top prediction."""
    top_token: int

    @property
    def s_beats_io(self) -> bool:
        return self.logit_diff < 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap 95 % confidence interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Evaluation:
    """Per-prompt metrics for a prompt set, in the prompt set's order."""

    prompts: PromptSet
    metrics: tuple[PromptMetrics, ...]
    head_signals: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """Optional per-prompt attention readouts, keyed like "a9.h9:END->IO"."""

    def __len__(self) -> int:
        return len(self.metrics)


class Role(str, enum.Enum):
    """What a head does in a circuit (IOI vocabulary; extendable by new members)."""

    PREVIOUS_TOKEN = "previous_token"
    """Copies information about the previous token (acts at S1+1)."""
    DUPLICATE_TOKEN = "duplicate_token"
    """Attends from a repeated token to its earlier copy (acts at S2)."""
    INDUCTION = "induction"
    """Attends from S2 to the token after S1 (acts at S2)."""
    S_INHIBITION = "s_inhibition"
    """Moves 'S is duplicated' to END, steering name movers away from S (acts at END)."""
    NAME_MOVER = "name_mover"
    """Attends from END to IO and copies it to the logits (acts at END)."""
    NEGATIVE_NAME_MOVER = "negative_name_mover"
    """Attends to names and writes against them (acts at END)."""
    BACKUP_NAME_MOVER = "backup_name_mover"
    """Takes over name moving when the name movers are knocked out (acts at END)."""


class TaskRole(str):
    """A role from a task's own vocabulary (a YAML task's "mover", say): used where `Role` (IOI's) has no member."""

    @property
    def value(self) -> str:
        return str(self)


RoleName = Role | TaskRole
"""A circuit head's role: IOI's vocabulary or a task's."""


@dataclass(frozen=True, order=True)
class Head:
    """An attention head, written "a{layer}.h{head}" in files and reports."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"a{self.layer}.h{self.head}"

    @classmethod
    def parse(cls, name: str) -> Head:
        import re

        m = re.fullmatch(r"a(\d+)\.h(\d+)", name.strip())
        if not m:
            raise AdvgenError(f"bad head name {name!r}: expected 'a<layer>.h<head>', e.g. 'a9.h9'")
        return cls(int(m.group(1)), int(m.group(2)))

    def check_in(self, n_layers: int, n_heads: int, where: str = "the model") -> Head:
        """The one range check: a head outside the model is an error naming the head, never an index error."""
        if not 0 <= self.layer < n_layers:
            raise AdvgenError(f"head {self} has layer {self.layer}, {where} has layers 0..{n_layers - 1}")
        if not 0 <= self.head < n_heads:
            raise AdvgenError(f"head {self} has head index {self.head}, {where} has heads 0..{n_heads - 1}")
        return self
