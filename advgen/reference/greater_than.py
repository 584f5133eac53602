"""Train advgen's bundled greater-than model: a small GPT-2 (with MLPs) on the project's year corpus.

    python -m advgen.reference.greater_than --out DIR --seed 0

Pipeline: seeded corpus and tokenizer (advgen.reference.gt_corpus) -> `transformers.GPT2LMHeadModel`
trained with next-token loss on one CPU thread -> measurements (advgen.reference.gt_measure:
probability difference on held-out prompts, a smaller-is-right context, per-head and per-MLP
mean ablations) written to DIR/training_info.json and DIR/MODEL_CARD.md. Checkpoints go to
DIR/checkpoints every `checkpoint_every` steps; rerunning the command resumes from the newest
(the batch order is a pure function of (seed, step); model, optimizer and RNG states are restored).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from advgen.core.types import AdvgenError
from advgen.prompts.templates import tokenizer_sha256
from advgen.reference import checkpoints, gt_corpus
from advgen.reference.train import batch_for_step, collate, make_batches


@dataclass(frozen=True)
class GTSettings:
    seed: int = 0
    steps: int = 2000
    n_docs: int = 150_000
    tokens_per_batch: int = 1536
    seq_len: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    vocab_size: int = 1000
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    checkpoint_every: int = 200
    threads: int = 1


def lr_at(step: int, s: GTSettings) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    p = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@dataclass(frozen=True)
class GTData:
    """The seeded corpus, its tokenizer, token ids and batches."""

    tok: Any
    tok_hash: str
    doc_ids: list
    batches: list
    counts: dict


def prepare_data(s: GTSettings) -> GTData:
    docs, counts = gt_corpus.generate_documents(random.Random(s.seed), s.n_docs)
    tok = gt_corpus.build_tokenizer(docs, s.vocab_size)
    bos = tok.bos_token_id
    enc = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    doc_ids = [[bos, *e.ids] for e in enc]
    return GTData(tok, tokenizer_sha256(tok), doc_ids, make_batches(doc_ids, s.seq_len, s.tokens_per_batch), dict(counts))


def build_model(s: GTSettings, tok):
    """A fresh seeded GPT-2 with MLPs, and its AdamW (no decay on biases and LayerNorms)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(s.seed)
    bos = tok.bos_token_id
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=s.seq_len,
        n_embd=s.n_embd,
        n_layer=s.n_layer,
        n_head=s.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=bos,
        eos_token_id=bos,
        pad_token_id=bos,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=s.lr, betas=(0.9, 0.98)
    )
    return model, opt


def save_checkpoint(ck_dir: Path, step: int, model, opt, losses: list, s: GTSettings, tok_hash: str) -> None:
    checkpoints.save(
        ck_dir,
        step,
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "losses": losses,
            "settings": asdict(s),
            "tokenizer_sha256": tok_hash,
        },
    )


def resume(ck_dir: Path, model, opt, s: GTSettings, tok_hash: str) -> tuple[int, list]:
    """Restore the newest checkpoint (weights_only); (0, []) when there is none."""
    got = checkpoints.newest(ck_dir)
    if got is None:
        return 0, []
    path, state = got
    if state.get("settings") != asdict(s) or state.get("tokenizer_sha256") != tok_hash:
        raise AdvgenError(
            f"checkpoint {path} was made with other settings or another corpus; delete DIR/checkpoints or use --no-resume"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["losses"])


def run_steps(model, opt, d: GTData, s: GTSettings, ck_dir: Path, start: int, losses: list, progress: bool) -> None:
    model.train()
    t0 = time.time()
    for step in range(start, s.steps):
        inp, att, lab = collate(d.doc_ids, d.batches[batch_for_step(s.seed, step, len(d.batches))], s.seq_len, d.tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        out = model(input_ids=inp, attention_mask=att, labels=lab)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        losses.append(out.loss.item())
        done = step + 1
        if progress and done % 50 == 0:
            print(f"step {done}/{s.steps} loss {sum(losses[-50:]) / 50:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if done % s.checkpoint_every == 0 or done == s.steps:
            save_checkpoint(ck_dir, done, model, opt, losses, s, d.tok_hash)


def train_greater_than(out_dir: Path, s: GTSettings, *, resume_run: bool = True, progress: bool = True) -> Path:
    """Corpus, tokenizer, model, training, measurements; writes the HF directory `out_dir`."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(s.threads)
        return _train(Path(out_dir), s, resume_run, progress)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, s: GTSettings, resume_run: bool, progress: bool) -> Path:
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    ck_dir = out_dir / "checkpoints"
    d = prepare_data(s)
    model, opt = build_model(s, d.tok)
    start, losses = resume(ck_dir, model, opt, s, d.tok_hash) if resume_run else (0, [])
    t_train = time.time()
    run_steps(model, opt, d, s, ck_dir, start, losses, progress)
    train_seconds = time.time() - t_train
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    d.tok.save_pretrained(str(out_dir))
    info = {
        "settings": asdict(s),
        "corpus_documents": d.counts,
        "corpus_kind_shares": gt_corpus.KIND_SHARES,
        "heldout_nouns": list(gt_corpus.heldout_nouns()),
        "vocab_size": len(d.tok),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_loss_mean_last_100_steps": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 4),
        "loss_curve_every_100_steps": [
            round(sum(losses[i : i + 100]) / len(losses[i : i + 100]), 4) for i in range(0, len(losses), 100)
        ],
        "resumed_from_step": start,
        "train_seconds_this_process": round(train_seconds, 1),
        "total_seconds_this_process": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "tokenizer_sha256": d.tok_hash,
    }
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    from advgen.reference.gt_card import measure_dir

    measure_dir(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m advgen.reference.greater_than", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, help="output directory (HF model + checkpoints/)")
    p.add_argument(
        "--measure",
        type=Path,
        metavar="MODEL_DIR",
        help="only measure MODEL_DIR (PD, smaller context, ablations) into its training_info.json and MODEL_CARD.md",
    )
    p.add_argument(
        "--other-seeds",
        type=Path,
        nargs="*",
        default=None,
        metavar="DIR",
        help="with --measure: runs of other seeds to summarise in the card (their own --measure done)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=GTSettings.steps)
    p.add_argument("--threads", type=int, default=GTSettings.threads)
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.measure:
        from advgen.reference.gt_card import measure_dir

        print(json.dumps(measure_dir(a.measure, a.other_seeds), indent=2))
        return 0
    if a.out is None:
        p.error("--out is required (or --measure MODEL_DIR)")
    s = GTSettings(seed=a.seed, steps=a.steps, threads=a.threads)
    out = train_greater_than(a.out, s, resume_run=not a.no_resume, progress=not a.quiet)
    print(f"greater-than model written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
