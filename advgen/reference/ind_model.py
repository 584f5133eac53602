"""The bundled induction model's recipe: its settings, learning-rate schedule, position code, and the model it builds.

Apart from the trainer (`advgen.reference.induction`, which runs, checkpoints and measures), so the
command line, the tests and the forced previous-token head (`ind_force`) read one statement of
what a run is: a seeded attention-only GPT-2 (MLPs zeroed and frozen) and its AdamW.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from advgen.reference import ind_corpus


@dataclass(frozen=True)
class InductionSettings:
    seed: int = 0
    steps: int = 8000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    checkpoint_every: int = 500
    corpus: ind_corpus.CorpusSettings = ind_corpus.CorpusSettings(
        seq_words=48, segment_share=1.0, pairs_share=0.0, segment=(6, 16), gap=(0, 16)
    )
    """Copies only, of 6-16 words at 6-32 words' distance in 48-word documents: the one corpus on which the
    circuit formed (docs/tasks.md, Induction); adding the task's own bigram copies (`--pairs-share 0.3`) stopped it."""
    tie_embeddings: bool = True
    sinusoidal_positions: bool = False
    """Fixed sinusoidal position code (the original Transformer's, scaled to the token embeddings' size) instead of
    learned positions: "the token before" is then the same linear map at every position."""
    init_std: float = 0.1
    """Std of the weights' initialisation (GPT-2's `initializer_range` is 0.02: at 0.02 no induction head formed)."""
    position_init_std: float | None = None
    """None: GPT-2's own initialisation (std 0.02, as the tokens)."""
    threads: int = 1
    force_previous_token: bool = False
    """Impose a0.h0 as a previous-token head by construction (`ind_force`); only the rest is learnt."""
    force_freqs: int = 8
    """Sin/cos frequency pairs of the forced position code (2 * this residual dimensions)."""
    force_scale: float = 4.0
    """Sharpness of the forced head's query: the larger, the closer its attention to exactly one token back."""

    def __post_init__(self) -> None:
        if self.force_previous_token and self.sinusoidal_positions:
            raise ValueError("--force-previous-token sets its own position code: drop --sinusoidal")
        if self.force_previous_token:
            from advgen.reference.ind_force import position_dims

            position_dims(self.n_embd, self.force_freqs)
            if 2 * self.force_freqs > self.n_embd // self.n_head:
                raise ValueError(
                    f"--force-freqs {self.force_freqs}: {2 * self.force_freqs} position dimensions exceed "
                    f"the head size {self.n_embd // self.n_head}"
                )


def lr_at(step: int, s: InductionSettings) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    p = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def sinusoidal(n: int, d: int) -> torch.Tensor:
    """The original Transformer's position code [n, d]: sin and cos of the position at geometric frequencies."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    out = torch.zeros(n, d)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


def no_projection() -> None:
    """The unconstrained recipe: nothing to restore after a step."""


def build_model(s: InductionSettings, tok: Any) -> tuple[Any, torch.optim.Optimizer, Callable[[], None]]:
    """A seeded attention-only GPT-2 (MLPs zeroed and frozen), its AdamW over the trainable weights, and the
    projection to apply after every step (`ind_force`; a no-op unless the previous-token head is forced)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(s.seed)
    bos = tok.bos_token_id
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=s.corpus.seq_words + 1,
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        n_inner=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos,
        eos_token_id=bos,
        pad_token_id=bos,
        tie_word_embeddings=s.tie_embeddings,
        initializer_range=s.init_std,
    )
    model = GPT2LMHeadModel(config)
    if s.sinusoidal_positions:
        model.transformer.wpe.weight.data.copy_(sinusoidal(config.n_positions, s.n_embd) * s.init_std)
        model.transformer.wpe.weight.requires_grad_(False)
    elif s.position_init_std is not None:
        torch.nn.init.normal_(model.transformer.wpe.weight, std=s.position_init_std)
    for block in model.transformer.h:
        for p in block.mlp.parameters():  # pyright: ignore[reportAttributeAccessIssue]
            p.data.zero_()
            p.requires_grad_(False)
    project: Callable[[], None] = no_projection
    if s.force_previous_token:
        from advgen.reference.ind_force import force_previous_token

        project = force_previous_token(model, s.force_freqs, s.force_scale)
    train = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in train if p.dim() >= 2], "weight_decay": s.weight_decay},
            {"params": [p for p in train if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=s.lr,
        betas=(0.9, 0.98),
    )
    return model, opt, project
