"""What every phase of a generic-task attack shares: which compiled modes run, the run's setup, measuring and rendering.

Whether a task can be attacked at all (checked before any model loads), the compiled modes its
circuit's records imply and `--modes` selects, the setup the phases of `advgen.attacks.task_attack`
pass around, measuring prompts into result rows, rendering a candidate's attack and control (the
same fillers or values, differing only where the mode's kinds differ), and the journal's salt.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advgen.attacks import task_compiler
from advgen.attacks.attack_setup import AttackConfig
from advgen.attacks.task_candidates import TaskCandidate, foil_side, value_draws
from advgen.attacks.task_compiler import TaskMode
from advgen.attacks.task_edits import fillers, render_edit, render_mention_edit, taken
from advgen.circuits.format import Circuit
from advgen.circuits.task_records import position_names
from advgen.core import records
from advgen.core.journal import Journal, key_of, module_digest
from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import Read, measure
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.lexicons import Lexicons
from advgen.tasks.sample import TaskSpec
from advgen.tasks.spec import Task

UNIT = 64
"""Prompts per journal unit (attack + control pairs: half as many candidates)."""


@dataclass(frozen=True)
class Setup:
    model: LoadedModel
    task: Task
    cfg: AttackConfig
    modes: tuple[TaskMode, ...]
    lex: Lexicons
    specs: list[TaskSpec]
    clean: list[Prompt]
    journal: Journal
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Evaluated shared controls by prompt text (`shared_controls.remember`), from computed and resumed journal units alike."""


def check_attackable(task: Task) -> None:
    """Refuse, before any model loads, a task the compiled rules cannot attack (named reason)."""
    if task.edits is None:
        raise AdvgenError(f"task {task.name!r} ({task.source}) defines no edits, so no failure mode can be compiled for it")
    if task.sets and not (task.edits.mention and task.answer.compare):
        raise AdvgenError(
            f"task {task.name!r} scores answer and foil token sets; its set form of attack inserts values of the "
            "compared slot, which needs a set answer rule (compare) and 'edits: {mention: ...}' (e.g. \"{XX}{E}\")"
        )


def value_mentions(task: Task) -> bool:
    """Whether the task's modes insert values of its set rule's compared slot (else `{E1} {E2}` pairs)."""
    return bool(task.sets and task.edits and task.edits.mention and task.answer.compare)


def compiled_for(circuit: Circuit, task: Task) -> tuple[list[TaskMode], dict[str, str]]:
    """Every mode the circuit's records imply for `task`: value distractors for a set rule with mentions, else the pair rules."""
    check_attackable(task)
    assert task.edits is not None
    if value_mentions(task):
        return task_compiler.compile_distractor(circuit, task.answer.slot, task.edits.max_dose)
    return task_compiler.compile_task_modes(circuit, task.edits.max_dose)


def select(circuit: Circuit, task: Task, cfg: AttackConfig) -> tuple[tuple[TaskMode, ...], dict[str, str]]:
    """The compiled modes `cfg.modes` asks for (None or "compiled": all of them)."""
    check_attackable(task)
    assert task.edits is not None
    modes, skipped = compiled_for(circuit, task)
    want = set(cfg.modes or ("compiled",))
    unknown = want - {"compiled", *(m.name for m in modes), *skipped}
    if unknown:
        raise AdvgenError(
            f"unknown failure mode(s) {sorted(unknown)} for task {task.name!r}; compiled: {[m.name for m in modes]}"
        )
    chosen = tuple(m for m in modes if "compiled" in want or m.name in want)
    if not chosen:
        raise AdvgenError(
            f"circuit {circuit.name!r} implies no failure mode for task {task.name!r}: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return chosen, skipped


def chunks(seq: Sequence[Any], k: int) -> list[Sequence[Any]]:
    return [seq[i : i + k] for i in range(0, len(seq), k)]


def measure_rows(
    s: Setup, prompts: Sequence[Prompt], reads: Sequence[Sequence[Read]], tags: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    m = measure(s.model, PromptSet(tuple(prompts), tokenizer_hash(s.model.tokenizer)), list(reads), s.cfg.batch_size)
    return [
        {
            **records.prompt_row(p),
            **records.metric_row(met),
            "mode": p.extra.get("mode"),
            "cell": tag.get("cell"),
            "params": p.extra.get("params", {}),
            "head_signals": sig,
            "phase": tag["phase"],
            "candidate": tag.get("candidate"),
        }
        for p, met, sig, tag in zip(prompts, m.metrics, m.signals, tags, strict=True)
    ]


def key_positions(mode: TaskMode, p: Prompt) -> list[str]:
    """The positions of the mode's key in `p`: a key group's tokens, or (a value-mention mode) the compared slot itself."""
    if mode.edit == "mention":
        return [mode.key] if mode.key in p.positions else []
    return position_names(p, mode.key)


def _render_mentions(s: Setup, c: TaskCandidate) -> tuple[Prompt, Prompt]:
    sp, clean = s.specs[c.spec], s.clean[c.spec]
    draws = value_draws(foil_side(s.task, dict(sp.values), c.gap), c.dose, random.Random(f"{s.cfg.seed}:{c.unit}:{c.gap}"))
    if c.draw >= len(draws):
        raise AdvgenError(f"candidate {c.cid!r}: {c.gap} foil-side values give {len(draws)} distinct draws of {c.dose}")
    vals = draws[c.draw]
    same = [sp.values[s.task.answer.slot]] * c.dose

    def one(v: list[str], kind: str, family: str) -> Prompt:
        return render_mention_edit(
            s.task,
            sp,
            clean,
            v,
            s.model.tokenizer,
            family,
            {"mode": c.mode.name, "params": {"dose": c.dose, "kind": kind, "values": v}},
        )

    return one(vals, "foil_side", "attack"), one(same, "same", "control")


def render_pair(s: Setup, c: TaskCandidate) -> tuple[Prompt, Prompt]:
    """The candidate's attack and control: the same fillers, differing only where the mode's kinds differ."""
    sp, clean = s.specs[c.spec], s.clean[c.spec]
    if c.mode.edit == "mention":
        return _render_mentions(s, c)
    rng = random.Random(f"{s.cfg.seed}:{sp.pair_id}:{c.mode.name}:{c.dose}")
    fill = fillers(s.task, s.lex.words[s.task.edits.filler], taken(clean), 2 * c.dose, rng)  # type: ignore[union-attr]
    params = {"dose": c.dose}

    def one(kinds: tuple[str, str], family: str) -> Prompt:
        extra = {"mode": c.mode.name, "params": {**params, "e1": kinds[0], "e2": kinds[1]}}
        return render_edit(s.task, sp, clean, kinds, fill, c.dose, s.model.tokenizer, family, extra)

    return one(c.mode.attack, "attack"), one(c.mode.control, "control")


def salt_of(model: LoadedModel, task: Task, circuit: Circuit, cfg: AttackConfig) -> str:
    """Everything that determines the rows beyond unit keys: weights, tokenizer, the task's templates and lexicons, circuit,
    settings."""
    t = [(x.id, x.text) for x in task.templates]
    return key_of(
        "task-attack",
        module_digest(model.hf_model),
        tokenizer_hash(model.tokenizer),
        task.describe(),
        t,
        {k: v if isinstance(v, str) else list(v) for k, v in task.lexicons.items()},
        circuit.to_dict(),
        dataclasses.asdict(cfg),
    )
