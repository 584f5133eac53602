"""The edits generic-task attacks make: `{E1} {E2}` pairs inserted at the task's insertion point.

Only inserted slots change: the task's own slot values are untouched, so the answer and foil
(computed by the task's rules from those values) are the clean prompt's, and an attack and its
control differ only in the kinds of E1/E2 the mode names. Every inserted word is one token of
the model's vocabulary (rendering verifies each mention).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from advgen.core.types import AdvgenError, Prompt
from advgen.tasks.render import render_task_prompt
from advgen.tasks.sample import TaskSpec
from advgen.tasks.spec import Task, TaskError, TaskTemplate

SLOTS = ("E1", "E2")


def edited_template(task: Task, t: TaskTemplate, dose: int) -> TaskTemplate:
    """`t` with `dose` pairs "{E1} {E2} " inserted right before the first mention of the task's insertion slot."""
    if task.edits is None:
        raise TaskError(
            f"task {task.name!r} ({task.source}) defines no edits ('edits: {{insert_before: SLOT, filler: LEXICON}}')"
        )
    if any(s in task.slots for s in SLOTS):
        raise TaskError(f"task {task.name!r}: slots {SLOTS} are reserved for attack insertions")
    mark = "{" + task.edits.insert_before + "}"
    at = t.text.find(mark)
    if at < 0:
        raise TaskError(f"template {t.id!r} ({t.source}) has no {mark} to insert before (edits.insert_before)")
    return TaskTemplate(f"{t.id}+e{dose}", t.text[:at] + "{E1} {E2} " * dose + t.text[at:], t.source)


def end_value(p: Prompt) -> str:
    """The slot value at the prompt's END (the token the task repeats there)."""
    names = [n for n, i in p.positions.items() if i == p.end and n != "END" and "+1" not in n]
    if not names:
        raise AdvgenError(f"prompt {p.pair_id!r}: no slot is mentioned at END; the copy rule needs END to be a slot")
    return p.extra["values"][sorted(names)[0].split("@")[0]]


def fillers(task: Task, words: Sequence[str], taken: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """n distinct fresh words of the filler lexicon, none a value of the prompt (nor its answer or foil)."""
    pool = sorted(set(words) - set(taken))
    if len(pool) < n:
        raise TaskError(f"task {task.name!r}: filler lexicon has {len(pool)} fresh words, an edit needs {n}")
    return rng.sample(pool, n)


def render_edit(
    task: Task,
    sp: TaskSpec,
    clean: Prompt,
    kinds: tuple[str, str],
    fill: Sequence[str],
    dose: int,
    tokenizer: Any,
    family: str,
    extra: Mapping[str, Any],
) -> Prompt:
    """The clean spec with `dose` inserted pairs; E1/E2 of kind "end", "foil" or "filler" (fillers taken from `fill`:
    E1's are fill[:dose], E2's fill[dose:])."""

    def value(kind: str, slot: int, k: int) -> str:
        if kind == "end":
            return end_value(clean)
        if kind == "foil":
            return clean.s
        return fill[slot * dose + k]

    t = edited_template(task, sp.template, dose)
    vals = {s: value(kinds[j], j, 0) for j, s in enumerate(SLOTS)}
    over = {(s, k + 1): value(kinds[j], j, k) for j, s in enumerate(SLOTS) for k in range(1, dose)}
    p = render_task_prompt(
        task, t, {**sp.values, **vals}, tokenizer, family=family, pair_id=sp.pair_id, override=over, extra=extra
    )
    if (p.io_token, p.s_token) != (clean.io_token, clean.s_token):
        raise AdvgenError(f"edit of {sp.pair_id!r} changed the answer or foil ({p.io!r}/{p.s!r} vs {clean.io!r}/{clean.s!r})")
    return p


def taken(clean: Prompt) -> list[str]:
    return [*clean.extra["values"].values(), clean.io, clean.s]


MENTION = "E"
"""The slot of an inserted value mention (`edits.mention`); its k-th mention is position E@k."""


def render_mention_edit(
    task: Task, sp: TaskSpec, clean: Prompt, values: Sequence[str], tokenizer: Any, family: str, extra: Mapping[str, Any]
) -> Prompt:
    """The clean spec with one `edits.mention` per value (e.g. "1705 " for "{XX}{E}") inserted before the insertion slot.

    Only the inserted mentions are new: the set rule still compares against the clean prompt's value, so the
    answer and foil sets are the clean prompt's (checked)."""
    if task.edits is None or not task.edits.mention:
        raise TaskError(f"task {task.name!r} ({task.source}) defines no value mention ('edits: {{mention: ...}}')")
    if MENTION in task.slots:
        raise TaskError(f"task {task.name!r}: slot {MENTION} is reserved for inserted value mentions")
    mark = "{" + task.edits.insert_before + "}"
    at = sp.template.text.find(mark)
    if at < 0:
        raise TaskError(
            f"template {sp.template.id!r} ({sp.template.source}) has no {mark} to insert before (edits.insert_before)"
        )
    t = TaskTemplate(
        f"{sp.template.id}+m{len(values)}",
        sp.template.text[:at] + (task.edits.mention + " ") * len(values) + sp.template.text[at:],
        sp.template.source,
    )
    over = {(MENTION, k + 1): v for k, v in enumerate(values) if k}
    p = render_task_prompt(
        task, t, {**sp.values, MENTION: values[0]}, tokenizer, family=family, pair_id=sp.pair_id, override=over, extra=extra
    )
    if (p.io_token, p.s_token) != (clean.io_token, clean.s_token):
        raise AdvgenError(f"edit of {sp.pair_id!r} changed the answer or foil ({p.io!r}/{p.s!r} vs {clean.io!r}/{clean.s!r})")
    return p
