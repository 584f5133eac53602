"""Head role scores: attention-pattern detectors and direct logit attribution.

Previous-token, duplicate-token and induction scores on repeated random tokens come from
TransformerLens' `head_detector.detect_head`, which works on the Bridge as is (it runs one cached
forward per sequence). The IOI-specific scores (attention END->IO/S1/S2, S2->S1, S2->S1+1,
S1+1->S1, direct logit attribution at END) are read from the cached runs of `advgen.circuits.patching`,
so they cost no extra forward passes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from advgen.circuits.direct_effects import direct_logit_attribution
from advgen.circuits.patching import RunCache
from advgen.core.types import PromptSet
from advgen.model.loading import LoadedModel

# values are TransformerLens HeadName literals
DETECTORS: dict[str, Any] = {
    "previous_token": "previous_token_head",
    "duplicate_token": "duplicate_token_head",
    "induction": "induction_head",
}


@dataclass(frozen=True)
class HeadScores:
    """[n_layers, n_heads] arrays, one per score name; `forwards` = sequences run for them."""

    scores: dict[str, np.ndarray]
    forwards: int


def random_repeated_texts(model: LoadedModel, n_seq: int, length: int, seed: int) -> list[str]:
    """Texts of `length` random word tokens repeated twice (seeded); tokens that decode to words only."""
    tok = model.tokenizer
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(min(len(tok), model.bridge.cfg.d_vocab)) if i not in special]
    out = []
    for _ in range(n_seq):
        words: list[str] = []
        while len(words) < length:
            w = tok.decode([rng.choice(vocab)])
            if w.startswith(" ") and w[1:].isalpha() and w not in words:
                words.append(w)
        half = "".join(words)
        out.append(half + half)
    return out


def detector_scores(model: LoadedModel, n_seq: int = 8, length: int = 20, seed: int = 0) -> HeadScores:
    """Previous-token / duplicate-token / induction scores on repeated random tokens (head_detector)."""
    import torch
    from transformer_lens.head_detector import detect_head

    texts = random_repeated_texts(model, n_seq, length, seed)
    scores = {}
    bt = getattr(model.tokenizer, "backend_tokenizer", None)
    saved = (bt.truncation, bt.padding) if bt is not None else None
    try:
        with torch.inference_mode():
            for name, pattern in DETECTORS.items():
                s = detect_head(model.bridge, texts, pattern, exclude_bos=True, exclude_current_token=(name != "previous_token"))
                scores[f"{name}_score"] = s.float().numpy()
    finally:  # to_tokens switches truncation/padding on; leave the shared tokenizer as it was
        if bt is not None and saved is not None:
            if saved[0] is None:
                bt.no_truncation()
            else:
                bt.enable_truncation(
                    **{k: v for k, v in saved[0].items() if k in ("max_length", "stride", "strategy", "direction")}
                )
            if saved[1] is None:
                bt.no_padding()
            else:
                bt.enable_padding(
                    **{
                        k: v
                        for k, v in saved[1].items()
                        if k in ("direction", "pad_id", "pad_type_id", "pad_token", "length", "pad_to_multiple_of")
                    }
                )
    return HeadScores(scores, forwards=len(texts) * len(DETECTORS))


def ioi_scores(model: LoadedModel, prompts: PromptSet, clean: RunCache) -> HeadScores:
    """Attention readouts on IOI prompts and direct logit attribution at END (from the clean cache)."""
    scores = {f"attn_{k.replace('->', '_to_')}": v.mean(0).numpy() for k, v in clean.attn.items()}
    dla_ld, dla_io = direct_logit_attribution(model, prompts, clean)
    base = float(clean.ld.mean())
    scores["dla_ld"] = dla_ld / abs(base)
    scores["dla_io"] = dla_io
    return HeadScores(scores, forwards=0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two equally shaped score arrays (average ranks for ties)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a).ravel(), np.asarray(b).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return float("nan")
    result: Any = spearmanr(x[ok], y[ok])  # scipy's stubs type the result as a bare tuple
    return float(result.statistic)
