"""Circuit-driven attack search: clean run -> random sample -> learning search -> baseline -> labels.

Budget = model evaluations (prompts run through the model), counted exactly. The clean prompts
run once (their attention reads order each cell's candidates by fragility); a stratified random
sample (attack + control, equal count per cell, int(guided budget x sample_frac / 2) candidates)
gives the unbiased per-mode table and the first evidence per cell; the rest of the budget goes to
a Thompson-sampling search over cells (`advgen.attacks.bandit`) whose prior is the circuit's
prediction, rewarded by attributable breaks (the control holds): attack first, its control only
when it breaks (only a break needs confirming, and its control decides whether it counts). A cell
the sample falsified gets no search budget. No prompt is evaluated twice: candidates of one clean
prompt with one control (`FailureMode.share_key`: every dose of both compiled modes at a site)
are sampled as a unit and their control runs once; a reused control is a row per candidate
marked `extra["control_reused_from"]`, not an evaluation. The random baseline gets the same total budget.
Work is journaled in units (DIR/journal/, atomic), so `resume=True` continues a run to the same files.
The config, the candidates and the setup every phase shares are `advgen.attacks.attack_setup`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm.auto import tqdm

from advgen.attacks import bandit, prefetch
from advgen.attacks.attack_setup import (
    UNIT_PROMPTS,
    AttackConfig,
    Candidate,
    Setup,
    candidate_pool,
    chunks,
    measure_rows,
    prepare,
    render_pair,
    unit_key,
)
from advgen.attacks.baseline import baseline_picks, baseline_prompts
from advgen.attacks.failure_mode import FailureMode
from advgen.attacks.journal import Interrupted, Journal, content_salt, evaluated, read_unit
from advgen.attacks.sampling import pop_chunk, stratified
from advgen.attacks.shared_controls import control_held, control_rows, remember
from advgen.attacks.signals import fragility, label_rows, signal_doc, signal_reads
from advgen.circuits.format import Circuit
from advgen.core import records
from advgen.core.records import AttackRow, MeasuredRow
from advgen.core.types import Prompt
from advgen.model.backends import Backend
from advgen.model.loading import LoadedModel
from advgen.model.validate import Read

__all__ = ["AttackRun", "Interrupted", "Journal", "read_unit", "run_attack", "stratified"]  # journal's, re-exported


@dataclass(frozen=True)
class AttackRun:
    rows: list[AttackRow]
    """Every evaluated prompt as a result row (clean, attack, control, baseline), in run order."""
    evals: dict[str, int]
    modes: tuple[FailureMode, ...]
    skipped: dict[str, str]
    notes: dict[str, str]
    signals: dict[str, dict[str, Any]]
    screening: dict[str, Any]


def _run_clean(s: Setup) -> list[MeasuredRow]:
    """Clean prompts, with every mode's signal reads (fragility comes from them)."""
    reads = sorted({r for m in s.proposal.modes for r in signal_reads(m, s.circuit)}, key=str)
    rows: list[MeasuredRow] = []
    if s.ahead:
        s.ahead.queue([(list(c), [reads] * len(c)) for c in chunks(s.clean_prompts, UNIT_PROMPTS)])
    for chunk in chunks(s.clean_prompts, UNIT_PROMPTS):
        ps = list(chunk)
        rows += s.journal.unit(
            unit_key(s.base_key, "clean", [p.text for p in ps]),
            lambda ps=ps: measure_rows(s, ps, [reads] * len(ps), [{"phase": "clean"}] * len(ps)),
        )
    return rows


def _tag(cand: Candidate, phase: str) -> dict[str, Any]:
    return {"phase": phase, "candidate": cand.cid, "cell": cand.cell}


def _control_reads(s: Setup, cand: Candidate) -> list[Read]:
    return list(s.shared_reads) if cand.unit != cand.cid else signal_reads(cand.mode, s.circuit)


def _controls(s: Setup, items: Sequence[tuple[Candidate, Prompt]], phase: str) -> list[MeasuredRow]:
    """Control rows for `items` (`shared_controls.control_rows`): a shared control already evaluated is reused, not re-run.

    Only candidates of a shared unit are looked up: their controls are read with `shared_reads`,
    so a reused row carries every signal its new candidate needs.
    """

    def measure(todo: list[int]) -> list[MeasuredRow]:
        it = [items[i] for i in todo]
        return measure_rows(s, [p for _, p in it], [_control_reads(s, c) for c, _ in it], [_tag(c, phase) for c, _ in it])

    def fresh(cand: Candidate, p: Prompt) -> dict[str, Any]:
        return {
            **records.prompt_row(p),
            "mode": p.extra.get("mode"),
            "cell": cand.cell,
            "params": p.extra.get("params", {}),
            **_tag(cand, phase),
        }

    return cast("list[MeasuredRow]", control_rows(items, s.controls, measure, fresh))


def _evaluate_pairs(s: Setup, cands: Sequence[Candidate]) -> list[MeasuredRow]:
    """The random sample: attack and control of every candidate (a shared control once)."""
    rows: list[MeasuredRow] = []
    for chunk in chunks(list(cands), UNIT_PROMPTS // 2):

        def compute(chunk: Sequence[Candidate] = chunk) -> list[MeasuredRow]:
            pairs = [(cand, *render_pair(s, cand)) for cand in chunk]
            att = measure_rows(
                s,
                [a for _, a, _ in pairs],
                [signal_reads(c.mode, s.circuit) for c, _, _ in pairs],
                [_tag(c, "sample") for c, _, _ in pairs],
            )
            return att + _controls(s, [(c, k) for c, _, k in pairs], "sample")

        rows += _unit(s, unit_key(s.base_key, "sample", [c.cid for c in chunk]), compute)
    return rows


def _unit(s: Setup, key: str, compute: Callable[[], list[MeasuredRow]]) -> list[MeasuredRow]:
    got = s.journal.unit(key, compute)
    remember(s.controls, got)
    return got


def _attack_then_control(s: Setup, chunk: Sequence[Candidate], clean_ld: Sequence[float]) -> list[MeasuredRow]:
    pairs = [(cand, *render_pair(s, cand)) for cand in chunk]
    rows = measure_rows(
        s,
        [a for _, a, _ in pairs],
        [signal_reads(cand.mode, s.circuit) for cand, _, _ in pairs],
        [_tag(cand, "search") for cand, _, _ in pairs],
    )
    hit = [(cand, c) for (cand, _, c), r in zip(pairs, rows, strict=True) if r["logit_diff"] < 0 < clean_ld[cand.spec]]
    return rows + (_controls(s, hit, "search") if hit else [])


def _arms(
    s: Setup, pool: Sequence[Candidate], sample_rows: Sequence[MeasuredRow], clean_ld: Sequence[float]
) -> tuple[dict[str, bandit.Arm], dict[str, Any]]:
    """Priors from the prediction, updated by the sample's breaks; falsified cells and modes switched off."""
    natural = float(np.mean(np.array(clean_ld) < 0))
    arms: dict[str, bandit.Arm] = {}
    cells = {c.cell: c.mode for c in pool}
    cell_params = {c.cell: c.variant.cell for c in pool}
    for key, mode in sorted(cells.items()):
        shift = mode.predicted_shift(cell_params[key])
        arms[key] = bandit.prior_arm(key, bandit.prior_break_rate(clean_ld, shift, natural))
    ctl = {r["candidate"]: r["logit_diff"] for r in sample_rows if r["phase"] == "sample" and r["family"] == "control"}
    diffs: dict[str, list[float]] = {}
    index = {sp.pair_id: i for i, sp in enumerate(s.specs)}
    for r in sample_rows:
        if r["family"] == "attack" and r["cell"] is not None:
            brk = int(r["logit_diff"] < 0 < clean_ld[index[r["pair_id"]]])
            arms = bandit.observe(
                arms, r["cell"], brk * int(ctl[r["candidate"]] >= 0), 1, brk
            )  # rewarded only if the control holds
            diffs.setdefault(r["cell"], []).append(r["logit_diff"] - ctl[r["candidate"]])
    verdicts, signs = {}, {}
    for key, mode in cells.items():
        shift = mode.predicted_shift(cell_params[key])
        signs[key] = mode.expected_sign if shift is None else (-1 if shift < 0 else 1)  # a cell's own prediction when it has one
        verdicts[key], _ = bandit.verdict(diffs.get(key, []), signs[key], s.cfg.seed)
    off = [k for k in cells if verdicts[k] == "falsified" or signs[k] > 0]
    return bandit.falsify(arms, off), {"cell_verdicts": verdicts, "not_funded": sorted(off)}


def _search(
    s: Setup,
    pool: Sequence[Candidate],
    arms: dict[str, bandit.Arm],
    budget: int,
    sampled: set[str],
    clean_rows: Sequence[MeasuredRow],
    clean_ld: Sequence[float],
) -> tuple[list[MeasuredRow], dict[str, bandit.Arm]]:
    """Thompson sampling over cells in chunks, valued per evaluation (a candidate whose control is evaluated already costs one).

    Within a cell those candidates go first when their control held, then the most fragile clean
    prompt; a candidate whose control is known to break goes last (its break could not be attributable),
    and a chunk takes at most one candidate of a unit whose control is unknown (`sampling.pop_chunk`).
    """
    queues: dict[str, list[Candidate]] = {}
    for c in pool:
        if c.cid not in sampled and clean_ld[c.spec] > 0:
            queues.setdefault(c.cell, []).append(c)
    order = sorted(
        queued := [c for v in queues.values() for c in v],
        key=lambda c: (-fragility(c.mode, s.circuit, clean_rows[c.spec]["head_signals"]), c.cid),
    )
    rank = {c.cid: i for i, c in enumerate(order)} if queued else {}
    rng = np.random.default_rng(int(unit_key(s.base_key, "bandit")[:8], 16))
    rows: list[MeasuredRow] = []
    spent = 0
    while budget - spent >= 2:
        m = min(UNIT_PROMPTS // 2, (budget - spent) // 2)
        done = control_held(s.controls)
        free = {k: sum(done.get(c.unit, False) for c in v) for k, v in queues.items()}
        for v in queues.values():  # a known broken control: no attributable break possible, so last
            v.sort(key=lambda c: (c.unit in done and not done[c.unit], c.unit not in done, rank[c.cid]))
        picks = bandit.choose(arms, {k: len(v) for k, v in queues.items()}, m, rng, free)
        if not picks:
            break
        chunk = pop_chunk(queues, picks, done)
        got = _unit(
            s,
            unit_key(s.base_key, "search", [c.cid for c in chunk]),
            lambda chunk=chunk: _attack_then_control(s, chunk, clean_ld),
        )
        rows += got
        spent += evaluated(got)
        att = {r["candidate"]: r for r in got if r["family"] == "attack"}
        ctl = {r["candidate"]: r["logit_diff"] for r in got if r["family"] == "control"}  # one per break, reused ones included
        for c in chunk:
            brk = int(att[c.cid]["logit_diff"] < 0 < clean_ld[c.spec])
            arms = bandit.observe(arms, c.cell, int(brk == 1 and ctl[c.cid] >= 0), 1, brk)
    return rows, arms


def _baseline_prompts(s: Setup, chunk: Sequence[tuple[int, int]]) -> list[Prompt]:
    return baseline_prompts(chunk, s.specs, s.cfg.seed, s.bank, s.lex, s.model.tokenizer)


def _baseline(s: Setup, units: Sequence[Sequence[tuple[int, int]]]) -> list[MeasuredRow]:
    """The same total budget on random perturbations of the clean prompts with LD > 0 (`baseline_picks`)."""
    rows: list[MeasuredRow] = []
    for chunk in units:

        def compute(chunk: Sequence[tuple[int, int]] = chunk) -> list[MeasuredRow]:
            tags = [{"phase": "baseline", "candidate": f"{s.specs[i].pair_id}:random:{k}"} for k, i in chunk]
            return measure_rows(s, _baseline_prompts(s, chunk), [[] for _ in chunk], tags)

        rows += s.journal.unit(unit_key(s.base_key, "baseline", [k for k, _ in chunk]), compute)
    return rows


def run_attack(
    model: LoadedModel,
    circuit: Circuit,
    cfg: AttackConfig,
    out: Path,
    resume: bool = False,
    stop_after_units: int | None = None,
    progress: bool = False,
    backend: Backend | None = None,
) -> AttackRun:
    """Run every phase; every model evaluation is counted in `evals`."""
    bar = tqdm(total=2 * cfg.budget - cfg.n_clean, desc="attack", unit="eval", disable=not progress)
    journal = Journal(out, resume, stop_after_units, bar, salt=content_salt(model, circuit, cfg), advance=evaluated)
    s = prepare(model, circuit, cfg, journal, backend)
    clean_rows = _run_clean(s)
    clean_ld = [r["logit_diff"] for r in clean_rows]
    pool = candidate_pool(s)
    guided = cfg.budget - cfg.n_clean
    sample = stratified(pool, max(1, min(len(pool), int(guided * cfg.sample_frac) // 2)), cfg.seed)
    base_chunks = chunks(baseline_picks(cfg.seed, cfg.budget - cfg.n_clean, clean_ld), UNIT_PROMPTS)
    if s.ahead:  # Ray: the sample's units, then the baseline's, run beside the search
        s.ahead.queue(
            prefetch.pair_requests(
                chunks(list(sample), UNIT_PROMPTS // 2),
                lambda c: render_pair(s, c),
                lambda c: c.unit != c.cid,
                lambda c: signal_reads(c.mode, s.circuit),
                lambda c: _control_reads(s, c),
            )
            + [(ps, [[] for _ in ps]) for ps in (_baseline_prompts(s, ch) for ch in base_chunks)]
        )
    sample_rows = _evaluate_pairs(s, sample)
    arms, learned = _arms(s, pool, sample_rows, clean_ld)
    prior = {k: a.mean for k, a in arms.items()}
    search_rows, arms = _search(s, pool, arms, guided - evaluated(sample_rows), {c.cid for c in sample}, clean_rows, clean_ld)
    base_rows = _baseline(s, base_chunks)
    if s.ahead:
        s.ahead.close()
    evals = {
        "clean": len(clean_rows),
        "sample": evaluated(sample_rows),
        "search": evaluated(search_rows),
        "baseline": len(base_rows),
    }
    screening = _screening(learned, len(pool), len(sample), sample_rows, search_rows, evals, prior, arms)
    rows = label_rows([*clean_rows, *sample_rows, *search_rows, *base_rows], circuit, s.proposal.modes)
    bar.total = bar.n  # the guided side may finish under budget when its candidate pool runs out
    bar.close()
    return AttackRun(
        rows,
        evals,
        s.proposal.modes,
        dict(s.proposal.skipped),
        dict(s.proposal.notes),
        {m.name: signal_doc(m, circuit) for m in s.proposal.modes},
        screening,
    )


def _screening(
    learned: dict[str, Any],
    n_pool: int,
    n_sample: int,
    sample_rows: Sequence[MeasuredRow],
    search_rows: Sequence[MeasuredRow],
    evals: dict[str, int],
    prior: dict[str, float],
    arms: dict[str, bandit.Arm],
) -> dict[str, Any]:
    """summary.json's `screening`: cell verdicts and funding, pool and sample sizes, search spend per cell, posteriors."""
    searched: dict[str, int] = {}
    for r in search_rows:
        if r["family"] == "attack" and r["cell"]:
            searched[r["cell"]] = searched.get(r["cell"], 0) + 1
    reused = len(sample_rows) + len(search_rows) - evals["sample"] - evals["search"]
    return {
        **learned,
        "n_pool": n_pool,
        "n_sample": n_sample,
        "n_search": sum(searched.values()),
        "controls_reused": reused,
        "searched_per_cell": dict(sorted(searched.items())),
        "posterior_after_sample": prior,
        "posterior_break_rate": {k: a.mean for k, a in sorted(arms.items())},
    }
