from __future__ import annotations

import json
import re

import pytest

from advgen.core.types import AdvgenError
from advgen.prompts.templates import (
    ORDERS,
    Fill,
    Template,
    TemplateError,
    load_templates,
    render,
    resolve_templates,
)


def test_paper_pack_has_15_templates():
    ts = resolve_templates(None)
    assert len(ts) == 15
    assert all(t.written_order == "BABA" for t in ts)


@pytest.mark.parametrize("order", ORDERS)
def test_positions_verified_for_all_templates(gpt2_tokenizer, order):
    fill = Fill(io="Mary", s="John", place="store", object="drink")
    for t in resolve_templates(None):
        p = render(t, order, fill, gpt2_tokenizer)
        dec = lambda k, p=p: gpt2_tokenizer.decode([p.token_ids[p.positions[k]]])  # noqa: E731
        # every mention carries its leading space: S1 and S2 are the same token as the answer " John"
        assert dec("IO") == " Mary"
        assert dec("S1") == " John" and dec("S2") == " John"
        assert p.token_ids[p.positions["S1"]] == p.token_ids[p.positions["S2"]] == p.s_token
        assert p.positions["S1+1"] == p.positions["S1"] + 1
        assert p.positions["END"] == len(p.token_ids) - 1
        assert p.token_ids[0] == gpt2_tokenizer.bos_token_id
        assert (p.positions["IO"] < p.positions["S1"]) == (order == "ABBA")
        assert p.positions["S2"] > max(p.positions["IO"], p.positions["S1"])
        # the prompt text tokenizes to exactly the stored ids (no hidden re-tokenization drift)
        assert list(p.token_ids[1:]) == gpt2_tokenizer.encode(p.text, add_special_tokens=False)
        assert p.io_token == gpt2_tokenizer.encode(" Mary")[0]


def test_known_prompt_matches_reference_ids(gpt2_tokenizer):
    t = Template("x", "When {IO} and {S1} went to the {PLACE}, {S2} gave a {OBJECT} to")
    p = render(t, "ABBA", Fill(io="Mary", s="John", place="store", object="drink"), gpt2_tokenizer)
    assert p.text == "When Mary and John went to the store, John gave a drink to"
    assert list(p.token_ids) == [50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284]
    assert p.positions["IO"] == 2 and p.positions["S1"] == 4 and p.positions["S2"] == 10 and p.positions["END"] == 14


def test_abc_fill_replaces_s2(gpt2_tokenizer):
    t = resolve_templates(None)[0]
    p = render(t, "BABA", Fill(io="Mary", s="John", place="store", object="drink", c="Paul"), gpt2_tokenizer)
    assert p.order == "ABC" and "Paul gave" in p.text and p.text.count("John") == 1


def _write(tmp_path, text):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    return f


def test_malformed_yaml_names_file(tmp_path):
    f = _write(tmp_path, "templates: [ {id: a, text: 'x'\n")
    with pytest.raises(TemplateError, match="t.yaml: malformed YAML"):
        load_templates(f)


def test_unknown_slot_names_file_line_and_slot(tmp_path):
    f = _write(
        tmp_path,
        "templates:\n  - {id: a, text: 'Then {S1} and {IO} met. {S2} gave it to'}\n  - {id: b, text: 'Then {S1} and {IO} at "
        "{CITY}. {S2} gave it to'}\n",
    )
    with pytest.raises(TemplateError, match=r"t.yaml:3.*unknown slot \{CITY\}"):
        load_templates(f)


@pytest.mark.parametrize(
    "missing,text", [("IO", "{S1} and Bob met. {S2} gave it to"), ("S2", "{S1} and {IO} met. He gave it to")]
)
def test_template_missing_required_slot(tmp_path, missing, text):
    f = _write(tmp_path, f"templates:\n  - {{id: a, text: '{text}'}}\n")
    with pytest.raises(TemplateError, match=re.escape(f"missing required slot {{{missing}}}")):
        load_templates(f)


def test_multi_token_answer_is_rejected(gpt2_tokenizer):
    t = resolve_templates(None)[0]
    with pytest.raises(AdvgenError, match="Xylophonia"):
        render(t, "BABA", Fill(io="Xylophonia", s="John", place="store", object="drink"), gpt2_tokenizer)


def test_slot_that_merges_with_neighbour_is_rejected(gpt2_tokenizer):
    # "{IO}'s" style text is fine, but a slot glued to letters cannot be one token in context
    t = Template("glued", "Then {S1} and x{IO} met. {S2} gave it to")
    with pytest.raises(TemplateError, match=r"slot \{IO\}"):
        render(t, "BABA", Fill(io="Mary", s="John"), gpt2_tokenizer)


@pytest.mark.parametrize(
    "text,slot",
    [
        ("{S1} and {IO} went out. {S2} gave it to", "S1"),  # starts with a name: no leading space
        ("{IO} and {S1} went out. {S2} gave it to", "IO"),
        ('Then "{S1}" and {IO} met. {S2} gave it to', "S1"),  # after a quote: "John, not " John"
        ("Then,\n{S1} and {IO} met. {S2} gave it to", "S1"),  # after a newline
    ],
)
def test_slot_without_leading_space_is_rejected(tmp_path, text, slot):
    f = _write(tmp_path, "templates:\n  - id: a\n    text: " + json.dumps(text) + "\n")
    with pytest.raises(TemplateError, match=r"t.yaml:2.*slot \{" + slot + r"\}.*follow a space"):
        load_templates(f)


def test_render_requires_the_leading_space_token(gpt2_tokenizer):
    # a Template built in memory (no check_template) still cannot render a name without its space
    t = Template("start", "{S1} and {IO} went out. {S2} gave it to")
    with pytest.raises(TemplateError, match=r"slot \{S1\}.*leading space"):
        render(t, "BABA", Fill(io="Mary", s="John"), gpt2_tokenizer)


def test_invalid_utf8_template_names_file_and_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_bytes(b"templates:\n  - {id: a, text: 'Then \xff{S1}'}\n")
    with pytest.raises(TemplateError, match=r"t.yaml:2: not valid UTF-8"):
        load_templates(f)


def test_directory_as_template_file(tmp_path):
    with pytest.raises(TemplateError, match="is a directory"):
        load_templates(tmp_path)
