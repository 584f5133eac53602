"""Set-answer tasks (greater-than): glued year tokens, answer/foil sets, and PD read at each prompt's END."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advgen.core.types import PromptSet
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.registry import resolve_task
from advgen.tasks.sample import task_sets
from advgen.tasks.spec import TaskError


@pytest.fixture(scope="module")
def gt_sets(tiny_model):
    t, tok = resolve_task("greater-than"), tiny_model.tokenizer  # GPT-2's tokenizer, as the tiny model saved it
    return t, *task_sets(t, resolve_lexicons(t, tok), tok, 30, seed=0)


def test_years_split_as_century_plus_two_digits(gt_sets, tiny_model) -> None:
    gpt2_tokenizer = tiny_model.tokenizer
    t, clean, twins = gt_sets
    for p, q in zip(clean, twins, strict=True):
        yy = p.extra["values"]["YY"]
        xx = p.extra["values"]["XX"]
        assert gpt2_tokenizer.decode([p.token_ids[p.positions["XX"]]]) == " " + xx
        assert gpt2_tokenizer.decode([p.token_ids[p.positions["YY"]]]) == yy
        assert gpt2_tokenizer.decode([p.token_ids[p.end]]) == " " + xx
        answers = {gpt2_tokenizer.decode([i]) for i in p.answer_tokens}
        foils = {gpt2_tokenizer.decode([i]) for i in p.foil_tokens}
        assert answers == {f"{y:02d}" for y in range(int(yy) + 1, 100)} and foils == {f"{y:02d}" for y in range(int(yy) + 1)}
        assert gpt2_tokenizer.decode([q.token_ids[q.positions["YY"]]]) == "01" and len(q) == len(p)
        assert q.answer_tokens == p.answer_tokens  # the twin is scored against the clean prompt's sets


def test_pd_and_ld_match_a_full_softmax(gt_sets, tiny_model) -> None:
    from advgen.model.validate import end_logits, end_metrics

    _, clean, _ = gt_sets
    ps = PromptSet(clean.prompts[:8], clean.tokenizer_hash)
    metrics = end_metrics(tiny_model, ps, batch_size=3)
    logits = end_logits(tiny_model, ps, batch_size=8).double()
    for p, m, lg in zip(ps, metrics, logits, strict=True):
        prob = lg.softmax(-1)
        pa, pf = float(prob[list(p.answer_tokens)].sum()), float(prob[list(p.foil_tokens)].sum())
        assert m.io_prob == pytest.approx(pa, rel=1e-4) and m.s_prob == pytest.approx(pf, rel=1e-4)
        assert m.logit_diff == pytest.approx(float(torch.log(torch.tensor(pa / pf))), abs=1e-4)
        assert (m.logit_diff < 0) == (pa < pf)


def test_run_reports_pd(tmp_path: Path, tiny_model_dir) -> None:
    import advgen

    r = advgen.run(str(tiny_model_dir), n=12, seed=0, out=tmp_path / "gt", task="greater-than")
    pd = [m.io_prob - m.s_prob for m in r.evaluation.metrics]
    assert r.summary["mean_prob_diff"] == pytest.approx(sum(pd) / len(pd))
    assert r.summary["prob_diff_ci95"]["low"] <= r.summary["mean_prob_diff"] <= r.summary["prob_diff_ci95"]["high"]


def gt_variant(tmp_path: Path, old: str, new: str) -> Path:
    """The built-in greater-than task file with one piece of text replaced, written to tmp_path/gt.yaml."""
    src = (Path(__file__).parents[1] / "advgen" / "tasks" / "data" / "greater-than.yaml").read_text()
    assert old in src
    path = tmp_path / "gt.yaml"
    path.write_text(src.replace(old, new))
    return path


@pytest.mark.parametrize(
    "rule, expect",
    [
        ("{slot: YY, compare: '>>', over: year, space: false}", r"compare '>>' is not one of"),
        ("{slot: YY, compare: '>', over: noun, space: false}", r"compares numbers; 'war'"),
        ("{slot: YY, compare: '>', over: nope}", r"'over' must name a listed or range lexicon"),
        ("{slot: YY, compare: '>', over: year, space: maybe}", r"'space' must be true or false"),
        ("{slot: YY, comparison: '>'}", r"unknown key\(s\) \['comparison'\]"),
    ],
)
def test_bad_set_rules_are_named(tmp_path: Path, rule: str, expect: str) -> None:
    with pytest.raises(TaskError, match=expect):
        resolve_task(gt_variant(tmp_path, 'answer: {slot: YY, compare: ">", over: year, space: false}', f"answer: {rule}"))


def test_a_slot_glued_to_a_word_is_refused(tmp_path: Path) -> None:
    src = (Path(__file__).parents[1] / "advgen" / "tasks" / "data" / "greater-than.yaml").read_text()
    bad = tmp_path / "gt.yaml"
    bad.write_text(src.replace("The {NOUN} lasted", "The x{NOUN} lasted"))
    with pytest.raises(TaskError, match=r"gt.yaml:\d+: template 'lasted': slot \{NOUN\} is glued to a word"):
        resolve_task(bad)


def test_builtin_gpt2_greater_than_circuit_names_its_task_and_mlps() -> None:
    from advgen.circuits.format import CircuitError, resolve_circuit

    c = resolve_circuit("gpt2-small-greater-than", 12, 12)
    assert c.task == "greater-than" and {m.node for m in c.mlps} == {"m8", "m9", "m10", "m11"}
    assert {h.role.value for h in c.heads} == {"yy_mover"} and len(c.heads) == 7
    c.check_task(resolve_task("greater-than"))
    with pytest.raises(CircuitError, match="is for task 'greater-than', not 'ioi'"):
        c.check_task(resolve_task("ioi"))
    with pytest.raises(CircuitError, match="layers 0..3"):
        c.check_against(4, 4)


@pytest.mark.slow  # over 7 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_gpt2_greater_than_claims_run_on_the_gpt2_shaped_model(tmp_path: Path, gpt2_shaped_dir) -> None:
    """The built-in circuit's heads and MLP nodes fit GPT-2 small's shape and every ablation runs (random weights:
    the numbers mean nothing, the plumbing does)."""
    import json

    import advgen
    from advgen.circuits.task_claims import TaskClaimSettings

    advgen.check_claim(
        str(gpt2_shaped_dir), "gpt2-small-greater-than", tmp_path / "c", TaskClaimSettings(n=6), task="greater-than"
    )
    doc = json.loads((tmp_path / "c" / "claims.json").read_text())
    text = json.dumps(doc)
    assert "m9" in text and "a9.h1" in text and "twin_mean" in text and "zero" in text


def test_a_set_task_without_a_value_mention_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from advgen.cli.main import main

    bare = gt_variant(tmp_path, ', mention: "{XX}{E}"}', "}")
    out = tmp_path / "att"
    rc = main(
        [
            "attack",
            "--task",
            str(bare),
            "--model",
            "greater-than",
            "--circuit",
            "gpt2-small-greater-than",
            "--budget",
            "200",
            "--out",
            str(out),
        ]
    )
    assert rc == 2 and not out.exists()
    assert "needs a set answer rule (compare) and 'edits: {mention: ...}'" in capsys.readouterr().err


@pytest.mark.parametrize("mention, expect", [("{XX}", "exactly one {E}"), ("{QQ}{E}", r"names slots \['QQ'\]")])
def test_a_bad_value_mention_is_named(tmp_path: Path, mention: str, expect: str) -> None:
    with pytest.raises(TaskError, match=expect):
        resolve_task(gt_variant(tmp_path, 'mention: "{XX}{E}"', f'mention: "{mention}"'))


def test_distractor_attack_inserts_foil_side_values_against_the_clean_value(tmp_path: Path) -> None:
    """On the bundled greater-than model: the compiled value-distractor mode, its attacks (earlier years of the
    prompt's century) against controls (the clean year itself), the answer sets unchanged, every phase within budget."""
    import json

    import advgen

    circuit = (
        tmp_path / "gt.json"
    )  # discover's circuit on the bundled model (`advgen discover --task greater-than --model greater-than`)
    circuit.write_text(
        json.dumps(
            {
                "format": "advgen-circuit/2",
                "name": "gt",
                "task": "greater-than",
                "model": "greater-than",
                "n_layers": 4,
                "n_heads": 4,
                "heads": [{"head": "a0.h2", "role": "yy_mover", "positions": ["END"]}],
                "mlps": [{"node": "m0", "positions": ["ALL"]}, {"node": "m1", "positions": ["ALL"]}],
            }
        )
    )
    res = advgen.attack(
        "greater-than", str(circuit), advgen.AttackConfig(budget=240, n_clean=40, seed=0), tmp_path / "a", task="greater-than"
    )
    rows = res.run.rows
    assert [m.name for m in res.run.modes] == ["compiled_value_distractor"]
    assert sum(res.run.evals.values()) <= 240 + 240 - 40
    clean = {r["pair_id"]: r for r in rows if r["family"] == "clean"}
    pairs = [r for r in rows if r["family"] in ("attack", "control")]
    assert pairs and {r["cell"].rsplit(":", 1)[1] for r in pairs} <= {"gap=near", "gap=far"}
    for r in pairs:
        yy = clean[r["pair_id"]]["extra"]["values"]["YY"]
        vals = r["params"]["values"]
        assert len(vals) == r["params"]["dose"] and (r["io"], r["s"]) == (clean[r["pair_id"]]["io"], clean[r["pair_id"]]["s"])
        assert all(int(v) < int(yy) for v in vals) if r["family"] == "attack" else vals == [yy] * len(vals)
        assert f"{clean[r['pair_id']]['extra']['values']['XX']}{vals[0]} " in r["text"]
    assert all(r["explained"] is not None for r in rows if r["family"] == "attack" and r["is_break"])
    # A control prompt (the clean year inserted dose times) is shared by every gap and draw: evaluated once, copied to the rest.
    from advgen.attacks.journal import REUSED

    ran = [r for r in rows if r["family"] == "control" and REUSED not in r["extra"]]
    assert len({r["text"] for r in ran}) == len(ran)
    assert res.run.evals["sample"] + res.run.evals["search"] == sum(
        REUSED not in r["extra"] for r in rows if r["phase"] in ("sample", "search")
    )
    by_cand = {r["candidate"]: r for r in ran}
    copies = [r for r in rows if r["family"] == "control" and REUSED in r["extra"]]
    assert copies and all(
        r["logit_diff"] == by_cand[r["extra"][REUSED]]["logit_diff"] and r["text"] == by_cand[r["extra"][REUSED]]["text"]
        for r in copies
    )
    assert len({r["candidate"] for r in rows if r["family"] == "control"}) == sum(r["family"] == "control" for r in rows)
    att = [r["text"] for r in rows if r["family"] == "attack"]
    assert len(set(att)) == len(att)  # value draws are distinct: no attack prompt runs twice
