"""The candidate pool of a generic-task attack: every (clean prompt, mode, dose) and, for value mentions, gap and draw.

Pure bookkeeping (no model, no rendering), so the search, the stratified sample and the tests
agree on what one candidate is and which candidates share a control.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from advgen.attacks.task_compiler import TaskMode
from advgen.tasks.sample import TaskSpec
from advgen.tasks.spec import Task

NEAR = 10
"""Value-mention modes: a foil-side value within this distance of the clean value is "near", else "far"."""
DRAWS = 12
"""Value-mention modes: candidates (independent value draws) per clean prompt, dose and gap, so the search does not
run out of its best cell while budget is left (they all share one control, so a draw costs one evaluation)."""
SAMPLE_DRAWS = 3
"""Of those, the draws the stratified random sample may take: it takes whole units (clean prompt x dose), and more draws
per unit would spread the same sample over fewer clean prompts."""


@dataclass(frozen=True)
class TaskCandidate:
    cid: str
    spec: int
    mode: TaskMode
    dose: int
    gap: str = ""
    """Value-mention modes: "near" (foil-side values within NEAR of the clean value) or "far" (the rest)."""
    draw: int = 0
    share: str = ""
    """Candidates with the same control prompt (a value-mention mode's clean prompt and dose: the clean value
    inserted dose times, whatever the gap and draw) share this key, and their control is evaluated once."""

    @property
    def cell(self) -> str:
        return self.mode.cell_key(self.dose) + (f":gap={self.gap}" if self.gap else "")

    @property
    def unit(self) -> str:
        return self.share or self.cid


def foil_side(task: Task, values: dict[str, str], gap: str) -> list[str]:
    """The values of the set rule's range for which the foil rule holds against the clean value (the clean value
    excluded), within NEAR of it ("near") or further ("far")."""
    x = float(values[task.answer.slot])
    return [
        w for w in task.foil.words(values) if w != values[task.answer.slot] and (abs(float(w) - x) <= NEAR) == (gap == "near")
    ]


def value_draws(pool: Sequence[str], dose: int, rng: random.Random) -> list[list[str]]:
    """Up to DRAWS distinct ordered draws of `dose` values from `pool` (no attack prompt twice), in a seeded order."""
    n = math.perm(len(pool), dose)
    if n <= 4 * DRAWS:  # small space: a seeded shuffle of all of it
        every = [list(p) for p in itertools.permutations(pool, dose)]
        rng.shuffle(every)
        return every[:DRAWS]
    seen: dict[tuple[str, ...], None] = {}
    while len(seen) < DRAWS:
        seen.setdefault(tuple(rng.sample(list(pool), dose)), None)
    return [list(v) for v in seen]


def candidates(task: Task, specs: Sequence[TaskSpec], modes: Sequence[TaskMode]) -> list[TaskCandidate]:
    """Every (clean spec, mode, dose) candidate; a value-mention mode also by gap and draw (distinct values: fewer draws where the
    gap has few)."""
    pool = []
    for i, sp in enumerate(specs):
        for m in modes:
            for d in m.doses:
                if m.edit != "mention":
                    pool.append(TaskCandidate(f"{sp.pair_id}:{m.name}:{d}", i, m, d))
                    continue
                for gap in ("near", "far"):
                    n = min(DRAWS, math.perm(len(foil_side(task, dict(sp.values), gap)), d))
                    pool += [
                        TaskCandidate(f"{sp.pair_id}:{m.name}:{d}:{gap}:{k}", i, m, d, gap, k, f"{sp.pair_id}:{m.name}:{d}")
                        for k in range(n)
                    ]
    return pool
