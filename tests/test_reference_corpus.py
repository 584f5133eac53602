"""Fast checks of the bundled reference model: corpus, held-out templates, tokenizer, model files."""

from __future__ import annotations

import random
import re

import pytest

from advgen.prompts import lexicon
from advgen.reference import REFERENCE_DIR
from advgen.reference import corpus as C
from advgen.reference import heldout as H

# The paper's 15 templates, written out again here (independently of corpus.PAPER_TEMPLATES) so
# the held-out check does not trust the module it checks.
PAPER = """\
Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]
Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]
Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]
Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]
Then, [B] and [A] had a long argument, and afterwards [B] said to [A]
After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]
When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]
When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]
While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]
While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]
After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]
Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]
Then, [B] and [A] had a long argument. Afterwards [B] said to [A]
The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]
Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]""".splitlines()


def skeleton(template: str) -> re.Pattern[str]:
    """Prompt part of a template (before the final [A]): any capitalised name, any noun,
    a/an/the interchangeable, optional commas, any whitespace, case-insensitive."""
    prompt = template[: template.rindex(" [A]")]
    words = re.findall(r"\[[A-Z]+\]|[\w']+|[.,]", prompt)
    parts = []
    for w in words:
        if w in ("[A]", "[B]"):
            parts.append(r"[A-Z][\w'-]*")
        elif w in ("[PLACE]", "[OBJECT]"):
            parts.append(r"[\w'-]+")
        elif w.lower() in ("a", "an", "the"):
            parts.append(r"(?:a|an|the)")
        elif w == ",":
            parts.append(",?")
        else:
            parts.append(re.escape(w))
    pat = r"\s*".join(parts)
    return re.compile(r"(?<![\w])" + pat, re.IGNORECASE)


SKELETONS = [skeleton(t) for t in PAPER]


def _render(t: str, a: str, b: str, place: str, obj: str) -> str:
    return t.replace("[A]", a).replace("[B]", b).replace("[PLACE]", place).replace("[OBJECT]", obj)


def test_fifteen_templates_and_detector_works():
    assert len(PAPER) == 15 and len(H.PAPER_TEMPLATES) == 15
    for t in PAPER:
        text = _render(t, "Mary", "John", "store", "drink")
        prompt = text[: text.rindex(" Mary")]
        assert sum(bool(s.search(prompt)) for s in SKELETONS) >= 1, t
        assert H.contains_paper_template(prompt), t
        # also with an ABC subject and another article
        abc = _render(t, "Mary", "John", "park", "apple").replace("John gave", "Kevin gave")
        assert H.contains_paper_template(abc[: abc.rindex(" Mary")])


def test_corpus_is_seeded_and_deterministic():
    a, ca = C.generate_documents(random.Random(0), 3000)
    b, cb = C.generate_documents(random.Random(0), 3000)
    c, _ = C.generate_documents(random.Random(1), 3000)
    assert a == b and ca == cb
    assert a != c
    assert {"ioi", "abc", "story", "filler"} <= set(ca)


def test_corpus_never_contains_paper_templates():
    # The first 40k documents of the shipped model's corpus (seed 0; generation is sequential,
    # so this is an exact prefix of the 250k-document training corpus).
    docs, _ = C.generate_documents(random.Random(0), 40_000)
    hits = [(d, i) for d in docs for i, s in enumerate(SKELETONS) if s.search(d)]
    assert not hits, hits[:5]


def test_corpus_uses_lexicon_and_ioi_answers():
    docs, _ = C.generate_documents(random.Random(3), 5000)
    text = " ".join(docs)
    for n in lexicon.paper_names()[:20]:
        assert f" {n}" in text or text.startswith(n)
    assert re.search(r"\b(?:gave|handed|passed|sent) (?:a|an|the) \w+ to [A-Z]\w+", text)


@pytest.fixture(scope="module")
def shipped_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(REFERENCE_DIR))


def test_shipped_tokenizer_single_token_lexicon(shipped_tokenizer):
    tok = shipped_tokenizer
    assert tok.bos_token == tok.eos_token == tok.pad_token == "<|endoftext|>"
    # Every name the corpus uses (all 99 paper names + a Faker subset), every place and object.
    names = C.corpus_names()
    assert set(lexicon.paper_names()) <= set(names)
    words = list(names)
    words += list(lexicon.paper_places() + lexicon.extra_places())
    words += list(lexicon.paper_objects() + lexicon.extra_objects())
    bad = [w for w in words if len(tok.encode(" " + w, add_special_tokens=False)) != 1]
    assert not bad, bad[:20]
    lex = lexicon.build_lexicon(tok)
    assert not [w for kind, w in lex.dropped if kind != "name"]
    # ... and no lexicon name outside the corpus is a single token (it would be used untrained).
    assert set(lex.name_texts) == set(names)
    text = "<|endoftext|>When Mary and John went to the store, John gave a drink to Mary."
    ids = tok.encode(text, add_special_tokens=False)
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(tok.encode(" Mary", add_special_tokens=False)) == ["ĠMary"]


def test_shipped_model_loads_and_is_small(shipped_tokenizer):
    import torch
    from transformers import GPT2LMHeadModel

    size = sum(p.stat().st_size for p in REFERENCE_DIR.iterdir() if p.is_file())
    assert size < 20 * 1024 * 1024, size
    assert (REFERENCE_DIR / "model.safetensors").exists()
    model = GPT2LMHeadModel.from_pretrained(str(REFERENCE_DIR)).eval()
    assert model.config.n_positions >= 128
    assert model.config.vocab_size == len(shipped_tokenizer)
    ids = shipped_tokenizer.encode("<|endoftext|>Then, Mary and John", add_special_tokens=False)
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits
    assert out.shape == (1, len(ids), model.config.vocab_size)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_training_is_bitwise_reproducible_and_resumable(tmp_path):
    """Two short runs give identical weights; an interrupted + resumed run gives the same too."""
    from safetensors.torch import load_file

    from advgen.reference.train import TrainSettings, train_reference

    def settings():
        return TrainSettings(steps=12, n_docs=2000, checkpoint_every=4)

    a = train_reference(tmp_path / "a", seed=0, settings=settings(), progress=False)
    b = train_reference(tmp_path / "b", seed=0, settings=settings(), progress=False)
    train_reference(tmp_path / "c", seed=0, settings=settings(), progress=False, stop_after=6)
    assert not (tmp_path / "c" / "model.safetensors").exists()
    c = train_reference(tmp_path / "c", seed=0, settings=settings(), progress=False)
    wa, wb, wc = (load_file(str(d / "model.safetensors")) for d in (a, b, c))
    assert wa.keys() == wb.keys() == wc.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k
        assert (wa[k] == wc[k]).all(), k
