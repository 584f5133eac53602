"""Seeded task prompts: slot values drawn per prompt, balanced over templates, with their corrupted twins.

Slots of one lexicon take distinct values within a prompt, so no slot can stand in for another
(the answer stays the only sensible continuation). The twin's fresh value is drawn with the
prompt, so the clean set and the twin set are fixed by the seed alone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.lexicons import Lexicons
from advgen.tasks.render import render_task_prompt
from advgen.tasks.spec import Task, TaskError, TaskTemplate

MAX_TRIES = 50
"""Redraws allowed when a mapped answer equals the foil before the task is declared unusable."""


@dataclass(frozen=True)
class TaskSpec:
    """An unrendered task prompt: template, slot values, and the corrupted twin's fresh value."""

    template: TaskTemplate
    values: Mapping[str, str]
    pair_id: str
    fresh: str
    """A value of the corrupted slot's lexicon not used in this prompt (the twin's replacement)."""


def _draw(task: Task, t: TaskTemplate, lex: Lexicons, rng: random.Random) -> tuple[dict[str, str], str]:
    for _ in range(MAX_TRIES):
        values: dict[str, str] = {}
        for name in sorted(set(task.slots.values())):
            mine = sorted(s for s, lx in task.slots.items() if lx == name)
            for s, w in zip(mine, rng.sample(lex.words[name], len(mine)), strict=True):
                values[s] = w
        pool = lex.words[task.slots[task.corrupt.slot]] if task.corrupt else next(iter(lex.words.values()))
        fresh = (
            task.corrupt.value
            if task.corrupt and task.corrupt.value
            else rng.choice([w for w in pool if w not in values.values()])
        )
        if task.answer.word(values) != task.foil.word(values):
            return values, fresh
    raise TaskError(
        f"task {task.name!r}, template {t.id!r}: answer and foil coincide in {MAX_TRIES} draws; check the answer/foil rules"
    )


def renders(task: Task, sp: TaskSpec, tokenizer: object) -> bool:
    """Whether the spec renders with every slot one token in context (GPT-2 splits " 1302" as " 130" + "2", so
    century 13 with year 02 does not: such draws are redrawn, as the greater-than paper keeps only years that split)."""
    try:
        render_spec(task, sp, tokenizer)
        if task.corrupt is not None:
            render_spec(task, sp, tokenizer, corrupt=True)
    except TaskError:
        return False
    return True


def iter_task_specs(
    task: Task, lex: Lexicons, n: int, seed: int, templates: Sequence[TaskTemplate] | None = None, tokenizer: object | None = None
) -> Iterator[TaskSpec]:
    """n specs, balanced over templates (shuffled blocks), a pure function of the seed.

    With `tokenizer`, a draw whose prompt does not render (a slot not one token in context) is redrawn,
    at most MAX_TRIES times in a row before the template is declared unusable for this tokenizer."""
    if n < 1:
        raise AdvgenError(f"--n must be >= 1, got {n}")
    pool = list(templates or task.templates)
    rng = random.Random(f"{task.name}:{seed}")
    done = 0
    while done < n:
        block = pool[:]
        rng.shuffle(block)
        for t in block[: n - done]:
            for _ in range(MAX_TRIES):
                values, fresh = _draw(task, t, lex, rng)
                sp = TaskSpec(t, values, f"{task.name}-s{seed}-{done:06d}", fresh)
                if tokenizer is None or renders(task, sp, tokenizer):
                    break
            else:
                render_spec(task, sp, tokenizer)  # raises the named error of the last draw
            yield sp
            done += 1


def render_spec(task: Task, sp: TaskSpec, tokenizer: object, *, corrupt: bool = False) -> Prompt:
    """The clean prompt, or its corrupted twin (same template and length, one mention given the fresh value)."""
    if not corrupt:
        return render_task_prompt(task, sp.template, sp.values, tokenizer, pair_id=sp.pair_id)
    if task.corrupt is None:
        raise TaskError(f"task {task.name!r} ({task.source}) defines no corrupted twin ('corrupt: {{slot: ...}}')")
    over = {(task.corrupt.slot, task.corrupt.mention): sp.fresh}
    return render_task_prompt(task, sp.template, sp.values, tokenizer, family="corrupt", pair_id=sp.pair_id, override=over)


def task_sets(task: Task, lex: Lexicons, tokenizer: object, n: int, seed: int) -> tuple[PromptSet, PromptSet | None]:
    """Clean prompts and (if the task has one) their corrupted twins, position-aligned prompt by prompt."""
    specs = list(iter_task_specs(task, lex, n, seed, tokenizer=tokenizer))
    h = tokenizer_hash(tokenizer)
    clean = PromptSet(tuple(render_spec(task, sp, tokenizer) for sp in specs), h)
    if task.corrupt is None:
        return clean, None
    twins = PromptSet(tuple(render_spec(task, sp, tokenizer, corrupt=True) for sp in specs), h)
    for a, b in zip(clean, twins, strict=True):
        if len(a) != len(b):
            raise TaskError(f"task {task.name!r}: the corrupted twin of {a.text!r} has {len(b)} tokens, the prompt {len(a)}")
    return clean, twins
