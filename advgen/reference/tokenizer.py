"""Byte-level BPE tokenizer for the reference model, GPT-2 style.

Trained with the `tokenizers` library on the generated corpus: ByteLevel pre-tokenizer without a
prefix space (so words carry their leading space, " Mary"), one special token `<|endoftext|>`
used as bos/eos/unk/pad, saved as a `GPT2TokenizerFast` directory.

Every lexicon name, place and object must be ONE token with its leading space. Corpus frequency
makes nearly all of them single tokens already; for any that are not, ordinary BPE merges are
appended at the end of the merge list (lowest priority) that join that word's pieces into one
token. This is plain BPE (decode is unchanged), and a final check raises if any word is still
split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from advgen.reference.corpus import BOS


class TokenizerCheckError(RuntimeError):
    pass


def train_bpe(texts: Iterable[str], vocab_size: int = 6000, min_frequency: int = 2) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _pieces(tok: Tokenizer, word: str) -> list[str]:
    return tok.encode(" " + word, add_special_tokens=False).tokens


def ensure_single_tokens(tok: Tokenizer, words: Sequence[str]) -> tuple[Tokenizer, list[str]]:
    """Append merges so that every " word" is one token; returns (tokenizer, words that needed it)."""
    fixed: list[str] = []
    for w in words:
        if len(_pieces(tok, w)) == 1:
            continue
        fixed.append(w)
        data = json.loads(tok.to_str())
        model = data["model"]
        vocab: dict[str, int] = model["vocab"]
        merges = model["merges"]
        as_pairs = bool(merges) and isinstance(merges[0], list)
        # Re-encode after each added merge: the new merges can only join this word's pieces.
        pieces = _pieces(tok, w)
        acc = pieces[0]
        for p in pieces[1:]:
            new = acc + p
            merges.append([acc, p] if as_pairs else f"{acc} {p}")
            if new not in vocab:
                vocab[new] = max(max(vocab.values()), *(t["id"] for t in data["added_tokens"])) + 1
            acc = new
        tok = Tokenizer.from_str(json.dumps(data))
    return tok, fixed


def check_single_tokens(tok, words: Sequence[str]) -> None:
    """Raise TokenizerCheckError listing every word whose " word" is not exactly one token."""
    bad = []
    for w in words:
        ids = tok.encode(" " + w, add_special_tokens=False)
        ids = ids.ids if hasattr(ids, "ids") else ids
        if len(ids) != 1:
            bad.append(w)
        elif tok.decode(ids) != " " + w:
            bad.append(w)
    if bad:
        raise TokenizerCheckError(f"{len(bad)} lexicon words are not single tokens with a leading space: {bad[:20]}")


def build_tokenizer(texts: Iterable[str], required: Sequence[str], vocab_size: int = 6000):
    """Train BPE, force/verify single-token words, wrap as GPT2TokenizerFast. Returns (hf_tok, fixed)."""
    from transformers import GPT2TokenizerFast  # pyright: ignore[reportAttributeAccessIssue]  (lazy export in transformers 5)

    tok = train_bpe(texts, vocab_size=vocab_size)
    tok, fixed = ensure_single_tokens(tok, required)
    check_single_tokens(tok, required)
    hf = GPT2TokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        unk_token=BOS,
        pad_token=BOS,
        add_prefix_space=False,
        model_max_length=128,
    )
    check_single_tokens(hf, required)
    return hf, fixed


def save_tokenizer(hf_tok, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_tok.save_pretrained(str(out_dir))
