"""The Task interface: YAML tasks checked whole with named errors, exact positions, aligned twins, seeded prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advgen.core.types import AdvgenError
from advgen.model.loading import load_tokenizer
from advgen.tasks.lexicons import resolve_lexicons, vocab_words
from advgen.tasks.registry import builtin_task_names, resolve_task
from advgen.tasks.sample import iter_task_specs, task_sets
from advgen.tasks.spec import TaskError

GOOD = """\
task: capital
metric: logit_diff
lexicons:
  country: [France, Spain, Italy]
slots: {X: country}
templates:
  - id: t1
    text: "The capital of {X} is the city of"
answer: {slot: X, map: {France: Paris, Spain: Madrid, Italy: Rome}}
foil: {slot: X, map: {France: Madrid, Spain: Paris, Italy: Paris}}
corrupt: {slot: X}
roles:
  mover: {query: END, key: X}
"""


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("reference")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "task.yaml"
    p.write_text(text)
    return p


def test_builtin_tasks_are_listed_and_resolve() -> None:
    assert {"ioi", "induction"} <= set(builtin_task_names())
    t = resolve_task("induction")
    assert t.engine == "generic" and t.corrupt is not None and t.edits is not None
    assert {r.name for r in t.roles} == {"previous_token", "induction"}
    assert resolve_task(None).engine == "ioi"


@pytest.mark.parametrize(
    "edit, expect",
    [
        (("slots: {X: country}", "slots: {X: nations}"), r"task.yaml:\d+: slot \{X\} uses lexicon 'nations'"),
        (
            ('text: "The capital of {X} is the city of"', 'text: "The capital of {Y} is"'),
            r"task.yaml:\d+: template 't1': slot \{Y\} is not declared",
        ),
        (("Italy: Rome}", "Italy: Rome, Peru: Lima}"), None),
        (
            ("France: Paris, Spain: Madrid, Italy: Rome", "France: Paris, Spain: Madrid"),
            r"task.yaml:\d+: answer 'map' has no entry for \{X\} value\(s\) \['Italy'\]",
        ),
        (("metric: logit_diff", "metric: accuracy"), r"metric 'accuracy' is not one of"),
        (("mover: {query: END, key: X}", "mover: {query: END, key: Z+1}"), r"role 'mover': position 'Z\+1' names slot \{Z\}"),
        (("corrupt: {slot: X}", "corrupt: {slot: X, mention: 2}"), r"corrupt asks for mention 2 of \{X\}, template 't1' has 1"),
        (("task: capital", "task: capital\ncolour: red"), r"task.yaml:1: unknown key\(s\) \['colour'\]"),
        (('text: "The capital of {X} is the city of"', 'text: "The capital of{X} is"'), r"slot \{X\} is glued to a word"),
    ],
)
def test_bad_task_files_name_file_line_and_slot(tmp_path: Path, edit: tuple[str, str], expect: str | None) -> None:
    p = _write(tmp_path, GOOD.replace(*edit))
    if expect is None:  # an extra mapping entry for a value the lexicon lacks is harmless
        resolve_task(p)
        return
    with pytest.raises(TaskError, match=expect):
        resolve_task(p)


def test_unknown_task_name_lists_the_builtins() -> None:
    with pytest.raises(TaskError, match="neither a built-in task"):
        resolve_task("greater")


def test_yaml_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AdvgenError, match="alias|anchor"):
        resolve_task(
            _write(tmp_path, GOOD.replace("country: [France, Spain, Italy]", "country: &c [France, Spain, Italy]\n  other: *c"))
        )


def test_vocab_words_are_single_tokens_and_sorted(tok) -> None:
    words = vocab_words(tok)
    assert len(words) > 100 and list(words) == sorted(words)
    assert all(len(tok.encode(" " + w, add_special_tokens=False)) == 1 for w in words)


def test_lexicon_too_small_after_single_token_filter_is_named(tmp_path: Path, tok) -> None:
    p = _write(
        tmp_path,
        GOOD.replace("[France, Spain, Italy]", "[Xanthippeland, Qwertzistan, Italy]")
        .replace("{France: Paris, Spain: Madrid, Italy: Rome}", "{Xanthippeland: Paris, Qwertzistan: Madrid, Italy: Rome}")
        .replace("{France: Madrid, Spain: Paris, Italy: Paris}", "{Xanthippeland: Madrid, Qwertzistan: Paris, Italy: Paris}"),
    )
    with pytest.raises(TaskError, match=r"lexicon 'country' keeps \d word\(s\) that are one token"):
        resolve_lexicons(resolve_task(p), tok)


def test_positions_are_exact_and_twins_aligned(tok) -> None:
    t = resolve_task("induction")
    clean, twins = task_sets(t, resolve_lexicons(t, tok), tok, 40, seed=3)
    assert twins is not None
    for p, q in zip(clean, twins, strict=True):
        ids = p.token_ids
        assert ids[p.positions["A"]] == ids[p.positions["A@2"]] == ids[p.end]
        assert ids[p.positions["A+1"]] == p.io_token and ids[p.positions["C"]] == p.s_token
        assert tok.decode([p.io_token]) == " " + p.answer
        assert len(p) == len(q) and q.token_ids[q.positions["A"]] != ids[p.positions["A"]]
        assert [i for i, (a, b) in enumerate(zip(ids, q.token_ids, strict=True)) if a != b] == [p.positions["A"]]
        assert p.task == "induction" and p.io_token != p.s_token


def test_same_seed_same_prompts_other_seed_others(tok) -> None:
    t = resolve_task("induction")
    lex = resolve_lexicons(t, tok)
    a = [s.values for s in iter_task_specs(t, lex, 12, 0)]
    assert a == [s.values for s in iter_task_specs(t, lex, 12, 0)]
    assert a != [s.values for s in iter_task_specs(t, lex, 12, 1)]
    assert {s.template.id for s in iter_task_specs(t, lex, 8, 0)} == {x.id for x in t.templates}  # balanced


def test_run_then_validate_a_task_gives_task_columns(tmp_path: Path) -> None:
    import advgen

    r = advgen.run("reference", n=16, seed=0, out=tmp_path / "run", task="induction")
    row = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert row["task"] == "induction" and row["answer"] == row["io"] and "values" in row["extra"]
    assert r.manifest["settings"]["task"]["name"] == "induction" and "--task induction" in r.manifest["command"]
    g = advgen.generate("reference", n=16, seed=0, out=tmp_path / "gen", task="induction")
    v = advgen.validate("reference", g.prompts_path, out=tmp_path / "val", task="induction")
    assert [m.logit_diff for m in v.evaluation.metrics] == [m.logit_diff for m in r.evaluation.metrics]


def test_validate_refuses_a_tampered_task_row(tmp_path: Path) -> None:
    import advgen

    g = advgen.generate("reference", n=4, seed=0, out=tmp_path / "gen", task="induction")
    lines = g.prompts_path.read_text().splitlines()
    row = json.loads(lines[1])
    row["io"] = row["s"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n")
    with pytest.raises(TaskError, match=r"bad.jsonl:2: answer/foil"):
        advgen.validate("reference", bad, out=tmp_path / "val", task="induction")
    assert not (tmp_path / "val").exists()


def test_templates_option_is_refused_for_a_task(tmp_path: Path) -> None:
    import advgen

    with pytest.raises(AdvgenError, match="--templates is for IOI"):
        advgen.run("reference", n=4, out=tmp_path / "r", task="induction", templates="ioi")


def test_task_space_decodes_every_index_to_distinct_values(tok) -> None:
    from advgen.tasks.space import TaskSpace

    t = resolve_task("induction")
    words = resolve_lexicons(t, tok).words
    small = TaskSpace(t, {"word": words["word"][:12]})  # 12 words: every block still a valid k-permutation space
    assert small.size == sum(small.sizes) > 0
    seen = set()
    for i in (0, 1, small.sizes[0] - 1, small.sizes[0], small.size - 1):
        tmpl, values = small.point(i)
        assert len(set(values.values())) == len(values) == len(tmpl.slots)
        seen.add((tmpl.id, tuple(sorted(values.items()))))
    assert len(seen) == 5
    with pytest.raises(AdvgenError, match="outside the task's prompt space"):
        small.point(small.size)


def test_scan_and_export_a_task_run(tmp_path: Path) -> None:
    import advgen
    from advgen.outputs.scan import ScanConfig

    s = advgen.scan("reference", ScanConfig(sample=40, seed=1, task="induction", unit=20), out=tmp_path / "scan")
    assert s.summary["n"] == 40 and "by_slot" in s.summary and set(s.summary["by_slot"]) >= {"A", "B", "C"}
    assert "--task induction" in s.manifest["command"] and s.manifest["settings"]["task"] == "induction"
    fails = (tmp_path / "scan" / "adversarial" / "results.jsonl").read_text().splitlines()
    assert len(fails) == s.summary["failures"] and all(json.loads(x)["logit_diff"] < 0 for x in fails)
    with pytest.raises(AdvgenError, match="shape IOI's space"):
        advgen.scan("reference", ScanConfig(sample=4, task="induction", distractors=True), out=tmp_path / "scan2")
    advgen.run("reference", n=8, seed=0, out=tmp_path / "run", task="induction")
    advgen.export(tmp_path / "run", "auto-circuit", tmp_path / "ac")
    doc = json.loads((tmp_path / "ac" / "clean.json").read_text())
    assert len(doc["prompts"]) == 8
    for e in doc["prompts"]:  # the twin differs from the clean prompt in exactly one word: the first A
        diff = [(a, b) for a, b in zip(e["clean"].split(), e["corrupt"].split(), strict=True) if a != b]
        assert len(diff) == 1
    card = (tmp_path / "ac" / "README.md").read_text()
    assert "advgen induction prompts" in card and "IOI prompts" not in card
