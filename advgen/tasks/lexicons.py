"""A task's lexicons for one tokenizer: only words that are one token with their leading space.

A slot's value must be one token everywhere it is mentioned (positions are exact, never a first
sub-token), and so must every answer and foil word. Words that fail are dropped and reported,
as IOI's names are; a lexicon left too small for its slots is a named error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advgen.prompts.lexicon import is_single_token
from advgen.tasks.spec import Task, TaskError

WORD_TOKEN = re.compile(r"Ġ[a-z]{3,}")
"""A byte-level BPE vocabulary entry that is a space and a lowercase word of 3+ letters."""


def vocab_words(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's single-token lowercase words (no leading space), sorted: a lexicon any BPE tokenizer has."""
    vocab = tokenizer.get_vocab()
    words = sorted(t[1:] for t in vocab if WORD_TOKEN.fullmatch(t))
    return tuple(w for w in words if is_single_token(tokenizer, w))


@dataclass(frozen=True)
class Lexicons:
    """Each lexicon's usable words for one tokenizer, and what was dropped and why."""

    words: Mapping[str, tuple[str, ...]]
    dropped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {k: {"kept": len(v), "dropped": list(self.dropped.get(k, ()))[:20], "n_dropped": len(self.dropped.get(k, ()))}
                for k, v in sorted(self.words.items())}


def resolve_lexicons(task: Task, tokenizer: Any) -> Lexicons:
    """Words of each lexicon that are single tokens, and whose answer/foil words (if mapped) are too."""
    words: dict[str, tuple[str, ...]] = {}
    dropped: dict[str, tuple[str, ...]] = {}
    for name, lex in task.lexicons.items():
        pool = vocab_words(tokenizer) if isinstance(lex, str) else lex
        ok = [w for w in pool if is_single_token(tokenizer, w) and _mapped_ok(task, name, w, tokenizer)]
        words[name] = tuple(ok)
        kept = set(ok)
        dropped[name] = tuple(w for w in pool if w not in kept)
    for name in words:
        need = sum(1 for lex in task.slots.values() if lex == name) + 1
        if len(words[name]) < need:
            raise TaskError(f"task {task.name!r} ({task.source}): lexicon {name!r} keeps {len(words[name])} word(s) that are one token "
                            f"for this tokenizer (dropped {list(dropped[name])[:8]}); its slots need at least {need} distinct words")
    return Lexicons(words, dropped)


def _mapped_ok(task: Task, lexicon: str, word: str, tokenizer: Any) -> bool:
    for rule in (task.answer, task.foil):
        if rule.mapping and task.slots[rule.slot] == lexicon and not is_single_token(tokenizer, rule.mapping[word]):
            return False
    return True
