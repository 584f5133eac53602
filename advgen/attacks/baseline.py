"""Random perturbations with no circuit knowledge: the yardstick for circuit-guided yield.

Three kinds, drawn uniformly: grammar sentences with random names at a random insertion point
(a neutral sentence may name anyone, IO and S included; a sentence placing its name elsewhere
gets a fresh name, since "S stayed at home" would contradict the final clause); a random renaming
of IO; the other name order. Each is one model evaluation, compared with the same clean prompt as
the guided attacks, and passes the same unambiguity check against its unperturbed reference.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from advgen.attacks.checks import check_unambiguous
from advgen.attacks.failure_mode import Parts, applicable_template
from advgen.core.types import Prompt
from advgen.prompts.datasets import Spec
from advgen.prompts.lexicon import Lexicon
from advgen.prompts.sentences import SentenceBank, name_slot
from advgen.prompts.templates import Template, render

KINDS = ("sentence", "name_swap", "order_swap")


def random_perturbation(
    spec: Spec, rng: random.Random, bank: SentenceBank, lexicon: Lexicon, tokenizer: Any, tag: str
) -> tuple[Prompt, Prompt]:
    """One random perturbation of a clean spec and its unperturbed reference (same names and order), both rendered."""
    kind = rng.choice(KINDS)
    names = lexicon.name_texts
    params: dict[str, Any] = {"kind": kind}
    fill, order, text = spec.fill, spec.order, spec.template.in_order(spec.order)
    if kind == "sentence" and applicable_template(spec):
        parts = Parts.of(spec)
        dose = rng.randint(1, 3)
        pool: Sequence[str] = bank.neutral + bank.away
        sents = [rng.choice(pool) for _ in range(dose)]
        fresh = [n for n in names if n not in (spec.fill.io, spec.fill.s)]
        xs = [rng.choice(fresh if s in bank.away else names) for s in sents]
        slotted = [name_slot(s, "X" if i == 0 else f"X{i + 1}") for i, s in enumerate(sents)]
        where = rng.choice(["before", "after"] if parts.head is not None else ["before"])
        text = parts.insert(before=slotted) if where == "before" else parts.insert(after=slotted)
        fill = replace(fill, x=tuple(xs))
        params.update(dose=dose, insertion=where, sentences=sents, names=xs)
    elif kind == "name_swap":
        new = rng.choice([n for n in names if n not in (spec.fill.io, spec.fill.s)])
        fill = replace(fill, io=new)
        params.update(old_io=spec.fill.io, new_io=new)
    else:
        params["kind"] = "order_swap"
        order = "ABBA" if spec.order == "BABA" else "BABA"
        text = spec.template.in_order(order)
        params.update(order=order)
    t = Template(id=f"{spec.template.id}+random", text=text, pack="baseline", source=f"baseline {tag}")
    p = render(
        t, t.written_order, fill, tokenizer, family="baseline", pair_id=spec.pair_id, extra={"mode": "random", "params": params}
    )
    ref = render(spec.template, order, replace(fill, x=()), tokenizer, family="clean", pair_id=spec.pair_id)
    return replace(p, order=order), ref


def baseline_picks(seed: int, n: int, clean_ld: Sequence[float]) -> list[tuple[int, int]]:
    """(k, clean index) of the baseline's n perturbations, drawn among the clean prompts with LD > 0 (all, when none)."""
    brng = random.Random(f"{seed}:baseline")
    eligible = [i for i, ld in enumerate(clean_ld) if ld > 0] or list(range(len(clean_ld)))
    return [(k, brng.choice(eligible)) for k in range(n)]


def baseline_prompts(
    picks: Sequence[tuple[int, int]], specs: Sequence[Spec], seed: int, bank: SentenceBank, lexicon: Lexicon, tokenizer: Any
) -> list[Prompt]:
    """The picks' perturbations, each checked for ambiguity; a pure function of its inputs (one seeded rng per
    prompt), so rendering a unit ahead of time (`--backend ray`) and again in its turn gives the same prompts."""
    out = []
    for k, i in picks:
        p, reference = random_perturbation(specs[i], random.Random(f"{seed}:baseline:{k}"), bank, lexicon, tokenizer, f"#{k}")
        check_unambiguous(reference, p, p)
        out.append(p)
    return out
