"""Train advgen's bundled induction model: a 2-layer attention-only GPT-2 on word sequences with planted repeats.

    python -m advgen.reference.induction --out DIR --seed 0

Two layers and no MLPs (each MLP's weights are zero and frozen, so it adds exactly nothing): the
intended solution of "say what followed this word last time" is a head that looks one token back
composed with a later head that looks for the current token's earlier successor. A two-layer model
can also learn positional shortcuts (copy from a typical distance), so what training found is
measured, not assumed (`advgen.reference.ind_measure`, into DIR/training_info.json and the card).
The recipe itself (settings, schedule, the model built) is `advgen.reference.ind_model`.

The defaults are the recipe of the bundled model (advgen/model/weights/induction, about 8 minutes on one
core): a previous-token head (a0.h2) and four induction heads (layer 1) formed, all learnt. Of 24
recipes tried, it is the first that formed the circuit unaided; docs/tasks.md (Induction) lists them
all. `--force-previous-token` (`ind_force`) imposes the previous-token head instead and forms the
induction heads in half the steps.

Batches are a pure function of (seed, step) (`ind_corpus.batch`), so a run resumes from its
newest checkpoint in DIR/checkpoints and ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from advgen.core.types import AdvgenError
from advgen.prompts.templates import tokenizer_sha256
from advgen.reference import checkpoints, ind_corpus
from advgen.reference.ind_model import InductionSettings, build_model, lr_at, no_projection


def command_of(s: InductionSettings) -> str:
    """The `python -m advgen.reference.induction` command that trains `s`: every option that differs from its default."""
    d, c = InductionSettings(), s.corpus
    dc = d.corpus
    pairs = [
        ("--steps", s.steps, d.steps),
        ("--lr", s.lr, d.lr),
        ("--n-head", s.n_head, d.n_head),
        ("--n-embd", s.n_embd, d.n_embd),
        ("--batch-size", s.batch_size, d.batch_size),
        ("--init-std", s.init_std, d.init_std),
        ("--position-init-std", s.position_init_std, d.position_init_std),
        ("--seq-words", c.seq_words, dc.seq_words),
        ("--segment", c.segment, dc.segment),
        ("--gap", c.gap, dc.gap),
        ("--pairs", c.pairs, dc.pairs),
        ("--segment-share", c.segment_share, dc.segment_share),
        ("--pairs-share", c.pairs_share, dc.pairs_share),
        ("--skip-share", c.skip_share, dc.skip_share),
        ("--skip-p", c.skip_p, dc.skip_p),
        ("--periodic-share", c.periodic_share, dc.periodic_share),
        ("--period", c.period, dc.period),
        ("--force-freqs", s.force_freqs, d.force_freqs),
        ("--force-scale", s.force_scale, d.force_scale),
        ("--threads", s.threads, d.threads),
    ]
    flags = [
        ("--skip-copy", c.skip_copy),
        ("--untied", not s.tie_embeddings),
        ("--sinusoidal", s.sinusoidal_positions),
        ("--force-previous-token", s.force_previous_token),
    ]
    args = [f"--seed {s.seed}"]
    args += [f"{k} {' '.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v, dv in pairs if v != dv]
    args += [k for k, on in flags if on]
    return "python -m advgen.reference.induction --out DIR " + " ".join(args)


def save_checkpoint(
    ck_dir: Path, step: int, model: Any, opt: torch.optim.Optimizer, losses: list[float], s: InductionSettings
) -> None:
    checkpoints.save(
        ck_dir,
        step,
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "losses": losses,
            "settings": json.loads(json.dumps(asdict(s))),
        },
    )


def resume(ck_dir: Path, model: Any, opt: torch.optim.Optimizer, s: InductionSettings) -> tuple[int, list[float]]:
    """Restore the newest checkpoint; (0, []) when there is none."""
    got = checkpoints.newest(ck_dir)
    if got is None:
        return 0, []
    path, state = got
    if state.get("settings") != json.loads(json.dumps(asdict(s))):
        raise AdvgenError(f"checkpoint {path} was made with other settings; delete DIR/checkpoints or use --no-resume")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"]), list(state["losses"])


def run_steps(
    model: Any,
    opt: torch.optim.Optimizer,
    s: InductionSettings,
    ck_dir: Path,
    start: int,
    losses: list[float],
    progress: bool,
    probe_every: int = 0,
    project: Callable[[], None] = no_projection,
) -> None:
    model.train()
    t0 = time.time()
    for step in range(start, s.steps):
        ids = torch.from_numpy(ind_corpus.batch(s.seed, step, s.batch_size, s.corpus))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], s.grad_clip)
        opt.step()
        project()
        losses.append(loss.item())
        done = step + 1
        if progress and done % 100 == 0:
            print(f"step {done}/{s.steps} loss {sum(losses[-100:]) / 100:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if progress and probe_every and done % probe_every == 0:
            print(f"step {done} best heads: {probe(model)}", flush=True)
        if done % s.checkpoint_every == 0 or done == s.steps:
            save_checkpoint(ck_dir, done, model, opt, losses, s)


def probe(model: Any) -> str:
    """The best previous-token and induction head scores now (`ind_measure.head_scores`), as one line."""
    from advgen.reference.ind_measure import head_scores

    impl = model.config._attn_implementation
    model.set_attn_implementation("eager")  # attention weights are only returned by eager attention
    try:
        with torch.no_grad():
            sc = head_scores(model, n_docs=16)
    finally:
        model.set_attn_implementation(impl)
        model.train()
    best = {k: max(sc, key=lambda h: sc[h][k]) for k in ("previous_token", "induction")}
    return " ".join(f"{k} {sc[h][k]:.2f} ({h})" for k, h in best.items())


def train_induction(
    out_dir: Path, s: InductionSettings, *, resume_run: bool = True, progress: bool = True, probe_every: int = 0
) -> Path:
    """Tokenizer, model, training, measurements; writes the Hugging Face directory `out_dir`. `probe_every`: print the
    best head scores every that many steps (with `progress`; a printout only, so not one of the settings)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(s.threads)
        return _train(Path(out_dir), s, resume_run, progress, probe_every)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, s: InductionSettings, resume_run: bool, progress: bool, probe_every: int) -> Path:
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    ck_dir = out_dir / "checkpoints"
    tok = ind_corpus.build_tokenizer()
    model, opt, project = build_model(s, tok)
    start, losses = resume(ck_dir, model, opt, s) if resume_run else (0, [])
    run_steps(model, opt, s, ck_dir, start, losses, progress, probe_every, project)
    model.eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    info = {
        "settings": asdict(s),
        "command": command_of(s),
        "corpus_kind_shares": s.corpus.shares,
        "n_words": len(ind_corpus.WORDS),
        "words_per_document": s.corpus.seq_words,
        "vocab_size": len(tok),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "final_loss_mean_last_100_steps": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 4),
        "loss_curve_every_100_steps": [
            round(sum(losses[i : i + 100]) / len(losses[i : i + 100]), 4) for i in range(0, len(losses), 100)
        ],
        "resumed_from_step": start,
        "total_seconds_this_process": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "tokenizer_sha256": tokenizer_sha256(tok),
    }
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    from advgen.reference.ind_measure import measure_dir

    measure_dir(out_dir)
    return out_dir


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m advgen.reference.induction", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, help="output directory (HF model + checkpoints/)")
    p.add_argument(
        "--measure", type=Path, metavar="MODEL_DIR", help="only measure MODEL_DIR into its training_info.json and MODEL_CARD.md"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=InductionSettings.steps)
    p.add_argument("--lr", type=float, default=InductionSettings.lr)
    p.add_argument("--n-head", type=int, default=InductionSettings.n_head)
    p.add_argument("--n-embd", type=int, default=InductionSettings.n_embd)
    _corpus_options(p)
    _model_and_run_options(p)
    return p


def _corpus_options(p: argparse.ArgumentParser) -> None:
    """The training documents' options (`ind_corpus.CorpusSettings`)."""
    p.add_argument("--seq-words", type=int, default=InductionSettings.corpus.seq_words, help="words per training document")
    p.add_argument(
        "--segment",
        type=int,
        nargs=2,
        default=InductionSettings.corpus.segment,
        metavar=("MIN", "MAX"),
        help="length range of a segment document's copied span",
    )
    p.add_argument(
        "--gap",
        type=int,
        nargs=2,
        default=InductionSettings.corpus.gap,
        metavar=("MIN", "MAX"),
        help="words between a span and its copy",
    )
    p.add_argument(
        "--pairs",
        type=int,
        nargs=2,
        default=InductionSettings.corpus.pairs,
        metavar=("MIN", "MAX"),
        help="copied bigrams per pairs document",
    )
    p.add_argument("--segment-share", type=float, default=InductionSettings.corpus.segment_share)
    p.add_argument("--pairs-share", type=float, default=InductionSettings.corpus.pairs_share)
    p.add_argument(
        "--skip-share",
        type=float,
        default=InductionSettings.corpus.skip_share,
        help="share of skip documents (a word often a fixed map of the word two before: starts a previous-token head)",
    )
    p.add_argument(
        "--skip-p",
        type=float,
        default=InductionSettings.corpus.skip_p,
        help="in a skip document, the chance that a word is the map of the word two before",
    )
    p.add_argument("--skip-copy", action="store_true", help="skip documents repeat the word two before instead of mapping it")
    p.add_argument(
        "--periodic-share",
        type=float,
        default=InductionSettings.corpus.periodic_share,
        help="share of periodic documents (a block of random words repeated to the end)",
    )
    p.add_argument(
        "--period",
        type=int,
        nargs=2,
        default=InductionSettings.corpus.period,
        metavar=("MIN", "MAX"),
        help="length range of a periodic document's block",
    )


def _model_and_run_options(p: argparse.ArgumentParser) -> None:
    """The model's, the forced head's and the run's options."""
    p.add_argument("--untied", action="store_true", help="separate unembedding (GPT-2 ties it to the embedding)")
    p.add_argument("--init-std", type=float, default=InductionSettings.init_std, help="initialisation std of the weights")
    p.add_argument("--sinusoidal", action="store_true", help="fixed sinusoidal positions instead of learned ones")
    p.add_argument("--position-init-std", type=float, default=InductionSettings.position_init_std)
    p.add_argument(
        "--force-previous-token",
        action="store_true",
        help="impose a0.h0 as a previous-token head by construction; layer 1 is left to learn induction",
    )
    p.add_argument("--force-freqs", type=int, default=InductionSettings.force_freqs)
    p.add_argument("--force-scale", type=float, default=InductionSettings.force_scale)
    p.add_argument("--batch-size", type=int, default=InductionSettings.batch_size)
    p.add_argument("--threads", type=int, default=InductionSettings.threads)
    p.add_argument(
        "--probe-every",
        type=int,
        default=0,
        metavar="N",
        help="every N steps print the best previous-token and induction head scores (0: never)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    if a.measure:
        from advgen.reference.ind_measure import measure_dir

        print(json.dumps(measure_dir(a.measure), indent=2))
        return 0
    if a.out is None:
        p.error("--out is required (or --measure MODEL_DIR)")
    try:
        s = settings_of(a)
    except ValueError as e:
        p.error(str(e))
    out = train_induction(a.out, s, resume_run=not a.no_resume, progress=not a.quiet, probe_every=a.probe_every)
    print(f"induction model written to {out}")
    return 0


def settings_of(a: argparse.Namespace) -> InductionSettings:
    """The settings the parsed command line asks for (ValueError names a setting that does not fit)."""
    return InductionSettings(
        seed=a.seed,
        steps=a.steps,
        lr=a.lr,
        n_head=a.n_head,
        n_embd=a.n_embd,
        batch_size=a.batch_size,
        corpus=ind_corpus.CorpusSettings(
            a.seq_words,
            a.segment_share,
            a.pairs_share,
            tuple(a.segment),
            tuple(a.gap),
            tuple(a.pairs),
            a.skip_share,
            a.skip_p,
            a.skip_copy,
            a.periodic_share,
            tuple(a.period),
        ),
        tie_embeddings=not a.untied,
        init_std=a.init_std,
        sinusoidal_positions=a.sinusoidal,
        position_init_std=a.position_init_std,
        threads=a.threads,
        force_previous_token=a.force_previous_token,
        force_freqs=a.force_freqs,
        force_scale=a.force_scale,
    )


if __name__ == "__main__":
    raise SystemExit(main())
