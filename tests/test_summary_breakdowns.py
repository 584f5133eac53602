"""summary.json breaks the run down per template and per name order (ABBA / BABA), from the same rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advgen.model.metrics import BREAKDOWN_KEYS, summarize
from advgen.outputs import pipeline


def test_summary_has_template_and_order_breakdowns(tiny_model, tmp_path):
    out = pipeline.run(tiny_model, 30, seed=2, out=tmp_path / "run").out
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for key, field in (("by_template", "template_id"), ("by_order", "order")):
        groups = summary[key]
        assert sorted(groups) == sorted({r[field] for r in rows})
        assert sum(g["n"] for g in groups.values()) == summary["n"] == len(rows)
        for name, g in groups.items():
            ld = np.array([r["logit_diff"] for r in rows if r[field] == name])
            assert set(g) == set(BREAKDOWN_KEYS)
            assert g["mean_logit_diff"] == pytest.approx(ld.mean())
            assert g["accuracy"] == pytest.approx((ld > 0).mean())
            assert g["logit_diff_ci95"]["low"] <= g["mean_logit_diff"] <= g["logit_diff_ci95"]["high"]
    assert set(summary["by_order"]) == {"ABBA", "BABA"}


def test_summarize_checks_lengths(tiny_model):
    ps = pipeline.generate(tiny_model.tokenizer, 4, 0)
    with pytest.raises(ValueError, match="4 prompts for 0 metrics"):
        summarize([], 0, ps)
