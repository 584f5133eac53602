"""A search that learns where breaks are: Thompson sampling over failure-mode cells.

Each cell (one point of a mode's parameter grid) is an arm with a Beta belief about its rate of
attributable breaks: breaks whose matched control does not break. A break the control shares was
done by the edit (its length, its distraction), not by the mechanism the circuit predicts, so it
is no evidence for the cell; it still costs an evaluation (its control), so every break is
counted for the cost. The prior comes from the circuit's prediction (for compiled modes: the share of clean
prompts the records' predicted LD shift would push below 0), the stratified random sample and
every searched attack update it, and a cell whose paired attack - control difference on the
random sample has the opposite sign to the prediction is falsified and gets no more budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from advgen.model.metrics import bootstrap_ci

PRIOR_STRENGTH = 4.0
"""Pseudo-observations the prediction is worth: a handful of real attacks outweigh it."""
PRIOR_FLOOR = 0.005


@dataclass(frozen=True)
class Arm:
    key: str
    a: float
    """Prior pseudo-breaks."""
    b: float
    """Prior pseudo-non-breaks."""
    breaks: int = 0
    """Attributable breaks observed (the reward): the control did not break."""
    tries: int = 0
    falsified: bool = False
    raw_breaks: int = 0
    """Every break observed, attributable or not: each one costs its control's evaluation."""

    @property
    def mean(self) -> float:
        """Posterior mean rate of attributable breaks."""
        return (self.a + self.breaks) / (self.a + self.b + self.tries)

    @property
    def raw_mean(self) -> float:
        """Posterior mean rate of breaks of any kind (what a candidate's control costs on average)."""
        return (self.a + self.raw_breaks) / (self.a + self.b + self.tries)


def prior_arm(key: str, p0: float, strength: float = PRIOR_STRENGTH) -> Arm:
    p = min(max(p0, PRIOR_FLOOR), 1 - PRIOR_FLOOR)
    return Arm(key, strength * p, strength * (1 - p))


def prior_break_rate(clean_ld: Sequence[float], shift: float | None, natural: float) -> float:
    """Share of clean prompts with LD > 0 that LD + shift would push below 0 (no shift known: the natural rate)."""
    pos = np.array([x for x in clean_ld if x > 0])
    if shift is None or not len(pos):
        return natural
    return float(np.mean(pos + shift < 0))


def observe(arms: Mapping[str, Arm], key: str, breaks: int, tries: int, raw_breaks: int | None = None) -> dict[str, Arm]:
    """Add `tries` attacks with `breaks` attributable breaks and `raw_breaks` breaks in all (default: all attributable)."""
    raw = breaks if raw_breaks is None else raw_breaks
    if not 0 <= breaks <= raw <= tries:
        raise ValueError(f"observe {key}: need 0 <= attributable {breaks} <= breaks {raw} <= tries {tries}")
    out = dict(arms)
    a = out[key]
    out[key] = replace(a, breaks=a.breaks + breaks, tries=a.tries + tries, raw_breaks=a.raw_breaks + raw)
    return out


def falsify(arms: Mapping[str, Arm], keys: Sequence[str]) -> dict[str, Arm]:
    return {k: replace(a, falsified=True) if k in keys else a for k, a in arms.items()}


def choose(
    arms: Mapping[str, Arm], available: Mapping[str, int], k: int, rng: np.random.Generator, free: Mapping[str, int] | None = None
) -> list[str]:
    """k Thompson draws: each draw samples every live arm's attributable break rate and takes the most per evaluation.

    A candidate costs its attack, plus its control if it breaks at all (attributable or not, at
    the arm's posterior mean break rate r): theta / (1 + r) attributable breaks per evaluation,
    unless its control was evaluated already (`free`: how many of an arm's next candidates are
    such), then theta. Until issue 28 the reward was every break and the cost theta / (1 + theta)
    from the same draw.
    """
    left = {key: n for key, n in available.items() if n > 0 and key in arms and not arms[key].falsified}
    gratis = dict(free or {})
    picks: list[str] = []
    keys = sorted(left)
    for _ in range(k):
        live = [key for key in keys if left[key] > 0]
        if not live:
            break
        theta = [rng.beta(arms[key].a + arms[key].breaks, arms[key].b + arms[key].tries - arms[key].breaks) for key in live]
        value = [th if gratis.get(key, 0) > 0 else th / (1 + arms[key].raw_mean) for key, th in zip(live, theta, strict=True)]
        best = live[int(np.argmax(value))]
        picks.append(best)
        left[best] -= 1
        gratis[best] = gratis.get(best, 0) - 1
    return picks


def verdict(diffs: Sequence[float], expected_sign: int, seed: int) -> tuple[str, dict[str, float] | None]:
    """confirmed / falsified / inconclusive from the bootstrap 95 % interval of paired differences."""
    if len(diffs) < 2:
        return "inconclusive", None
    ci = bootstrap_ci(list(diffs), seed).as_dict()
    if ci["high"] < 0 or ci["low"] > 0:
        return ("confirmed" if (ci["mean"] > 0) == (expected_sign > 0) else "falsified"), ci
    return "inconclusive", ci
