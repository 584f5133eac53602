"""Circuit-driven attack search: clean run -> random sample -> signal screening -> search -> baseline.

Budget = model evaluations (prompts run through the model), counted exactly. The clean prompts
are run once (their attention readouts give each prompt's fragility for free); a stratified
random sample of candidates (attack + control, 2 evaluations each) measures, per mode cell, how
far the circuit's predicted signal moves; the rest of the budget goes to the unevaluated
candidates ranked highest by that signal (attack first; its control only when the attack breaks,
since only a break needs confirming). The random baseline gets the same total budget.
Work is done in units checkpointed to DIR/journal/ (one JSON file per unit, written
atomically), so `resume=True` continues an interrupted run and produces the same files.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from advgen.attacks.baseline import random_perturbation
from advgen.attacks.catalogue import FailureMode, Variant, check_unambiguous, modes_for
from advgen.circuits.format import Circuit
from advgen.core import files, records
from advgen.core.types import AdvgenError, Prompt, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.model.validate import Read, measure
from advgen.prompts import datasets
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.sentences import load_bank
from advgen.prompts.templates import resolve_templates, tokenizer_hash

UNIT_PROMPTS = 64
TAU = 0.01
"""Smallest move of a signal (attention mass) that counts as 'the predicted signal moved'."""


class Interrupted(AdvgenError):
    """Raised by `stop_after_units` (tests simulate a killed run with it)."""


MAX_BUDGET = 100_000
"""Largest --budget (model evaluations per side): rows are held in memory until the run is written."""


@dataclass(frozen=True)
class AttackConfig:
    budget: int
    n_clean: int = 100
    seed: int = 0
    batch_size: int = 32
    sample_frac: float = 0.5
    """Share of the guided budget (after the clean run) spent on the stratified random sample."""
    templates: str | None = None
    modes: tuple[str, ...] | None = None
    """Restrict to these catalogue modes (None: all the circuit implies)."""

    def check(self) -> None:
        if self.n_clean < 2:
            raise AdvgenError(f"--n-clean must be >= 2, got {self.n_clean}")
        if self.budget < self.n_clean + 4:
            raise AdvgenError(f"--budget {self.budget} is too small: the clean run alone takes --n-clean={self.n_clean} evaluations, "
                              f"and each candidate 2 more (attack + control)")
        if not 0 < self.sample_frac <= 1:
            raise AdvgenError(f"sample fraction must be in (0, 1], got {self.sample_frac}")
        if self.budget > MAX_BUDGET:
            raise AdvgenError(f"--budget {self.budget:,} is above the limit of {MAX_BUDGET:,} evaluations per side "
                              "(an attack holds its rows in memory; see docs/reliability.md)")
        if self.seed < 0 or self.batch_size < 1:
            raise AdvgenError(f"--seed must be >= 0 and --batch-size >= 1, got {self.seed} and {self.batch_size}")


@dataclass(frozen=True)
class Candidate:
    cid: str
    spec: int
    mode: FailureMode
    variant: Variant


@dataclass(frozen=True)
class AttackRun:
    rows: list[dict[str, Any]]
    """Every evaluated prompt as a result row (clean, attack, control, baseline), in run order."""
    evals: dict[str, int]
    modes: tuple[FailureMode, ...]
    skipped: dict[str, str]
    notes: dict[str, str]
    signals: dict[str, dict[str, Any]]
    screening: dict[str, Any]


class Journal:
    """DIR/journal/unit-NNNNN.json: a unit's rows, keyed by a hash of what the unit evaluates."""

    def __init__(self, out: Path, resume: bool, stop_after: int | None = None, bar: Any = None) -> None:
        self.bar = bar
        """Optional tqdm bar advanced by the rows (model evaluations) of every unit, reused or computed."""
        self.dir = out / "journal"
        if not resume and self.dir.exists():
            shutil.rmtree(self.dir)
        self.n = 0
        self.computed = 0
        self.stop_after = stop_after

    def unit(self, key: str, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        path = self.dir / f"unit-{self.n:05d}.json"
        self.n += 1
        done = read_unit(path, key)
        if done is not None:
            self._advance(done)
            return done
        if self.stop_after is not None and self.computed >= self.stop_after:
            raise Interrupted(f"stopped after {self.computed} units (simulated interruption)")
        rows = compute()
        files.atomic_write_text(path, files.dumps({"key": key, "rows": rows, "sha256": _rows_digest(rows)}) + "\n")
        self.computed += 1
        self._advance(rows)
        return rows

    def _advance(self, rows: list[dict[str, Any]]) -> None:
        if self.bar is not None:
            self.bar.update(len(rows))


def _rows_digest(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(files.dumps(rows).encode()).hexdigest()


def read_unit(path: Path, key: str) -> list[dict[str, Any]] | None:
    """A journal unit's rows if the file is intact and made for `key`; None means 'compute it again'.

    A truncated, foreign or edited unit (bad JSON, wrong shape, rows not matching their sha256) is
    never trusted: it is recomputed, so a damaged journal costs time, not correctness.
    """
    if not path.is_file():
        return None
    try:
        doc = files.read_json(path, "journal unit")
    except AdvgenError:
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or not isinstance(doc.get("rows"), list):
        return None
    rows = doc["rows"]
    if not all(isinstance(r, dict) for r in rows) or doc.get("sha256") != _rows_digest(rows):
        return None
    return rows


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def signal_reads(mode: FailureMode, circuit: Circuit) -> list[Read]:
    s = mode.signal_for(circuit)
    return [] if s is None else [(h, s.query, k) for h in circuit.heads_with(s.role) for k in s.keys]


def signal_doc(mode: FailureMode, circuit: Circuit) -> dict[str, Any]:
    s = mode.signal_for(circuit)
    return {"signal": s.describe() if s else None, "heads": [str(h) for h in circuit.heads_with(s.role)] if s else []}


def fragility_reads(circuit: Circuit) -> list[Read]:
    heads = circuit.heads_with(Role.NAME_MOVER) or circuit.heads_with(Role.S_INHIBITION)
    return [(h, "END", k) for h in heads for k in ("IO", "S2")]


def signal_value(mode: FailureMode, circuit: Circuit, head_signals: dict[str, float]) -> float:
    """Mean over the signal role's heads of the attention mass on the key slots (0 where absent)."""
    s = mode.signal_for(circuit)
    if s is None:
        return 0.0
    heads = circuit.heads_with(s.role)
    tot = [sum(head_signals.get(f"{h}:{s.query}->{k}", 0.0) for k in s.keys) for h in heads]
    return float(np.mean(tot)) if tot else 0.0


def fragility(circuit: Circuit, hs: dict[str, float]) -> float:
    """Minus the IO-over-S attention margin of the name movers (or S-inhibition END->S2), read on the clean run."""
    nm = circuit.heads_with(Role.NAME_MOVER)
    if nm:
        return -float(np.mean([hs.get(f"{h}:END->IO", 0.0) - hs.get(f"{h}:END->S2", 0.0) for h in nm]))
    si = circuit.heads_with(Role.S_INHIBITION)
    return -float(np.mean([hs.get(f"{h}:END->S2", 0.0) for h in si])) if si else 0.0


def _rows(model: LoadedModel, prompts: list[Prompt], reads: list[list[Read]], batch_size: int, tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ps = PromptSet(tuple(prompts), tokenizer_hash(model.tokenizer))
    m = measure(model, ps, reads, batch_size)
    out = []
    for p, met, sig, tag in zip(prompts, m.metrics, m.signals, tags, strict=True):
        out.append({**records.prompt_row(p), **records.metric_row(met), "mode": p.extra.get("mode"),
                    "params": p.extra.get("params", {}), "head_signals": sig, **tag})
    return out


def _cell_of(cid: str) -> str:
    """"mode:cell-index" from a candidate id "pair_id:mode:cell-index"."""
    return cid.split(":", 1)[1]


def _chunks(seq: Sequence[Any], k: int) -> list[Sequence[Any]]:
    return [seq[i : i + k] for i in range(0, len(seq), k)]


def run_attack(
    model: LoadedModel, circuit: Circuit, cfg: AttackConfig, out: Path, resume: bool = False,
    stop_after_units: int | None = None, progress: bool = False,
) -> AttackRun:
    """Run the whole search; every model evaluation is counted in `evals`."""
    cfg.check()
    circuit.check_against(model.n_layers, model.n_heads)
    proposal = modes_for(circuit, requested=cfg.modes)
    if not proposal.modes:
        raise AdvgenError(f"circuit {circuit.name!r} implies no failure mode: " + "; ".join(f"{k}: {v}" for k, v in proposal.skipped.items()))
    tok = model.tokenizer
    lex = build_lexicon(tok)
    bank = load_bank(lex)
    specs = datasets.sample_specs(resolve_templates(cfg.templates), lex, cfg.n_clean, cfg.seed)
    bar = tqdm(total=2 * cfg.budget - cfg.n_clean, desc="attack", unit="eval", disable=not progress)
    journal = Journal(out, resume, stop_after_units, bar)
    evals = {"clean": 0, "sample": 0, "search": 0, "baseline": 0}
    base_key = (model.source, circuit.to_dict(), cfg.seed, cfg.n_clean, cfg.templates, cfg.budget, cfg.sample_frac, cfg.modes)

    # 1. clean prompts, with every mode's signal reads and the fragility reads
    clean_prompts = list(datasets.build(specs, tok))
    clean_reads = sorted({r for m in proposal.modes for r in signal_reads(m, circuit)} | set(fragility_reads(circuit)), key=str)
    clean_rows: list[dict[str, Any]] = []
    for chunk in _chunks(list(range(len(specs))), UNIT_PROMPTS):
        ps = [clean_prompts[i] for i in chunk]
        clean_rows += journal.unit(_key(base_key, "clean", [p.text for p in ps]),
                                   lambda ps=ps: _rows(model, ps, [clean_reads] * len(ps), cfg.batch_size,
                                                       [{"family": "clean", "phase": "clean", "candidate": None}] * len(ps)))
    evals["clean"] = len(clean_rows)
    clean_ld = [r["logit_diff"] for r in clean_rows]

    # 2. candidate pool (strings only; rendering happens when a candidate is evaluated)
    pool: list[Candidate] = []
    for i, sp in enumerate(specs):
        for mode in proposal.modes:
            for c, cell in enumerate(mode.cells):
                rng = random.Random(f"{cfg.seed}:{sp.pair_id}:{mode.name}:{c}")
                v = mode.variant(sp, cell, rng, bank, lex)
                if v is not None:
                    pool.append(Candidate(f"{sp.pair_id}:{mode.name}:{c}", i, mode, v))
    if not pool:
        raise AdvgenError("no candidate applies to the sampled templates")
    guided = cfg.budget - cfg.n_clean
    n_sample = max(1, min(len(pool), int(guided * cfg.sample_frac) // 2))
    rng = random.Random(f"{cfg.seed}:sample")
    by_cell: dict[tuple[str, int], list[Candidate]] = {}
    for cand in pool:
        by_cell.setdefault((cand.mode.name, int(cand.cid.rsplit(":", 1)[1])), []).append(cand)
    for lst in by_cell.values():
        rng.shuffle(lst)
    sample: list[Candidate] = []
    while len(sample) < n_sample:  # round-robin over cells: equal n per cell, random within
        for lst in by_cell.values():
            if lst and len(sample) < n_sample:
                sample.append(lst.pop())

    def evaluate(cands: Sequence[Candidate], phase: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(list(cands), UNIT_PROMPTS // 2):
            def compute(chunk: Sequence[Candidate] = chunk) -> list[dict[str, Any]]:
                prompts, reads, tags = [], [], []
                for cand in chunk:
                    a, c = cand.mode.render(specs[cand.spec], cand.variant, tok)
                    check_unambiguous(clean_prompts[cand.spec], a, c)
                    prompts += [a, c]
                    reads += [signal_reads(cand.mode, circuit)] * 2
                    tags += [{"family": f, "phase": phase, "candidate": cand.cid} for f in ("attack", "control")]
                return _rows(model, prompts, reads, cfg.batch_size, tags)
            rows += journal.unit(_key(base_key, phase, [c.cid for c in chunk]), compute)
        evals[phase] += len(rows)
        return rows

    sample_rows = evaluate(sample, "sample")

    # 3. screening: cell effect of the predicted signal (sample) + clean-run fragility -> score
    sig_clean = {(r["pair_id"], m.name): signal_value(m, circuit, r["head_signals"]) for r in clean_rows for m in proposal.modes}
    modes_by_name = {m.name: m for m in proposal.modes}
    shifts: dict[str, list[float]] = {}
    cell_shift: dict[str, list[float]] = {}
    for r in sample_rows:
        if r["family"] != "attack":
            continue
        m = modes_by_name[r["mode"]]
        d = m.signal_for(circuit).direction * (signal_value(m, circuit, r["head_signals"]) - sig_clean[(r["pair_id"], m.name)])  # type: ignore[union-attr]
        shifts.setdefault(m.name, []).append(d)
        cell_shift.setdefault(_cell_of(r["candidate"]), []).append(d)
    cell_effect = {k: float(np.mean(v) / (np.std(shifts[k.split(":")[0]]) + 1e-6)) for k, v in cell_shift.items()}
    frag = np.array([fragility(circuit, r["head_signals"]) for r in clean_rows])
    frag_z = (frag - frag.mean()) / (frag.std() + 1e-9)

    def score(c: Candidate) -> float:
        return cell_effect.get(_cell_of(c.cid), -1e9) + float(frag_z[c.spec])

    sampled = {c.cid for c in sample}
    rest = [c for c in pool if c.cid not in sampled and clean_ld[c.spec] > 0]
    rest.sort(key=lambda c: (-score(c), c.cid))
    search, search_rows = _search(rest, guided - evals["sample"], lambda chunk: journal.unit(
        _key(base_key, "search", [c.cid for c in chunk]),
        lambda: _attack_then_control(model, circuit, chunk, specs, clean_prompts, clean_ld, cfg.batch_size)))
    evals["search"] = len(search_rows)
    threshold = score(search[-1]) if search else float("inf")

    # 4. baseline: the same total budget on random perturbations of the same clean prompts
    n_base = cfg.budget - cfg.n_clean
    brng = random.Random(f"{cfg.seed}:baseline")
    eligible = [i for i in range(len(specs)) if clean_ld[i] > 0] or list(range(len(specs)))  # same filter as the search
    picks = [(brng.choice(eligible), random.Random(f"{cfg.seed}:baseline:{k}")) for k in range(n_base)]
    base_rows: list[dict[str, Any]] = []
    for chunk in _chunks(list(enumerate(picks)), UNIT_PROMPTS):
        def compute_base(chunk: Sequence[Any] = chunk) -> list[dict[str, Any]]:
            ps = [random_perturbation(specs[i], r, bank, lex, tok, f"#{k}") for k, (i, r) in chunk]
            tags = [{"family": "baseline", "phase": "baseline", "candidate": f"{specs[i].pair_id}:random:{k}"} for k, (i, _) in chunk]
            return _rows(model, ps, [[] for _ in ps], cfg.batch_size, tags)
        base_rows += journal.unit(_key(base_key, "baseline", [k for k, _ in chunk]), compute_base)
    evals["baseline"] = len(base_rows)

    scores = {c.cid: score(c) for c in sample + search}
    screening = {"threshold": threshold, "scores": scores, "cell_effect": cell_effect,
                 "n_pool": len(pool), "n_sample": len(sample), "n_search": len(search)}
    signals = {m.name: signal_doc(m, circuit) for m in proposal.modes}
    rows = clean_rows + sample_rows + search_rows + base_rows
    _label(rows, circuit, proposal.modes, sig_clean)
    bar.total = bar.n  # the guided side may finish under budget when its candidate pool runs out
    bar.close()
    return AttackRun(rows, evals, proposal.modes, dict(proposal.skipped), dict(proposal.notes), signals, screening)


def _search(ranked: Sequence[Candidate], budget: int, run_chunk: Callable[[Sequence[Candidate]], list[dict[str, Any]]]) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Spend `budget` on candidates in rank order: attacks first, a control only for each break.

    A chunk of m candidates costs m + (its breaks) <= 2m evaluations, so m <= remaining / 2 can
    never overspend; leftover budget carries into the next chunk.
    """
    done: list[Candidate] = []
    rows: list[dict[str, Any]] = []
    i = 0
    while i < len(ranked) and budget - len(rows) >= 2:
        m = min(UNIT_PROMPTS // 2, (budget - len(rows)) // 2, len(ranked) - i)
        chunk = ranked[i : i + m]
        rows += run_chunk(chunk)
        done += chunk
        i += m
    return done, rows


def _attack_then_control(model: LoadedModel, circuit: Circuit, chunk: Sequence[Candidate], specs: Sequence[Any],
                         clean_prompts: Sequence[Prompt], clean_ld: Sequence[float], batch_size: int) -> list[dict[str, Any]]:
    pairs = []
    for cand in chunk:
        a, c = cand.mode.render(specs[cand.spec], cand.variant, model.tokenizer)
        check_unambiguous(clean_prompts[cand.spec], a, c)
        pairs.append((cand, a, c))
    rows = _rows(model, [a for _, a, _ in pairs], [signal_reads(cand.mode, circuit) for cand, _, _ in pairs], batch_size,
                 [{"family": "attack", "phase": "search", "candidate": cand.cid} for cand, _, _ in pairs])
    hit = [(cand, c) for (cand, _, c), r in zip(pairs, rows) if r["logit_diff"] < 0 < clean_ld[cand.spec]]
    if hit:
        rows += _rows(model, [c for _, c in hit], [signal_reads(cand.mode, circuit) for cand, _ in hit], batch_size,
                      [{"family": "control", "phase": "search", "candidate": cand.cid} for cand, _ in hit])
    return rows


def _label(rows: list[dict[str, Any]], circuit: Circuit, modes: Sequence[FailureMode], sig_clean: dict[tuple[str, str], float]) -> None:
    """is_break (attack/baseline LD < 0 with clean LD > 0) and explained (the mode's signal moved as predicted)."""
    clean = {r["pair_id"]: r for r in rows if r["family"] == "clean"}
    by_name = {m.name: m for m in modes}
    for r in rows:
        c = clean[r["pair_id"]]
        r["clean_logit_diff"] = c["logit_diff"]
        r["is_break"] = bool(r["family"] in ("attack", "baseline") and r["logit_diff"] < 0 < c["logit_diff"])
        r["explained"] = None
        if r["family"] == "attack":
            m = by_name[r["mode"]]
            s = m.signal_for(circuit)
            shift = signal_value(m, circuit, r["head_signals"]) - sig_clean[(r["pair_id"], m.name)]
            r["signal_shift"] = shift
            if r["is_break"] and s is not None:
                r["explained"] = bool(s.direction * shift > TAU)
