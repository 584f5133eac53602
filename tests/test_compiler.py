"""The failure-mode compiler reads only behaviour records: hand-made records (no model) -> expected edits and signs."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from advgen.attacks.checks import check_unambiguous, first_clause
from advgen.attacks.compiler import DOSES, compile_modes, select_modes
from advgen.circuits.behaviour_records import HeadBehaviour, Mention
from advgen.circuits.format import Circuit, make_circuit
from advgen.core.types import AdvgenError, Role
from advgen.prompts.datasets import Spec
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.sentences import load_bank
from advgen.prompts.templates import Fill, render, resolve_templates


def _record(head: str, gain: float, io_on_io: float, s_on_io: float, io_on_s: float, s_on_s: float) -> dict:
    """A record whose mass on (IO, S) changes by (io_on_X, s_on_X) when X is mentioned once more, at both sites."""

    def m(d_io: float, d_s: float) -> Mention:
        return Mention(d_io, d_s, 0.0, 0.01, 50)

    mention = {
        "IO": {"before": m(io_on_io, s_on_io), "after": m(io_on_io / 2, s_on_io / 2)},
        "S": {"before": m(io_on_s, s_on_s), "after": m(io_on_s / 2, s_on_s / 2)},
    }
    return HeadBehaviour(
        head,
        "END",
        {"IO": 0.3, "S1": 0.3, "S1+1": 0.0, "S2": 0.1, "END-1": 0.0, "other_names": 0.0, "filler": 0.3},
        mention,
        gain,
        "copies" if gain > 0 else "suppresses",
        0.5,
        n_prompts=50,
    ).to_dict()


def _circuit(records: dict[str, dict], name: str = "hand-made") -> Circuit:
    c = make_circuit(name, "none", {Role.NAME_MOVER: list(records)}, 4, 4)
    return replace(c, heads=tuple(replace(h, behaviour=records[str(h.head)]) for h in c.heads))


# A head that copies what it attends to, attention growing with mentions, S found by position (the natural reference model)
NATURAL = {
    "a0.h1": _record("a0.h1", gain=0.5, io_on_io=0.2, s_on_io=0.0, io_on_s=0.0, s_on_s=0.2),
    "a2.h3": _record("a2.h3", gain=0.05, io_on_io=0.01, s_on_io=0.0, io_on_s=0.0, s_on_s=0.01),
}
# Name movers copy, but a second mention of IO makes IO look duplicated: their attention to IO falls (the paper's circuit)
PLANTED = {"a2.h1": _record("a2.h1", gain=2.0, io_on_io=-0.3, s_on_io=0.05, io_on_s=0.02, s_on_s=-0.05)}


def test_copying_heads_whose_attention_grows_with_mentions_predict_s_repetition():
    modes, skipped = compile_modes(_circuit(NATURAL))
    by = {m.name: m for m in modes}
    assert set(by) == {"compiled_repeat_s", "compiled_repeat_io"} and not skipped
    assert by["compiled_repeat_s"].expected_sign == -1
    assert by["compiled_repeat_io"].expected_sign == +1
    s = by["compiled_repeat_s"]
    # dose x the summed per-mention shift: 2 * (0.5 * -0.2 + 0.05 * -0.01) before the text
    assert s.predicted_shift({"dose": 2, "site": "before"}) == pytest.approx(2 * (-0.1 - 0.0005))
    assert "a0.h1" in s.mechanism and "compiled from heads a0.h1" in s.mechanism
    sig = s.signals[0]
    # a2.h3 adds 0.0005, under EVIDENCE_SHARE of a0.h1's 0.1: counted in the shift, not cited as evidence
    assert [str(h) for h in sig.heads] == ["a0.h1"] and sig.direction == +1 and "S3" in sig.keys and "IO" in sig.minus


def test_duplication_sensitive_name_movers_predict_io_repetition():
    modes, _ = compile_modes(_circuit(PLANTED))
    by = {m.name: m for m in modes}
    assert by["compiled_repeat_io"].expected_sign == -1
    assert by["compiled_repeat_s"].expected_sign == +1
    sig = by["compiled_repeat_io"].signals[0]
    assert sig.signs == (-1,)  # the name mover's IO-minus-S attention should fall


def test_rules_read_records_not_names():
    """The same records under another circuit and model name compile to the same modes and signs."""
    a, _ = compile_modes(_circuit(PLANTED, "reference-ioi"))
    b, _ = compile_modes(replace(_circuit(PLANTED, "x"), model="gpt2"))
    assert [(m.name, m.expected_sign, m.mechanism) for m in a] == [(m.name, m.expected_sign, m.mechanism) for m in b]


def test_no_records_means_catalogue_by_default_and_an_error_when_compiled_is_asked_for():
    bare = make_circuit("bare", "none", {Role.NAME_MOVER: ["a1.h0"]}, 2, 4)
    assert all(not m.name.startswith("compiled") for m in select_modes(bare).modes)
    with pytest.raises(AdvgenError, match="no behaviour records"):
        select_modes(bare, ["compiled"])
    assert {m.name for m in select_modes(_circuit(NATURAL)).modes} == {"compiled_repeat_s", "compiled_repeat_io"}


@pytest.fixture(scope="module")
def setup(gpt2_tokenizer):
    lex = build_lexicon(gpt2_tokenizer)
    return gpt2_tokenizer, lex, load_bank(lex), resolve_templates("ioi")


def test_compiled_edits_mention_the_name_dose_times_and_controls_say_someone(setup):
    tok, lex, bank, templates = setup
    mode = {m.name: m for m in compile_modes(_circuit(NATURAL))[0]}["compiled_repeat_s"]
    n = 0
    for t in templates:
        spec = Spec(t, "BABA", Fill(io="Mary", s="John", place="store", object="drink"), f"{t.id}", "Kevin")
        clean = render(t, "BABA", spec.fill, tok, pair_id=spec.pair_id)
        for cell in mode.cells:
            v = mode.variant(spec, cell, random.Random(0), bank, lex)
            if v is None:
                assert cell["site"] == "after"  # no sentence break before S2 in this template
                continue
            a, k = mode.render(spec, v, tok)
            check_unambiguous(clean, a, k)
            assert a.text.count("John") == clean.text.count("John") + cell["dose"]
            # the same max(DOSES) sentences at every dose (one in a short cell): `dose` of them name S, the rest (all, in the
            # control) say someone
            length = cell.get("length", max(DOSES))
            assert a.text.lower().count("someone") == length - cell["dose"]
            assert k.text.count("John") == clean.text.count("John") and k.text.lower().count("someone") == length
            assert len(a) == len(k)  # the same words: only the mention differs
            n += 1
    assert n > 40


def test_dose_cells_carry_the_per_mention_evidence_and_share_one_control_per_site(setup):
    """Cells are site x dose with dose x the records' one-mention shift; every dose of both names at a site has one control."""
    tok, lex, bank, templates = setup
    by = {m.name: m for m in compile_modes(_circuit(PLANTED))[0]}
    io, s = by["compiled_repeat_io"], by["compiled_repeat_s"]
    assert sorted({c["dose"] for c in io.cells}) == list(DOSES) and len(DOSES) >= 3
    one = io.predicted_shift({"dose": 1, "site": "before"})
    assert one < 0  # copies (gain 2), IO-minus-S mass falls by 0.35 per IO mention: 2 * (-0.3 - 0.05)
    assert one == pytest.approx(2.0 * (-0.3 - 0.05))
    for k in DOSES:  # stronger with every mention, in the predicted direction for both names
        assert io.predicted_shift({"dose": k, "site": "before"}) == pytest.approx(k * one)
        assert s.predicted_shift({"dose": k, "site": "after"}) > 0
    t = next(t for t in templates if t.id == "p01")
    spec = Spec(t, "BABA", Fill(io="Mary", s="John", place="store", object="drink"), "p01", "Kevin")
    for site, length in itertools.product(("before", "after"), (1, max(DOSES))):
        controls = set()
        mine = [c for c in io.cells if c["site"] == site and c.get("length", max(DOSES)) == length]
        assert mine and [c["dose"] for c in mine] == list(DOSES[:length])  # a short cell holds one sentence, so dose 1 only
        for mode in (io, s):
            assert len({mode.share_key(c) for c in mine}) == 1
            for cell in mine:
                v = mode.variant(spec, cell, random.Random(f"0:p01:{mode.share_key(cell)}"), bank, lex)
                assert v is not None
                controls.add(mode.render(spec, v, tok)[1].text)
        assert len(controls) == 1, controls


def test_first_clause_check_is_real_for_templates_without_a_full_stop(setup):
    """p06-p10 have no full stop before S2: the first clause must still be checked (it used to check the final one)."""
    tok, *_ = setup
    from advgen.prompts.templates import Template

    t = Template("p06", "After {S1} and {IO} went to the {PLACE}, {S2} gave a {OBJECT} to", pack="ioi")
    fill = Fill(io="Mary", s="John", place="store", object="drink")
    clean = render(t, "BABA", fill, tok, pair_id="x")
    assert first_clause(clean) == "John and Mary went to the store"
    bad = render(
        Template("bad", "After {S1} and {IO} met at the {PLACE}, {S2} gave a {OBJECT} to", pack="x"),
        "BABA",
        fill,
        tok,
        family="attack",
        pair_id="x",
    )
    with pytest.raises(AdvgenError, match="first clause"):
        check_unambiguous(clean, bad, bad)


@pytest.mark.slow
def test_records_measured_on_the_planted_model_predict_io_repetition():
    """The planted model carries the paper's circuit: its measured records must compile to 'repeat IO lowers LD'."""
    from advgen.circuits.behaviour import attach_records
    from advgen.circuits.format import resolve_circuit
    from advgen.model.loading import bundled_dir, load_model

    if not (bundled_dir("planted") / "config.json").exists():
        pytest.skip("bundled planted model not installed")
    model = load_model("planted")
    circuit = attach_records(model, resolve_circuit("planted-ioi", model.n_layers, model.n_heads))
    by = {m.name: m for m in compile_modes(circuit)[0]}
    assert by["compiled_repeat_io"].expected_sign == -1
    assert by["compiled_repeat_s"].expected_sign == +1


def test_the_compiler_reads_the_real_path_gain_not_the_direct_one():
    """A head whose direct write copies but whose write the later MLPs reverse: the prediction follows the path figure."""
    rec = dict(NATURAL["a0.h1"], write_gain=-0.5, write_gain_direct=0.5, write_path="direct+mlps", write_sign="suppresses")
    by = {m.name: m for m in compile_modes(_circuit({"a0.h1": rec}))[0]}
    nat = {m.name: m for m in compile_modes(_circuit({"a0.h1": NATURAL["a0.h1"]}))[0]}
    assert by["compiled_repeat_s"].expected_sign == -nat["compiled_repeat_s"].expected_sign == +1
    assert "-0.50 via later MLPs, direct +0.50" in by["compiled_repeat_s"].mechanism


def test_records_from_another_model_or_of_unknown_model_are_stale():
    from advgen.circuits.identity import stale_records

    ident = {"model": "m", "tokenizer_hash": "t", "weights_sha256": "w" * 64}
    on = dict(NATURAL["a0.h1"], measured_on=ident)
    assert stale_records(_circuit({"a0.h1": on}), ident) is None
    assert "another model" in str(stale_records(_circuit({"a0.h1": on}), {**ident, "weights_sha256": "x" * 64}))
    assert "another model" in str(stale_records(_circuit({"a0.h1": on}), {**ident, "tokenizer_hash": "u"}))
    assert "predates" in str(stale_records(_circuit(NATURAL), ident))
    assert "no behaviour records" in str(stale_records(make_circuit("bare", "none", {Role.NAME_MOVER: ["a1.h0"]}, 2, 4), ident))
    partial = _circuit({"a0.h1": on, "a2.h3": {}})
    assert "a2.h3" in str(stale_records(partial, ident))


def test_default_falls_back_to_the_catalogue_when_records_compile_nothing():
    flat = _record("a0.h1", gain=0.0, io_on_io=0.0, s_on_io=0.0, io_on_s=0.0, s_on_s=0.0)
    p = select_modes(_circuit({"a0.h1": flat}))
    assert p.modes and all(not m.name.startswith("compiled") for m in p.modes)
    assert "no head's or MLP node's record carries a prediction" in p.skipped["compiled_repeat_s"]
    with pytest.raises(AdvgenError, match="nothing compiled"):
        select_modes(_circuit({"a0.h1": flat}), ["compiled"])


def test_prediction_accuracy_counts_only_compiled_cells():
    from advgen.attacks.compiler import prediction_accuracy

    acc = prediction_accuracy(
        {
            "compiled_repeat_s:0": "confirmed",
            "compiled_repeat_s:1": "falsified",
            "compiled_repeat_io:0": "inconclusive",
            "duplicated_io:0": "falsified",
        }
    )
    assert (acc["compiled_cells"], acc["confirmed"], acc["falsified"], acc["inconclusive"]) == (3, 1, 1, 1)
    assert acc["falsified_cells"] == ["compiled_repeat_s:1"]
    assert prediction_accuracy({"duplicated_io:0": "confirmed"})["compiled_cells"] == 0


def test_an_mlp_node_record_alone_compiles_a_mode_with_its_measured_sign():
    from advgen.circuits.behaviour_records import MLPBehaviour, WriteChange
    from advgen.circuits.format import CircuitMLP

    def w(x: float) -> WriteChange:
        return WriteChange(x, x / 2, 0.01, 50)

    rec = MLPBehaviour(
        "m3", "END", 0.4, 0.5, {"IO": {"before": w(0.3), "after": w(0.1)}, "S": {"before": w(-0.2), "after": w(-0.1)}}, 50
    )
    c = replace(
        make_circuit("mlp-only", "none", {Role.NAME_MOVER: ["a1.h0"]}, 4, 4), mlps=(CircuitMLP(3, behaviour=rec.to_dict()),)
    )
    by = {m.name: m for m in compile_modes(c)[0]}
    assert by["compiled_repeat_io"].expected_sign == +1 and by["compiled_repeat_s"].expected_sign == -1
    assert by["compiled_repeat_s"].predicted_shift({"dose": 2, "site": "before"}) == pytest.approx(-0.4)
    assert "MLP nodes m3" in by["compiled_repeat_s"].mechanism
    # beside a head, the node's measured change is added to the head's modelled one
    both = replace(_circuit(NATURAL), mlps=c.mlps)
    s_both = {m.name: m for m in compile_modes(both)[0]}["compiled_repeat_s"]
    s_heads = {m.name: m for m in compile_modes(_circuit(NATURAL))[0]}["compiled_repeat_s"]
    assert s_both.predicted_shift({"dose": 1, "site": "before"}) == pytest.approx(
        s_heads.predicted_shift({"dose": 1, "site": "before"}) - 0.2
    )


def test_attack_style_probes_are_the_attacks_own_sentence_block(setup):
    """BehaviourSettings(probe="attack"): records measured on what the compiled attack adds (three neutral sentences,
    the first naming the person, the rest "Someone"), not on one paper sentence; the block size follows the attack's doses."""
    from advgen.circuits.behaviour import EDIT_SENTENCES, BehaviourSettings, measure_records, probes
    from advgen.prompts.datasets import sample_specs

    tok, lex, bank, _ = setup
    assert max(DOSES) == EDIT_SENTENCES
    specs = sample_specs(resolve_templates(None), lex, 4, 0)
    one, three = probes(specs, bank.paper, tok, 0), probes(specs, bank.neutral, tok, 0, EDIT_SENTENCES)
    assert len(one) == len(three) > 0
    for a, b in zip(one, three, strict=True):
        assert (a.mentioned, a.site) == (b.mentioned, b.site)
        assert [p.text.lower().count("someone") for p in (a.attack, a.control)] == [0, 1]
        assert [p.text.lower().count("someone") for p in (b.attack, b.control)] == [EDIT_SENTENCES - 1, EDIT_SENTENCES]
    with pytest.raises(AdvgenError, match="behaviour probe 'typo' is not one of"):
        measure_records(None, [], [], BehaviourSettings(probe="typo"))  # type: ignore[arg-type]
