"""Causal scrubbing of a circuit hypothesis: is the explanation complete per example, not only on average?

The hypothesis is the circuit JSON: named (head, position) entries, each head with a role. What
it says matters for an example x is (a) the name-role structure of x (template, name order, so
which token is IO, S1, S2) and (b) the names themselves, read only by the named entries. So every
activation it does not name may be taken from another prompt x' of the same equivalence class:
same template, order, place and object (hence the same token positions), two different names.
Resampling rules, per example x and draw d (seeded):
- x' = the *name twin* of x: {IO', S'} drawn from the lexicon, disjoint from x's names;
- every head output z (before W_O) at an unnamed (head, position), including named heads at
  positions they are not kept at, is replaced by its value in a clean run on x';
- named entries are computed live on the scrubbed stream, so their inputs from unnamed senders
  are x' values (path inputs from unnamed senders), their inputs from named senders are x values;
- MLPs, embeddings and LayerNorms are computed live (as in the mean-ablation table).
A circuit naming every head at ALL positions resamples nothing and reproduces the model exactly;
the empty circuit resamples every head (the resample baseline).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from advgen.circuits.ablation import circuit_entries
from advgen.circuits.format import Circuit
from advgen.circuits.patching import Entry, Patch, RunCache, cache_run, patched_run
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.templates import Fill, render, resolve_templates, tokenizer_hash

QUANTILES = (5, 25, 50, 75, 95)


def equivalence_key(p: Prompt) -> tuple[Any, ...]:
    """What a scrub donor must share with its example: template, order, length, place, object."""
    fill = p.extra.get("fill", {})
    return (p.template_id, p.order, len(p), fill.get("place"), fill.get("object"))


def name_twins(
    prompts: PromptSet, tokenizer: Any, seed: int = 0, draws: int = 1, templates: str | None = None
) -> tuple[PromptSet, tuple[int, ...]]:
    """`draws` donors per prompt (draw-major): same template, order, place, object; new IO and S.

    Returns the donors and, per donor, the index of the prompt it serves.
    """
    by_id = {t.id: t for t in resolve_templates(templates)}
    names = build_lexicon(tokenizer).name_texts
    rng = random.Random(seed * 7919 + 17)
    out: list[Prompt] = []
    of: list[int] = []
    for d in range(draws):
        for i, p in enumerate(prompts):
            t = by_id.get(p.template_id)
            fd = p.extra.get("fill")
            if t is None or not isinstance(fd, dict):
                raise AdvgenError(
                    f"prompt {i} ({p.pair_id or p.text[:40]!r}): template {p.template_id!r} or its fill is unknown; "
                    "causal scrubbing needs prompts rendered from a template pack"
                )
            fill = Fill(io=fd["io"], s=fd["s"], place=fd.get("place", ""), object=fd.get("object", ""), x=tuple(fd.get("x", ())))
            used = {fill.io, fill.s, *fill.x}
            io2, s2 = rng.sample([n for n in names if n not in used], 2)
            q = render(t, p.order, replace(fill, io=io2, s=s2), tokenizer, family="scrub_twin", pair_id=f"{p.pair_id}-d{d}")
            if equivalence_key(q) != equivalence_key(p):
                raise AdvgenError(f"prompt {i} ({p.template_id}): its name twin has {len(q)} tokens, the prompt {len(p)}")
            out.append(q)
            of.append(i)
    return PromptSet(tuple(out), tokenizer_hash(tokenizer)), tuple(of)


@dataclass(frozen=True)
class ScrubRun:
    """Per-example LDs: the model, the scrubbed circuit and the scrubbed empty circuit (per draw)."""

    model_ld: np.ndarray
    """[n]"""
    scrubbed_ld: np.ndarray
    """[draws, n]"""
    baseline_ld: np.ndarray
    """[draws, n] everything resampled."""
    scrubbed_loss: np.ndarray
    """[draws, n] -log p(IO) at END of the scrubbed circuit."""
    scrubbed_kl: np.ndarray
    """[draws, n] KL(model || scrubbed circuit) at END (NaN without reference log-probs)."""
    baseline_loss: np.ndarray
    """[draws, n]"""
    donor_of: tuple[int, ...]
    model_loss: np.ndarray
    """[n] -log p(IO) at END of the model."""
    donor_io_ld: np.ndarray
    """[draws, n] logit(IO of the donor) - logit(IO) in the scrubbed circuit: do resampled heads carry the donor's answer?"""
    donor_io_loss: np.ndarray
    """[draws, n] -log p(IO of the donor) in the scrubbed circuit."""


def scrub_rows(
    model: LoadedModel,
    prompts: PromptSet,
    entries: tuple[Entry, ...],
    donors: RunCache,
    donor_of: Sequence[int],
    batch_size: int = DEFAULT_BATCH,
    ref_logp: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per draw, LD, IO loss and KL with every z outside `entries` taken from the donor run; [draws, n] each."""
    n = len(prompts)
    if len(donor_of) % n:
        raise AdvgenError(f"{len(donor_of)} donors for {n} prompts: expected a whole number of draws")
    lds, losses, kls = [], [], []
    for d in range(len(donor_of) // n):
        block = range(d * n, (d + 1) * n)
        if [donor_of[k] for k in block] != list(range(n)):
            raise AdvgenError(f"donor draw {d} is not in prompt order")
        # one patched_run per draw, n rows in prompt order: the same batches as the model's own run
        st = patched_run(
            model,
            prompts,
            [Patch(i, entries, donors.z[k], keep=True) for i, k in enumerate(block)],
            batch_size,
            ref_logp=ref_logp,
        )
        lds.append(st.ld.numpy())
        losses.append(st.loss.numpy())
        kls.append(st.kl.numpy())
    return np.stack(lds), np.stack(losses), np.stack(kls)


def donor_answer_rows(
    model: LoadedModel,
    prompts: PromptSet,
    entries: tuple[Entry, ...],
    donors: PromptSet,
    cache: RunCache,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, logit(IO') - logit(IO) and -log p(IO') of the scrubbed run, IO' = the donor's IO; [draws, n]."""
    n = len(prompts)
    lds, losses = [], []
    for d in range(len(donors) // n):
        alt = PromptSet(
            tuple(replace(p, io_token=donors[d * n + i].io_token, s_token=p.io_token) for i, p in enumerate(prompts)),
            prompts.tokenizer_hash,
        )
        st = patched_run(model, alt, [Patch(i, entries, cache.z[d * n + i], keep=True) for i in range(n)], batch_size)
        lds.append(st.ld.numpy())
        losses.append(st.loss.numpy())
    return np.stack(lds), np.stack(losses)


def scrub(
    model: LoadedModel,
    circuit: Circuit,
    prompts: PromptSet,
    donors: PromptSet,
    donor_of: Sequence[int],
    batch_size: int = DEFAULT_BATCH,
    ref_logp: torch.Tensor | None = None,
) -> ScrubRun:
    """Scrub `circuit` and the empty circuit over every draw; the model's LD from the same machinery."""
    circuit.check_against(model.n_layers, model.n_heads)
    dc = cache_run(model, donors, batch_size)
    base = patched_run(model, prompts, [Patch(i, (), None) for i in range(len(prompts))], batch_size)
    ld, loss, kl = scrub_rows(model, prompts, circuit_entries(circuit), dc, donor_of, batch_size, ref_logp)
    empty, e_loss, _ = scrub_rows(model, prompts, (), dc, donor_of, batch_size)
    d_ld, d_loss = donor_answer_rows(model, prompts, circuit_entries(circuit), donors, dc, batch_size)
    return ScrubRun(base.ld.numpy(), ld, empty, loss, kl, e_loss, tuple(donor_of), base.loss.numpy(), d_ld, d_loss)


def _pct(x: np.ndarray, ref: float) -> np.ndarray:
    return 100.0 * x / ref if ref else np.full_like(x, np.nan)


def spread(ld: np.ndarray, model_ld: np.ndarray) -> dict[str, Any]:
    """Per-example view of a variant's LD [..., n]: 100 x LD(x) / mean LD_model, its sd, quantiles, sign flips."""
    per = _pct(np.asarray(ld, dtype=np.float64), float(np.mean(model_ld)))
    flips = np.sign(ld) != np.sign(model_ld)
    return {
        "per_example_sd_pct": float(per.std(ddof=1)) if per.size > 1 else 0.0,
        "per_example_quantiles_pct": {
            f"q{q:02d}": float(v) for q, v in zip(QUANTILES, np.percentile(per, QUANTILES), strict=True)
        },
        "sign_flip_rate": float(np.mean(flips)),
    }


def summarize(run: ScrubRun, seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """ld_kept_pct (mean scrubbed LD as % of the model's), per-example sd and quantiles, sign flips."""
    f_m = float(run.model_ld.mean())
    per = _pct(run.scrubbed_ld, f_m)  # [draws, n]: each example's scrubbed LD as % of the model's mean LD
    sp = spread(run.scrubbed_ld, run.model_ld[None, :])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(run.model_ld), size=(n_boot, len(run.model_ld)))
    boot = 100.0 * run.scrubbed_ld.mean(0)[idx].mean(1) / run.model_ld[idx].mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "ld_kept_pct": float(per.mean()),
        "ld_kept_pct_ci": {"mean": float(per.mean()), "low": float(lo), "high": float(hi)},
        "sd": sp["per_example_sd_pct"],
        "quantiles": sp["per_example_quantiles_pct"],
        "sign_flip_rate": sp["sign_flip_rate"],
        "mean_ld_model": f_m,
        "mean_ld_scrubbed": float(run.scrubbed_ld.mean()),
        "mean_abs_ld_diff": float(np.abs(run.scrubbed_ld - run.model_ld[None, :]).mean()),
        "mean_loss_scrubbed": float(run.scrubbed_loss.mean()),
        "mean_loss_model": float(run.model_loss.mean()),
        "mean_p_io_model": float(np.exp(-run.model_loss).mean()),
        "mean_p_io_scrubbed": float(np.exp(-run.scrubbed_loss).mean()),
        "mean_p_donor_io_scrubbed": float(np.exp(-run.donor_io_loss).mean()),
        "donor_io_beats_io_rate": float((run.donor_io_ld > 0).mean()),
        "baseline_ld_kept_pct": float(_pct(run.baseline_ld, f_m).mean()),
        "baseline_sign_flip_rate": float((np.sign(run.baseline_ld) != np.sign(run.model_ld)[None, :]).mean()),
        "n": int(len(run.model_ld)),
        "draws": int(run.scrubbed_ld.shape[0]),
        "per_example": "100 x LD_scrubbed(x) / mean LD_model; sd and quantiles over examples x draws",
        "resampling": "unnamed (head, position) z from a name twin (same template, order, place, object; new IO and S)",
    }


def causal_scrubbing(
    model: LoadedModel,
    circuit: Circuit,
    prompts: PromptSet,
    seed: int = 0,
    draws: int = 1,
    batch_size: int = DEFAULT_BATCH,
    templates: str | None = None,
    ref_logp: torch.Tensor | None = None,
) -> tuple[dict[str, Any], ScrubRun]:
    """Build name twins, scrub, summarize: the `causal_scrubbing` block of check-claim."""
    donors, of = name_twins(prompts, model.tokenizer, seed, draws, templates)
    run = scrub(model, circuit, prompts, donors, of, batch_size, ref_logp)
    return summarize(run, seed), run
