"""The whole IOI prompt space as a lazy, indexable product: nothing is materialised.

The space is templates x name pairs x places x objects x orders (x distractor cells, optionally).
Index i is decoded by mixed-radix arithmetic: the name pair is the slowest digit, so every prefix
of the space holds complete (template, order, place, object, distractor) blocks; inside a pair's
block each template has its own radices (a template without {PLACE} does not multiply by the
places, so no prompt is counted twice). Pairs are enumerated round-robin (pair k puts name
k mod n at IO and the name (k // n + 1) places later at S), so a prefix spreads over every name.

A seeded sample is a prefix of a seeded permutation of [0, size): a Feistel network with cycle
walking maps position -> index in O(1) memory, without replacement, the same on every machine.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from advgen.core.types import AdvgenError, Prompt
from advgen.prompts.lexicon import Lexicon, paper_names, paper_objects, paper_places
from advgen.prompts.templates import ORDERS, Fill, Template, render

FEISTEL_ROUNDS = 6
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Point:
    """One decoded index: every choice that makes a prompt."""

    index: int
    template: Template
    order: str
    io: str
    s: str
    place: str
    object: str
    distractor: int
    """0: none; 1 + 2k: sentence k naming IO; 2 + 2k: sentence k naming S."""


@dataclass(frozen=True)
class PromptSpace:
    """templates x ordered name pairs x places x objects x orders (x distractor cells)."""

    templates: tuple[Template, ...]
    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    orders: tuple[str, ...] = ORDERS
    distractors: tuple[str, ...] = ()
    """Sentences with one {N} slot; empty means no distractor dimension."""
    sizes: tuple[int, ...] = field(init=False, repr=False)
    """Per-template block size inside one name pair's block."""

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise AdvgenError(f"the prompt space needs at least 2 names, got {len(self.names)}")
        if not self.templates or not self.orders:
            raise AdvgenError("the prompt space needs at least one template and one order")
        object.__setattr__(self, "sizes", tuple(self._radices(t)[-1] for t in self.templates))

    def _radices(self, t: Template) -> tuple[int, int, int, int, int]:
        """(orders, places, objects, distractor cells, product) for one template."""
        slots = t.slots
        r = (
            len(self.orders),
            len(self.places) if "PLACE" in slots else 1,
            len(self.objects) if "OBJECT" in slots else 1,
            1 + 2 * len(self.distractors),
        )
        return (*r, r[0] * r[1] * r[2] * r[3])

    @property
    def n_pairs(self) -> int:
        return len(self.names) * (len(self.names) - 1)

    @property
    def block(self) -> int:
        """Prompts per name pair."""
        return sum(self.sizes)

    def __len__(self) -> int:
        return self.n_pairs * self.block

    @property
    def size(self) -> int:
        """The number of prompts (`len` too; a task's space can exceed what `len` may return)."""
        return len(self)

    def pair(self, k: int) -> tuple[str, str]:
        """Ordered pair k (round-robin): IO = name k mod n, S = the name (k // n + 1) after it."""
        n = len(self.names)
        step, io = divmod(k, n)
        return self.names[io], self.names[(io + step + 1) % n]

    def point(self, i: int) -> Point:
        if not 0 <= i < len(self):
            raise AdvgenError(f"index {i} is outside the prompt space of {len(self)} prompts")
        k, r = divmod(i, self.block)
        starts = _cumulative(self.sizes)
        t = bisect.bisect_right(starts, r) - 1
        r -= starts[t]
        n_o, n_p, n_obj, _, _ = self._radices(self.templates[t])
        r, o = divmod(r, n_o)
        r, p = divmod(r, n_p)
        d, ob = divmod(r, n_obj)
        io, s = self.pair(k)
        tpl = self.templates[t]
        return Point(
            i,
            tpl,
            self.orders[o],
            io,
            s,
            self.places[p] if "PLACE" in tpl.slots else "",
            self.objects[ob] if "OBJECT" in tpl.slots else "",
            d,
        )

    def clean_index(self, i: int) -> int:
        """The index of i's prompt without its distractor (i itself when it has none)."""
        pt = self.point(i)
        n_o, n_p, n_obj, _, _ = self._radices(pt.template)
        return i - pt.distractor * n_o * n_p * n_obj

    def render(self, i: int, tokenizer: Any) -> Prompt:
        """Prompt i with verified positions; family clean, distractor_io or distractor_s."""
        pt = self.point(i)
        t, family, note = pt.template, "clean", {}
        text = t.in_order(pt.order)
        if pt.distractor:
            k, who = divmod(pt.distractor - 1, 2)
            slot = _free_slot(t.slots, "IO", 2) if who == 0 else _free_slot(t.slots, "S", 3)
            text = insert_sentence(text, self.distractors[k].replace("{N}", "{" + slot + "}"))
            family = "distractor_io" if who == 0 else "distractor_s"
            note = {"distractor": self.distractors[k], "distractor_names": "IO" if who == 0 else "S"}
        xs = sorted({sl for sl in t.slots if sl.startswith("X")})
        extra_names = tuple(n for n in self.names if n not in (pt.io, pt.s))[: len(xs)]
        fill = Fill(io=pt.io, s=pt.s, place=pt.place, object=pt.object, x=extra_names)
        tt = Template(id=t.id, text=text, pack=t.pack, source=t.source)
        return render(
            tt, pt.order, fill, tokenizer, family=family, pair_id=f"x{self.clean_index(i)}", extra={"space_index": i, **note}
        )

    def describe(self) -> dict[str, Any]:
        """What a manifest records: sizes and the word lists (so the enumeration can be rebuilt)."""
        return {
            "size": len(self),
            "templates": [t.id for t in self.templates],
            "names": list(self.names),
            "places": list(self.places),
            "objects": list(self.objects),
            "orders": list(self.orders),
            "distractors": list(self.distractors),
            "block": self.block,
        }


def _cumulative(sizes: Sequence[int]) -> list[int]:
    out, tot = [], 0
    for s in sizes:
        out.append(tot)
        tot += s
    return out


def _free_slot(slots: Sequence[str], base: str, first: int) -> str:
    k = first
    while f"{base}{k}" in slots:
        k += 1
    return f"{base}{k}"


def insert_sentence(text: str, sentence: str) -> str:
    """A sentence after the first clause (before the sentence holding {S2}), else before the text.

    A text-initial name would be a different token (no leading space), so a sentence placed first
    gets "Earlier, " in front when it starts with a slot.
    """
    s2 = text.index("{S2}")
    cut = text.rfind(". ", 0, s2)
    if cut >= text.index("{IO}"):
        return text[: cut + 2] + sentence + " " + text[cut + 2 :]
    lead = "Earlier, " + sentence if sentence.startswith("{") else sentence
    return lead + " " + text


def paper_space(
    templates: Sequence[Template],
    lexicon: Lexicon,
    distractors: Sequence[str] = (),
    full_lexicon: bool = False,
    orders: Sequence[str] = ORDERS,
) -> PromptSpace:
    """The paper's lists (99 names, 8 places, 8 objects) kept by the lexicon, or the full lexicon."""
    if full_lexicon:
        names, places, objects = lexicon.name_texts, lexicon.places, lexicon.objects
    else:
        kept = set(lexicon.name_texts)
        names = tuple(n for n in paper_names() if n in kept)
        places = tuple(p for p in paper_places() if p in lexicon.places)
        objects = tuple(o for o in paper_objects() if o in lexicon.objects)
    return PromptSpace(tuple(templates), tuple(names), tuple(places), tuple(objects), tuple(orders), tuple(distractors))


# ---- selections: which positions of the space a scan visits -------------------------------------


@dataclass(frozen=True)
class Selection:
    """The first `n` indices (prefix), or `n` indices sampled without replacement (seeded)."""

    size: int
    n: int
    sample_seed: int | None = None
    """None: a prefix of the enumeration; an int: a seeded sample."""

    @classmethod
    def of(cls, size: int, limit: int | None = None, sample: int | None = None, seed: int = 0) -> Selection:
        if limit is not None and sample is not None:
            raise AdvgenError("give --limit or --sample, not both")
        want = sample if sample is not None else limit
        if want is not None and want < 1:
            raise AdvgenError(f"--limit / --sample must be >= 1, got {want}")
        n = size if want is None else min(want, size)
        return cls(size, n, seed if sample is not None and n < size else None)

    @property
    def kind(self) -> str:
        if self.n == self.size:
            return "exhaustive"
        return "prefix" if self.sample_seed is None else "sample"

    def indices(self, start: int, stop: int) -> list[int]:
        """Space indices at selection positions [start, stop)."""
        stop = min(stop, self.n)
        if self.sample_seed is None:
            return list(range(start, stop))
        perm = Feistel(self.size, self.sample_seed)
        return [perm(p) for p in range(start, stop)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "space_size": self.size, "sample_seed": self.sample_seed}


def _mix(x: int) -> int:
    """splitmix64's finaliser: a fast, well-mixed 64-bit hash in pure integer arithmetic."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Feistel:
    """A seeded bijection of [0, size): a balanced Feistel network on 2h bits, cycle-walked into range."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise AdvgenError("cannot permute an empty space")
        self.size = size
        self.half = max(1, ((size - 1).bit_length() + 1) // 2)
        self.mask = (1 << self.half) - 1
        rng = random.Random(f"advgen-space:{seed}")
        self.keys = tuple(rng.getrandbits(64) for _ in range(FEISTEL_ROUNDS))

    def _encrypt(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << self.half) | right

    def __call__(self, position: int) -> int:
        y = self._encrypt(position)
        while y >= self.size:  # the domain is < 4 x size, so this ends after a few steps on average
            y = self._encrypt(y)
        return y


def chunks(n: int, unit: int) -> Iterator[tuple[int, int]]:
    """[start, stop) position ranges of `unit` (the last one shorter) covering [0, n)."""
    if unit < 1:
        raise AdvgenError(f"unit size must be >= 1, got {unit}")
    for start in range(0, n, unit):
        yield start, min(n, start + unit)
