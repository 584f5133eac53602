"""Units an attack will measure, queued ahead on a Ray pool so its workers run them side by side.

The attack's phases are sequential in the driver (the search needs each result before its next
choice), but much of what they measure is known in advance: every clean prompt, the random
sample's attack and control units, and the whole baseline. With `--backend ray` those are queued
in the order the driver will ask for them and run in the background, while the search's own units
take a free actor. A queued unit is exactly the unit the driver measures (same prompts, reads and
batch size), found by a key over all three, so every result is the one a lone run would give; a
unit the plan did not foresee is measured on demand. Resumed runs and local runs queue nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from advgen.core.types import Prompt, PromptSet
from advgen.model.backends import measure_unit
from advgen.model.validate import Measured, Read

Request = tuple[Sequence[Prompt], Sequence[Sequence[Read]]]
"""What one `_measure` call evaluates: prompts and each prompt's attention reads."""
C = TypeVar("C")


@dataclass
class Prefetcher:
    """Tickets of queued units by request key; `take` hands a queued unit's result over once."""

    backend: Any
    """A backend with `prefetch` / `take` / `discard` (RayBackend)."""
    tokenizer_hash: str
    batch_size: int
    tickets: dict[str, int] = field(default_factory=dict)

    def unit(self, prompts: Sequence[Prompt], reads: Sequence[Sequence[Read]]) -> tuple[PromptSet, Sequence[Sequence[Read]], int]:
        return PromptSet(tuple(prompts), self.tokenizer_hash), reads, self.batch_size

    def queue(self, requests: Sequence[Request]) -> None:
        units = [self.unit(p, r) for p, r in requests]
        for u, t in zip(units, self.backend.prefetch(measure_unit, units), strict=True):
            self.tickets.setdefault(request_key(u), t)

    def take(self, prompts: Sequence[Prompt], reads: Sequence[Sequence[Read]]) -> Measured | None:
        """The queued unit's result, or None when this exact unit was not queued."""
        t = self.tickets.pop(request_key(self.unit(prompts, reads)), None)
        return None if t is None else self.backend.take(t)

    def close(self) -> None:
        """Drop what was queued and never asked for (a plan that over-reached; nothing is written from it)."""
        self.backend.discard(self.tickets.values())
        self.tickets.clear()


def request_key(unit: tuple[PromptSet, Sequence[Sequence[Read]], int]) -> str:
    ps, reads, batch = unit
    text = repr(([repr(p) for p in ps.prompts], ps.tokenizer_hash, [[str(r) for r in rr] for rr in reads], batch))
    return hashlib.sha256(text.encode()).hexdigest()


def start(backend: Any, fresh: bool, tokenizer_hash: str, batch_size: int) -> Prefetcher | None:
    """A prefetcher for a backend that can queue units (Ray) on a fresh run; None otherwise (measure on demand)."""
    if not fresh or not callable(getattr(backend, "prefetch", None)):
        return None
    return Prefetcher(backend, tokenizer_hash, batch_size)


def pair_requests(
    chunks: Sequence[Sequence[C]],
    render: Callable[[C], tuple[Prompt, Prompt]],
    shared: Callable[[C], bool],
    attack_reads: Callable[[C], list[Read]],
    control_reads: Callable[[C], list[Read]],
) -> list[Request]:
    """The sample phase's units in order: each chunk's attacks, then its controls, a shared control only the first time."""
    seen: set[str] = set()
    out: list[Request] = []
    for chunk in chunks:
        pairs = [(c, *render(c)) for c in chunk]
        out.append(([a for _, a, _ in pairs], [attack_reads(c) for c, _, _ in pairs]))
        todo = []
        for c, _, k in pairs:
            if shared(c):
                if k.text in seen:
                    continue  # measured by an earlier unit (or earlier in this one) and reused, as `_controls` does
                seen.add(k.text)
            todo.append((c, k))
        if todo:
            out.append(([k for _, k in todo], [control_reads(c) for c, _ in todo]))
    return out
