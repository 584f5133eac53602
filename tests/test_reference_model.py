"""The bundled reference model performs IOI on the paper's held-out templates (science test)."""

from __future__ import annotations

import numpy as np
import torch

from advgen.model.metrics import summarize
from advgen.model.validate import end_logits, validate
from advgen.outputs import pipeline


def test_reference_loads_offline_through_the_hf_directory_path(monkeypatch):
    """Load time is measured in benchmarks/bench_load.py, not asserted here."""
    from advgen.model.loading import load_model, reference_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("reference")
    assert m.source == str(reference_dir())
    assert m.n_layers >= 2 and m.n_heads >= 2
    assert sum(f.stat().st_size for f in reference_dir().iterdir()) < 20 * 2**20


def test_reference_performs_ioi_on_held_out_templates(reference_model):
    prompts = pipeline.generate(reference_model.tokenizer, 300, seed=123)
    assert len({p.template_id for p in prompts}) == 15
    s = summarize(validate(reference_model, prompts, batch_size=64).metrics)
    assert s["accuracy"] >= 0.95, s
    assert s["mean_logit_diff"] >= 3.0, s


def test_reference_has_no_strong_preference_on_abc(reference_model):
    """With three distinct names no position is the answer: IO and S1 should split about evenly."""
    tok = reference_model.tokenizer
    prompts = pipeline.generate(tok, 300, seed=321, abc=True)
    logits = end_logits(reference_model, prompts, 64)
    rows = torch.arange(len(prompts))
    io = logits[rows, [p.io_token for p in prompts]]
    s1 = logits[rows, [p.s_token for p in prompts]]
    ld = (io - s1).numpy()
    assert abs(float(np.mean(ld))) < 1.0, float(np.mean(ld))
    share_io = float((ld > 0).mean())
    assert 0.35 < share_io < 0.65, share_io
