"""Behaviour records of a generic task's circuit heads: where each head looks from END, and what it writes.

One forward over the task's clean prompts (`reads.read_heads`) gives every head's END attention
row and its direct logit attribution to answer - foil. The attention is summarised by what the
key token *is*, read from the token ids, never from a task's slot names, so the compiler's rules
work for any task: the token after an earlier copy of END's token (`copy_next`, where an
induction head looks), that earlier copy itself (`copy_self`), other mentions of the answer and
foil tokens, and the previous token. Records are bound to the model they were measured on
(`identity.model_identity`), as IOI's are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from advgen.circuits.format import Circuit
from advgen.circuits.identity import model_identity
from advgen.circuits.reads import read_heads
from advgen.core.types import Head, Prompt, PromptSet
from advgen.model.loading import LoadedModel

KIND = "task-attention/1"
"""`behaviour["kind"]` of a generic task record (IOI's records have no kind)."""
KEYS = ("copy_next", "copy_self", "answer_mention", "foil_mention", "previous")
"""The key groups a record measures END attention to (mean mass over prompts)."""


def key_groups(p: Prompt) -> dict[str, list[int]]:
    """Token indices of each key group in one prompt, from its token ids alone (END and BOS excluded)."""
    ids, end = p.token_ids, p.end
    copies = [j for j in range(1, end) if ids[j] == ids[end]]
    nxt = [j + 1 for j in copies if j + 1 < end]
    return {
        "copy_next": nxt,
        "copy_self": copies,
        "answer_mention": [j for j in range(1, end) if ids[j] == p.io_token and j not in nxt],
        "foil_mention": [j for j in range(1, end) if ids[j] == p.s_token and j not in nxt],
        "previous": [end - 1] if end > 1 else [],
    }


def position_names(p: Prompt, group: str) -> list[str]:
    """One position name per token of a key group in `p` (for attention reads; a token with two names is read once)."""
    want = set(key_groups(p)[group])
    by_index: dict[int, str] = {}
    for n, i in sorted(p.positions.items()):
        if i in want and n != "END":
            by_index.setdefault(i, n)
    return [by_index[i] for i in sorted(by_index)]


def measure_task_records(
    model: LoadedModel, prompts: PromptSet, heads: Sequence[Head], batch_size: int = 32
) -> dict[Head, dict[str, Any]]:
    """Per head: mean END attention to each key group and to each named position, and its mean DLA to answer - foil."""
    r = read_heads(model, prompts, heads, batch_size)
    ident = model_identity(model)
    out: dict[Head, dict[str, Any]] = {}
    for k, h in enumerate(heads):
        mass = {
            g: [
                float(row[h][idx].sum())
                for row, p in zip(r.rows, prompts, strict=True)
                for idx in [np.array(key_groups(p)[g], dtype=int)]
            ]
            for g in KEYS
        }
        by_pos: dict[str, list[float]] = {}
        for row, p in zip(r.rows, prompts, strict=True):
            for name, i in p.positions.items():
                if name != "END":
                    by_pos.setdefault(name, []).append(float(row[h][i]))
        dla = r.dla[:, k]
        out[h] = {
            "kind": KIND,
            "n": len(prompts),
            "attention": {g: float(np.mean(v)) for g, v in mass.items()},
            "attention_by_position": {n: float(np.mean(v)) for n, v in sorted(by_pos.items())},
            "dla": float(dla.mean()),
            "dla_sd": float(dla.std(ddof=1)) if len(dla) > 1 else 0.0,
            "measured_on": ident,
        }
    return out


def stale_task_records(circuit: Circuit, ident: Mapping[str, str]) -> str | None:
    """Why the circuit's heads lack usable task records on this model (None: every head has one measured on it)."""
    for h in circuit.heads:
        b = h.behaviour
        if not b or b.get("kind") != KIND:
            return f"head {h.head} has no task behaviour record"
        on = b.get("measured_on") or {}
        if (on.get("weights_sha256"), on.get("tokenizer_hash")) != (ident["weights_sha256"], ident["tokenizer_hash"]):
            return f"head {h.head}'s record was measured on another model ({on.get('model')!r})"
    return None


def ensure_task_records(
    model: LoadedModel, circuit: Circuit, prompts: PromptSet, batch_size: int = 32, force: bool = False
) -> tuple[Circuit, str | None]:
    """The circuit with task records measured on `model` (on `prompts`) where missing or stale, and why they were measured."""
    why = "asked for (--measure-behaviour)" if force else stale_task_records(circuit, model_identity(model))
    if why is None:
        return circuit, None
    recs = measure_task_records(model, prompts, [h.head for h in circuit.heads], batch_size)
    heads = tuple(replace(h, behaviour=recs[h.head]) for h in circuit.heads)
    prov = {**circuit.provenance, "behaviour_measured": {"why": why, "n_prompts": len(prompts)}}
    return replace(circuit, heads=heads, provenance=prov), why
