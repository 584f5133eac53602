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
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.spec import Task, TaskError

WORD_TOKEN = re.compile(r"Ġ[a-z]{3,}")
"""A byte-level BPE vocabulary entry that is a space and a lowercase word of 3+ letters."""


_VOCAB_WORDS: dict[str, tuple[str, ...]] = {}
"""tokenizer hash -> its vocab words: encoding GPT-2's 19k candidates takes seconds, so once per tokenizer."""


def vocab_words(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's single-token lowercase words (no leading space), sorted: a lexicon any BPE tokenizer has."""
    key = tokenizer_hash(tokenizer)
    if key not in _VOCAB_WORDS:
        words = sorted(t[1:] for t in tokenizer.get_vocab() if WORD_TOKEN.fullmatch(t))
        _VOCAB_WORDS[key] = tuple(w for w in words if is_single_token(tokenizer, w))
    return _VOCAB_WORDS[key]


@dataclass(frozen=True)
class Lexicons:
    """Each lexicon's usable words for one tokenizer, and what was dropped and why."""

    words: Mapping[str, tuple[str, ...]]
    dropped: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        return {
            k: {"kept": len(v), "dropped": list(self.dropped.get(k, ()))[:20], "n_dropped": len(self.dropped.get(k, ()))}
            for k, v in sorted(self.words.items())
        }


def resolve_lexicons(task: Task, tokenizer: Any) -> Lexicons:
    """Words of each lexicon that are single tokens, and whose answer/foil words (if mapped) are too."""
    words: dict[str, tuple[str, ...]] = {}
    dropped: dict[str, tuple[str, ...]] = {}
    for name, lex in task.lexicons.items():
        pool = vocab_words(tokenizer) if isinstance(lex, str) else lex
        ok = [
            w
            for w in pool
            if (is_single_token(tokenizer, w) or bare_single(tokenizer, w)) and _mapped_ok(task, name, w, tokenizer)
        ]
        words[name] = tuple(ok)
        kept = set(ok)
        dropped[name] = tuple(w for w in pool if w not in kept)
    for name in words:
        need = sum(1 for lex in task.slots.values() if lex == name) + 1
        if len(words[name]) < need:
            raise TaskError(
                f"task {task.name!r} ({task.source}): lexicon {name!r} keeps {len(words[name])} word(s) that are one token "
                f"for this tokenizer (dropped {list(dropped[name])[:8]}); its slots need at least {need} distinct words"
            )
    return Lexicons(words, dropped)


def bare_single(tokenizer: Any, word: str) -> bool:
    """True if `word` without a leading space is one token (a glued slot: "32" after " 17")."""
    return len(tokenizer.encode(word, add_special_tokens=False)) == 1


def answer_token(tokenizer: Any, word: str, space: bool, what: str) -> int:
    """The one token id of an answer word (" word", or the bare word for a glued answer); a named error otherwise."""
    ids = tokenizer.encode((" " if space else "") + word, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise TaskError(f"{what} {word!r} is not a single token{' with its leading space' if space else ''}: {pieces}")
    return ids[0]


def _mapped_ok(task: Task, lexicon: str, word: str, tokenizer: Any) -> bool:
    for rule in (task.answer, task.foil):
        if rule.mapping and task.slots[rule.slot] == lexicon and not is_single_token(tokenizer, rule.mapping[word]):
            return False
    return True
