"""Labels of a generic-task attack's rows: clean LD, break, control break, the paired signal shift and explained.

Kept apart from the search (`task_attack`) because the tables and tests label rows without
running anything; the definitions are IOI's (`advgen.attacks.signals`), read through the task's
compiled modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from advgen.attacks import task_compiler
from advgen.attacks.journal import REUSED
from advgen.attacks.signals import EXPLAINED_SD
from advgen.attacks.task_compiler import TaskMode
from advgen.core.types import AdvgenError


def label_rows(rows: Sequence[dict[str, Any]], modes: Sequence[TaskMode]) -> list[dict[str, Any]]:
    """Clean LD, is_break, control_breaks, the paired signal shift and explained (as `advgen.attacks.signals` defines them for
    IOI)."""
    clean = {r["pair_id"]: r for r in rows if r["family"] == "clean"}
    ctl = {r["candidate"]: r for r in rows if r["family"] == "control"}
    by_name = {m.name: m for m in modes}

    def sig(r: dict[str, Any]) -> float:
        return task_compiler.signal_value(by_name[r["mode"]], r["head_signals"], int(r["params"]["dose"]))

    tau = {}
    for m in modes:
        vals = [sig(r) for r in rows if r["family"] == "control" and r["mode"] == m.name and REUSED not in r.get("extra", {})]
        tau[m.name] = EXPLAINED_SD * float(np.std(vals, ddof=1)) if len(vals) > 1 else float("inf")
    out = []
    for r in rows:
        c = clean[r["pair_id"]]
        is_break = bool(r["family"] in ("attack", "baseline") and r["logit_diff"] < 0 < c["logit_diff"])
        shift = explained = shared = None
        if r["family"] == "attack":
            k = ctl.get(r["candidate"])
            if is_break and k is None:
                raise AdvgenError(f"guided break {r['candidate']!r} has no matched control")
            if k is not None:  # a value mention is read alike in attack and control (only its value differs): against clean (0)
                shift = sig(r) - (0.0 if by_name[r["mode"]].edit == "mention" else sig(k))
                explained = bool(shift > tau[r["mode"]]) if is_break else None
                shared = bool(k["logit_diff"] < 0) if is_break else None
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
