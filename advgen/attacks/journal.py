"""The attack run's journal: DIR/journal/unit-NNNNN.json, one unit of evaluated rows per file.

Units are written atomically and keyed by a hash of what they evaluate, so `--resume` reuses
exactly the units an interrupted run finished and recomputes the rest.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from advgen.core import files
from advgen.core.records import MeasuredRow
from advgen.core.types import AdvgenError


class Interrupted(AdvgenError):
    """Raised by `stop_after_units` (tests simulate a killed run with it)."""


REUSED = "control_reused_from"
"""Key in a row's `extra` marking a control row copied from an earlier evaluation of the same prompt (no model call)."""


def evaluated(rows: Sequence[Mapping[str, Any]]) -> int:
    """Model evaluations behind `rows`: reused control rows cost nothing."""
    return sum(REUSED not in r.get("extra", {}) for r in rows)




class Journal:
    """DIR/journal/unit-NNNNN.json: a unit's rows, keyed by a hash of what the unit evaluates."""

    def __init__(self, out: Path, resume: bool, stop_after: int | None = None, bar: Any = None) -> None:
        self.bar = bar
        """Optional tqdm bar advanced by the model evaluations of every unit, reused or computed."""
        self.dir = out / "journal"
        if not resume and self.dir.exists():
            shutil.rmtree(self.dir)
        self.n = 0
        self.computed = 0
        self.stop_after = stop_after

    def unit(self, key: str, compute: Callable[[], list[MeasuredRow]]) -> list[MeasuredRow]:
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
        return cast(list[MeasuredRow], rows)

    def _advance(self, rows: Sequence[Any]) -> None:
        if self.bar is not None:
            self.bar.update(evaluated(rows))


def _rows_digest(rows: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(files.dumps(rows).encode()).hexdigest()


def read_unit(path: Path, key: str) -> list[MeasuredRow] | None:
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
    return cast(list[MeasuredRow], rows)
