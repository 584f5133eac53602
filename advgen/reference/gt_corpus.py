"""The greater-than model's year corpus and tokenizer: pure functions of the seed.

Documents are one sentence each (BOS is prepended at training time, as advgen prepends it to
every prompt). Share of documents by kind (`KIND_SHARES`):

- greater contexts (66 %): spans that end after they start ("lasted from the year 1732 to the
  year 1788", "from 1732 until 1788", "began in 1732 and ended in 1788"), prices that rise,
  rising lists of years; the second two-digit year lies 1..MAX_GAP (uniform) above the first;
- smaller contexts (28 %): spans told backwards ("ended in 1788 and started in 1732"), prices
  that fall, falling lists; the second year lies 1..MAX_GAP below the first;
- filler (6 %): sentences about an event noun with no year.

Centuries XX run over 11..18 and both years of a sentence share one century. The paper's
template ("The {noun} lasted from the year ...") never uses the held-out nouns (`heldout_nouns`),
so the evaluation prompts are sentences the model has not seen in that template.

Tokenizer: byte-level BPE whose pre-tokenizer first isolates pairs of digits (" ?\\d\\d"), so
" 1732" becomes " 17" + "32" as in GPT-2, for every century and every two-digit year; a check
raises if any " XX" or "YY" is not exactly one token in context.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

BOS = "<|endoftext|>"
CENTURIES = tuple(range(11, 19))
YEARS = tuple(f"{y:02d}" for y in range(100))

NOUNS = (
    "war",
    "expedition",
    "drought",
    "famine",
    "siege",
    "reign",
    "voyage",
    "rebellion",
    "plague",
    "trial",
    "occupation",
    "blockade",
    "campaign",
    "crusade",
    "dynasty",
    "empire",
    "exile",
    "feud",
    "flood",
    "journey",
    "kingdom",
    "migration",
    "mission",
    "monarchy",
    "mutiny",
    "pilgrimage",
    "quarrel",
    "regency",
    "republic",
    "revolt",
    "riot",
    "schism",
    "strike",
    "truce",
    "uprising",
    "winter",
    "epidemic",
    "embargo",
    "alliance",
    "council",
    "crisis",
    "conflict",
    "dispute",
    "era",
    "festival",
    "fair",
    "marriage",
    "partnership",
    "peace",
    "period",
    "pact",
    "boom",
    "recession",
    "depression",
    "shortage",
    "survey",
    "census",
    "construction",
    "restoration",
    "renovation",
    "excavation",
    "investigation",
    "inquiry",
    "negotiation",
    "treaty",
    "union",
    "league",
    "colony",
    "settlement",
    "outbreak",
    "invasion",
    "conquest",
    "raid",
    "standoff",
    "stalemate",
    "ceasefire",
    "armistice",
    "tournament",
    "contest",
    "competition",
    "project",
    "venture",
    "enterprise",
    "reform",
    "movement",
    "revival",
    "renaissance",
    "tradition",
    "custom",
    "practice",
    "age",
    "drive",
    "tour",
    "trek",
    "march",
    "procession",
    "hunt",
    "harvest",
    "frost",
    "heatwave",
)
GOODS = ("bread", "wheat", "salt", "wool", "iron", "coal", "sugar", "tea", "land", "silver", "cloth", "timber")

KIND_SHARES = {
    "lasted": 0.30,
    "until": 0.12,
    "began_ended": 0.10,
    "price_rose": 0.07,
    "list_rising": 0.07,
    "ended_started": 0.12,
    "price_fell": 0.09,
    "list_falling": 0.07,
    "filler": 0.06,
}
GREATER_KINDS = ("lasted", "until", "began_ended", "price_rose", "list_rising")
SMALLER_KINDS = ("ended_started", "price_fell", "list_falling")
FILLERS = (
    "The {n} was long and hard.",
    "Many people remember the {n}.",
    "The {n} changed the whole country.",
    "Nobody expected the {n} to matter.",
    "The {n} is described in old books.",
)
DIGIT_PAIRS = r" ?\d\d"
MAX_GAP = 25
"""Years in a sentence are 1..MAX_GAP apart, so where the mass goes depends on YY itself, not only on the context."""


def heldout_nouns() -> tuple[str, ...]:
    """Every tenth noun: never used in the paper's "lasted from the year" template in training."""
    return NOUNS[::10]


def _rising(rng: random.Random, k: int) -> list[int]:
    """`k` rising two-digit years, consecutive gaps drawn uniformly from 1..MAX_GAP."""
    gaps = [rng.randint(1, MAX_GAP) for _ in range(k - 1)]
    first = rng.randint(0, 99 - sum(gaps))
    ys = [first]
    for g in gaps:
        ys.append(ys[-1] + g)
    return ys


def _sentence(rng: random.Random, kind: str, train_nouns: list[str]) -> str:
    """One document of `kind` (see the module docstring)."""
    c = rng.choice(CENTURIES)
    noun = rng.choice(NOUNS if kind != "lasted" else train_nouns)
    lo, hi = _rising(rng, 2)
    a, b = f"{c}{lo:02d}", f"{c}{hi:02d}"
    good = rng.choice(GOODS)
    if kind == "lasted":
        return f"The {noun} lasted from the year {a} to the year {b}."
    if kind == "until":
        return f"The {noun} went on from {a} until {b}."
    if kind == "began_ended":
        return f"The {noun} began in {a} and ended in {b}."
    if kind == "ended_started":
        return f"The {noun} ended in {b} and started in {a}."
    if kind == "price_rose":
        return f"The price of {good} rose from ${a} to ${b}."
    if kind == "price_fell":
        return f"The price of {good} fell from ${b} to ${a}."
    if kind in ("list_rising", "list_falling"):
        ys = [f"{c}{y:02d}" for y in _rising(rng, 3)]
        if kind == "list_rising":
            return f"In rising order, the years {ys[0]}, {ys[1]} and {ys[2]}."
        return f"In falling order, the years {ys[2]}, {ys[1]} and {ys[0]}."
    return rng.choice(FILLERS).format(n=noun)


def generate_documents(rng: random.Random, n_docs: int) -> tuple[list[str], Counter]:
    """`n_docs` one-sentence documents drawn by `KIND_SHARES`; returns (docs, count per kind)."""
    kinds, weights = list(KIND_SHARES), list(KIND_SHARES.values())
    held = set(heldout_nouns())
    train_nouns = [n for n in NOUNS if n not in held]
    docs, counts = [], Counter()
    for _ in range(n_docs):
        kind = rng.choices(kinds, weights)[0]
        counts[kind] += 1
        docs.append(_sentence(rng, kind, train_nouns))
    return docs, counts


class YearTokenError(RuntimeError):
    """A century or two-digit year is not a single token in context."""


def split_year_ids(tok, xx: int, yy: str) -> list[int]:
    """Ids of "... year {XX}{YY}" after the prefix " year": [id(" XX"), id("YY")] when the split is right."""
    prefix = tok.encode("The war lasted from the year", add_special_tokens=False)
    full = tok.encode(f"The war lasted from the year {xx}{yy}", add_special_tokens=False)
    prefix = getattr(prefix, "ids", prefix)
    full = getattr(full, "ids", full)
    return list(full[len(prefix) :])


def check_year_tokens(tok) -> None:
    """Raise YearTokenError unless " XX" and "YY" are one token each in context, for every XX and YY."""
    bad = []
    for xx in CENTURIES:
        for yy in YEARS:
            ids = split_year_ids(tok, xx, yy)
            want = [token_id(tok, f" {xx}"), token_id(tok, yy)]
            if ids != want:
                bad.append(f"{xx}{yy}")
    if bad:
        raise YearTokenError(f"{len(bad)} years do not split as ' XX' + 'YY': {bad[:10]}")


def token_id(tok, text: str) -> int:
    """The single id of `text`; YearTokenError when it is not one token."""
    ids = tok.encode(text, add_special_tokens=False)
    ids = getattr(ids, "ids", ids)
    if len(ids) != 1:
        raise YearTokenError(f"{text!r} is {len(ids)} tokens, not one")
    return int(ids[0])


def build_tokenizer(docs: Iterable[str], vocab_size: int):
    """Byte-level BPE with digit pairs isolated; nouns and goods forced to single tokens; GPT2TokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from advgen.reference import tokenizer as tok_mod

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [  # pyright: ignore[reportAttributeAccessIssue]
            pre_tokenizers.Split(Regex(DIGIT_PAIRS), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()  # pyright: ignore[reportAttributeAccessIssue]
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # pyright: ignore[reportAttributeAccessIssue]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    tok, _ = tok_mod.ensure_single_tokens(tok, [*NOUNS, *GOODS])
    tok_mod.check_single_tokens(tok, [*NOUNS, *GOODS])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, unk_token=BOS, pad_token=BOS, model_max_length=64
    )
    check_year_tokens(hf)
    return hf
