"""Where the explanation fails: an attack search for the prompts on which circuit and model part most.

Adversarial Circuit Evaluation (arXiv 2407.15166) asks for the inputs where a circuit and its model
disagree most. `advgen attack --objective divergence` runs that search over the attack's prompt
space: the same candidates (the circuit's failure modes, cell by cell), the same unambiguity
checks, a random baseline of the same budget, and matched controls for the worst cases found.
Per prompt it measures the model's LD, the circuit's LD (every head outside the circuit replaced
under one ablation, the circuit's heads kept at their positions: the claim table's rule) and the
divergence |LD_model - LD_circuit|, or with `measure="kl"` KL(model || circuit) at END.

Budget: one evaluation = one prompt measured both ways (the model run, its ABC twin when the
ablation needs one, the circuit run), counted alike on both sides.
- Guided: the clean prompts; a stratified sample of candidates (int(guided x sample_frac / 2));
  a Thompson search over cells, rewarded when a candidate lands in the top decile of what the
  clean run and the sample saw; within a cell, candidates of the clean prompt with the largest
  divergence seen so far go first (a local search around the prompts where the circuit already
  parts); then the matched controls of the `controls` worst attack prompts (reserved up front), so
  a reader can tell the edit's divergence from the template's.
- Random: the whole budget on random perturbations (`advgen.attacks.baseline`) of clean prompts
  drawn uniformly; it never sees a measurement.
Ablation: a searched prompt is its own group, so "abc_mean" replaces each head outside the circuit
with its output on the prompt's own ABC twin (S2 -> a third name; what abc_mean and resample_abc
reduce to when no other prompt shares the template and length), or "zero". A prompt's divergence
therefore never depends on which prompts were measured beside it. A prompt with no ABC twin is
skipped before it runs (not charged) and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from advgen.attacks import bandit
from advgen.attacks.attack_setup import (
    UNIT_PROMPTS,
    AttackConfig,
    Candidate,
    Setup,
    candidate_pool,
    chunks,
    prepare,
    render_pair,
    unit_key,
)
from advgen.attacks.baseline import baseline_picks, baseline_prompts
from advgen.attacks.failure_mode import FailureMode
from advgen.attacks.journal import REUSED, Journal, content_salt
from advgen.attacks.sampling import stratified
from advgen.circuits import ablation, patching
from advgen.circuits.format import Circuit
from advgen.core import options, records
from advgen.core.journal import key_of
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import prompt_metrics
from advgen.prompts.rows import abc_twin
from advgen.prompts.templates import tokenizer_hash

ABLATIONS = options.DIVERGENCE_ABLATIONS
MEASURES = options.DIVERGENCE_MEASURES
TOP_QUANTILE = 0.9
"""A searched candidate is rewarded when its divergence reaches this quantile of the clean run and the sample."""

Row = dict[str, Any]


@dataclass(frozen=True)
class DivergenceSettings:
    ablation: str = "abc_mean"
    """How heads outside the circuit are replaced: "abc_mean" (the prompt's own ABC twin) or "zero"."""
    measure: str = "ld"
    """"ld": |LD_model - LD_circuit|; "kl": KL(model || circuit) of the END distributions (nats)."""
    top: int = 100
    """Worst guided prompts written as the test set (results.jsonl), worst first."""
    controls: int = 20
    """Worst guided attack prompts whose matched control is measured (reserved from the guided budget)."""

    def check(self, cfg: AttackConfig) -> None:
        if self.ablation not in ABLATIONS:
            why = (
                (
                    " (a searched prompt is its own template-and-length group, so ioi_mean would be the prompt itself and "
                    "resample_abc its own twin, which is abc_mean)"
                )
                if self.ablation in ablation.ABLATIONS
                else ""
            )
            raise AdvgenError(
                f"--ablation {self.ablation!r} cannot drive the divergence search{why}; choose one of {list(ABLATIONS)}"
            )
        if self.measure not in MEASURES:
            raise AdvgenError(f"--divergence {self.measure!r} is not a divergence measure; choose one of {list(MEASURES)}")
        if self.top < 1 or self.controls < 0:
            raise AdvgenError(f"--top must be >= 1 and --controls >= 0, got {self.top} and {self.controls}")
        if cfg.budget < cfg.n_clean + self.controls + 4:
            raise AdvgenError(
                f"--budget {cfg.budget} is too small for the divergence search: the clean run takes --n-clean={cfg.n_clean} "
                f"evaluations and the worst prompts' controls --controls={self.controls}, leaving fewer than 4 to search"
            )


@dataclass(frozen=True)
class DivergenceRun:
    guided: list[Row]
    """Every prompt the guided side measured (clean, sample, search, control), in run order."""
    random: list[Row]
    """Every prompt the random side measured."""
    evals: dict[str, int]
    skipped: dict[str, int]
    """Prompts per phase left out before they ran: no ABC twin keeps the other tokens."""
    modes: tuple[FailureMode, ...]
    threshold: float
    """The divergence a searched candidate had to reach to count as a hit (TOP_QUANTILE of clean + sample)."""
    search: dict[str, Any]
    settings: DivergenceSettings


def measure_divergence(
    model: LoadedModel,
    circuit: Circuit,
    prompts: Sequence[Prompt],
    tags: Sequence[dict[str, Any]],
    ds: DivergenceSettings,
    names: Sequence[str],
    batch_size: int,
    seed: int,
) -> list[Row]:
    """Model and circuit on `prompts`, batched: one row per prompt that has an ABC twin (abc_mean) or every prompt (zero)."""
    keep: list[tuple[Prompt, dict[str, Any]]] = []
    twins: list[Prompt] = []
    for p, tag in zip(prompts, tags, strict=True):
        if ds.ablation == "abc_mean":
            t = abc_twin(p, model.tokenizer, names, seed)
            if isinstance(t, str):
                continue
            twins.append(t)
        keep.append((p, tag))
    if not keep:
        return []
    th = tokenizer_hash(model.tokenizer)
    ps = PromptSet(tuple(p for p, _ in keep), th)
    clean = patching.cache_run(model, ps, batch_size)
    sources = patching.cache_run(model, PromptSet(tuple(twins), th), batch_size).z if twins else (None,) * len(ps)
    vals = ablation.AblationValues(ds.ablation, tuple(sources))
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    (circ,) = ablation.run_kept(model, ps, [ablation.circuit_entries(circuit)], vals, ref_logp, batch_size)
    io, s = patching.io_s_tokens(ps)
    rows: list[Row] = []
    for i, ((p, tag), m) in enumerate(zip(keep, prompt_metrics(clean.logits, io, s), strict=True)):
        cld, kl = float(circ.ld[i]), float(circ.kl[i])
        rows.append(
            {
                **records.prompt_row(p),
                **records.metric_row(m),
                "mode": p.extra.get("mode"),
                "cell": tag.get("cell"),
                "params": p.extra.get("params", {}),
                "head_signals": {},
                "phase": tag["phase"],
                "candidate": tag.get("candidate"),
                "circuit_logit_diff": cld,
                "circuit_kl": kl,
                "divergence": abs(m.logit_diff - cld) if ds.measure == "ld" else kl,
            }
        )
    return rows


@dataclass(frozen=True)
class _Ctx:
    s: Setup
    ds: DivergenceSettings

    def run(self, key: str, prompts: Sequence[Prompt], tags: Sequence[dict[str, Any]]) -> list[Row]:
        s = self.s
        return s.journal.unit(
            key,
            lambda: measure_divergence(
                s.model, s.circuit, prompts, tags, self.ds, s.lex.name_texts, s.cfg.batch_size, s.cfg.seed
            ),
        )


def _tag(c: Candidate, phase: str) -> dict[str, Any]:
    return {"phase": phase, "candidate": c.cid, "cell": c.cell}


def _attacks(x: _Ctx, cands: Sequence[Candidate], phase: str) -> list[Row]:
    prompts = [render_pair(x.s, c)[0] for c in cands]
    return x.run(unit_key(x.s.base_key, "divergence", phase, [c.cid for c in cands]), prompts, [_tag(c, phase) for c in cands])


def _search(
    x: _Ctx, pool: Sequence[Candidate], seen: Sequence[Row], budget: int, sampled: set[str], tau: float
) -> tuple[list[Row], dict[str, Any], int]:
    """Thompson sampling over cells (reward: divergence >= tau), each cell's queue ordered by its clean prompt's best so far."""
    s = x.s
    pair = {c.cid: s.specs[c.spec].pair_id for c in pool}
    best: dict[str, float] = {}
    for r in seen:
        best[r["pair_id"]] = max(best.get(r["pair_id"], 0.0), r["divergence"])
    queues: dict[str, list[Candidate]] = {}
    for c in pool:
        if c.cid not in sampled:
            queues.setdefault(c.cell, []).append(c)
    arms = {k: bandit.prior_arm(k, 1 - TOP_QUANTILE) for k in sorted(queues)}
    for r in seen:
        if r["phase"] == "sample" and r["cell"] in arms:
            arms = bandit.observe(arms, r["cell"], int(r["divergence"] >= tau), 1)
    rng = np.random.default_rng(int(unit_key(s.base_key, "divergence-bandit")[:8], 16))
    rows: list[Row] = []
    spent = dropped = 0
    while budget - spent > 0:
        for v in queues.values():
            v.sort(key=lambda c: (-best.get(pair[c.cid], 0.0), c.cid))
        avail = {k: len(v) for k, v in queues.items()}
        picks = bandit.choose(arms, avail, min(UNIT_PROMPTS // 2, budget - spent), rng, free=avail)
        if not picks:
            break
        chunk = [queues[k].pop(0) for k in picks]
        got = _attacks(x, chunk, "search")
        rows += got
        spent += len(got)
        dropped += len(chunk) - len(got)
        for r in got:
            arms = bandit.observe(arms, r["cell"], int(r["divergence"] >= tau), 1)
            best[r["pair_id"]] = max(best.get(r["pair_id"], 0.0), r["divergence"])
    searched: dict[str, int] = {}
    for r in rows:
        searched[r["cell"]] = searched.get(r["cell"], 0) + 1
    doc = {
        "searched_per_cell": dict(sorted(searched.items())),
        "hit_rate_posterior": {k: a.mean for k, a in sorted(arms.items())},
    }
    return rows, doc, dropped


def _controls(x: _Ctx, pool: Sequence[Candidate], attacked: Sequence[Row]) -> tuple[list[Row], int]:
    """Matched controls of the worst attack prompts; a control text shared by several is measured once (the rest: reused rows)."""
    by_cid = {c.cid: c for c in pool}
    worst = sorted((r for r in attacked if r["family"] == "attack"), key=lambda r: (-r["divergence"], r["candidate"]))[
        : x.ds.controls
    ]
    items = [(by_cid[r["candidate"]], render_pair(x.s, by_cid[r["candidate"]])[1]) for r in worst]
    first: dict[str, int] = {}
    for i, (_, p) in enumerate(items):
        first.setdefault(p.text, i)
    todo = sorted(first.values())
    got = (
        x.run(
            unit_key(x.s.base_key, "divergence", "control", [items[i][0].cid for i in todo]),
            [items[i][1] for i in todo],
            [_tag(items[i][0], "control") for i in todo],
        )
        if todo
        else []
    )
    measured = {r["text"]: r for r in got}
    rows: list[Row] = []
    for c, p in items:
        src = measured.get(p.text)
        if src is None:
            continue  # no ABC twin: skipped, counted by the caller
        if src["candidate"] == c.cid:
            rows.append(src)
        else:
            rows.append({**src, **_tag(c, "control"), "extra": {**src["extra"], REUSED: src["candidate"]}})
    return rows, len(todo) - len(got)


def _random(x: _Ctx, n: int) -> tuple[list[Row], int]:
    s = x.s
    picks = baseline_picks(s.cfg.seed, n, [1.0] * len(s.specs))  # every clean spec eligible: random never reads a measurement
    rows: list[Row] = []
    for chunk in chunks(picks, UNIT_PROMPTS):
        prompts = baseline_prompts(chunk, s.specs, s.cfg.seed, s.bank, s.lex, s.model.tokenizer)
        tags = [{"phase": "baseline", "candidate": f"{s.specs[i].pair_id}:random:{k}"} for k, i in chunk]
        rows += x.run(unit_key(s.base_key, "divergence", "baseline", [k for k, _ in chunk]), prompts, tags)
    return rows, len(picks) - len(rows)


def run_divergence(
    model: LoadedModel,
    circuit: Circuit,
    cfg: AttackConfig,
    ds: DivergenceSettings,
    out: Path,
    resume: bool = False,
    stop_after_units: int | None = None,
    progress: bool = False,
) -> DivergenceRun:
    """The guided search and the random baseline, each `cfg.budget` evaluations; units journaled under out/journal/."""
    cfg.check()
    ds.check(cfg)
    bar = tqdm(total=2 * cfg.budget, desc="divergence", unit="eval", disable=not progress)
    salt = key_of(content_salt(model, circuit, cfg), "divergence", asdict(ds))
    journal = Journal(
        out, resume, stop_after_units, bar, salt=salt, advance=lambda rows: sum(REUSED not in r["extra"] for r in rows)
    )
    s = prepare(model, circuit, cfg, journal)
    x = _Ctx(s, ds)
    clean: list[Row] = []
    for chunk in chunks(s.clean_prompts, UNIT_PROMPTS):
        clean += x.run(
            unit_key(s.base_key, "divergence", "clean", [p.text for p in chunk]), list(chunk), [{"phase": "clean"}] * len(chunk)
        )
    pool = candidate_pool(s)
    guided = cfg.budget - len(clean) - ds.controls
    sample = stratified(pool, max(1, min(len(pool), int(guided * cfg.sample_frac) // 2)), cfg.seed)
    sample_rows: list[Row] = []
    for part in chunks(sample, UNIT_PROMPTS):
        sample_rows += _attacks(x, part, "sample")
    seen = clean + sample_rows
    tau = float(np.quantile([r["divergence"] for r in seen], TOP_QUANTILE))
    search_rows, doc, search_dropped = _search(x, pool, seen, guided - len(sample_rows), {c.cid for c in sample}, tau)
    control_rows, control_dropped = _controls(x, pool, sample_rows + search_rows)
    random_rows, random_dropped = _random(x, cfg.budget)
    bar.total = bar.n
    bar.close()
    fresh = [r for r in control_rows if REUSED not in r["extra"]]
    evals = {
        "clean": len(clean),
        "sample": len(sample_rows),
        "search": len(search_rows),
        "control": len(fresh),
        "guided": len(clean) + len(sample_rows) + len(search_rows) + len(fresh),
        "random": len(random_rows),
    }
    skipped = {
        "clean": len(s.clean_prompts) - len(clean),
        "sample": len(sample) - len(sample_rows),
        "search": search_dropped,
        "control": control_dropped,
        "random": random_dropped,
    }
    doc = {**doc, "n_pool": len(pool), "n_sample": len(sample), "controls_reused": len(control_rows) - len(fresh)}
    return DivergenceRun(
        clean + sample_rows + search_rows + control_rows, random_rows, evals, skipped, s.proposal.modes, tau, doc, ds
    )
