"""Error agreement (issue 29): rows rebuilt as checked prompts, failure sets read, the circuit's errors measured."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from advgen.circuits.failures import AgreementSettings, error_agreement, failure_prompts
from advgen.circuits.format import Circuit, CircuitHead, make_circuit
from advgen.core import files, records
from advgen.core.types import AdvgenError, Head, Role
from advgen.model.validate import validate
from advgen.outputs.failure_sets import read_failures
from advgen.prompts.datasets import ioi_sets
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.rows import abc_twin, prompt_of_row

FAST = AgreementSettings(batch_size=16, ablations=("abc_mean", "zero"), greedy_steps=1)


@pytest.fixture(scope="module")
def rows(tiny_model):
    """Validated rows of the tiny random model: some with LD < 0 (its errors), some with LD > 0."""
    ps = ioi_sets(tiny_model.tokenizer, 40, 0)[0]
    out = records.result_rows(validate(tiny_model, ps, 16))
    assert any(r["logit_diff"] < 0 for r in out) and any(r["logit_diff"] > 0 for r in out)
    return out


@pytest.fixture(scope="module")
def jsonl(rows, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("fail") / "validated.jsonl"
    p.write_text(files.jsonl_text(rows))
    return p


def test_a_row_rebuilds_its_prompt_and_a_wrong_slot_is_named(tiny_model):
    tok = tiny_model.tokenizer
    p = ioi_sets(tok, 4, 1)[0][2]
    row = records.prompt_row(p)
    q = prompt_of_row(row, tok, "f.jsonl:3")
    assert (q.token_ids, dict(q.positions), q.io_token, q.s_token) == (p.token_ids, dict(p.positions), p.io_token, p.s_token)
    bad = dict(row, positions={**row["positions"], "S2": row["positions"]["S2"] + 1})
    with pytest.raises(AdvgenError, match=r"f\.jsonl:3: slot S2 is token"):
        prompt_of_row(bad, tok, "f.jsonl:3")
    with pytest.raises(AdvgenError, match=r"f\.jsonl:3: the row says 99 tokens"):
        prompt_of_row(dict(row, n_tokens=99), tok, "f.jsonl:3")
    with pytest.raises(AdvgenError, match=r"slot END"):
        prompt_of_row(dict(row, positions={**row["positions"], "END": 1}), tok, "f.jsonl:3")


def test_abc_twin_changes_only_s2_and_is_fixed_by_seed(tiny_model):
    tok = tiny_model.tokenizer
    pool = build_lexicon(tok).name_texts
    for p in ioi_sets(tok, 8, 2)[0]:
        t = abc_twin(p, tok, pool, 0)
        assert not isinstance(t, str)
        diff = [i for i, (a, b) in enumerate(zip(p.token_ids, t.token_ids, strict=True)) if a != b]
        assert diff == [p.positions["S2"]]
        assert t.extra["third"] not in (p.io, p.s) and t.extra["third"] not in p.text
        assert abc_twin(p, tok, pool, 0) == t
    assert abc_twin(p, tok, [p.io, p.s], 0) == "no third name outside the prompt"


def test_failure_set_from_jsonl_is_split_by_sign_capped_and_checked(jsonl, rows, tmp_path):
    src = read_failures(jsonl, cap=5, seed=0)
    assert src.kind == "jsonl" and len(src.errors) == 5 and len(src.successes) == 5
    assert src.n_errors_total == sum(r["logit_diff"] < 0 for r in rows)
    assert all(r["logit_diff"] < 0 for _, r in src.errors) and all(r["logit_diff"] > 0 for _, r in src.successes)
    assert read_failures(jsonl, cap=5, seed=0) == src  # seeded
    assert [w for w, _ in src.errors] == sorted(
        (w for w, _ in src.errors), key=lambda w: int(w.rsplit(":", 1)[1])
    )  # file order kept
    with pytest.raises(AdvgenError, match="not found"):
        read_failures(tmp_path / "nope")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({k: v for k, v in rows[0].items() if k != "logit_diff"}) + "\n")
    with pytest.raises(AdvgenError, match=r"bad\.jsonl:1: row is missing field\(s\) \['logit_diff'\]"):
        read_failures(bad)
    good = tmp_path / "good.jsonl"
    good.write_text(files.jsonl_text(r for r in rows if r["logit_diff"] > 0))
    with pytest.raises(AdvgenError, match="no errors of the model"):
        read_failures(good)
    with pytest.raises(AdvgenError, match="without results.jsonl"):
        read_failures(tmp_path)


def _every_head(model, drop=()) -> Circuit:
    heads = tuple(
        CircuitHead(Head(layer, h), Role.NAME_MOVER, ("ALL",))
        for layer in range(model.n_layers)
        for h in range(model.n_heads)
        if Head(layer, h) not in drop
    )
    return Circuit("all", "tiny", heads, model.n_layers, model.n_heads)


def test_the_whole_model_agrees_everywhere_and_add_back_finds_the_missing_head(tiny_model, jsonl):
    src = read_failures(jsonl, cap=12)
    fp = failure_prompts(tiny_model.tokenizer, src.errors, src.successes, 0)
    assert len(fp.prompts) == 24 and not fp.skipped
    full = error_agreement(tiny_model, _every_head(tiny_model), fp, FAST)
    assert full["relabelled"] == 0 and full["n_errors"] == 12
    for ab in FAST.ablations:
        r = full["table"][ab]
        assert r["errors"]["agreement"]["mean"] == 1.0 and r["successes"]["agreement"]["mean"] == 1.0
        assert r["errors"]["abs_ld_diff"]["mean"] < 1e-4
    # two heads left out: the search returns the better one first, and both give back the whole model
    missing = [Head(1, 2), Head(0, 1)]
    part = error_agreement(tiny_model, _every_head(tiny_model, missing), fp, replace(FAST, greedy_steps=2))
    steps, cands = part["add_back"]["steps"], part["add_back"]["first_step_candidates"]
    assert part["table"]["abc_mean"]["errors"]["agreement"]["mean"] < 1.0  # the two heads matter for the errors
    assert sorted(c["head"] for c in cands) == sorted(map(str, missing)) and steps[0]["added"] == [cands[0]["head"]]
    assert cands[0]["error_agreement"] >= cands[1]["error_agreement"]
    assert steps[-1]["error_agreement"]["mean"] == 1.0
    if len(steps) == 2:
        assert sorted(steps[1]["added"]) == sorted(map(str, missing)) and steps[1]["abs_ld_diff_errors"] < 1e-4
    else:  # one head was enough: nothing left to raise, and the search says so
        assert "no outside head raises error agreement above 100.0 %" in part["add_back"]["stopped"]


def test_agreement_is_deterministic_and_the_empty_floor_is_reported(tiny_model, jsonl):
    src = read_failures(jsonl, cap=6)
    fp = failure_prompts(tiny_model.tokenizer, src.errors, src.successes, 0)
    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h2"]}, 2, 4)
    a, b = (error_agreement(tiny_model, c, fp, replace(FAST, greedy_steps=2)) for _ in range(2))
    assert files.dumps(a) == files.dumps(b)
    r = a["table"]["zero"]["errors"]
    assert 0.0 <= r["empty_agreement"] <= 1.0 and 0.0 <= r["agreement"]["low"] <= r["agreement"]["high"] <= 1.0
    g = a["add_back"]
    scores = [x["error_agreement"] for x in g["first_step_candidates"]]
    assert scores == sorted(scores, reverse=True)
    # every step raises error agreement, or the search stops and says which head came closest
    reached = [a["table"]["abc_mean"]["errors"]["agreement"]["mean"]] + [st["error_agreement"]["mean"] for st in g["steps"]]
    assert all(x < y for x, y in zip(reached, reached[1:], strict=False))
    assert len(g["steps"]) == 2 or (g["stopped"] and "no outside head raises error agreement" in g["stopped"])
    if g["steps"]:
        assert np.isclose(g["steps"][0]["error_agreement"]["mean"], scores[0])


def test_check_claim_cli_refuses_a_missing_failure_set_before_loading_the_model(tiny_model_dir, tmp_path):
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "advgen",
            "check-claim",
            "reference-ioi",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "x"),
            "--failures",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "missing: not found" in bad.stderr and not (tmp_path / "x").exists()


def test_check_claim_job_writes_error_agreement_to_json_markdown_manifest_and_report(tiny_model, jsonl, tmp_path):
    from advgen.circuits.claims import ClaimSettings
    from advgen.jobs.circuits import check_claim
    from advgen.outputs.report import build_report

    c = make_circuit("t", "tiny", {Role.NAME_MOVER: ["a1.h0"], Role.S_INHIBITION: ["a0.h2"]}, 2, 4)
    s = ClaimSettings(
        n=6,
        n_random_k=1,
        greedy_steps=1,
        minimality_k=("empty",),
        worst_k=2,
        batch_size=16,
        ladder=False,
        failures_max=8,
        agreement_steps=1,
    )
    out = tmp_path / "claims"
    check_claim(tiny_model, c, out, s, failures=[jsonl])
    doc = json.loads((out / "claims.json").read_text())
    (block,) = doc["error_agreement"]
    assert block["source"]["kind"] == "jsonl" and block["source"]["n_errors_used"] == 8
    assert len(block["add_back"]["steps"]) == 1 or "no outside head raises" in block["add_back"]["stopped"]
    assert set(block["table"]) == {"abc_mean", "ioi_mean", "resample_abc", "zero"}
    assert "## Error agreement" in (out / "claims.md").read_text()
    man = json.loads((out / "manifest.json").read_text())
    assert f"--failures {jsonl}" in man["command"] and "--failures-max 8" in man["command"]
    build_report(out, tmp_path / "r.html")
    assert "does the circuit make the model&#x27;s errors?" in (tmp_path / "r.html").read_text()
