"""The stratified random sample of an attack run: the unbiased per-mode table comes from it.

Candidates are drawn as whole units (one candidate, or every candidate of one clean prompt that
shares a control), so a shared control is evaluated once and every cell still gets the same count.
"""

from __future__ import annotations

import random
from collections.abc import Container, Sequence
from typing import Protocol, TypeVar


class Unitised(Protocol):
    @property
    def cell(self) -> str: ...
    @property
    def unit(self) -> str: ...


C = TypeVar("C", bound=Unitised)


def stratified(pool: Sequence[C], n: int, seed: int) -> list[C]:
    """Round-robin over kinds of unit: whole units (random within their kind) up to n candidates (the unbiased per-mode sample).

    A unit is one candidate, or every candidate of one clean prompt sharing a control; units of
    one kind cover the same cells, so every cell gets the same count. With single-candidate
    units this is round-robin over cells.
    """
    rng = random.Random(f"{seed}:sample")
    units: dict[str, list[C]] = {}
    for cand in pool:
        units.setdefault(cand.unit, []).append(cand)
    by_kind: dict[tuple[str, ...], list[list[C]]] = {}
    for u in units.values():
        by_kind.setdefault(tuple(c.cell for c in u), []).append(u)
    for lst in by_kind.values():
        rng.shuffle(lst)
    out: list[C] = []
    grew = True
    while grew:
        grew = False
        for lst in by_kind.values():
            if lst and len(out) + len(lst[-1]) <= n:
                out += lst.pop()
                grew = True
    return out


def pop_chunk(queues: dict[str, list[C]], picks: Sequence[str], known: Container[str]) -> list[C]:
    """One candidate off the front of each picked cell's queue, but at most one per unit whose control is still unknown.

    Siblings picked together before their shared control is known all pay their attack, and when
    that control breaks none of their breaks can count; so a second sibling of a unit already in
    this chunk gives way to the next candidate of its cell (the first one when every candidate is such).
    """
    pending: set[str] = set()
    out: list[C] = []
    for key in picks:
        q = queues[key]
        i = next((j for j, c in enumerate(q) if c.unit in known or c.unit not in pending), 0)
        c = q.pop(i)
        if c.unit not in known:
            pending.add(c.unit)
        out.append(c)
    return out
