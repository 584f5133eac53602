from __future__ import annotations

import pytest

from advgen.core.types import AdvgenError
from advgen.prompts import lexicon


def test_paper_lists_have_expected_sizes():
    assert len(lexicon.paper_names()) == 99
    assert len(set(lexicon.paper_names())) == 99
    assert len(lexicon.paper_places()) + len(lexicon.paper_objects()) == 16


def test_paper_names_and_nouns_are_single_tokens_in_gpt2(gpt2_tokenizer):
    for w in lexicon.paper_names() + lexicon.paper_places() + lexicon.paper_objects():
        ids = gpt2_tokenizer.encode(" " + w, add_special_tokens=False)
        assert len(ids) == 1, (w, ids)
        assert lexicon.is_single_token(gpt2_tokenizer, w)


def test_multi_token_entries_are_dropped_and_reported(gpt2_tokenizer):
    names = [lexicon.Name(t, "unknown", "test") for t in ("Mary", "John", "Anna", "Xylophonia")]
    lex = lexicon.build_lexicon(gpt2_tokenizer, names=names, places=["store", "Zzyzxplace"], objects=["ring"])
    assert "Xylophonia" not in lex.name_texts
    assert ("name", "Xylophonia") in lex.dropped
    assert ("place", "Zzyzxplace") in lex.dropped
    assert lex.places == ("store",)


def test_faker_names_carry_gender():
    names = lexicon.all_names()
    assert names[0].source == "paper" and len(names) > 500
    genders = {n.gender for n in names if n.source == "faker"}
    assert genders == {"female", "male"}


@pytest.mark.parametrize("kind", ["names", "places", "objects"])
def test_empty_lexicon_is_an_error(gpt2_tokenizer, kind):
    kw = {kind: []}
    with pytest.raises(AdvgenError, match=kind[:-1]):
        lexicon.build_lexicon(gpt2_tokenizer, **kw)
