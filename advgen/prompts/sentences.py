"""Distractor sentences: the IOI paper's five plus sentences generated from small nltk grammars.

Sentences keep their name slots as placeholders ({N}, or {A}/{B} for pairs) so the attack code
can rename them to template slots ({IO2}, {S3}, {X}); rendering then verifies that every name
lands on exactly one token. Grammars expand PLACE and OBJECT over the (single-token-checked)
lexicon, so no word list is downloaded and every sentence is reproducible.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from advgen.core.files import read_text
from advgen.core.types import AdvgenError
from advgen.core.yamlsafe import MAX_YAML_CHARS, load_yaml
from advgen.prompts.lexicon import Lexicon
from advgen.prompts.templates import TEMPLATES_DIR

DISTRACTORS = TEMPLATES_DIR / "distractors.yaml"
SENTENCE_KINDS = ("neutral", "away", "filler", "pair")
MAX_PER_GRAMMAR = 400


@dataclass(frozen=True)
class SentenceBank:
    """Sentences by kind; `paper` is the subset of `neutral` taken from Wang et al."""

    paper: tuple[str, ...]
    neutral: tuple[str, ...]
    """One {N} slot; says nothing about who receives anything (paper's five first)."""
    away: tuple[str, ...]
    """One {N} slot; places the name elsewhere, so it cannot be the recipient."""
    filler: tuple[str, ...]
    """No name at all."""
    pair: tuple[str, ...]
    """{A} and {B}: both names of the first clause again."""


def expand_grammar(text: str, lexicon: Lexicon, where: str, limit: int = MAX_PER_GRAMMAR) -> tuple[str, ...]:
    """All sentences of a CFG (up to `limit`), with PLACE / OBJECT over the lexicon, sorted."""
    from nltk import CFG
    from nltk.parse.generate import generate

    extra = []
    if "PLACE" in text:
        extra.append("PLACE -> " + " | ".join(f"'{w}'" for w in lexicon.places))
    if "OBJECT" in text:
        extra.append("OBJECT -> " + " | ".join(f"'{w}'" for w in lexicon.objects))
    try:
        grammar = CFG.fromstring(text.strip() + "\n" + "\n".join(extra))
    except ValueError as e:
        raise AdvgenError(f"{where}: bad grammar: {e}") from None
    out = set()
    for words in generate(grammar, n=limit):
        s = " ".join(words).replace(" .", ".")
        out.add(s)
    return tuple(sorted(out))


def check_sentence(s: str, slots: Sequence[str], where: str) -> str:
    """A sentence must hold each slot once, a name slot never glued to a neighbouring word."""
    for slot in slots:
        tag = "{" + slot + "}"
        if s.count(tag) != 1:
            raise AdvgenError(f"{where}: sentence {s!r} must contain {tag} exactly once")
        i = s.index(tag)
        before_ok = i == 0 or s[i - 1] == " "
        after = s[i + len(tag) : i + len(tag) + 1]
        if not before_ok or (after and after not in " .,'"):
            raise AdvgenError(f"{where}: {tag} in {s!r} must be a separate word (single-token name with a leading space)")
    if not s.endswith("."):
        raise AdvgenError(f"{where}: sentence {s!r} must end with a full stop")
    return s


@functools.cache
def _doc(path: Path) -> dict:
    # the strict loader: no aliases, duplicate keys or huge scalars; a refusal names file and line
    doc = load_yaml(read_text(path, "distractor file", limit=4 * MAX_YAML_CHARS), str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("paper"), list) or not isinstance(doc.get("grammars"), dict):
        raise AdvgenError(f"{path}: expected a 'paper' list and a 'grammars' mapping")
    if not all(isinstance(x, str) for x in doc["paper"]):
        raise AdvgenError(f"{path}: every 'paper' sentence must be a string")
    return doc


def load_bank(lexicon: Lexicon, path: str | Path = DISTRACTORS) -> SentenceBank:
    """The paper's sentences plus every grammar's expansion, each checked for its slots."""
    path = Path(path)
    doc = _doc(path)
    paper = tuple(check_sentence(s, ["N"], f"{path}: paper") for s in doc["paper"])
    kinds: dict[str, tuple[str, ...]] = {}
    for kind in SENTENCE_KINDS:
        g = doc["grammars"].get(kind)
        if not isinstance(g, str):
            raise AdvgenError(f"{path}: grammars.{kind} is missing or not a string")
        slots = {"neutral": ["N"], "away": ["N"], "filler": [], "pair": ["A", "B"]}[kind]
        sents = expand_grammar(g, lexicon, f"{path}: grammars.{kind}")
        kinds[kind] = tuple(check_sentence(s, slots, f"{path}: grammars.{kind}") for s in sents)
        if not kinds[kind]:
            raise AdvgenError(f"{path}: grammars.{kind} generates no sentences")
    neutral = paper + tuple(s for s in kinds["neutral"] if s not in paper)
    return SentenceBank(paper, neutral, kinds["away"], kinds["filler"], kinds["pair"])


def name_slot(sentence: str, slot: str) -> str:
    """Rename a sentence's {N} to a template slot such as {IO2}, {S3} or {X}."""
    return sentence.replace("{N}", "{" + slot + "}")
