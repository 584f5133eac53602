"""A mode's internal signal on result rows: what to read, its value, fragility, and "explained" against the control.

"Explained" compares an attack with its own matched control, never with the clean prompt: the
control has the same added words, so a signal that moves only because tokens were added moves
in both. The threshold is relative: EXPLAINED_SD standard deviations of the signal over the
mode's controls. A key slot that one of the two compared prompts lacks does not count, except in
name-group signals (every mention of one name), where a missing mention rightly adds no mass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from advgen.attacks.failure_mode import FailureMode, Signal
from advgen.circuits.format import Circuit
from advgen.core.records import AttackRow, MeasuredRow
from advgen.model.validate import Read, read_key

EXPLAINED_SD = 0.5
"""A break is explained when signal(attack) - signal(control), in the predicted direction, exceeds this many SDs of the signal
over the mode's controls."""


def signal_reads(mode: FailureMode, circuit: Circuit) -> list[Read]:
    s = mode.signal_for(circuit)
    return [] if s is None else [(h, s.query, k) for h in s.heads_in(circuit) for k in (*s.keys, *s.minus)]


def signal_doc(mode: FailureMode, circuit: Circuit) -> dict[str, Any]:
    s = mode.signal_for(circuit)
    return {"signal": s.describe() if s else None, "heads": [str(h) for h in s.heads_in(circuit)] if s else []}


def signal_value(sig: Signal, circuit: Circuit, hs: Mapping[str, float], other: Mapping[str, float] | None = None) -> float:
    """Mean over the signal's heads of mass(keys) - mass(minus); with `other`, non-group keys count only if read in both."""

    def mass(head: Any, keys: Sequence[str]) -> float:
        tot = 0.0
        for k in keys:
            name = read_key(head, sig.query, k)
            if not sig.group and other is not None and name not in other:
                continue
            tot += hs.get(name, 0.0)
        return tot

    heads = sig.heads_in(circuit)
    signs = sig.signs or (1,) * len(heads)
    vals = [sign * (mass(h, sig.keys) - mass(h, sig.minus)) for h, sign in zip(heads, signs, strict=True)]
    return float(np.mean(vals)) if vals else 0.0


def fragility(mode: FailureMode, circuit: Circuit, clean_hs: Mapping[str, float]) -> float:
    """How far the clean prompt's signal already leans the way the attack pushes it (higher = more fragile)."""
    s = mode.signal_for(circuit)
    return 0.0 if s is None else s.direction * signal_value(s, circuit, clean_hs)


def thresholds(rows: Sequence[MeasuredRow], circuit: Circuit, modes: Sequence[FailureMode]) -> dict[str, float]:
    """Per mode: EXPLAINED_SD x the SD of its signal over its control prompts (inf without two controls)."""
    out = {}
    for m in modes:
        s = m.signal_for(circuit)
        vals = (
            [signal_value(s, circuit, r["head_signals"]) for r in rows if r["family"] == "control" and r["mode"] == m.name]
            if s
            else []
        )
        out[m.name] = EXPLAINED_SD * float(np.std(vals, ddof=1)) if len(vals) > 1 else float("inf")
    return out


def label_rows(rows: Sequence[MeasuredRow], circuit: Circuit, modes: Sequence[FailureMode]) -> list[AttackRow]:
    """New labelled rows: clean LD, is_break, the paired signal shift and explained (for breaks)."""
    clean = {r["pair_id"]: r for r in rows if r["family"] == "clean"}
    ctl = {r["candidate"]: r for r in rows if r["family"] == "control"}
    by_name = {m.name: m for m in modes}
    tau = thresholds(rows, circuit, modes)
    out: list[AttackRow] = []
    for r in rows:
        c = clean[r["pair_id"]]
        is_break = bool(r["family"] in ("attack", "baseline") and r["logit_diff"] < 0 < c["logit_diff"])
        shift: float | None = None
        explained: bool | None = None
        shared = control_broke(r, ctl) if is_break and r["family"] == "attack" else None
        if r["family"] == "attack" and r["mode"] in by_name:
            sig = by_name[r["mode"]].signal_for(circuit)
            k = ctl.get(r["candidate"])
            if sig is not None and k is not None:
                shift = sig.direction * (
                    signal_value(sig, circuit, r["head_signals"], k["head_signals"])
                    - signal_value(sig, circuit, k["head_signals"], r["head_signals"])
                )
                if is_break:
                    explained = bool(shift > tau[str(r["mode"])])
        out.append(
            {
                **r,
                "clean_logit_diff": c["logit_diff"],
                "is_break": is_break,
                "explained": explained,
                "signal_shift": shift,
                "control_breaks": shared,
            }
        )
    return out


def control_broke(attack: MeasuredRow, controls: Mapping[str | None, MeasuredRow]) -> bool:
    """Whether a guided break's matched control also has LD < 0 (a break the edit alone explains).

    The control is the candidate's own control row (same clean prompt, site and sentences; a reused
    control is a row per candidate too), so it is the one the mode's verdict compares against.
    """
    k = controls.get(attack["candidate"])
    if k is None or k["pair_id"] != attack["pair_id"]:
        raise ValueError(f"guided break {attack['candidate']!r} has no matched control on clean prompt {attack['pair_id']!r}")
    return bool(k["logit_diff"] < 0)
