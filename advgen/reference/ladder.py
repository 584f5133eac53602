"""Train and measure the ladder: reference-style models of increasing size, one trainer for all.

    advgen train-reference --ladder [--out WORKDIR]

Every rung is trained by `advgen.reference.train.train_reference` with the reference model's
default `TrainSettings` (same seed, corpus, tokenizer, steps, schedule), only n_layer / n_head /
n_embd changed; the top rung is the shipped reference model itself (not retrained). Final
HF files go to `advgen/model/weights/ladder/<name>/`; `ladder.json` beside them records, per
model, parameters, held-out corpus loss (nats/token) and IOI accuracy, LD and loss on the
paper's 15 templates. Rungs already present are not retrained.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from advgen.core.files import atomic_write_text
from advgen.model.ladder import LADDER_DIR, LADDER_JSON, ioi_figures, parameter_count
from advgen.model.loading import load_model
from advgen.model.weights import REFERENCE_DIR
from advgen.prompts.datasets import ioi_sets
from advgen.prompts.templates import tokenizer_hash
from advgen.reference import corpus as corpus_mod
from advgen.reference.train import TrainSettings, collate, make_batches, train_reference


@dataclass(frozen=True)
class RungSpec:
    name: str
    n_layer: int
    n_head: int
    n_embd: int


RUNGS: tuple[RungSpec, ...] = (
    RungSpec("l1h1d32", 1, 1, 32),
    RungSpec("l1h2d64", 1, 2, 64),
    RungSpec("l2h2d64", 2, 2, 64),
    RungSpec("l2h4d128", 2, 4, 128),
)
"""Trained rungs, smallest first; the reference model (4 x 4, d 128) is the top rung."""
REFERENCE_RUNG = RungSpec("reference", 4, 4, 128)
FINAL_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_info.json",
)
HELDOUT_SEED = 1_000_003
"""Corpus seed of the held-out documents (the training corpus uses seed 0)."""
HELDOUT_DOCS = 2000
IOI_N, IOI_SEED = 300, 0


def rung_settings(spec: RungSpec, seed: int = 0, steps: int | None = None) -> TrainSettings:
    """The reference model's settings with this rung's size (threads = 1: the machine is shared)."""
    s = TrainSettings(seed=seed, n_layer=spec.n_layer, n_head=spec.n_head, n_embd=spec.n_embd, threads=1)
    if steps is not None:
        s.steps = steps
    return s


def train_ladder(
    work_dir: Path,
    dest: Path = LADDER_DIR,
    seed: int = 0,
    steps: int | None = None,
    rungs: Sequence[RungSpec] = RUNGS,
    progress: bool = True,
) -> list[Path]:
    """Train every rung missing from `dest` (checkpoints under work_dir/<name>), copy final files."""
    out = []
    for spec in rungs:
        target = dest / spec.name
        if not (target / "model.safetensors").exists():
            trained = train_reference(
                Path(work_dir) / spec.name, seed=seed, settings=rung_settings(spec, seed, steps), progress=progress
            )
            target.mkdir(parents=True, exist_ok=True)
            for f in FINAL_FILES:
                shutil.copyfile(trained / f, target / f)
        out.append(target)
    return out


def heldout_documents(
    n: int = HELDOUT_DOCS, seed: int = HELDOUT_SEED, train_seed: int = 0, train_docs: int | None = None
) -> list[str]:
    """`n` corpus documents from another seed, none identical to a training document."""
    train = set(corpus_mod.generate_documents(random.Random(train_seed), train_docs or TrainSettings().n_docs)[0])
    docs, _ = corpus_mod.generate_documents(random.Random(seed), 2 * n)
    return [d for d in docs if d not in train][:n]


def corpus_loss(model_dir: Path, docs: Sequence[str], seq_len: int = 128, tokens_per_batch: int = 4096) -> float:
    """Mean next-token loss (nats/token) of an HF model on documents, BOS first, as in training."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    ids = [[tok.bos_token_id, *e] for e in tok(list(docs), add_special_tokens=False)["input_ids"]]
    total, count = 0.0, 0
    with torch.no_grad():
        for idx in make_batches(ids, seq_len, tokens_per_batch):
            inp, att, lab = collate(ids, idx, seq_len, tok.pad_token_id)
            logits = model(input_ids=inp, attention_mask=att).logits[:, :-1].double()
            tgt = lab[:, 1:]
            mask = tgt != -100
            lp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
            total += float(-(lp * mask).sum())
            count += int(mask.sum())
    return total / count


def measure_rung(spec: RungSpec, model_dir: Path, docs: Sequence[str]) -> dict[str, Any]:
    """Parameters, held-out corpus loss and IOI figures (paper's 15 templates) of one rung."""
    model = load_model(str(model_dir))
    clean, _, _ = ioi_sets(model.tokenizer, IOI_N, IOI_SEED)
    figs = {"heldout_loss": corpus_loss(model_dir, docs), **ioi_figures(model, clean)}
    info = json.loads((model_dir / "training_info.json").read_text())
    params = parameter_count(model)
    if params != info["n_parameters"]:
        raise RuntimeError(f"{model_dir}: {params} parameters, training_info.json says {info['n_parameters']}")
    rel = "reference" if model_dir.resolve() == REFERENCE_DIR.resolve() else f"ladder/{model_dir.name}"
    return {
        **asdict(spec),
        "parameters": params,
        "path": rel,
        "figures": {k: round(v, 6) for k, v in figs.items()},
        "train_steps": info["settings"]["steps"],
        "final_train_loss": round(info["final_loss_mean_last_100_steps"], 6),
        "train_seconds": info.get("train_seconds_this_process"),
        "tokenizer_sha256": info["tokenizer_sha256"],
        "prompt_tokenizer_hash": tokenizer_hash(model.tokenizer),
    }


def write_ladder_json(dest: Path = LADDER_DIR, path: Path = LADDER_JSON, rungs: Sequence[RungSpec] = RUNGS) -> Path:
    """Measure every rung (and the reference model) and write ladder.json atomically."""
    docs = heldout_documents()
    models = [measure_rung(s, dest / s.name, docs) for s in rungs] + [measure_rung(REFERENCE_RUNG, REFERENCE_DIR, docs)]
    shas = {(m.pop("tokenizer_sha256"), m.pop("prompt_tokenizer_hash")) for m in models}
    if len(shas) != 1:
        raise RuntimeError(f"ladder models do not share one tokenizer: {sorted(shas)}")
    sha, prompt_hash = shas.pop()
    doc = {
        "format": "advgen-ladder/1",
        "tokenizer_sha256": sha,
        "prompt_tokenizer_hash": prompt_hash,
        "heldout": {
            "corpus_seed": HELDOUT_SEED,
            "documents": len(docs),
            "excluded": "documents identical to a training document",
        },
        "ioi": {"templates": "ioi (the paper's 15)", "n": IOI_N, "seed": IOI_SEED, "loss": "-log p(IO) at END"},
        "models": sorted(models, key=lambda m: m["parameters"]),
    }
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def build_ladder(work_dir: Path, seed: int = 0, steps: int | None = None, progress: bool = True) -> Path:
    """Train missing rungs, then measure all and write ladder.json."""
    torch.set_num_threads(1)
    train_ladder(work_dir, seed=seed, steps=steps, progress=progress)
    return write_ladder_json()


if __name__ == "__main__":
    import sys

    print(build_ladder(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/ladder-train"), progress=False))
