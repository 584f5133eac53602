"""Train advgen's bundled reference model: a small GPT-2 that performs IOI.

    python -m advgen.reference.train --out DIR --seed 0

Pipeline: seeded corpus (advgen.reference.corpus) -> byte-level BPE tokenizer
(advgen.reference.tokenizer) -> `transformers.GPT2LMHeadModel` trained with next-token loss on
CPU. Checkpoints go to DIR/checkpoints every `checkpoint_every` steps; rerunning the same command
resumes from the latest one and ends with the same weights as an uninterrupted run (the data
order is a pure function of (seed, step) and model, optimizer and RNG states are restored).
The final model is written to DIR in Hugging Face format.
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
from advgen.reference import checkpoints
from advgen.reference import corpus as corpus_mod
from advgen.reference import tokenizer as tok_mod


@dataclass
class TrainSettings:
    seed: int = 0
    steps: int = 2000
    n_docs: int = 200_000
    tokens_per_batch: int = 2048
    seq_len: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    vocab_size: int = 8000
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    checkpoint_every: int = 100
    threads: int = 1


def untrained_single_token_names(hf_tok) -> list[str]:
    """Lexicon names that are one token under `hf_tok` but are not corpus names."""
    from advgen.prompts import lexicon

    used = set(corpus_mod.corpus_names())
    return [n.text for n in lexicon.all_names() if n.text not in used and lexicon.is_single_token(hf_tok, n.text)]


def _set_determinism(seed: int, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)  # the corpus and batch order draw from their own random.Random(seed), never the global one


def make_batches(doc_ids: list[list[int]], seq_len: int, tokens_per_batch: int) -> list[list[int]]:
    """Group documents of similar length into batches of about `tokens_per_batch` (padded) tokens.

    One document per row, so every document starts at position 0 with BOS, exactly like the
    prompts advgen evaluates, and no attention crosses documents. Returns lists of doc indices.
    """
    order = sorted(range(len(doc_ids)), key=lambda i: (min(len(doc_ids[i]), seq_len), i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        n = min(len(doc_ids[i]), seq_len)
        if cur and (len(cur) + 1) * n > tokens_per_batch:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def collate(
    doc_ids: list[list[int]], idx: list[int], seq_len: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels); padding has label -100."""
    rows = [doc_ids[i][:seq_len] for i in idx]
    n = max(map(len, rows))
    inp = torch.full((len(rows), n), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), n), dtype=torch.long)
    lab = torch.full((len(rows), n), -100, dtype=torch.long)
    for j, r in enumerate(rows):
        t = torch.tensor(r)
        inp[j, : len(r)] = t
        att[j, : len(r)] = 1
        lab[j, : len(r)] = t
    return inp, att, lab


def batch_for_step(seed: int, step: int, n_batches: int) -> int:
    """Which batch `step` uses: epoch-wise permutations seeded by (seed, epoch); pure function."""
    epoch, k = divmod(step, n_batches)
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return int(torch.randperm(n_batches, generator=g)[k])


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    p = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def _save_checkpoint(ck_dir: Path, step: int, model, opt, losses, settings, tok_hash) -> None:
    checkpoints.save(
        ck_dir,
        step,
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "losses": losses,
            "settings": asdict(settings),
            "tokenizer_sha256": tok_hash,
        },
    )


def train_reference(
    out_dir: Path,
    seed: int = 0,
    steps: int | None = None,
    *,
    settings: TrainSettings | None = None,
    progress: bool = True,
    resume: bool = True,
    stop_after: int | None = None,
) -> Path:
    """Generate corpus, train tokenizer and model; write the HF model to `out_dir`; return it.

    `stop_after` ends the run early (after checkpointing) at that step, to test resuming.
    The process-wide torch settings it changes (threads, deterministic algorithms) are restored.
    """
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _train(out_dir, seed, steps, settings, progress, resume, stop_after)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


@dataclass(frozen=True)
class _Data:
    """Phase 1's output: the seeded corpus, tokenized, and its batching."""

    hf_tok: Any  # a transformers GPT2TokenizerFast (imported lazily)
    tok_hash: str
    doc_ids: list
    batches: list
    counts: dict
    n_tokens: int
    fixed: list
    seconds: float


def _prepare_data(s: TrainSettings, ck_dir: Path) -> _Data:
    """Corpus and tokenizer (both pure functions of the seed), token ids and batches."""
    t0 = time.time()
    docs, counts = corpus_mod.generate_documents(random.Random(s.seed), s.n_docs)
    hf_tok, fixed = tok_mod.build_tokenizer(docs, corpus_mod.required_words(), vocab_size=s.vocab_size)
    untrained = untrained_single_token_names(hf_tok)
    if untrained:
        raise RuntimeError(
            f"lexicon names that are single tokens but never occur in the corpus "
            f"(the validator would use them untrained): {untrained}"
        )
    tok_hash = tokenizer_sha256(hf_tok)
    bos = hf_tok.bos_token_id
    enc = hf_tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    doc_ids = [[bos, *e.ids] for e in enc]
    batches = make_batches(doc_ids, s.seq_len, s.tokens_per_batch)
    tok_mod.save_tokenizer(hf_tok, ck_dir / "tokenizer")  # lets intermediate checkpoints be inspected
    return _Data(hf_tok, tok_hash, doc_ids, batches, dict(counts), sum(len(d) for d in doc_ids), fixed, time.time() - t0)


def _build_model(s: TrainSettings, hf_tok):
    """A fresh GPT-2 (seeded) and its AdamW (no decay on biases and LayerNorms)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(s.seed)
    bos = hf_tok.bos_token_id
    config = GPT2Config(
        vocab_size=len(hf_tok),
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
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    return model, opt


CHECKPOINT_KEYS = ("step", "model", "optimizer", "torch_rng", "losses", "settings", "tokenizer_sha256")


def _resume(ck_dir: Path, model, opt, s: TrainSettings, tok_hash: str) -> tuple[int, list]:
    """Restore the latest checkpoint (tensors and plain data only: weights_only=True), if any."""
    got = checkpoints.newest(ck_dir)
    if got is None:
        return 0, []
    ck, state = got
    if any(k not in state for k in CHECKPOINT_KEYS):
        raise AdvgenError(f"checkpoint {ck} is not an advgen reference checkpoint (keys {CHECKPOINT_KEYS} expected)")
    if state["tokenizer_sha256"] != tok_hash:
        raise AdvgenError(
            f"checkpoint {ck} was made with a different tokenizer/corpus; "
            "delete the checkpoints directory or use the original settings"
        )
    if state["settings"] != asdict(s):
        raise RuntimeError(f"checkpoint {ck} was made with different settings: {state['settings']}")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["losses"])


def _run_steps(
    model, opt, d: _Data, s: TrainSettings, ck_dir: Path, start: int, losses: list, progress: bool, stop_after: int | None
) -> bool:
    """The training loop; checkpoints as it goes; True when every step is done."""
    from tqdm import tqdm

    model.train()
    bar = tqdm(range(start, s.steps), initial=start, total=s.steps, disable=not progress, desc="train-reference", unit="step")
    for step in bar:
        idx = d.batches[batch_for_step(s.seed, step, len(d.batches))]
        inp, att, lab = collate(d.doc_ids, idx, s.seq_len, d.hf_tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        out = model(input_ids=inp, attention_mask=att, labels=lab)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        losses.append(out.loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
        done = step + 1
        if done % s.checkpoint_every == 0 or done == s.steps or (stop_after and done == stop_after):
            _save_checkpoint(ck_dir, done, model, opt, losses, s, d.tok_hash)
        if stop_after is not None and done >= stop_after and done < s.steps:
            bar.close()
            return False
    bar.close()
    return True


def _write_artifacts(
    model, d: _Data, s: TrainSettings, out_dir: Path, losses: list, start: int, train_seconds: float, t0: float
) -> None:
    """The HF model directory, tokenizer and training_info.json."""
    from transformers import GenerationConfig

    bos = d.hf_tok.bos_token_id
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    GenerationConfig(bos_token_id=bos, eos_token_id=bos, pad_token_id=bos).save_pretrained(str(out_dir))
    tok_mod.save_tokenizer(d.hf_tok, out_dir)
    info = {
        "settings": asdict(s),
        "corpus_documents": d.counts,
        "corpus_tokens": d.n_tokens,
        "batches_per_epoch": len(d.batches),
        "epochs": round(s.steps / len(d.batches), 3),
        "vocab_size": len(d.hf_tok),
        "words_needing_extra_merges": d.fixed,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_loss_mean_last_100_steps": sum(losses[-100:]) / len(losses[-100:]),
        "loss_curve_every_100_steps": [
            round(sum(losses[i : i + 100]) / len(losses[i : i + 100]), 4) for i in range(0, len(losses), 100)
        ],
        "data_seconds": round(d.seconds, 1),
        "train_seconds_this_process": round(train_seconds, 1),
        "resumed_from_step": start,
        "total_seconds_this_process": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "tokenizer_sha256": d.tok_hash,
    }
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")


def _train(out_dir, seed, steps, settings, progress, resume, stop_after) -> Path:
    s = settings or TrainSettings()
    s.seed = seed
    if steps is not None:
        s.steps = steps
    out_dir = Path(out_dir)
    ck_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    _set_determinism(seed, s.threads)
    t0 = time.time()
    d = _prepare_data(s, ck_dir)
    model, opt = _build_model(s, d.hf_tok)
    start, losses = _resume(ck_dir, model, opt, s, d.tok_hash) if resume else (0, [])
    t_train = time.time()
    if not _run_steps(model, opt, d, s, ck_dir, start, losses, progress, stop_after):
        return out_dir
    _write_artifacts(model, d, s, out_dir, losses, start, time.time() - t_train, t0)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m advgen.reference.train", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, help="output directory (HF model + checkpoints/)")
    p.add_argument(
        "--check", type=Path, metavar="MODEL_DIR", help="only print IOI/ABC figures of MODEL_DIR on the paper's templates"
    )
    p.add_argument("--seed", type=int, default=0)
    d = TrainSettings()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--n-docs", type=int, default=d.n_docs)
    p.add_argument("--tokens-per-batch", type=int, default=d.tokens_per_batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--n-layer", type=int, default=d.n_layer)
    p.add_argument("--n-head", type=int, default=d.n_head)
    p.add_argument("--n-embd", type=int, default=d.n_embd)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--stop-after", type=int, default=None, help="stop at this step (test resuming)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.check:
        torch.set_num_threads(a.threads)
        from advgen.reference.paper_check import paper_template_check

        print(json.dumps(paper_template_check(a.check), indent=2))
        return 0
    if a.out is None:
        p.error("--out is required (or --check MODEL_DIR)")
    s = TrainSettings(
        seed=a.seed,
        steps=a.steps,
        n_docs=a.n_docs,
        tokens_per_batch=a.tokens_per_batch,
        lr=a.lr,
        n_layer=a.n_layer,
        n_head=a.n_head,
        n_embd=a.n_embd,
        threads=a.threads,
        checkpoint_every=a.checkpoint_every,
    )
    out = train_reference(a.out, seed=a.seed, settings=s, progress=not a.quiet, resume=not a.no_resume, stop_after=a.stop_after)
    print(f"reference model written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
