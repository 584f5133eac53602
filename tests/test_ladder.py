"""The ladder: monotone placement, the shipped ladder.json, and the absolute block of check-claim."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from advgen.core.types import AdvgenError
from advgen.model import ladder

PARAMS = [1_000, 4_000, 16_000, 64_000, 256_000]
LOSSES = [3.0, 2.0, 2.2, 1.0, 0.5]  # one violation (2.0 then 2.2): pooled by the monotone fit
NAMES = ["a", "b", "c", "d", "e"]


def test_monotone_fit_pools_violations_and_keeps_order():
    y = ladder.monotone_losses(LOSSES)
    assert y == pytest.approx([3.0, 2.1, 2.1, 1.0, 0.5])
    assert all(a >= b for a, b in zip(y, y[1:], strict=False))
    assert ladder.monotone_losses([1.0, 2.0, 3.0]) == pytest.approx([2.0, 2.0, 2.0])


def test_placement_is_monotone_in_the_loss():
    grid = np.linspace(0.5, 3.0, 301)
    eq = [ladder.place(float(v), PARAMS, LOSSES, NAMES).equivalent_params for v in grid]
    assert all(e is not None for e in eq)
    assert all(a >= b for a, b in zip(eq, eq[1:], strict=False)), "a lower loss must never map to a smaller model"
    assert eq[0] == pytest.approx(PARAMS[-1]) and eq[-1] == pytest.approx(PARAMS[0])
    # the order in which the ladder is given does not matter
    perm = [3, 0, 4, 2, 1]
    for v in (0.7, 1.5, 2.1, 2.9):
        a = ladder.place(v, PARAMS, LOSSES, NAMES)
        b = ladder.place(v, [PARAMS[i] for i in perm], [LOSSES[i] for i in perm], [NAMES[i] for i in perm])
        assert a == b


def test_placement_interpolates_in_log_params_and_names_the_ends():
    p = ladder.place(2.55, PARAMS, LOSSES, NAMES)  # halfway between a (3.0) and the pooled b (2.1)
    assert p.equivalent_params == pytest.approx(math.sqrt(1_000 * 4_000))
    assert (p.below, p.above) == ("a", "b") and p.position == "between a and b"
    assert ladder.place(2.1, PARAMS, LOSSES, NAMES).equivalent_params == 4_000  # flat pooled segment: the smaller model
    lo = ladder.place(3.5, PARAMS, LOSSES, NAMES)
    hi = ladder.place(0.1, PARAMS, LOSSES, NAMES)
    assert lo.equivalent_params is None and lo.position.startswith("below the ladder")
    assert hi.equivalent_params is None and hi.position.startswith("above the ladder")
    assert ladder.place(float("nan"), PARAMS, LOSSES, NAMES).position == "not finite"
    with pytest.raises(AdvgenError):
        ladder.place(1.0, [], [], [])


def test_load_ladder_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(AdvgenError, match="train-reference --ladder"):
        ladder.load_ladder(tmp_path / "nope.json")
    bad = tmp_path / "ladder.json"
    bad.write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(AdvgenError, match=r"models\[0\]"):
        ladder.load_ladder(bad)


def test_shipped_ladder_is_complete_and_ordered():
    if not ladder.LADDER_JSON.exists():
        pytest.skip("ladder.json not built yet (advgen train-reference --ladder)")
    header, rungs = ladder.load_ladder()
    assert len(rungs) >= 4 and rungs[-1].name == "reference"
    assert [r.parameters for r in rungs] == sorted(r.parameters for r in rungs)
    for r in rungs:
        assert (r.directory / "config.json").exists(), r.name
        for k in ("heldout_loss", "ioi_loss", "ioi_mean_ld", "ioi_accuracy"):
            assert math.isfinite(r.figure(k)), (r.name, k)
    sizes = sum(f.stat().st_size for f in ladder.LADDER_DIR.rglob("*") if f.is_file())
    assert sizes <= 10 * 2**20, f"ladder weights take {sizes / 2**20:.1f} MB"


def test_claims_view_renders_scrubbing_beside_faithfulness_and_the_ladder_plot(tmp_path):
    from advgen.outputs import claims_view

    row = {
        "ratio_to_model": {"mean": 1.31, "low": 1.2, "high": 1.4},
        "per_example_sd_pct": 40.0,
        "sign_flip_rate": 0.0,
        "per_example_quantiles_pct": {"q05": 60.0, "q25": 90.0, "q50": 120.0, "q75": 150.0, "q95": 190.0},
        "loss_recovered_pct": 36.5,
    }
    scrub = {**row, "ratio_to_model": {"mean": 0.78, "low": 0.7, "high": 0.86}, "sign_flip_rate": 0.06}
    places = {
        k: {"equivalent_params": e, "position": p}
        for k, e, p in (
            ("model", 1000.0, "equal to b"),
            ("circuit", None, "below the ladder (worse than a)"),
            ("scrubbed", None, "below"),
            ("empty", None, "below"),
        )
    }
    doc = {
        "paper_setting": "abc_mean",
        "table": {"abc_mean": row},
        "causal_scrubbing": {"metrics": scrub},
        "absolute": {
            "loss_recovered_nats": 2.4,
            "loss_recovered_pct": 36.5,
            "ladder_position": places["circuit"]["position"],
            "ladder_equivalent_params": None,
            "placements": places,
            "ladder_basis": "live",
            "ioi_loss": {"model": 0.2, "circuit": 3.0, "scrubbed": 8.0, "empty": 6.0},
            "ladder": [{"name": "a", "parameters": 100, "ioi_loss": 2.0}, {"name": "b", "parameters": 1000, "ioi_loss": 0.2}],
        },
    }
    (tmp_path / "claims.json").write_text(json.dumps(doc))
    html = claims_view.section(tmp_path)
    assert "causal scrubbing" in html and "abc_mean" in html and "<img" in html
    assert "131.0" in html and "78.0" in html and "below the ladder" in html
    assert claims_view.section(tmp_path / "none") == ""


def test_parameter_count_counts_the_hf_model_not_the_bridge_copies(tiny_model, tiny_model_dir):
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(str(tiny_model_dir))
    want = sum(p.numel() for p in hf.parameters())
    assert ladder.parameter_count(tiny_model) == want
    assert sum(p.numel() for p in tiny_model.hf_model.parameters()) > want  # the bridge's split q/k/v copies
