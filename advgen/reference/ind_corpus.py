"""The induction model's corpus and tokenizer: word sequences with planted repeats, pure functions of (seed, step).

The world is `WORDS` (common English nouns). A document is BOS and `seq_words` words drawn with
replacement; most documents then copy earlier material later on (`CorpusSettings`):
- `segment`: a span recurs a few words after its end, at a random place (a copy at a fixed
  distance is learnt as a positional shortcut, not as induction);
- `pairs`: bigrams `A B` recur later as `A B` (the induction task's own shape);
- `skip`: each word from the third on is, with probability `skip_p`, `SKIP_MAP` of the word two
  before it (else random), so the word after the current one depends on the previous word: a
  previous-token head is useful on its own there, which starts the one that induction reads;
- `periodic`: after a random number of free words (up to half the document), a block of `period`
  random words repeats to the end; a block of 2 is predicted by a previous-token head copying the
  previous word, longer ones by induction reading that same head, so the first starts the second;
- `plain`: no planted repeats.

Words are drawn with replacement on purpose: in documents of distinct words a word already seen
is never next (except in a copy), so training pushes heads to suppress what is in context, the
opposite of induction, and the loss sat at the uniform value for thousands of steps.

The tokenizer is word-level with GPT-2's byte-level conventions (" cat" is `Ġcat`), so each word
is one token with and without its leading space and nothing else is in the vocabulary: every
`vocab-words` entry is a trained word, never an untrained BPE fragment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BOS = "<|endoftext|>"
WORDS: tuple[str, ...] = tuple(
    sorted(
        set(
            """
apple arrow badge bag ball banana band barn basket beach bean bear bed bell belt bench berry bird
blade blanket boat bone book boot bottle bowl box bread brick bridge broom brush bucket bus butter
button cabin cake camel camera candle canoe cap car card carpet cart castle cat chain chair chalk
cheese cherry chest chicken circle clock cloud coat coin comb cookie corn cow crab crown cup
curtain desk dish dog doll donkey door dragon drum duck eagle egg engine fan farm feather fence
field finger fish flag flower flute fog fork fox frog garden gate ghost gift glass glove goat
grape grass guitar hammer hat hill horse house island jacket jar jelly kettle key king kite
knife ladder lake lamp leaf lemon lion lock map market mask melon mirror monkey moon mouse mug
nail needle nest net oven owl paint pan paper parrot peach pear pen pencil piano pie pig pillow
pipe plate pocket pond potato queen rabbit radio rain ribbon ring river road robot rock roof rope
rose sail salt sand saw scarf ship shirt shoe shovel sink skirt snake sock sofa spoon star stone
stove sugar sun swan table tent tiger toast tomato tower towel toy tractor train tree truck
turtle umbrella van vase violin wagon wall watch whale wheel whistle window wolf wool zebra
""".split()
        )
    )
)


SKIP_MAP: np.ndarray = np.random.default_rng(20240).permutation(len(WORDS))
"""The fixed word -> word map of `skip` documents (word index to word index)."""


@dataclass(frozen=True)
class CorpusSettings:
    """What a training document looks like; ranges are inclusive."""

    seq_words: int = 24
    segment_share: float = 0.6
    pairs_share: float = 0.3
    segment: tuple[int, int] = (4, 10)
    """Length of a `segment` document's repeated span."""
    gap: tuple[int, int] = (0, 4)
    """Words between a segment and its copy, so the copy's distance varies."""
    pairs: tuple[int, int] = (1, 4)
    """How many bigrams a `pairs` document repeats (a draw that would overlap an earlier copy is skipped)."""
    skip_share: float = 0.0
    skip_p: float = 0.5
    """In a `skip` document, the chance that a word is `SKIP_MAP` of the word two before it."""
    skip_copy: bool = False
    """`skip` documents repeat the word two before (`A B A`) instead of mapping it: the previous-token head they start
    then copies its word, which is what an induction head's key has to read."""
    periodic_share: float = 0.0
    period: tuple[int, int] = (2, 8)
    """Length range of a `periodic` document's repeating block."""

    def __post_init__(self) -> None:
        if 2 * self.segment[1] + self.gap[1] > self.seq_words or self.seq_words < 6:
            raise ValueError(
                f"corpus settings: a span of {self.segment[1]} words, its copy and a gap of {self.gap[1]} "
                f"do not fit in {self.seq_words} words"
            )
        total = self.segment_share + self.pairs_share + self.skip_share + self.periodic_share
        if not 0.0 <= total <= 1.0 + 1e-9 or min(self.segment_share, self.pairs_share, self.skip_share, self.periodic_share) < 0:
            raise ValueError(
                f"corpus settings: shares {self.segment_share} + {self.pairs_share} + {self.skip_share} must lie in [0, 1]"
            )
        if not 0.0 <= self.skip_p <= 1.0:
            raise ValueError(f"corpus settings: skip_p {self.skip_p} must lie in [0, 1]")

    @property
    def shares(self) -> dict[str, float]:
        out = {
            "segment": self.segment_share,
            "pairs": self.pairs_share,
            "plain": max(0.0, round(1.0 - self.segment_share - self.pairs_share - self.skip_share - self.periodic_share, 6)),
        }
        if self.skip_share:  # after plain, and only when used: a zero share must not move other settings' draws
            out["skip"] = self.skip_share
        if self.periodic_share:
            out["periodic"] = self.periodic_share
        return out


def build_tokenizer() -> Any:
    """Word-level tokenizer: BOS, then `word` and `Ġword` for every word; a `GPT2`-style fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0}
    for w in WORDS:
        vocab[w] = len(vocab)
        vocab["Ġ" + w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=BOS))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # pyright: ignore[reportAttributeAccessIssue]
    tok.decoder = decoders.ByteLevel()  # pyright: ignore[reportAttributeAccessIssue]
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # pyright: ignore[reportAttributeAccessIssue]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, unk_token=BOS, pad_token=BOS, model_max_length=1024
    )


def word_ids(n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """(bare id, spaced id) of word index i, as `build_tokenizer` numbers them."""
    i = np.arange(n_words)
    return 1 + 2 * i, 2 + 2 * i


def document(rng: np.random.Generator, kind: str, c: CorpusSettings, n_words: int = len(WORDS)) -> np.ndarray:
    """Word indices of one document of `kind` (see the module docstring)."""
    length = c.seq_words
    w = rng.integers(0, n_words, length)  # with replacement: see the module docstring
    if kind == "pairs":
        used = np.zeros(length, dtype=bool)  # positions a copy wrote, or a copy was read from
        for _ in range(int(rng.integers(c.pairs[0], c.pairs[1] + 1))):
            i = int(rng.integers(0, length - 4))
            j = int(rng.integers(i + 2, length - 1))
            if used[[i, i + 1, j, j + 1]].any():
                continue  # a copy of a copy could pair A with two different successors
            w[j], w[j + 1] = w[i], w[i + 1]
            used[[i, i + 1, j, j + 1]] = True
    elif kind == "segment":
        n = int(rng.integers(c.segment[0], c.segment[1] + 1))
        gap = int(rng.integers(c.gap[0], c.gap[1] + 1))
        i = int(rng.integers(0, length - 2 * n - gap + 1))
        j = i + n + gap
        w[j : j + n] = w[i : i + n]
    elif kind == "periodic":
        p = int(rng.integers(c.period[0], c.period[1] + 1))
        o = int(rng.integers(0, length // 2 + 1))
        w[o:] = np.resize(w[o : o + p], length - o)
    elif kind == "skip":
        m = (
            np.arange(n_words)
            if c.skip_copy
            else (SKIP_MAP if n_words == len(SKIP_MAP) else np.random.default_rng(20240).permutation(n_words))
        )
        hit = rng.random(length) < c.skip_p
        for t in range(2, length):
            if hit[t]:
                w[t] = m[w[t - 2]]
    return w


def batch(seed: int, step: int, batch_size: int, c: CorpusSettings, n_words: int = len(WORDS)) -> np.ndarray:
    """Token ids [batch, 1 + seq_words] of training step `step`: a pure function of (seed, step, c)."""
    rng = np.random.default_rng([seed, step])
    shares = c.shares
    kinds = list(shares)
    p = np.array([shares[k] for k in kinds])
    bare, spaced = word_ids(n_words)
    out = np.zeros((batch_size, 1 + c.seq_words), dtype=np.int64)
    for r in range(batch_size):
        w = document(rng, kinds[int(rng.choice(len(kinds), p=p))], c, n_words)
        out[r, 1] = bare[w[0]]
        out[r, 2:] = spaced[w[1:]]
    return out


def text_of(ids: np.ndarray, tok: Any) -> str:
    """The document's text (without BOS): what the tokenizer maps back to `ids[1:]`."""
    return tok.decode(ids[1:].tolist())
