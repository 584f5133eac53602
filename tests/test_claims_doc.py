"""claims.json's typed records (advgen.circuits.claims_doc): round trip, named errors, older and partial documents."""

from __future__ import annotations

import copy
import json
import math

import pytest

from advgen.circuits.claims_doc import ClaimsDoc, load_claims, read_claims
from advgen.core.files import dumps
from advgen.core.types import AdvgenError
from advgen.outputs import claims_view, verdict


def _ci(m: float) -> dict[str, float]:
    return {"mean": m, "low": m - 0.1, "high": m + 0.1}


ROW = {
    "mean_ld": _ci(2.0),
    "ratio_to_model": _ci(0.8),
    "faithfulness_gap": _ci(0.5),
    "mean_abs_ld_diff": _ci(0.7),
    "kl_model_circuit": _ci(0.2),
    "accuracy": _ci(0.9),
    "loss_model": 0.2,
    "loss_circuit": 1.0,
    "loss_empty": 3.0,
    "loss_recovered_nats": 2.0,
    "loss_recovered_pct": None,
    "empty_mean_ld": 0.1,
    "per_example_sd_pct": 40.0,
    "per_example_quantiles_pct": {"q05": 1.0, "q25": 2.0, "q50": 3.0, "q75": 4.0, "q95": 5.0},
    "sign_flip_rate": 0.05,
}
SCRUB = {
    "ld_kept_pct": 70.0,
    "ld_kept_pct_ci": _ci(70.0),
    "sd": 50.0,
    "quantiles": {"q05": -1.0},
    "sign_flip_rate": 0.1,
    "mean_ld_model": 2.5,
    "mean_ld_scrubbed": 1.7,
    "mean_abs_ld_diff": 1.0,
    "mean_loss_scrubbed": 5.0,
    "mean_loss_model": 0.2,
    "mean_p_io_model": 0.8,
    "mean_p_io_scrubbed": 0.1,
    "mean_p_donor_io_scrubbed": 0.3,
    "donor_io_beats_io_rate": 0.9,
    "baseline_ld_kept_pct": 4.0,
    "baseline_sign_flip_rate": 0.4,
    "n": 40,
    "draws": 1,
    "per_example": "x",
    "resampling": "y",
    "metrics": ROW,
}
ABSOLUTE = {
    "loss_recovered_nats": 2.0,
    "loss_recovered_pct": 50.0,
    "ioi_loss": {"model": 0.2, "scrubbed": None},
    "ioi_mean_ld": {"model": 2.5},
    "model_parameters": 1000,
    "ladder_equivalent_params": None,
    "ladder_position": "no ladder",
    "times_smaller": None,
}
GROUP = {
    "n": 3,
    "agreement": _ci(0.5),
    "empty_agreement": 0.2,
    "abs_ld_diff": None,
    "mean_ld_model": -1.0,
    "mean_ld_circuit": None,
}
AGREEMENT = {
    "source": {
        "path": "runs/a",
        "kind": "attack",
        "meaning": "m",
        "n_errors_total": 3,
        "n_successes_total": 0,
        "n_errors_used": 3,
        "n_successes_used": 0,
        "sha256": "ab",
    },
    "n_prompts": 3,
    "n_errors": 3,
    "n_successes": 0,
    "relabelled": 0,
    "skipped": 0,
    "skipped_rows": [],
    "single_prompt_groups": 1,
    "settings": {"seed": 0},
    "table": {"abc_mean": {"errors": GROUP, "successes": {**GROUP, "agreement": None}}},
    "add_back": {
        "ablation": "abc_mean",
        "first_step_candidates": [{"head": "a0.h0", "error_agreement": 0.5}],
        "steps": [{"added": ["a0.h0"], "error_agreement": _ci(0.6), "success_agreement": None, "abs_ld_diff_errors": 0.3}],
        "stopped": None,
    },
}
DOC = {
    "model": "reference",
    "model_source": "/m",
    "runtime": {"device": "cpu"},
    "circuit": "c",
    "n_heads_in_circuit": 1,
    "n": 40,
    "seed": 0,
    "F_M": 2.5,
    "settings": {"n": 40, "ablations": ["abc_mean"]},
    "paper_setting": "abc_mean",
    "mlp_nodes": ["m1"],
    "mlps": "ablate",
    "mlp_note": "note",
    "command": "advgen check-claim c",
    "versions": {"advgen": "0"},
    "table": {"abc_mean": ROW},
    "causal_scrubbing": SCRUB,
    "absolute": ABSOLUTE,
    "completeness": {"F_C": 2.0, "random_K": []},
    "minimality": {
        "threshold": 0.025,
        "K_tried": ["empty"],
        "heads": {"a0.h0": {"score": 1.0, "score_pct_of_F_M": 40.0, "K": [], "needed": True}},
        "all_needed": True,
    },
    "error_agreement": [AGREEMENT],
}


def test_a_document_read_and_written_again_keeps_its_bytes():
    text = dumps(DOC)
    doc = ClaimsDoc.from_dict(json.loads(text), "claims.json")
    assert dumps(doc.to_dict()) == text
    assert dumps(read_claims(json.loads(text), "claims.json").to_dict()) == text
    row = doc.paper_row
    assert row is not None and row.ratio_to_model is not None and row.ratio_to_model.mean == 0.8
    assert row.loss_recovered_pct is not None and math.isnan(row.loss_recovered_pct), "null reads as NaN"
    assert doc.minimality is not None and doc.minimality.all_needed is True
    assert doc.error_agreement and doc.error_agreement[0].add_back and doc.error_agreement[0].add_back.stopped is None


def test_the_optional_parts_of_the_current_shape_may_be_left_out():
    d = {k: v for k, v in DOC.items() if k not in ("mlp_nodes", "mlps", "mlp_note", "error_agreement")}
    d["causal_scrubbing"] = {"skipped": "no name twins"}
    d["absolute"] = {}
    text = dumps(d)
    assert dumps(ClaimsDoc.from_dict(json.loads(text), "claims.json").to_dict()) == text


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.pop("paper_setting"), "'paper_setting' is missing"),
        (lambda d: d["table"]["abc_mean"].pop("sign_flip_rate"), "'table.abc_mean.sign_flip_rate' is missing"),
        (lambda d: d["causal_scrubbing"].pop("ld_kept_pct"), "'causal_scrubbing.ld_kept_pct' is missing"),
        (lambda d: d["minimality"].update(all_needed="yes"), "'minimality.all_needed' must be boolean, got string"),
        (
            lambda d: d["table"]["abc_mean"]["ratio_to_model"].update(mean="0.9"),
            "'table.abc_mean.ratio_to_model.mean' must be number",
        ),
        (
            lambda d: d["error_agreement"][0]["table"]["abc_mean"]["errors"].update(n=1.5),
            "'error_agreement[0].table.abc_mean.errors.n' must be integer, got number",
        ),
        (lambda d: d["absolute"].update(ladder={"a": 1}), "'absolute.ladder' must be array, got object"),
    ],
)
def test_a_missing_or_wrong_typed_field_names_the_file_and_the_field(edit, field):
    d = copy.deepcopy(DOC)
    edit(d)
    with pytest.raises(AdvgenError, match="runs/x/claims.json: field " + field.replace("[", r"\[").replace("]", r"\]")):
        ClaimsDoc.from_dict(d, "runs/x/claims.json")


def test_the_reader_takes_older_partial_and_task_documents(tmp_path):
    old = {
        "circuit": "c",
        "paper_setting": "abc_mean",
        "table": {"abc_mean": {"ratio_to_model": 0.87}},
        "minimality": {"all_needed": False},
    }
    c = read_claims(old, "claims.json")
    assert c.paper_row is not None and c.paper_row.ratio_to_model is not None and c.paper_row.ratio_to_model.mean == 0.87
    assert c.causal_scrubbing is None and c.absolute is None and c.error_agreement is None
    task = {"model": "m", "task": {"name": "greater-than"}, "heads": ["a0.h0"], "table": {"zero": {"faithfulness_ld": _ci(1.0)}}}
    t = read_claims(task, "claims.json")
    assert t.paper_row is None and t.extra["task"] == {"name": "greater-than"}
    with pytest.raises(
        AdvgenError, match="claims.json: field 'table.abc_mean.sign_flip_rate' must be number or null, got string"
    ):
        read_claims({**old, "table": {"abc_mean": {"sign_flip_rate": "x"}}}, "claims.json")
    (tmp_path / "claims.json").write_text(json.dumps(old))
    assert load_claims(tmp_path) is not None and load_claims(tmp_path / "none") is None
    assert "F(C)/F(M) = 0.870" in verdict.claims_panel(
        tmp_path
    ) and "every head needed (minimality): False" in verdict.claims_panel(tmp_path)


def test_the_report_shows_error_agreement_through_the_record(tmp_path):
    (tmp_path / "claims.json").write_text(dumps(DOC))
    html = claims_view.agreement_section(tmp_path)
    assert "runs/a (attack)" in html and "50.0 [40.0, 60.0]" in html and "a0.h0" in html
    assert "causal scrubbing" in claims_view.section(tmp_path) and "80.0" in claims_view.section(tmp_path)
