"""The candidate pool of a generic-task attack: every (clean prompt, mode, dose) and, for value mentions, gap and draw.

Pure bookkeeping (no model, no rendering), so the search, the stratified sample and the tests
agree on what one candidate is and which candidates share a control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from advgen.attacks.task_compiler import TaskMode
from advgen.tasks.sample import TaskSpec
from advgen.tasks.spec import Task

NEAR = 10
"""Value-mention modes: a foil-side value within this distance of the clean value is "near", else "far"."""
DRAWS = 3
"""Value-mention modes: candidates (independent value draws) per clean prompt, dose and gap."""


@dataclass(frozen=True)
class TaskCandidate:
    cid: str
    spec: int
    mode: TaskMode
    dose: int
    gap: str = ""
    """Value-mention modes: "near" (foil-side values within NEAR of the clean value) or "far" (the rest)."""
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
    return [w for w in task.foil.words(values) if w != values[task.answer.slot] and (abs(float(w) - x) <= NEAR) == (gap == "near")]


def candidates(task: Task, specs: Sequence[TaskSpec], modes: Sequence[TaskMode]) -> list[TaskCandidate]:
    """Every (clean spec, mode, dose) candidate; a value-mention mode also by gap and DRAWS value draws (where the gap has enough values)."""
    pool = []
    for i, sp in enumerate(specs):
        for m in modes:
            for d in m.doses:
                if m.edit != "mention":
                    pool.append(TaskCandidate(f"{sp.pair_id}:{m.name}:{d}", i, m, d))
                    continue
                for gap in ("near", "far"):
                    if len(foil_side(task, dict(sp.values), gap)) >= d:
                        pool += [TaskCandidate(f"{sp.pair_id}:{m.name}:{d}:{gap}:{k}", i, m, d, gap, f"{sp.pair_id}:{m.name}:{d}")
                                 for k in range(DRAWS)]
    return pool
