"""The attack's units queued ahead (`--backend ray`) give the rows of a run that measures each unit when asked.

A queue backend stands in for Ray here (it computes a queued unit when it is taken), so this checks
the plan itself: every clean, random-sample and baseline unit the attack measures was queued with
exactly its prompts, reads and batch size, nothing queued went unused, and the rows are equal.
tests/test_ray.py runs the same attack on real Ray actors.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from advgen.attacks import prefetch


class QueueBackend:
    name = "queue"

    def __init__(self, model: Any) -> None:
        self.model, self.jobs, self.n = model, {}, 0
        self.taken = self.mapped = self.discarded = 0

    def map(self, fn: Any, units: Iterable[Any]) -> Iterator[Any]:
        for u in units:
            self.mapped += 1
            yield fn(self.model, u)

    def prefetch(self, fn: Any, units: Iterable[Any]) -> list[int]:
        out = []
        for u in units:
            self.n += 1
            self.jobs[self.n] = (fn, u)
            out.append(self.n)
        return out

    def take(self, t: int) -> Any:
        fn, u = self.jobs.pop(t)
        self.taken += 1
        return fn(self.model, u)

    def discard(self, tickets: Iterable[int]) -> None:
        for t in list(tickets):
            self.discarded += self.jobs.pop(t, None) is not None

    def close(self) -> None:
        pass


@pytest.mark.slow  # 6-10 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_queued_units_give_the_same_rows_and_none_is_wasted(reference_model, tmp_path) -> None:
    from advgen.attacks.attack_setup import UNIT_PROMPTS, AttackConfig
    from advgen.attacks.search import run_attack
    from advgen.circuits.format import resolve_circuit

    circuit = resolve_circuit("reference-ioi", reference_model.n_layers, reference_model.n_heads)
    cfg = AttackConfig(budget=240, n_clean=40, seed=2, batch_size=16)
    here = run_attack(reference_model, circuit, cfg, tmp_path / "local")
    q = QueueBackend(reference_model)
    there = run_attack(reference_model, circuit, cfg, tmp_path / "queued", backend=q)
    assert there.rows == here.rows and there.evals == here.evals
    assert q.discarded == 0 and not q.jobs, "the plan queued units the attack never measured"
    n_base = -(-there.evals["baseline"] // UNIT_PROMPTS)
    assert q.taken >= 1 + n_base + 1, (q.taken, q.mapped)  # clean, baseline and sample units all came from the queue
    assert q.mapped >= 1  # the search's units (chosen from what it measured) are measured on demand


def test_resumed_run_queues_nothing(reference_model, tmp_path) -> None:
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "unit-00000.json").write_text("{}")
    from advgen.attacks.journal import Journal

    assert (
        prefetch.start(QueueBackend(reference_model), not any(Journal(tmp_path, True).dir.glob("unit-*.json")), "h", 32) is None
    )
    assert prefetch.start(object(), True, "h", 32) is None  # a backend that cannot queue measures on demand


def test_report_figures_draw_no_empty_legend() -> None:
    """A panel with no finite values (or a family with no points) draws no legend: no matplotlib UserWarning."""
    from advgen.outputs import plots

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pngs = [
            plots.png_b64(plots.ld_histograms({"all": {"attack": [float("nan")], "clean": []}, "m": {"attack": [1.0, 2.0]}})),
            plots.png_b64(plots.dose_response({}, "no points")),
        ]
    assert [str(w.message) for w in seen] == []
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs), "each figure still renders"
