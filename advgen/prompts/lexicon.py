"""Names, places and objects, filtered to entries that are one token (with leading space).

A multi-token name would make "logit of IO" ill-defined, so nothing is ever truncated to its
first sub-token: entries that do not fit the tokenizer are dropped and reported instead.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

import yaml

from advgen.core.types import AdvgenError


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Name:
    text: str
    gender: str
    """"female", "male" or "unknown" (the paper's list carries no gender)."""
    source: str
    """"paper" or "faker"."""


@dataclass(frozen=True)
class Lexicon:
    """Single-token-checked word lists plus what was dropped, so reports can say so."""

    names: tuple[Name, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    """(kind, word) pairs removed because they are not a single token."""

    @property
    def name_texts(self) -> tuple[str, ...]:
        return tuple(n.text for n in self.names)


MIN_NAMES = 3
MIN_NOUNS = 1


@functools.cache
def _source() -> dict[str, list[str]]:
    text = resources.files("advgen.prompts").joinpath("data/lexicon.yaml").read_text()
    return yaml.safe_load(text)


def paper_names() -> tuple[str, ...]:
    """The 99 names of the IOI paper, in the paper's order."""
    return tuple(_source()["paper_names"])


def paper_places() -> tuple[str, ...]:
    return tuple(_source()["paper_places"])


def paper_objects() -> tuple[str, ...]:
    return tuple(_source()["paper_objects"])


def extra_places() -> tuple[str, ...]:
    return tuple(_source()["extra_places"])


def extra_objects() -> tuple[str, ...]:
    return tuple(_source()["extra_objects"])


def faker_names() -> tuple[Name, ...]:
    """Faker's en_US first names with their gender, in Faker's (alphabetical) order."""
    from faker.providers.person.en_US import Provider

    out = [Name(n, "female", "faker") for n in Provider.first_names_female]
    out += [Name(n, "male", "faker") for n in Provider.first_names_male]
    return tuple(out)


def all_names() -> tuple[Name, ...]:
    """Paper names first, then Faker names not already present (gender taken from Faker)."""
    fk = {n.text: n for n in faker_names()}
    out = [Name(t, fk[t].gender if t in fk else "unknown", "paper") for t in paper_names()]
    seen = {n.text for n in out}
    out += [n for n in faker_names() if n.text not in seen and not seen.add(n.text)]  # type: ignore[func-returns-value]
    return tuple(out)


def is_single_token(tokenizer: Tokenizer, word: str) -> bool:
    """True if " word" (leading space) encodes to exactly one token."""
    return len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1


def single_token_filter(tokenizer: Tokenizer, words: Iterable[str]) -> tuple[list[str], list[str]]:
    kept, dropped = [], []
    for w in words:
        (kept if is_single_token(tokenizer, w) else dropped).append(w)
    return kept, dropped


def build_lexicon(
    tokenizer: Tokenizer,
    names: Sequence[Name] | None = None,
    places: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    min_names: int = MIN_NAMES,
) -> Lexicon:
    """Check every entry against `tokenizer`; raise if too few survive to build prompts."""
    names = list(all_names() if names is None else names)
    places = list(paper_places() + extra_places() if places is None else places)
    objects = list(paper_objects() + extra_objects() if objects is None else objects)
    dropped: list[tuple[str, str]] = []
    kept_names = []
    for n in names:
        if is_single_token(tokenizer, n.text):
            kept_names.append(n)
        else:
            dropped.append(("name", n.text))
    kept_places, bad = single_token_filter(tokenizer, places)
    dropped += [("place", w) for w in bad]
    kept_objects, bad = single_token_filter(tokenizer, objects)
    dropped += [("object", w) for w in bad]
    if len(kept_names) < min_names:
        raise AdvgenError(
            f"lexicon has {len(kept_names)} single-token names (need >= {min_names}); "
            f"{len(names) - len(kept_names)} were dropped as multi-token under this tokenizer"
        )
    for kind, kept, given in (("place", kept_places, places), ("object", kept_objects, objects)):
        if len(kept) < MIN_NOUNS:
            raise AdvgenError(f"lexicon has no single-token {kind}s ({len(given)} given, all dropped or empty)")
    return Lexicon(tuple(kept_names), tuple(kept_places), tuple(kept_objects), tuple(dropped))


def report(lex: Lexicon) -> dict[str, object]:
    """What a manifest records about the lexicon: sizes and every dropped entry."""
    return {
        "names": len(lex.names),
        "places": len(lex.places),
        "objects": len(lex.objects),
        "dropped": [f"{kind}:{word}" for kind, word in lex.dropped],
    }
