"""A task's whole prompt space as a lazy, indexable product (what `advgen scan --task` walks).

The space is the union over templates of every assignment of distinct values to the template's
slots (slots of one lexicon distinct). Index i is decoded without materialising anything: the
template by cumulative block sizes, then one digit per lexicon, each digit a k-permutation of
that lexicon decoded by its Lehmer code. The same interface as IOI's `PromptSpace` (len, render,
describe, templates), so the scan driver, its journal and its Feistel sample work unchanged.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advgen.core.types import AdvgenError, Prompt
from advgen.tasks.render import render_task_prompt
from advgen.tasks.spec import Task, TaskTemplate


def _perm(pool: Sequence[str], k: int, r: int) -> list[str]:
    """The r-th k-permutation of `pool` (lexicographic in pool order)."""
    left, out = list(pool), []
    for j in range(k):
        block = math.perm(len(left) - 1, k - j - 1)
        q, r = divmod(r, block)
        out.append(left.pop(q))
    return out


@dataclass(frozen=True)
class TaskSpace:
    task: Task
    words: Mapping[str, tuple[str, ...]]
    """Each lexicon's usable words for the tokenizer (`advgen.tasks.lexicons.resolve_lexicons`)."""
    sizes: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "sizes",
            tuple(math.prod(math.perm(len(self.words[lx]), len(ss)) for lx, ss in self._groups(t)) for t in self.task.templates),
        )

    @property
    def templates(self) -> tuple[TaskTemplate, ...]:
        return self.task.templates

    def _groups(self, t: TaskTemplate) -> list[tuple[str, list[str]]]:
        by: dict[str, list[str]] = {}
        for s in sorted(t.slots):
            by.setdefault(self.task.slots[s], []).append(s)
        return sorted(by.items())

    @property
    def size(self) -> int:
        """The number of prompts (a property, not `len`: 4 templates of 11 distinct words from 448 is about 10^29)."""
        return sum(self.sizes)

    def point(self, i: int) -> tuple[TaskTemplate, dict[str, str]]:
        if not 0 <= i < self.size:
            raise AdvgenError(f"index {i} is outside the task's prompt space of {self.size:,} prompts")
        starts = [0]
        for s in self.sizes[:-1]:
            starts.append(starts[-1] + s)
        t = bisect.bisect_right(starts, i) - 1
        r = i - starts[t]
        values: dict[str, str] = {}
        for lx, slots in self._groups(self.templates[t]):
            r, digit = divmod(r, math.perm(len(self.words[lx]), len(slots)))
            values.update(zip(slots, _perm(self.words[lx], len(slots), digit), strict=True))
        return self.templates[t], values

    def render(self, i: int, tokenizer: Any) -> Prompt:
        t, values = self.point(i)
        return render_task_prompt(self.task, t, values, tokenizer, pair_id=f"{self.task.name}-i{i}", extra={"index": i})

    def describe(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "task": self.task.name,
            "templates": [t.id for t in self.templates],
            "block_sizes": list(self.sizes),
            "lexicons": {k: len(v) for k, v in sorted(self.words.items())},
        }
