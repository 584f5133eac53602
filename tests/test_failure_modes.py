"""The failure-mode catalogue: transforms render, keep IO the answer, match their controls; modes_for skips."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from advgen.attacks.catalogue import CATALOGUE, mode_named, modes_for
from advgen.attacks.checks import check_unambiguous
from advgen.circuits.format import make_circuit, resolve_circuit
from advgen.core.types import AdvgenError, Role
from advgen.prompts.datasets import Spec
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.sentences import load_bank
from advgen.prompts.templates import Fill, render, resolve_templates


@pytest.fixture(scope="module")
def setup(gpt2_tokenizer):
    lex = build_lexicon(gpt2_tokenizer)
    return gpt2_tokenizer, lex, load_bank(lex), resolve_templates("ioi")


def _all_variants(setup, mode):
    tok, lex, bank, templates = setup
    out = []
    for t in templates:
        for order in ("ABBA", "BABA"):
            spec = Spec(t, order, Fill(io="Mary", s="John", place="store", object="drink"), f"{t.id}{order}", "Kevin")
            clean = render(t, order, spec.fill, tok, pair_id=spec.pair_id)
            for c, cell in enumerate(mode.cells):
                v = mode.variant(spec, cell, random.Random(c), bank, lex)
                if v is not None:
                    a, k = mode.render(spec, v, tok)
                    out.append((clean, a, k, v))
    return out


def test_paper_sentences_and_grammar(setup):
    _, _, bank, _ = setup
    assert bank.paper[0] == "{N} had a good day." and len(bank.paper) == 5
    assert len(bank.neutral) > 50 and len(bank.filler) > 10 and len(bank.away) >= 4
    assert all("{N}" not in s for s in bank.filler)
    assert all(s.count("{N}") == 1 for s in bank.neutral + bank.away)


@pytest.mark.parametrize("mode", CATALOGUE, ids=lambda m: m.name)
def test_every_mode_renders_and_stays_unambiguous(setup, mode):
    vs = _all_variants(setup, mode)
    cells_seen = {tuple(sorted(v.cell.items())) for *_, v in vs}
    assert len(cells_seen) == len(mode.cells), "every cell applies to some template"
    for clean, a, k, _v in vs:
        check_unambiguous(clean, a, k)
        assert a.text.endswith(clean.text[clean.text.rindex(" John") :])
        assert a.order == clean.order and a.pair_id == clean.pair_id
        assert a.text != k.text


def _count(p, tok_id):
    return Counter(p.token_ids[:-1])[tok_id]


def test_duplicated_io_doses_and_control(setup):
    for _clean, a, k, v in _all_variants(setup, mode_named("duplicated_io")):
        d = v.params["dose"]
        assert _count(a, a.io_token) == 1 + d and _count(a, a.s_token) == 2
        assert _count(k, k.io_token) == 1 and _count(k, k.s_token) == 2 + d
        assert len(a) == len(k), "control differs only in which name is repeated"
        for i in range(2, 2 + d):
            assert a.token_ids[a.positions[f"IO{i}"]] == a.io_token


def test_same_length_controls(setup):
    for name in ("distant_s2", "reversed_transfer", "swapped_pair"):
        for _clean, a, k, _v in _all_variants(setup, mode_named(name)):
            # distant_s2 moves text-initial words ("The" vs " The"), so lengths may differ by a token or two
            assert abs(len(a) - len(k)) <= (2 if name == "distant_s2" else 0), name
            if name != "distant_s2":  # filler is text-initial in the control ("The" vs " The")
                assert sorted(a.token_ids) == sorted(k.token_ids), name


def test_distant_s2_moves_s2_only_in_attack(setup):
    for clean, a, k, _v in _all_variants(setup, mode_named("distant_s2")):
        assert a.positions["S2"] - a.positions["IO"] > clean.positions["S2"] - clean.positions["IO"]
        assert k.positions["S2"] - k.positions["IO"] == clean.positions["S2"] - clean.positions["IO"]


def test_extra_name_is_a_fresh_name_placed_away(setup):
    tok, _, bank, _ = setup
    for _clean, a, k, _v in _all_variants(setup, mode_named("extra_name")):
        xs = a.extra["fill"]["x"]
        assert xs and not {"Mary", "John"} & set(xs)
        assert any(s.replace("{N}", xs[0]) in a.text for s in bank.away)
        assert not any(x in k.text for x in xs)


def test_reversed_transfer_mirrors_the_final_clause(setup):
    for _clean, a, k, _v in _all_variants(setup, mode_named("reversed_transfer")):
        assert a.token_ids[a.positions["S3"] - 1] == a.token_ids[a.end]  # "... to S." : same token as END before S
        assert a.positions["IO2"] < a.positions["S3"] and k.positions["S3"] < k.positions["IO2"]


def test_modes_for_skips_missing_roles():
    c = make_circuit("nm-only", "m", {Role.NAME_MOVER: ["a1.h0"]})
    prop = modes_for(c)
    assert [m.name for m in prop.modes] == ["extra_name"]
    assert set(prop.skipped) == {m.name for m in CATALOGUE} - {"extra_name"}
    assert "duplicate_token" in prop.skipped["duplicated_io"]
    full = modes_for(resolve_circuit("gpt2-small-ioi"))
    assert len(full.modes) == len(CATALOGUE) and not full.skipped


def test_modes_for_accepts_any_duplicate_detector_and_needs_a_signal():
    c = make_circuit("ind+si", "m", {Role.INDUCTION: ["a1.h1"], Role.S_INHIBITION: ["a2.h0"]})
    prop = modes_for(c)
    assert {m.name for m in prop.modes} == {"duplicated_io", "distant_s2", "reversed_transfer"}
    assert "previous_token" in prop.skipped["swapped_pair"] and "name_mover" in prop.skipped["extra_name"]
    only_dup = make_circuit("dup", "m", {Role.DUPLICATE_TOKEN: ["a0.h1"]})
    assert [m.name for m in modes_for(only_dup).modes] == ["duplicated_io"]  # signal falls back to IO2 -> IO


def test_requested_mode_runs_outside_proposal_only_with_a_readable_signal():
    from advgen.attacks.catalogue import modes_for
    from advgen.circuits.format import make_circuit
    from advgen.core.types import Role

    c = make_circuit("sinh-only", "m", {Role.S_INHIBITION: ["a1.h1"]}, 4, 4)
    assert [m.name for m in modes_for(c).modes] == ["distant_s2"]
    p = modes_for(c, requested=["duplicated_io", "extra_name"])
    assert [m.name for m in p.modes] == ["duplicated_io"]
    assert "s_inhibition" in p.notes["duplicated_io"] and "no duplicate_token or induction" in p.notes["duplicated_io"]
    assert "extra_name" in p.skipped and "name_mover" in p.skipped["extra_name"]
    with pytest.raises(AdvgenError, match="unknown failure mode"):
        modes_for(c, requested=["nope"])
