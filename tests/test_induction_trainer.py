"""The induction trainer's corpus, tokenizer, resume, forced recipe and measurement, and the bundled model's card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advgen.reference import ind_corpus
from advgen.reference.ind_model import InductionSettings
from advgen.reference.induction import train_induction
from advgen.tasks.lexicons import resolve_lexicons, vocab_words
from advgen.tasks.registry import resolve_task


def test_batches_are_a_pure_function_of_seed_and_step_and_decode_to_their_text() -> None:
    tok = ind_corpus.build_tokenizer()
    c = ind_corpus.CorpusSettings()
    a, b = ind_corpus.batch(3, 7, 16, c), ind_corpus.batch(3, 7, 16, c)
    assert np.array_equal(a, b) and not np.array_equal(a, ind_corpus.batch(3, 8, 16, c))
    assert (a[:, 0] == tok.bos_token_id).all()
    for row in a:
        assert tok(ind_corpus.text_of(row, tok), add_special_tokens=False)["input_ids"] == row[1:].tolist()


def test_planted_copies_repeat_what_followed_earlier() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = ind_corpus.document(rng, "segment", ind_corpus.CorpusSettings())
        spans = [(i, j) for i in range(len(w)) for j in range(i + 1, len(w) - 3) if np.array_equal(w[i : i + 4], w[j : j + 4])]
        assert spans, w  # a copy of at least SEGMENT[0] = 4 words


def test_every_vocab_word_is_a_corpus_word_and_the_task_renders() -> None:
    tok = ind_corpus.build_tokenizer()
    assert set(vocab_words(tok)) == set(ind_corpus.WORDS)
    task = resolve_task("induction")
    lex = resolve_lexicons(task, tok)
    assert lex.words["word"] == ind_corpus.WORDS and not lex.dropped["word"]


def test_training_resumes_to_the_same_weights_and_is_measured(tmp_path: Path) -> None:
    s = InductionSettings(steps=6, checkpoint_every=3, batch_size=4)
    full = train_induction(tmp_path / "full", s, progress=False)
    part = tmp_path / "part"
    train_induction(part, InductionSettings(steps=6, checkpoint_every=3, batch_size=4), progress=False)
    (part / "model.safetensors").unlink()
    ck = sorted((part / "checkpoints").glob("step-*.pt"))
    ck[-1].unlink()  # resume from step 3
    train_induction(part, s, progress=False)
    assert (full / "model.safetensors").read_bytes() == (part / "model.safetensors").read_bytes()
    info = json.loads((part / "training_info.json").read_text())
    assert info["resumed_from_step"] == 3
    m = info["measurements"]
    assert set(m["head_scores"]) == {f"a{a}.h{h}" for a in range(2) for h in range(4)}
    assert info["induction_heads"] == [[int(h[1]), int(h[-1])] for h in m["induction_heads"]]
    assert 0.0 <= m["task"]["top1"] <= 1.0 and m["task_prompts"] == 400
    assert "# advgen bundled induction model" in (part / "MODEL_CARD.md").read_text()


def test_mlps_add_nothing(tmp_path: Path) -> None:
    import torch

    from advgen.reference.ind_model import build_model

    model, _, _ = build_model(InductionSettings(), ind_corpus.build_tokenizer())
    x = torch.randn(2, 5, model.config.n_embd, device="cpu")
    for block in model.transformer.h:
        assert torch.count_nonzero(block.mlp(x)) == 0
        assert not any(p.requires_grad for p in block.mlp.parameters())


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    from advgen.core.types import AdvgenError

    train_induction(tmp_path, InductionSettings(steps=2, checkpoint_every=1, batch_size=2), progress=False)
    with pytest.raises(AdvgenError, match="other settings"):
        train_induction(tmp_path, InductionSettings(steps=3, checkpoint_every=1, batch_size=2, lr=1e-2), progress=False)


@pytest.mark.slow  # over 7 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_head_scores_find_the_handbuilt_models_circuit(gpt2_tokenizer_dir, tmp_path: Path) -> None:
    """The trainer's acceptance measure, on a model whose circuit is known by construction (a0.h0 previous-token,
    a1.h0 induction): it must name exactly those, or its verdict on trained models means nothing."""
    import torch
    from handbuilt import make_induction_gpt2

    from advgen.reference.ind_measure import SCORE_MIN, head_scores, load_hf

    model, _ = load_hf(make_induction_gpt2(tmp_path / "hb", gpt2_tokenizer_dir))
    with torch.no_grad():
        scores = head_scores(model)
    assert [h for h, s in scores.items() if s["previous_token"] >= SCORE_MIN] == ["a0.h0"]
    assert [h for h, s in scores.items() if s["induction"] >= SCORE_MIN] == ["a1.h0"]
    assert scores["a0.h0"]["previous_token"] > 0.95 and scores["a1.h0"]["induction"] > 0.95


def test_skip_and_periodic_documents_and_unused_kinds_leave_other_batches_alone() -> None:
    rng = np.random.default_rng(1)
    c = ind_corpus.CorpusSettings(skip_share=1.0, segment_share=0.0, pairs_share=0.0, skip_p=1.0)
    w = ind_corpus.document(rng, "skip", c)
    assert (w[2:] == ind_corpus.SKIP_MAP[w[:-2]]).all()
    w = ind_corpus.document(rng, "skip", ind_corpus.CorpusSettings(skip_p=1.0, skip_copy=True))
    assert (w[2:] == w[:-2]).all()
    for _ in range(20):
        w = ind_corpus.document(rng, "periodic", ind_corpus.CorpusSettings(period=(3, 3)))
        assert (w[-9:-3] == w[-6:]).all()  # the last block repeats the one before it
    assert set(ind_corpus.CorpusSettings().shares) == {"segment", "pairs", "plain"}
    with pytest.raises(ValueError, match="shares"):
        ind_corpus.CorpusSettings(segment_share=0.6, pairs_share=0.3, skip_share=0.2)


def test_the_card_command_rebuilds_the_settings() -> None:
    """training_info.json and the card state the command; parsing it back must give the very settings trained."""
    import shlex

    from advgen.reference.induction import command_of, parser, settings_of

    for s in (
        InductionSettings(),
        InductionSettings(
            seed=3,
            steps=50,
            force_previous_token=True,
            force_scale=2.5,
            n_embd=96,
            corpus=ind_corpus.CorpusSettings(seq_words=30, segment=(5, 9), gap=(1, 3)),
        ),
        InductionSettings(tie_embeddings=False, sinusoidal_positions=True, threads=2),
    ):
        args = shlex.split(command_of(s))[3:]
        assert settings_of(parser().parse_args(args)) == s, args


def test_forced_previous_token_head_attends_one_back_and_stays_fixed_while_training(tmp_path: Path) -> None:
    """a0.h0 is a previous-token head from step 0; training moves the other weights, never its query/key or the
    position code, and token embeddings stay out of the position subspace."""
    import torch

    from advgen.reference.ind_force import position_dims
    from advgen.reference.ind_measure import head_scores
    from advgen.reference.ind_model import build_model
    from advgen.reference.induction import run_steps

    s = InductionSettings(steps=20, batch_size=8, n_embd=64, force_previous_token=True, checkpoint_every=1000)
    model, opt, project = build_model(s, ind_corpus.build_tokenizer())
    model.set_attn_implementation("eager")
    with torch.no_grad():
        before = head_scores(model, n_docs=8)
    # 0.90 at init std 0.1 (0.92 at 0.02): the random token part dilutes the position code through LayerNorm
    assert before["a0.h0"]["previous_token"] > 0.8 and max(v["previous_token"] for h, v in before.items() if h != "a0.h0") < 0.5
    qk0 = model.transformer.h[0].attn.c_attn.weight[:, list(range(16)) + list(range(64, 80))].clone()
    wpe0, v0 = model.transformer.wpe.weight.clone(), model.transformer.h[0].attn.c_attn.weight[:, 128:].clone()
    run_steps(model, opt, s, tmp_path, 0, [], progress=False, project=project)
    w = model.transformer.h[0].attn.c_attn.weight
    assert torch.equal(w[:, list(range(16)) + list(range(64, 80))], qk0) and torch.equal(model.transformer.wpe.weight, wpe0)
    assert not torch.equal(w[:, 128:], v0)  # its value weights (and everything else) are learnt
    assert torch.count_nonzero(model.transformer.wte.weight[:, position_dims(64, s.force_freqs)]) == 0
    model.eval()
    with torch.no_grad():
        assert head_scores(model, n_docs=8)["a0.h0"]["previous_token"] > 0.8


def test_forced_recipe_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="drop --sinusoidal"):
        InductionSettings(force_previous_token=True, sinusoidal_positions=True)
    with pytest.raises(ValueError, match="exceed the head size"):
        InductionSettings(force_previous_token=True, n_embd=64, n_head=8, force_freqs=8)


def test_the_bundled_model_is_the_defaults_recipe_and_its_card_figures_reproduce() -> None:
    """`advgen train-reference --kind induction` (the defaults) is what trained the bundled model, and re-measuring its
    weights gives the card's figures exactly: a layer-0 previous-token head and layer-1 induction heads."""
    from dataclasses import asdict

    from advgen.model.loading import bundled_dir
    from advgen.reference.ind_measure import load_hf, measure

    path = bundled_dir("induction")
    info = json.loads((path / "training_info.json").read_text())
    assert info["settings"] == json.loads(json.dumps(asdict(InductionSettings())))
    model, tok = load_hf(path)
    got, card = measure(model, tok), info["measurements"]
    for key in ("previous_token_heads", "induction_heads", "carriers", "task_prompts"):
        assert got[key] == card[key], key
    # rounded to 4 decimals on the machine that trained it; another CPU may differ in the last digit
    assert got["task"]["per_template"] == {t: pytest.approx(v, abs=2e-4) for t, v in card["task"]["per_template"].items()}
    assert got["head_scores"] == {h: pytest.approx(v, abs=2e-4) for h, v in card["head_scores"].items()}
    assert [h for h in info["previous_token_heads"] if h[0] == 0] and info["induction_heads"]
    assert all(layer == 1 for layer, _ in info["induction_heads"])
