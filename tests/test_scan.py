"""The lazy prompt space, seeded sampling, the scan job and the local backend (fast, tiny random model)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from advgen.core.types import AdvgenError
from advgen.model.backends import LocalBackend, evaluate
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.space import Feistel, PromptSpace, Selection, chunks, paper_space
from advgen.prompts.templates import Template, resolve_templates


@pytest.fixture(scope="module")
def small_space() -> PromptSpace:
    t1 = Template("a", "Then, {S1} and {IO} went to the {PLACE}. {S2} gave a {OBJECT} to")
    t2 = Template("b", "Then, {S1} and {IO} had a long argument. Afterwards {S2} said to")
    return PromptSpace(
        (t1, t2), ("John", "Mary", "Paul", "Anna"), ("store", "park"), ("ring", "drink", "book"), distractors=("{N} was tired.",)
    )


def test_space_size_counts_each_prompt_once(small_space: PromptSpace) -> None:
    # template a: 2 orders x 2 places x 3 objects x 3 distractor cells; b has no nouns: 2 x 3
    assert small_space.block == 2 * 2 * 3 * 3 + 2 * 3
    assert len(small_space) == 4 * 3 * small_space.block
    points = [small_space.point(i) for i in range(len(small_space))]
    keys = {(p.template.id, p.order, p.io, p.s, p.place, p.object, p.distractor) for p in points}
    assert len(keys) == len(small_space)
    assert {(p.io, p.s) for p in points} == set(itertools.permutations(small_space.names, 2))
    assert all(p.place == "" and p.object == "" for p in points if p.template.id == "b")
    with pytest.raises(AdvgenError):
        small_space.point(len(small_space))


def test_round_robin_pairs_spread_a_prefix_over_every_name(small_space: PromptSpace) -> None:
    first = [small_space.pair(k) for k in range(len(small_space.names))]
    assert sorted(io for io, _ in first) == sorted(small_space.names)
    assert all(io != s for io, s in first)


def test_rendered_prompts_have_verified_positions_and_distractor_families(small_space: PromptSpace, gpt2_tokenizer) -> None:
    fams = {}
    for i in range(small_space.block):
        p = small_space.render(i, gpt2_tokenizer)
        fams.setdefault(p.family, p)
        assert p.extra["space_index"] == i
        assert gpt2_tokenizer.decode([p.token_ids[p.positions["IO"]]]).strip() == p.io
        if p.family != "clean":
            assert p.pair_id == f"x{small_space.clean_index(i)}"
            assert small_space.render(small_space.clean_index(i), gpt2_tokenizer).family == "clean"
    assert set(fams) == {"clean", "distractor_io", "distractor_s"}
    assert "IO2" in fams["distractor_io"].positions and fams["distractor_io"].text.count(fams["distractor_io"].io) == 2
    assert "S3" in fams["distractor_s"].positions and fams["distractor_s"].text.count(fams["distractor_s"].s) == 3


def test_paper_space_is_the_papers_lists(gpt2_tokenizer) -> None:
    sp = paper_space(resolve_templates(None), build_lexicon(gpt2_tokenizer))
    assert (len(sp.names), len(sp.places), len(sp.objects), len(sp.templates)) == (99, 8, 8, 15)
    assert len(sp) == 99 * 98 * (13 * 2 * 8 * 8 + 2 * 2)  # p05 and p13 name no place or object


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000, 4097])
def test_feistel_is_a_bijection(size: int) -> None:
    perm = Feistel(size, seed=3)
    assert sorted(perm(i) for i in range(size)) == list(range(size))


def test_sampling_is_seeded_without_replacement_and_lazy() -> None:
    size = 16_182_936
    a = Selection.of(size, sample=5000, seed=1)
    assert a.indices(0, 5000) == Selection.of(size, sample=5000, seed=1).indices(0, 5000)
    assert a.indices(0, 5000) != Selection.of(size, sample=5000, seed=2).indices(0, 5000)
    idx = a.indices(0, 5000)
    assert len(set(idx)) == 5000 and all(0 <= i < size for i in idx)
    assert a.indices(1000, 1200) == idx[1000:1200]  # any unit computes its own slice
    assert abs(sum(idx) / len(idx) / size - 0.5) < 0.03  # spread over the space, not a prefix
    assert Selection.of(size, limit=10).indices(0, 10) == list(range(10))
    assert Selection.of(100, sample=500).kind == "exhaustive"
    with pytest.raises(AdvgenError):
        Selection.of(size, limit=5, sample=5)
    assert list(chunks(10, 4)) == [(0, 4), (4, 8), (8, 10)]


def test_evaluate_in_units_equals_one_validate(tiny_model, gpt2_tokenizer) -> None:
    from advgen.model.validate import validate
    from advgen.outputs.pipeline import generate

    prompts = generate(tiny_model.tokenizer, 150, seed=4)
    one = validate(tiny_model, prompts, batch_size=4)
    units = evaluate(LocalBackend(tiny_model), prompts, batch_size=4)
    assert one.metrics == units.metrics  # bitwise: units are whole batches of the same batching


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_scan_writes_parts_summary_and_an_exportable_adversarial_set(tiny_model, tmp_path: Path) -> None:
    from advgen.outputs.exporters import export
    from advgen.outputs.scan import ScanConfig, run_scan

    cfg = ScanConfig(sample=300, seed=5, unit=64, batch_size=16)
    res = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "a")
    rows = [json.loads(line) for p in sorted((tmp_path / "a" / "parts").glob("*.jsonl")) for line in p.open()]
    assert len(rows) == 300 == res.summary["n"] and res.computed_units == 5
    assert len({r["extra"]["space_index"] for r in rows}) == 300
    fails = [r for r in rows if r["logit_diff"] < 0]
    assert res.summary["failures"] == len(fails) and 0 < len(fails) < 300  # a random model fails often
    ci = res.summary["failure_ci95"]
    assert ci["low"] < res.summary["failure_rate"] < ci["high"]
    adv = (tmp_path / "a" / "adversarial" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in adv] == fails
    out = export(tmp_path / "a" / "adversarial", "jsonl", tmp_path / "export")
    assert sum(1 for p in (out / "data").glob("*.jsonl") for _ in p.open()) == len(fails)


def test_scan_resumes_from_its_journal_with_identical_bytes(tiny_model, tmp_path: Path) -> None:
    from advgen.outputs.scan import Interrupted, ScanConfig, run_scan

    cfg = ScanConfig(limit=200, unit=64, batch_size=16, distractors=True)
    run_scan(LocalBackend(tiny_model), cfg, tmp_path / "full")
    with pytest.raises(Interrupted):
        run_scan(LocalBackend(tiny_model), cfg, tmp_path / "cut", stop_after_units=2)
    assert not (tmp_path / "cut" / "summary.json").exists()
    res = run_scan(LocalBackend(tiny_model), cfg, tmp_path / "cut", resume=True)
    assert (res.reused_units, res.computed_units) == (2, 2)
    assert _tree(tmp_path / "full") == _tree(tmp_path / "cut")


def test_cli_scan_prints_the_rate_and_refuses_both_limit_and_sample(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from advgen.cli.main import main

    out = tmp_path / "cli"
    assert (
        main(["scan", "--model", str(tiny_model_dir), "--sample", "64", "--unit", "32", "--no-progress", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "natural failure rate (S > IO)" in printed and "Wilson 95 %" in printed
    assert (out / "adversarial" / "results.jsonl").exists() and (out / ".advgen-complete.json").exists()
    with pytest.raises(SystemExit):
        main(["scan", "--limit", "5", "--sample", "5"])
