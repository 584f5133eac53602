"""The attack search for generic tasks: clean run -> stratified sample -> Thompson search -> random baseline -> labels.

The same phases and budget accounting as IOI's engine (`advgen.attacks.search`), on the task's
own prompts and the modes compiled from its circuit's records (`task_compiler`): budget = model
evaluations per side, both sides pay the clean run; the stratified random sample evaluates every
candidate with its control (the unbiased per-mode table); the search spends the rest on attacks,
a control only for a break, choosing cells by Thompson sampling rewarded by attributable breaks
(the control holds). Candidates with the same control prompt share one evaluation of it, as IOI's
do; the random baseline inserts random fillers (or random values of the compared slot) at the same point.
Work is journaled in units (`advgen.core.journal`), so `resume=True` continues an interrupted
run and writes the same bytes. Mode selection, the setup, measuring and rendering are `advgen.attacks.task_setup`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from advgen.attacks import bandit, task_compiler
from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.baseline import baseline_picks
from advgen.attacks.journal import evaluated
from advgen.attacks.sampling import pop_chunk, stratified
from advgen.attacks.shared_controls import control_held, control_rows, remember
from advgen.attacks.task_candidates import SAMPLE_DRAWS, TaskCandidate, candidates
from advgen.attacks.task_compiler import TaskMode
from advgen.attacks.task_edits import fillers, render_edit, render_mention_edit, taken
from advgen.attacks.task_labels import label_rows
from advgen.attacks.task_setup import (
    UNIT,
    Setup,
    chunks,
    key_positions,
    measure_rows,
    render_pair,
    salt_of,
    select,
    value_mentions,
)
from advgen.circuits.format import Circuit
from advgen.core import records
from advgen.core.journal import Journal, key_of
from advgen.core.types import Prompt
from advgen.model.loading import LoadedModel
from advgen.model.validate import Read
from advgen.tasks.lexicons import resolve_lexicons
from advgen.tasks.sample import iter_task_specs, render_spec
from advgen.tasks.spec import Task


@dataclass(frozen=True)
class TaskRun:
    rows: list[dict[str, Any]]
    evals: dict[str, int]
    modes: tuple[TaskMode, ...]
    skipped: dict[str, str]
    screening: dict[str, Any]


def _clean_reads(s: Setup, p: Prompt) -> list[Read]:
    return sorted({(h, "END", n) for m in s.modes for h in m.heads for n in key_positions(m, p)}, key=str)


def _run_clean(s: Setup) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in chunks(s.clean, UNIT):
        rows += s.journal.unit(
            key_of("clean", [p.text for p in chunk]),
            lambda ps=chunk: measure_rows(s, ps, [_clean_reads(s, p) for p in ps], [{"phase": "clean"}] * len(ps)),
        )
    return rows


def _tag(c: TaskCandidate, phase: str) -> dict[str, Any]:
    return {"phase": phase, "candidate": c.cid, "cell": c.cell}


def _controls(s: Setup, items: Sequence[tuple[TaskCandidate, Prompt]], phase: str) -> list[dict[str, Any]]:
    """A control row per item (`shared_controls.control_rows`): a shared control evaluated already is copied, not re-run."""

    def measure(todo: list[int]) -> list[dict[str, Any]]:
        it = [items[i] for i in todo]
        return measure_rows(
            s, [p for _, p in it], [task_compiler.signal_reads(c.mode, c.dose) for c, _ in it], [_tag(c, phase) for c, _ in it]
        )

    def fresh(c: TaskCandidate, p: Prompt) -> dict[str, Any]:
        return {**records.prompt_row(p), "params": p.extra.get("params", {}), **_tag(c, phase)}

    return control_rows(items, s.controls, measure, fresh)


def _unit(s: Setup, key: str, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A journal unit, whose evaluated shared controls are then known (computed and resumed units alike)."""
    got = s.journal.unit(key, compute)
    remember(s.controls, got)
    return got


def _evaluate_pairs(s: Setup, cands: Sequence[TaskCandidate]) -> list[dict[str, Any]]:
    """The random sample: attack and control of every candidate (a shared control once)."""
    rows: list[dict[str, Any]] = []
    for chunk in chunks(list(cands), UNIT // 2):

        def compute(chunk: Sequence[TaskCandidate] = chunk) -> list[dict[str, Any]]:
            pairs = [(c, *render_pair(s, c)) for c in chunk]
            att = measure_rows(
                s,
                [a for _, a, _ in pairs],
                [task_compiler.signal_reads(c.mode, c.dose) for c, _, _ in pairs],
                [_tag(c, "sample") for c, _, _ in pairs],
            )
            return att + _controls(s, [(c, k) for c, _, k in pairs], "sample")

        rows += _unit(s, key_of("sample", [c.cid for c in chunk]), compute)
    return rows


def _attack_then_control(s: Setup, chunk: Sequence[TaskCandidate], clean_ld: Sequence[float]) -> list[dict[str, Any]]:
    pairs = [(c, *render_pair(s, c)) for c in chunk]
    rows = measure_rows(
        s,
        [a for _, a, _ in pairs],
        [task_compiler.signal_reads(c.mode, c.dose) for c, _, _ in pairs],
        [_tag(c, "search") for c, _, _ in pairs],
    )
    hit = [(c, k) for (c, _, k), r in zip(pairs, rows, strict=True) if r["logit_diff"] < 0 < clean_ld[c.spec]]
    return rows + (_controls(s, hit, "search") if hit else [])


def _arms(
    s: Setup, pool: Sequence[TaskCandidate], sample_rows: Sequence[dict[str, Any]], clean_ld: Sequence[float]
) -> tuple[dict[str, bandit.Arm], dict[str, Any]]:
    """Priors from each cell's predicted shift, updated by the sample; falsified cells (and cells predicted to raise LD) get no
    budget."""
    natural = float(np.mean(np.array(clean_ld) < 0))
    cells = {c.cell: c for c in pool}
    arms = {
        k: bandit.prior_arm(k, bandit.prior_break_rate(clean_ld, c.mode.predicted_shift(c.dose), natural))
        for k, c in sorted(cells.items())
    }
    ctl = {r["candidate"]: r["logit_diff"] for r in sample_rows if r["family"] == "control"}
    index = {sp.pair_id: i for i, sp in enumerate(s.specs)}
    diffs: dict[str, list[float]] = {}
    for r in sample_rows:
        if r["family"] == "attack":
            brk = int(r["logit_diff"] < 0 < clean_ld[index[r["pair_id"]]])
            arms = bandit.observe(arms, r["cell"], brk * int(ctl[r["candidate"]] >= 0), 1, brk)
            diffs.setdefault(r["cell"], []).append(r["logit_diff"] - ctl[r["candidate"]])
    verdicts = {k: bandit.verdict(diffs.get(k, []), c.mode.expected_sign, s.cfg.seed)[0] for k, c in sorted(cells.items())}
    off = sorted(k for k, c in cells.items() if verdicts[k] == "falsified" or c.mode.expected_sign > 0)
    return bandit.falsify(arms, off), {"cell_verdicts": verdicts, "not_funded": off}


def _search(
    s: Setup,
    pool: Sequence[TaskCandidate],
    arms: dict[str, bandit.Arm],
    budget: int,
    sampled: set[str],
    clean_rows: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, bandit.Arm]]:
    """Thompson sampling over cells, valued per evaluation (a candidate whose control is evaluated already costs one).

    Within a cell, candidates whose control held go first, then clean prompts whose heads attend
    least to the rule's key; one whose control is known to break goes last (no attributable break possible).
    """
    clean_ld = [r["logit_diff"] for r in clean_rows]

    def fragile(c: TaskCandidate) -> float:
        hs = clean_rows[c.spec]["head_signals"]
        return sum(
            v
            for k, v in hs.items()
            if any(k.startswith(f"{h}:END->") for h in c.mode.heads)
            and k.split("->")[1] in key_positions(c.mode, s.clean[c.spec])
        )

    queues: dict[str, list[TaskCandidate]] = {}
    rank: dict[str, int] = {}
    for i, c in enumerate(sorted(pool, key=lambda c: (fragile(c), c.cid))):
        rank[c.cid] = i
        if c.cid not in sampled and clean_ld[c.spec] > 0:
            queues.setdefault(c.cell, []).append(c)
    rng = np.random.default_rng(int(key_of(s.journal.salt, "bandit")[:8], 16))
    rows: list[dict[str, Any]] = []
    spent = 0
    while budget - spent >= 2:
        held = control_held(s.controls)
        for v in queues.values():
            v.sort(key=lambda c: (c.unit in held and not held[c.unit], c.unit not in held, rank[c.cid]))
        free = {k: sum(held.get(c.unit, False) for c in v) for k, v in queues.items()}
        picks = bandit.choose(arms, {k: len(v) for k, v in queues.items()}, min(UNIT // 2, (budget - spent) // 2), rng, free)
        if not picks:
            break
        chunk = pop_chunk(queues, picks, held)
        got = _unit(s, key_of("search", [c.cid for c in chunk]), lambda chunk=chunk: _attack_then_control(s, chunk, clean_ld))
        rows += got
        spent += evaluated(got)
        ctl = {r["candidate"]: r["logit_diff"] for r in got if r["family"] == "control"}
        for r, c in zip([r for r in got if r["family"] == "attack"], chunk, strict=True):
            brk = int(r["logit_diff"] < 0 < clean_ld[c.spec])
            arms = bandit.observe(arms, c.cell, int(brk == 1 and ctl[c.cid] >= 0), 1, brk)
    return rows, arms


def _baseline(s: Setup, clean_ld: Sequence[float]) -> list[dict[str, Any]]:
    """One random perturbation per evaluation: a random dose's worth of random filler words (2 per pair) at the insertion
    point."""
    assert s.task.edits is not None
    rows: list[dict[str, Any]] = []
    for chunk in chunks(baseline_picks(s.cfg.seed, s.cfg.budget - s.cfg.n_clean, clean_ld), UNIT):

        def compute(chunk: Sequence[tuple[int, int]] = chunk) -> list[dict[str, Any]]:
            ps = []
            for k, i in chunk:
                rng = random.Random(f"{s.cfg.seed}:baseline:{k}")
                dose = rng.randint(1, s.task.edits.max_dose)  # type: ignore[union-attr]
                if value_mentions(s.task):  # random values of the compared slot's range, in the same mention form
                    vals = [rng.choice(s.task.answer.over) for _ in range(dose)]
                    ps.append(
                        render_mention_edit(
                            s.task,
                            s.specs[i],
                            s.clean[i],
                            vals,
                            s.model.tokenizer,
                            "baseline",
                            {"mode": "random", "params": {"dose": dose, "values": vals}},
                        )
                    )
                    continue
                fill = fillers(s.task, s.lex.words[s.task.edits.filler], taken(s.clean[i]), 2 * dose, rng)  # type: ignore[union-attr]
                ps.append(
                    render_edit(
                        s.task,
                        s.specs[i],
                        s.clean[i],
                        ("filler", "filler"),
                        fill,
                        dose,
                        s.model.tokenizer,
                        "baseline",
                        {"mode": "random", "params": {"dose": dose, "words": fill}},
                    )
                )
            return measure_rows(
                s,
                ps,
                [[] for _ in ps],
                [{"phase": "baseline", "candidate": f"{s.specs[i].pair_id}:random:{k}"} for k, i in chunk],
            )

        rows += s.journal.unit(key_of("baseline", [k for k, _ in chunk]), compute)
    return rows


def run_task_attack(
    model: LoadedModel,
    task: Task,
    circuit: Circuit,
    cfg: AttackConfig,
    out: Path,
    resume: bool = False,
    stop_after_units: int | None = None,
    progress: bool = False,
) -> TaskRun:
    """Every phase of a generic-task attack; every model evaluation is counted in `evals`."""
    cfg.check()
    modes, skipped = select(circuit, task, cfg)
    bar = tqdm(total=2 * cfg.budget - cfg.n_clean, desc="attack", unit="eval", disable=not progress)
    journal = Journal(out, resume, stop_after_units, bar, salt=salt_of(model, task, circuit, cfg))
    lex = resolve_lexicons(task, model.tokenizer)
    specs = list(iter_task_specs(task, lex, cfg.n_clean, cfg.seed))
    s = Setup(model, task, cfg, modes, lex, specs, [render_spec(task, sp, model.tokenizer) for sp in specs], journal)
    clean_rows = _run_clean(s)
    clean_ld = [r["logit_diff"] for r in clean_rows]
    pool = candidates(task, specs, modes)
    guided = cfg.budget - cfg.n_clean
    sampleable = [c for c in pool if c.draw < SAMPLE_DRAWS]
    sample = stratified(sampleable, max(1, min(len(sampleable), int(guided * cfg.sample_frac) // 2)), cfg.seed)
    sample_rows = _evaluate_pairs(s, sample)
    arms, learned = _arms(s, pool, sample_rows, clean_ld)
    prior = {k: a.mean for k, a in sorted(arms.items())}
    search_rows, arms = _search(s, pool, arms, guided - evaluated(sample_rows), {c.cid for c in sample}, clean_rows)
    base_rows = _baseline(s, clean_ld)
    bar.total = bar.n
    bar.close()
    evals = {
        "clean": len(clean_rows),
        "sample": evaluated(sample_rows),
        "search": evaluated(search_rows),
        "baseline": len(base_rows),
    }
    searched: dict[str, int] = {}
    for r in search_rows:
        if r["family"] == "attack":
            searched[r["cell"]] = searched.get(r["cell"], 0) + 1
    screening = {
        **learned,
        "n_pool": len(pool),
        "n_sample": len(sample),
        "n_search": sum(searched.values()),
        "controls_reused": len(sample_rows) + len(search_rows) - evals["sample"] - evals["search"],
        "searched_per_cell": dict(sorted(searched.items())),
        "posterior_after_sample": prior,
        "posterior_break_rate": {k: a.mean for k, a in sorted(arms.items())},
    }
    rows = label_rows([*clean_rows, *sample_rows, *search_rows, *base_rows], modes)
    return TaskRun(rows, evals, modes, skipped, screening)
