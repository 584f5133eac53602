"""Render a task prompt: template + slot values -> text, token ids and verified positions.

Positions come from the tokenizer's character offsets and are checked by decoding: every
mention of every slot must be exactly one token that decodes to " " + its value. Names: SLOT is
the first mention, SLOT@2 the second, SLOT+1 the token after a mention, END the last token (where
the answer is read). A template that starts with a slot is rendered with a leading space, so the
value is the same token (" word") there as everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advgen.core.types import Prompt
from advgen.tasks.lexicons import answer_token
from advgen.tasks.spec import SLOT_RE, Task, TaskError, TaskTemplate

Mention = tuple[str, int]
"""(slot, k): the k-th mention (1-based) of a slot."""


def position_name(slot: str, k: int) -> str:
    return slot if k == 1 else f"{slot}@{k}"


def fill_text(
    template: TaskTemplate, values: Mapping[str, str], override: Mapping[Mention, str] | None = None
) -> tuple[str, dict[str, tuple[int, int]]]:
    """The text and the character span of every mention, by position name."""
    text_t = template.text if template.text.startswith(" ") or not template.text.startswith("{") else " " + template.text
    pieces: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    count: dict[str, int] = {}
    pos = 0
    for m in SLOT_RE.finditer(text_t):
        slot = m.group(1)
        count[slot] = count.get(slot, 0) + 1
        pieces.append(text_t[pos : m.start()])
        if slot not in values:
            raise TaskError(f"template {template.id!r} ({template.source}): slot {{{slot}}} has no value")
        value = (override or {}).get((slot, count[slot]), values[slot])
        start = sum(map(len, pieces))
        pieces.append(value)
        spans[position_name(slot, count[slot])] = (start, start + len(value))
        pos = m.end()
    pieces.append(text_t[pos:])
    return "".join(pieces), spans


def token_positions(
    template: TaskTemplate, text: str, spans: Mapping[str, tuple[int, int]], tokenizer: Any
) -> tuple[list[int], dict[str, int]]:
    """BOS + token ids, and each mention's verified token index (BOS counted)."""
    if tokenizer.bos_token_id is None:
        raise TaskError("the tokenizer has no BOS token; task prompts start with BOS as IOI's do")
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = [tokenizer.bos_token_id, *enc["input_ids"]], list(enc["offset_mapping"])
    positions: dict[str, int] = {}
    for name, (a, b) in spans.items():
        hits = [i for i, (s, e) in enumerate(offsets) if s < b and e > a]
        word = text[a:b]
        want = (" " if a > 0 and text[a - 1] == " " else "") + word
        if len(hits) != 1 or tokenizer.decode([ids[hits[0] + 1]]) != want:
            got = [tokenizer.decode([ids[i + 1]]) for i in hits]
            raise TaskError(
                f"template {template.id!r} ({template.source}), slot {{{name}}}: {want!r} is not one token "
                f"in context (tokens {got})"
            )
        positions[name] = hits[0] + 1
    for name, i in list(positions.items()):
        if i + 1 < len(ids):
            positions[f"{name}+1"] = i + 1
    positions["END"] = len(ids) - 1
    return ids, positions


def render_task_prompt(
    task: Task,
    template: TaskTemplate,
    values: Mapping[str, str],
    tokenizer: Any,
    *,
    family: str = "clean",
    pair_id: str = "",
    override: Mapping[Mention, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Prompt:
    """One prompt of `task`; answer and foil follow the task's rules from the (unoverridden) slot values."""
    text, spans = fill_text(template, values, override)
    ids, positions = token_positions(template, text, spans, tokenizer)
    answer, foil = task.answer.word(values), task.foil.word(values)
    if answer == foil:
        raise TaskError(f"task {task.name!r}, template {template.id!r}: answer and foil are both {answer!r} for {dict(values)}")
    ans = tuple(answer_token(tokenizer, w, task.answer.space, f"task {task.name!r} answer") for w in task.answer.words(values))
    foils = tuple(answer_token(tokenizer, w, task.foil.space, f"task {task.name!r} foil") for w in task.foil.words(values))
    if not ans or not foils or set(ans) & set(foils):
        raise TaskError(
            f"task {task.name!r}, template {template.id!r}: for {dict(values)} the answer set ({len(ans)} tokens) and the "
            f"foil set ({len(foils)}) must both be non-empty and disjoint"
        )
    info = {
        "task": task.name,
        "values": dict(sorted(values.items())),
        **({"override": {f"{s}@{k}": v for (s, k), v in override.items()}} if override else {}),
        **(extra or {}),
    }
    sets = task.sets
    return Prompt(
        text=text,
        io=answer,
        s=foil,
        token_ids=tuple(ids),
        positions=positions,
        io_token=ans[0],
        s_token=foils[0],
        template_id=template.id,
        order=task.name,
        family=family,
        pair_id=pair_id,
        extra=info,
        task=task.name,
        answer_tokens=ans if sets else (),
        foil_tokens=foils if sets else (),
    )
