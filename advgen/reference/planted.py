"""Train the planted model: the bundled reference model, retrained so that GPT-2's IOI circuit
(previous-token, duplicate-token, induction, S-inhibition, name-mover heads) does the task.

    advgen train-reference --kind planted --out DIR

The circuit is imposed by the losses, not learned from data (see MODEL_CARD.md of the weights):
LM loss on the project corpus, a bounded behaviour loss (hinge keeping LD in a GPT-2-like band),
attention supervision of the planted heads, interchange-intervention losses on their outputs
(`advgen.reference.iit`) and a strictness loss (other heads resampled, ramped from a few heads to
all of them jointly); the settings and the losses are `advgen.reference.planted_recipe`. Seeded,
resumable from safetensors + JSON checkpoints, bitwise reproducible (batches and masks are pure
functions of (seed, step); one thread).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from advgen.core.files import atomic_write_text
from advgen.prompts.templates import tokenizer_sha256
from advgen.reference import corpus as corpus_mod
from advgen.reference import iit
from advgen.reference import train as base
from advgen.reference.planted_ckpt import CheckpointError, cpu_capability, latest, load, save, warn_if_other_kernels
from advgen.reference.planted_recipe import PlantedSettings, p_ablate, same_history, step_losses, total_loss

SHIPPED_STEP = 2000
"""the shipped weights are this step of the default 2400-step schedule (first phase to 1800,
second phase after it; chosen by a pre-registered rule among steps 2000/2200/2400, docs/planted.md)."""

__all__ = ["SHIPPED_STEP", "train_planted", "CheckpointError", "cpu_capability"]


def _model_and_tokenizer(s: PlantedSettings):
    """Warm start from the bundled reference weights (same tokenizer), or a tiny scratch model."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from advgen.model.weights import REFERENCE_DIR

    tok = AutoTokenizer.from_pretrained(str(REFERENCE_DIR))
    torch.manual_seed(s.seed)
    if s.init == "reference":
        model = GPT2LMHeadModel.from_pretrained(str(REFERENCE_DIR), attn_implementation="eager")
    elif s.init == "scratch":
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_positions=128,
            n_embd=s.n_embd,
            n_layer=s.n_layer,
            n_head=s.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.bos_token_id,
            pad_token_id=tok.bos_token_id,
            tie_word_embeddings=True,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"unknown init {s.init!r}: 'reference' or 'scratch'")
    return model, tok


def _lm_data(tok, s: PlantedSettings):
    if s.w_lm <= 0:
        return None
    docs, _ = corpus_mod.generate_documents(random.Random(s.seed), s.n_docs)
    enc = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    doc_ids = [[tok.bos_token_id, *e.ids] for e in enc]
    return doc_ids, base.make_batches(doc_ids, 128, s.lm_tokens)


def _optimizer(model, s: PlantedSettings) -> torch.optim.Optimizer:
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )


def _loop(model, tok, lm, opt, s: PlantedSettings, ck_dir: Path, start: int, log: list, stop_after, progress) -> bool:
    """Train from `start`; checkpoint every `checkpoint_every`; True when all steps are done."""
    model.train()
    t0 = time.time()
    for step in range(start, s.steps):
        for g in opt.param_groups:
            g["lr"] = base.lr_at(step, s.base_settings())
        parts = step_losses(model, tok, lm, step, s)
        loss = total_loss(parts, s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        log.append({k: round(float(v.detach()), 5) for k, v in parts.items()} | {"total": round(float(loss.detach()), 5)})
        done = step + 1
        if progress and (done % 25 == 0 or done == 1):
            print(
                f"step {done}/{s.steps} {time.time() - t0:.0f}s p_ablate={p_ablate(step, s):.2f} "
                + " ".join(f"{k}={v:.3f}" for k, v in log[-1].items()),
                flush=True,
            )
        if done % s.checkpoint_every == 0 or done == s.steps or done == stop_after:
            save(
                ck_dir,
                done,
                model,
                opt,
                {
                    "settings": asdict(s),
                    "tokenizer_sha256": tokenizer_sha256(tok),
                    "log": log,
                    "cpu_capability": cpu_capability(),
                },
            )
        if stop_after is not None and done >= stop_after and done < s.steps:
            return False
    return True


def train_planted(
    out_dir: Path,
    settings: PlantedSettings | None = None,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> Path:
    """Train (or resume) the planted model and write it in HF format to `out_dir`.

    With `stop_after`, training stops after that step (checkpointed) and the HF files hold that
    step's model (`steps_done` in training_info.json); rerunning without it resumes."""
    s = settings or PlantedSettings()
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        _determinism(s)
        out_dir = Path(out_dir)
        ck_dir = out_dir / "checkpoints"
        model, tok = _model_and_tokenizer(s)
        opt = _optimizer(model, s)
        start, log = 0, []
        ck = latest(ck_dir) if resume else None
        if ck is not None:
            meta = load(ck, model, opt)
            if not same_history(meta["settings"], s, int(meta["step"])) or meta["tokenizer_sha256"] != tokenizer_sha256(tok):
                raise CheckpointError(
                    f"checkpoint {ck} was made with other settings or tokenizer; use --no-resume or the original settings"
                )
            start, log = int(meta["step"]), list(meta["log"])
            warn_if_other_kernels(meta, ck)
        if stop_after is not None and start > stop_after:
            raise CheckpointError(
                f"the newest checkpoint in {ck_dir} is step {start}, past --stop-after {stop_after}; "
                "use a fresh OUT to reproduce an earlier step"
            )
        lm = _lm_data(tok, s) if start < (stop_after or s.steps) else None
        if start < (stop_after or s.steps):
            _loop(model, tok, lm, opt, s, ck_dir, start, log, stop_after, progress)
        _write_final(model, tok, s, out_dir, log, start)  # also after stop_after: that step's model
        return out_dir
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _determinism(s: PlantedSettings) -> None:
    torch.set_num_threads(s.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(s.seed)


def _write_final(model, tok, s: PlantedSettings, out_dir: Path, log: list, start: int) -> None:
    from transformers import GenerationConfig

    model.eval()
    model.config.attn_implementation = None
    model.save_pretrained(str(out_dir), safe_serialization=True)
    bos = tok.bos_token_id
    GenerationConfig(bos_token_id=bos, eos_token_id=bos, pad_token_id=bos).save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    keys = list(log[-1]) if log else []
    tail = log[-100:]
    info = {
        "kind": "planted",
        "settings": asdict(s),
        "planted_heads": [{"head": str(p.head), "role": p.role.value, "position": p.position} for p in iit.PLANTED],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_losses_mean_last_100_steps": {
            k: round(sum(r[k] for r in tail if k in r) / sum(k in r for r in tail), 4) for k in keys
        },
        "total_loss_every_100_steps": [
            round(sum(r["total"] for r in log[i : i + 100]) / len(log[i : i + 100]), 4) for i in range(0, len(log), 100)
        ],
        "resumed_from_step": start,
        "steps_done": len(log),
        "torch": torch.__version__,
        "cpu_capability": cpu_capability(),
        "tokenizer_sha256": tokenizer_sha256(tok),
    }
    atomic_write_text(out_dir / "training_info.json", json.dumps(info, indent=2) + "\n")


def export_checkpoint(ck_json: Path, out_dir: Path) -> Path:
    """Write the model of one checkpoint as an HF directory (to inspect a run while it trains)."""
    meta = json.loads(Path(ck_json).read_text())
    s = PlantedSettings(**meta.get("settings", {}))
    model, tok = _model_and_tokenizer(s)
    meta = load(Path(ck_json), model, None)
    _write_final(model, tok, s, Path(out_dir), list(meta["log"]), int(meta["step"]))
    return Path(out_dir)
