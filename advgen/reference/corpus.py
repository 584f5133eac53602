"""Seeded generator of the reference model's training corpus.

The corpus is simple, grammar-generated English about people, places and objects (its phrases are
in `advgen.reference.corpus_words`). It has four kinds of documents (see MODEL_CARD.md for the
principles and the counts):

- ``ioi``: two people are introduced, one of them (the subject) then gives / hands / says
  something to the other; the recipient is always the person who is not the subject.
- ``abc``: like ``ioi`` but a third person is the subject, and the recipient is one of the two
  introduced people chosen uniformly at random (so no fixed preference can be learned).
- ``story``: short multi-sentence passages about two or three people whose names recur
  naturally (states, errands, interactions, giving events with the true recipient).
- ``filler``: simple sentences without an IOI structure (places, objects, weather, animals).

The 15 templates of the IOI paper (Wang et al. 2022) are held out: every generated document is
checked against their skeletons (names, places, objects and articles wildcarded) and rejected if
it contains one. Randomness comes only from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from advgen.prompts import lexicon
from advgen.reference.corpus_words import (
    AFTER_IO,
    ENDINGS,
    FILLER_ADJ,
    FILLER_NOUNS,
    FILLER_VERBS_INTR,
    GIVE_INF,
    GIVE_VERBS,
    JOINT_ACTS,
    MODAL_PREFIX,
    OPENERS,
    PAIR_ACTS,
    PLURAL_STATES,
    SAY_VERBS,
    SOLO_ACTS,
    STATES,
    SUBORDINATORS,
    WEATHER,
    article,
    fix_articles,
)
from advgen.reference.heldout import contains_paper_template

T = TypeVar("T")

BOS = "<|endoftext|>"


@dataclass(frozen=True)
class Vocab:
    names: tuple[str, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]


FAKER_STRIDE = 6
"""Every FAKER_STRIDE-th Faker-only name is used (plus all 99 paper names and prefixes of used
names that are lexicon names); see MODEL_CARD.md."""


def corpus_names(faker_stride: int = FAKER_STRIDE) -> tuple[str, ...]:
    """All 99 paper names, every `faker_stride`-th Faker name not in the paper's list, and any
    lexicon name that is a prefix of one of those (repeated until stable)."""
    names = [n.text for n in lexicon.all_names()]
    paper = [n for n, src in zip(names, lexicon.all_names(), strict=False) if src.source == "paper"]
    faker = [n for n, src in zip(names, lexicon.all_names(), strict=False) if src.source != "paper"]
    chosen = paper + faker[::faker_stride]
    # A lexicon name that is a prefix of a chosen one (" Alex" of " Alexander") tends to become a
    # token of its own; include it so that no single-token lexicon name is left untrained.
    while True:
        extra = [n for n in names if n not in chosen and any(m != n and m.startswith(n) for m in chosen)]
        if not extra:
            return tuple(chosen)
        chosen += extra


def default_vocab(faker_stride: int = FAKER_STRIDE) -> Vocab:
    """Corpus names (see `corpus_names`), all lexicon places and all lexicon objects."""
    return Vocab(
        names=corpus_names(faker_stride),
        places=tuple(lexicon.paper_places() + lexicon.extra_places()),
        objects=tuple(lexicon.paper_objects() + lexicon.extra_objects()),
    )


class _Gen:
    def __init__(self, rng: random.Random, vocab: Vocab):
        self.r = rng
        self.v = vocab

    # -- small helpers
    def c(self, seq: Sequence[T]) -> T:
        return self.r.choice(seq)

    def names(self, k: int) -> list[str]:
        return self.r.sample(self.v.names, k)

    def fill(self, s: str, obj: str | None = None, place: str | None = None) -> str:
        if "{O}" in s:
            s = s.replace("{O}", obj or self.c(self.v.objects))
        if "{P}" in s:
            s = s.replace("{P}", place or self.c(self.v.places))
        return fix_articles(s)

    def state_sentence(self, name: str) -> str:
        r = self.r.random()
        if r < 0.6:
            return f"{name} {self.c(STATES)}."
        return self.fill(f"{name} {self.c(SOLO_ACTS)}.")

    def neutral_sentence(self) -> str:
        r = self.r.random()
        if r < 0.3:
            return self.c(WEATHER)
        if r < 0.55:
            return fix_articles(f"The {self.c(self.v.places)} was {self.c(FILLER_ADJ)}.")
        if r < 0.8:
            return f"The {self.c(FILLER_NOUNS)} {self.c(FILLER_VERBS_INTR)}."
        return f"They {self.c(PLURAL_STATES)}."

    # -- intro: introduces x and y (in this order); returns text ending with ", " or ". "
    def intro(self, x: str, y: str) -> tuple[str, str]:
        """Returns (intro text, separator kind) where the main clause follows directly."""
        r = self.r.random()
        act = self.fill(self.c(JOINT_ACTS))
        if r < 0.35:  # subordinate clause + comma
            sub = self.c(SUBORDINATORS)
            return f"{sub} {x} and {y} {act}, ", "comma"
        if r < 0.65:  # full sentence
            return f"{self.c(OPENERS)}{x} and {y} {act}. ", "stop"
        if r < 0.75:  # names not coordinated
            return self.fill(f"{self.c(OPENERS)}{x} {self.c(PAIR_ACTS)} {y} at the {{P}}. "), "stop"
        if r < 0.82:
            return self.fill(f"{x} and {y} were at the {{P}}, and "), "and"
        if r < 0.90:
            return self.fill(f"At the {{P}}, {x} and {y} {self.c(PLURAL_STATES)}. "), "stop"
        if r < 0.95:
            return f"{x} was with {y}. ", "stop"
        return self.fill(f"{x} and {y} {act}, so "), "and"

    def main_clause(self, s: str, obj: str) -> tuple[str, str]:
        """Main clause ending right before the recipient name; returns (text, after-name tail)."""
        r = self.r.random()
        if r < 0.45:
            return f"{s} {self.c(GIVE_VERBS)} {article(obj)} to", self.c(ENDINGS)
        if r < 0.55:
            return f"{s} {self.c(GIVE_VERBS)} the {obj} to", self.c(ENDINGS)
        if r < 0.62:
            return f"{s} {self.c(GIVE_VERBS)} it to", self.c(ENDINGS)
        if r < 0.75:
            return f"{s} {self.c(MODAL_PREFIX)} {self.c(GIVE_INF)} {article(obj)} to", "."
        if r < 0.83:  # double object: "S gave IO a ring."
            return f"{s} {self.c(('gave', 'handed', 'sent', 'showed', 'offered', 'brought', 'lent'))}", f" {article(obj)}."
        return f"{s} {self.c(SAY_VERBS)}", self.c((".", ".", " again.", " quietly.", " for a while."))

    def middle(self, people: Sequence[str]) -> str:
        """Optional sentence between intro and main clause, about a uniformly chosen person."""
        r = self.r.random()
        if r < 0.75:
            return " " + self.state_sentence(self.c(people))
        return " " + self.neutral_sentence()

    # -- document kinds
    def ioi(self) -> str:
        x, y = self.names(2)
        s = self.c((x, y))
        io = y if s == x else x
        return self._giving_doc(x, y, s, io)

    def abc(self) -> str:
        x, y, z = self.names(3)
        io = self.c((x, y))
        return self._giving_doc(x, y, z, io)

    def _giving_doc(self, x: str, y: str, s: str, io: str) -> str:
        obj = self.c(self.v.objects)
        intro, kind = self.intro(x, y)
        if kind == "stop" and self.r.random() < 0.25:
            intro = intro + self.middle((x, y)).strip() + " "
        if kind == "stop" and self.r.random() < 0.15:
            intro = intro + self.middle((x, y)).strip() + " "
        main, tail = self.main_clause(s, obj)
        text = f"{intro}{main} {io}{tail}"
        if self.r.random() < 0.35:
            text += self.c(AFTER_IO).format(IO=io, S=s)
        if self.r.random() < 0.15:  # sometimes a lead-in sentence before everything
            text = self.neutral_sentence() + " " + text
        return text.strip()

    def story(self) -> str:
        k = self.c((2, 2, 3))
        people = self.names(k)
        n_sent = self.r.randint(3, 7)
        out = []
        for _ in range(n_sent):
            r = self.r.random()
            p = self.c(people)
            if r < 0.35:
                out.append(self.state_sentence(p))
            elif r < 0.5:
                q = self.c([n for n in people if n != p])
                out.append(f"{p} {self.c(PAIR_ACTS)} {q}.")
            elif r < 0.65:
                q = self.c([n for n in people if n != p])
                out.append(fix_articles(f"{p} {self.c(GIVE_VERBS)} {article(self.c(self.v.objects))} to {q}."))
            elif r < 0.75:
                q = self.c([n for n in people if n != p])
                out.append(f"{p} {self.c(SAY_VERBS)} {q}.")
            elif r < 0.85:
                a, b = self.r.sample(people, 2)
                out.append(self.fill(f"{a} and {b} {self.c(JOINT_ACTS)}."))
            else:
                out.append(self.neutral_sentence())
        return " ".join(out)

    def filler(self) -> str:
        n = self.r.randint(1, 4)
        out = []
        for _ in range(n):
            r = self.r.random()
            if r < 0.4:
                out.append(self.neutral_sentence())
            elif r < 0.6:
                out.append(
                    fix_articles(
                        f"The {self.c(self.v.objects)} was on the {self.c(FILLER_NOUNS)}."
                        if self.r.random() < 0.3
                        else f"There was {article(self.c(FILLER_ADJ))} {self.c(self.v.objects)} in the {self.c(self.v.places)}."
                    )
                )
            elif r < 0.8:
                out.append(f"The {self.c(FILLER_NOUNS)} and the {self.c(FILLER_NOUNS)} {self.c(FILLER_VERBS_INTR)}.")
            else:
                out.append(
                    fix_articles(
                        f"{article(self.c(FILLER_NOUNS)).capitalize()} {self.c(FILLER_VERBS_INTR)} "
                        f"near the {self.c(self.v.places)}."
                    )
                )
        return " ".join(out)


KINDS: tuple[tuple[str, float], ...] = (("ioi", 0.60), ("abc", 0.10), ("story", 0.20), ("filler", 0.10))


def generate_documents(rng: random.Random, n_docs: int, vocab: Vocab | None = None) -> tuple[list[str], Counter[str]]:
    """`n_docs` documents (without BOS) and a Counter of kinds (plus rejected held-out hits)."""
    gen = _Gen(rng, vocab or default_vocab())
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    docs: list[str] = []
    counts: Counter[str] = Counter()
    while len(docs) < n_docs:
        kind = rng.choices(kinds, weights)[0]
        text = getattr(gen, kind)()
        if contains_paper_template(text):
            counts["rejected_paper_template"] += 1
            continue
        docs.append(text)
        counts[kind] += 1
    return docs, counts


def required_words(vocab: Vocab | None = None) -> list[str]:
    """Words that must be single tokens with a leading space in the reference tokenizer."""
    v = vocab or default_vocab()
    return list(dict.fromkeys([*v.names, *v.places, *v.objects]))
