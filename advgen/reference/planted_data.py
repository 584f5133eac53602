"""Training data for the planted model: same-skeleton IOI batches with ABC and role-swapped twins.

Skeletons are written from the corpus' own phrase lists (`advgen.reference.corpus_words`), so the
training prompts look like the corpus, and every prompt that matches one of the paper's 15
templates is rejected (they stay held out, as for the reference model). A batch shares one
skeleton, so all its prompts (and twins) have the same length and slot indices: the resample
donor of a prompt is another prompt of the same batch, exactly like advgen's "resample_abc"
ablation (another ABC prompt of the same template). The batch for step k is a pure function of
(seed, k).
"""

from __future__ import annotations

import random

import torch

from advgen.reference import corpus as C
from advgen.reference import corpus_words as W
from advgen.reference.heldout import contains_paper_template
from advgen.reference.iit import IOIBatch


def _neutral(r: random.Random) -> str:
    x = r.random()
    if x < 0.4:
        return r.choice(W.WEATHER)
    if x < 0.7:
        return W.fix_articles(f"The {r.choice(C.default_vocab().places)} was {r.choice(W.FILLER_ADJ)}.")
    return f"The {r.choice(W.FILLER_NOUNS)} {r.choice(W.FILLER_VERBS_INTR)}."


_OPENERS = tuple(o for o in W.OPENERS if o)
"""Non-empty openers only: a name must follow a space to be the one-token " Name"."""


def skeleton(r: random.Random, vocab: C.Vocab) -> str:
    """One prompt skeleton with slots {A} {B} (introduced, in order) and {S} (the subject)."""
    act = r.choice(W.JOINT_ACTS).replace("{P}", r.choice(vocab.places)).replace("{O}", r.choice(vocab.objects))
    x = r.random()
    if x < 0.4:
        intro = f"{r.choice(W.SUBORDINATORS)} {{A}} and {{B}} {act}, "
    elif x < 0.8:
        intro = f"{r.choice(_OPENERS)}{{A}} and {{B}} {act}. "
    else:
        intro = f"{r.choice(_OPENERS)}{{A}} and {{B}} {act}. {_neutral(r)} "
    obj = r.choice(vocab.objects)
    y = r.random()
    if y < 0.45:
        main = f"{{S}} {r.choice(W.GIVE_VERBS)} {W.article(obj)} to"
    elif y < 0.6:
        main = f"{{S}} {r.choice(W.GIVE_VERBS)} the {obj} to"
    elif y < 0.75:
        main = f"{{S}} {r.choice(W.MODAL_PREFIX)} {r.choice(W.GIVE_INF)} {W.article(obj)} to"
    else:
        main = f"{{S}} {r.choice(W.SAY_VERBS)}"
    return W.fix_articles(intro + main)


def _fill(sk: str, a: str, b: str, s: str) -> str:
    return sk.replace("{A}", a).replace("{B}", b).replace("{S}", s)


def _encode(tok, texts: list[str]) -> list[list[int]]:
    bos = tok.bos_token_id
    return [[bos, *e.ids] for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]


def ioi_batch(tok, seed: int, step: int, size: int, vocab: C.Vocab | None = None) -> IOIBatch:
    """The IOI batch of `step`: one skeleton, `size` prompts with random names and ABBA/BABA order."""
    v = vocab or C.default_vocab()
    r = random.Random(f"planted-ioi:{seed}:{step}")
    while True:
        sk = skeleton(r, v)
        probe = _fill(sk, "Mary", "John", "John")
        if not contains_paper_template(probe) and not contains_paper_template(_fill(sk, "Mary", "John", "Anna")):
            break
    clean, abc, swap, names, twin = [], [], [], [], []
    rt = random.Random(f"planted-twin:{seed}:{step}")  # own stream: the other prompts stay as they were
    for _ in range(size):
        a, b, c = r.sample(v.names, 3)
        s = r.choice((a, b))
        io = b if s == a else a
        clean.append(_fill(sk, a, b, s))
        abc.append(_fill(sk, a, b, c))
        swap.append(_fill(sk, a, b, io))
        names.append((io, s))
        io2, s2 = rt.sample([x for x in v.names if x not in (a, b, c)], 2)
        twin.append(_fill(sk, io2, s2, s2) if s == b else _fill(sk, s2, io2, s2))
    ids = _encode(tok, clean + abc + swap + twin)
    n = len(ids[0])
    if any(len(x) != n for x in ids):
        raise RuntimeError(f"skeleton {sk!r} gave prompts of different lengths (a name is not one token)")
    t = torch.tensor(ids)
    io_t = torch.tensor([tok.convert_tokens_to_ids(tok.tokenize(" " + io))[0] for io, _ in names])
    s_t = torch.tensor([tok.convert_tokens_to_ids(tok.tokenize(" " + s))[0] for _, s in names])
    cl = t[:size]
    io_pos = (cl == io_t[:, None]).int().argmax(1)
    s_hits = (cl == s_t[:, None]).int()
    s1 = s_hits.argmax(1)
    s2 = n - 1 - s_hits.flip(1).argmax(1)
    if bool((s1 == s2).any()) or int(s_hits.sum(1).max()) != 2:
        raise RuntimeError(f"skeleton {sk!r}: subject not found exactly twice")
    return IOIBatch(cl, t[size : 2 * size], t[2 * size : 3 * size], io_pos, s1, s2, io_t, s_t, t[3 * size :])


def repeat_batch(seed: int, step: int, size: int, half: int, vocab_size: int, bos: int) -> torch.Tensor:
    """BOS + r + r with r random non-special tokens: inputs for the head-detector behaviour."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 7 + 1)
    r = torch.randint(1, vocab_size, (size, half), generator=g)
    return torch.cat([torch.full((size, 1), bos), r, r], dim=1)
