"""The bundled greater-than model: loads, splits years as GPT-2 does, computes greater-than, and the
components its model card names as carrying PD still carry it."""

from __future__ import annotations

import json

import pytest
import torch

from advgen.model.loading import bundled_dir, check_weights
from advgen.reference import gt_corpus, gt_measure

GT_DIR = bundled_dir("greater-than")
TEST_SEED = 7
"""Not the card's evaluation seed: these prompts are a fresh draw over the held-out nouns."""
PD_FLOOR = 0.5
"""Measured: PD 0.865 on the card's 485 prompts (seed 12345) and 0.863 on these 97 (seed 7), where a model that
ignores YY scores 0.23; 0.5 leaves a wide margin for a retrained model and still fails one that lost greater-than."""
CARRIER_FLOOR = 0.05
"""Each carrier lowered PD by >= 10 % of the clean PD on the card's prompts (measured on these 97: a0.h2 0.55,
m0 0.58, m1 0.16 of a 0.86 PD); a carrier must still lower it by >= 5 % of the clean PD here."""


@pytest.fixture(scope="module")
def model_tok():
    torch.set_num_threads(1)
    return gt_measure.load_hf(GT_DIR)


@pytest.fixture(scope="module")
def info() -> dict:
    return json.loads((GT_DIR / "training_info.json").read_text())


def test_weights_match_config():
    """The shipped file exists (check_weights passes silently without one) and its names and shapes match the config."""
    assert (GT_DIR / "model.safetensors").is_file() and (GT_DIR / "config.json").is_file()
    check_weights(GT_DIR)


def test_bridge_loads():
    from advgen.model.loading import load_model

    lm = load_model("greater-than", device="cpu")
    assert lm.n_layers == 4 and lm.tokenizer.bos_token_id == 0
    assert lm.n_layers * lm.n_heads == 16
    gt_corpus.check_year_tokens(lm.tokenizer)  # the tokenizer TransformerLens hands advgen splits years the same way


def test_years_split_as_century_plus_two_digits(model_tok):
    _, tok = model_tok
    gt_corpus.check_year_tokens(tok)  # raises naming the years that do not split
    ids = tok.encode("The war lasted from the year 1732 to the year 17", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids)[-5:] == ["32", "Ġto", "Ġthe", "Ġyear", "Ġ17"]
    assert len({gt_corpus.token_id(tok, y) for y in gt_corpus.YEARS}) == 100


def test_clean_pd_above_floor_and_above_yy_blind(model_tok):
    model, tok = model_tok
    r = gt_measure.clean_pd(model, tok, gt_measure.year_prompts(TEST_SEED, 1))
    assert r["n_prompts"] == 97
    assert r["pd_mean"] > PD_FLOOR, r
    assert r["pd_mean"] > r["pd_yy_blind"] + 0.1, r  # it reads YY, not only a prior towards late years


def test_named_carriers_still_carry(model_tok, info):
    model, tok = model_tok
    named = info["measurements"]["greater"]["carriers"]
    assert named, "the card names no component carrying PD"
    r = gt_measure.measure(model, tok, gt_measure.year_prompts(TEST_SEED, 1))
    weak = {c: r["pd_drop_mean_ablation"][c] for c in named if r["pd_drop_mean_ablation"][c] < CARRIER_FLOOR * r["pd_mean"]}
    assert not weak, f"components named as carriers no longer lower PD: {weak}"


def test_card_figures_are_the_measured_ones(info):
    card = (GT_DIR / "MODEL_CARD.md").read_text()
    g = info["measurements"]["greater"]
    assert f"{100 * g['pd_mean']:.1f} %" in card
    assert ", ".join(info["measurements"]["heads_carry_pd"]) in card


def test_cli_accepts_kind_greater_than():
    from advgen.cli.main import build_parser

    a = build_parser().parse_args(["train-reference", "--kind", "greater-than", "--out", "x", "--seed", "3"])
    assert (a.kind, a.seed) == ("greater-than", 3)


@pytest.mark.slow  # three tiny trainings with their measurements: about 12 s on the shared machine
def test_training_is_seeded_and_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    from advgen.reference.greater_than import GTSettings, train_greater_than

    s = GTSettings(steps=6, n_docs=3000, tokens_per_batch=256, n_layer=1, n_head=2, n_embd=16, checkpoint_every=2)
    a = train_greater_than(tmp_path / "a", s, progress=False)
    (a / "checkpoints" / "step-000006.pt").unlink()  # as if killed after step 4: the rerun resumes there
    b = train_greater_than(tmp_path / "a", s, progress=False)
    assert json.loads((b / "training_info.json").read_text())["resumed_from_step"] == 4
    c = train_greater_than(tmp_path / "c", s, progress=False)
    wa = load_file(str(tmp_path / "c" / "model.safetensors"))
    wb = load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (c / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
