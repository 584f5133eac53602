"""Shared controls: candidates whose control is the same prompt get one evaluation of it, and copies of its row.

Both attack engines (IOI's `search` and the generic tasks' `task_attack`) share controls the same
way, so the rule lives here once: a control prompt already evaluated (an earlier unit, or earlier in
this call) is copied, never re-run; a copy is marked `extra.control_reused_from` (the journal's
`REUSED`, which `evaluated` does not count) and every shared row names its unit. Known controls are
kept by prompt text, from computed and resumed journal units alike, so a resumed run reuses the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol, TypeVar

from advgen.attacks.journal import REUSED
from advgen.core.types import Prompt

SHARED = "control_unit"
"""Key in a shared control row's `extra`: the unit (clean prompt + share key) whose candidates may reuse it."""


class Shares(Protocol):
    @property
    def cid(self) -> str: ...
    @property
    def unit(self) -> str: ...


C = TypeVar("C", bound=Shares)
Row = Mapping[str, Any]


def control_rows(
    items: Sequence[tuple[C, Prompt]],
    known: Mapping[str, Row],
    measure: Callable[[list[int]], Sequence[Row]],
    fresh: Callable[[C, Prompt], Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """A control row per item: `measure(indices)` runs the model on the controls not evaluated yet (one per text);
    the others copy their source row, with `fresh(candidate, prompt)`'s fields (its text, tags, params) on top.

    Only candidates of a shared unit (unit != cid) are looked up; a candidate with a control of its own is always run.
    """
    first: dict[str, int] = {}  # text of a shared control -> the item that evaluates it in this call
    todo: list[int] = []
    for i, (c, p) in enumerate(items):
        if c.unit == c.cid:
            todo.append(i)
        elif p.text not in known and p.text not in first:
            first[p.text] = i
            todo.append(i)
    got = dict(zip(todo, measure(todo) if todo else [], strict=True))
    rows: list[dict[str, Any]] = []
    for i, (c, p) in enumerate(items):
        if i in got:
            rows.append(dict(got[i]) if c.unit == c.cid else {**got[i], "extra": {**got[i]["extra"], SHARED: c.unit}})
            continue
        src = known.get(p.text) or got[first[p.text]]
        row = {**src, **fresh(c, p)}
        rows.append({**row, "extra": {**row["extra"], SHARED: c.unit, REUSED: src["candidate"]}})
    return rows


def remember(known: MutableMapping[str, Any], rows: Sequence[Row]) -> None:
    """Register the evaluated shared controls among a finished unit's rows (computed and resumed units alike), by text."""
    for r in rows:
        if r["family"] == "control" and SHARED in r["extra"] and REUSED not in r["extra"]:
            known.setdefault(r["text"], r)


def control_held(known: Mapping[str, Row]) -> dict[str, bool]:
    """Unit -> whether its evaluated shared control held (LD >= 0): the search puts those candidates first."""
    return {r["extra"][SHARED]: r["logit_diff"] >= 0 for r in known.values()}
