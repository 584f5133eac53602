"""What every phase of an IOI attack shares: its config, its candidates, the prepared setup, and measuring prompts into rows.

The phases (`advgen.attacks.search`) and the divergence search (`advgen.attacks.divergence`) both
start from `prepare`: the modes the circuit implies, the clean specs and prompts, the lexicon and
sentence bank, the journal, the backend. Candidates are template strings until a phase renders
them (`render_pair`, checked unambiguous); `measure_rows` runs prompts here, on a backend, or from
the prefetched queue, into result rows. Journal keys (`unit_key`) hash the run's content, never paths.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advgen.attacks import prefetch
from advgen.attacks.checks import check_unambiguous
from advgen.attacks.compiler import select_modes
from advgen.attacks.failure_mode import FailureMode, Proposal, Variant
from advgen.attacks.journal import Journal
from advgen.attacks.signals import signal_reads
from advgen.circuits.format import Circuit
from advgen.core import options, records
from advgen.core.records import MeasuredRow
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.backends import Backend, measure_unit
from advgen.model.loading import LoadedModel
from advgen.model.validate import Read, measure
from advgen.prompts import datasets
from advgen.prompts.lexicon import Lexicon, build_lexicon
from advgen.prompts.sentences import SentenceBank, load_bank
from advgen.prompts.templates import resolve_templates, tokenizer_hash

UNIT_PROMPTS = 64
MAX_BUDGET = 100_000
"""Largest --budget (model evaluations per side): rows are held in memory until the run is written."""


@dataclass(frozen=True)
class AttackConfig:
    budget: int
    n_clean: int = 100
    seed: int = 0
    batch_size: int = 32
    sample_frac: float = 0.5
    """Sample size: int(guided budget x sample_frac / 2) candidates (this share of the budget at 2 evaluations each; less if
    controls are shared)."""
    templates: str | None = None
    modes: tuple[str, ...] | None = None
    """Catalogue modes and/or "compiled" (None: compiled if the circuit has behaviour records, else its catalogue proposal)."""

    def check(self) -> None:
        if self.n_clean < 2:
            raise AdvgenError(f"--n-clean must be >= 2, got {self.n_clean}")
        if self.budget < self.n_clean + 4:
            raise AdvgenError(
                f"--budget {self.budget} is too small: the clean run alone takes --n-clean={self.n_clean} evaluations, "
                f"and each candidate 2 more (attack + control)"
            )
        if not 0 < self.sample_frac <= 1:
            raise AdvgenError(f"sample fraction must be in (0, 1], got {self.sample_frac}")
        if self.budget > MAX_BUDGET:
            raise AdvgenError(
                f"--budget {self.budget:,} is above the limit of {MAX_BUDGET:,} evaluations per side "
                "(an attack holds its rows in memory; see docs/reliability.md)"
            )
        if self.seed < 0 or not 1 <= self.batch_size <= options.MAX_BATCH:
            raise AdvgenError(
                f"--seed must be >= 0 and --batch-size between 1 and {options.MAX_BATCH}, got {self.seed} and {self.batch_size}"
            )


@dataclass(frozen=True)
class Candidate:
    cid: str
    spec: int
    mode: FailureMode
    cell: str
    variant: Variant
    unit: str
    """Candidates with one unit share their control (same clean prompt, same share key); otherwise the cid."""


def unit_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def chunks(seq: Sequence[Any], k: int) -> list[Sequence[Any]]:
    return [seq[i : i + k] for i in range(0, len(seq), k)]


@dataclass(frozen=True)
class Setup:
    """Everything the phases share: model, circuit, proposal, clean specs and prompts, the journal."""

    model: LoadedModel
    circuit: Circuit
    cfg: AttackConfig
    proposal: Proposal
    lex: Lexicon
    bank: SentenceBank
    specs: list[datasets.Spec]
    clean_prompts: list[Prompt]
    journal: Journal
    base_key: tuple[Any, ...]
    backend: Backend | None = None
    """Where measurements run (None: here, on `model`); `--backend ray` gives the same rows."""
    shared_reads: tuple[Read, ...] = ()
    """Reads of every mode with a share key: a shared control carries the signal of every mode that may reuse it."""
    controls: dict[str, MeasuredRow] = field(default_factory=dict)
    """Control rows evaluated so far, by prompt text and reads (filled after each journal unit, so resume matches)."""
    ahead: prefetch.Prefetcher | None = None
    """Ray, fresh run: units queued ahead (`advgen.attacks.prefetch`); None: each unit measured when asked for."""


def measure_rows(s: Setup, prompts: list[Prompt], reads: list[list[Read]], tags: list[dict[str, Any]]) -> list[MeasuredRow]:
    ps = PromptSet(tuple(prompts), tokenizer_hash(s.model.tokenizer))
    unit = (ps, reads, s.cfg.batch_size)
    got = s.ahead.take(prompts, reads) if s.ahead else None
    [m] = (
        [got]
        if got is not None
        else [measure(s.model, *unit)]
        if s.backend is None
        else list(s.backend.map(measure_unit, [unit]))
    )
    out: list[MeasuredRow] = []
    for p, met, sig, tag in zip(prompts, m.metrics, m.signals, tags, strict=True):
        row = {
            **records.prompt_row(p),
            **records.metric_row(met),
            "mode": p.extra.get("mode"),
            "cell": tag.get("cell"),
            "params": p.extra.get("params", {}),
            "head_signals": sig,
            "phase": tag["phase"],
            "candidate": tag.get("candidate"),
        }
        out.append(row)  # type: ignore[arg-type]
    return out


def prepare(model: LoadedModel, circuit: Circuit, cfg: AttackConfig, journal: Journal, backend: Backend | None = None) -> Setup:
    cfg.check()
    circuit.check_against(model.n_layers, model.n_heads)
    proposal = select_modes(circuit, cfg.modes)
    if not proposal.modes:
        raise AdvgenError(
            f"circuit {circuit.name!r} implies no failure mode: " + "; ".join(f"{k}: {v}" for k, v in proposal.skipped.items())
        )
    lex = build_lexicon(model.tokenizer)
    specs = datasets.sample_specs(resolve_templates(cfg.templates), lex, cfg.n_clean, cfg.seed)
    # the model as the user named it plus its tokenizer, not model.source: an absolute path would make the
    # journal keys and the search's random stream depend on where advgen is installed
    base_key = (
        model.name,
        tokenizer_hash(model.tokenizer),
        circuit.to_dict(),
        cfg.seed,
        cfg.n_clean,
        cfg.templates,
        cfg.budget,
        cfg.sample_frac,
        cfg.modes,
    )
    shared = tuple(
        sorted({r for m in proposal.modes if any(m.share_key(c) for c in m.cells) for r in signal_reads(m, circuit)}, key=str)
    )
    ahead = prefetch.start(backend, not any(journal.dir.glob("unit-*.json")), tokenizer_hash(model.tokenizer), cfg.batch_size)
    return Setup(
        model,
        circuit,
        cfg,
        proposal,
        lex,
        load_bank(lex),
        specs,
        list(datasets.build(specs, model.tokenizer)),
        journal,
        base_key,
        backend,
        shared,
        ahead=ahead,
    )


def candidate_pool(s: Setup) -> list[Candidate]:
    """Every (clean spec, mode, cell) candidate as template strings; rendering waits for evaluation."""
    pool = []
    for i, sp in enumerate(s.specs):
        for mode in s.proposal.modes:
            for (c, cell), d in ((cc, d) for cc in enumerate(mode.cells) for d in range(mode.draws)):
                tail = f":{d}" if d else ""  # draw 0 keeps the single-draw ids and random streams
                cid, share = f"{sp.pair_id}:{mode.name}:{c}{tail}", mode.share_key(cell)
                rng = random.Random(f"{s.cfg.seed}:{sp.pair_id}:{share or f'{mode.name}:{c}'}{tail}")
                v = mode.variant(sp, cell, rng, s.bank, s.lex)
                if v is not None:
                    pool.append(Candidate(cid, i, mode, mode.cell_key(c), v, f"{sp.pair_id}:{share}{tail}" if share else cid))
    if not pool:
        raise AdvgenError("no candidate applies to the sampled templates")
    return pool


def render_pair(s: Setup, cand: Candidate) -> tuple[Prompt, Prompt]:
    a, c = cand.mode.render(s.specs[cand.spec], cand.variant, s.model.tokenizer)
    check_unambiguous(s.clean_prompts[cand.spec], a, c)
    return a, c
