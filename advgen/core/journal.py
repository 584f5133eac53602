"""One resume journal for every long job (attack, scan): OUT/journal/unit-NNNNN.json per unit of work.

A unit is reused only when its key and its content both check out:

- **Keyed by content.** A unit's key is a hash of the job's `salt` and the unit's own key. The salt
  covers everything that determines the rows and that a name does not pin down: the weights' hash
  (`module_digest`), the tokenizer's hash, the template text, every setting. So replacing a model
  directory's weights, or editing a template pack in place, recomputes every unit instead of
  reporting the old model's rows under the new name.
- **Verified by digest.** Every unit carries the sha256 of its rows: inline (`rows`, the attack) or
  in a part file beside it (`OUT/parts/part-NNNNN.jsonl`, the scan, whose rows can be large). A
  truncated, foreign or edited unit or part is recomputed, never trusted: a damaged journal costs
  time, not correctness.

Inline rows are written with Python's JSON (NaN kept as `NaN`), not the strict writer: the journal
is advgen's own checkpoint, and a resumed run must see exactly the floats a fresh one computed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.core import files
from advgen.core.types import AdvgenError


class Interrupted(AdvgenError):
    """Raised after `stop_after` computed units (tests simulate a killed run with it)."""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_of(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (anything else by its str)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def module_digest(module: Any) -> str:
    """sha256 of a torch module's state (names, dtypes, shapes and bytes): identifies the weights, not their path."""
    import torch

    h = hashlib.sha256()
    seen: set[tuple[Any, ...]] = set()
    for name, t in module.state_dict().items():
        view = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and view in seen:  # a wrapper's second name for the same weights (TransformerBridge: ~3 each)
            continue
        seen.add(view)
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # the buffer itself, no copy
    return h.hexdigest()[:32]


def _rows_text(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False)


def read_unit(path: Path, key: str) -> list[dict[str, Any]] | None:
    """An inline unit's rows if the file is intact and made for `key`; None means 'compute it again'."""
    doc = _entry(path, key)
    if doc is None or not isinstance(doc.get("rows"), list) or not all(isinstance(r, dict) for r in doc["rows"]):
        return None
    return doc["rows"] if doc.get("sha256") == digest(_rows_text(doc["rows"])) else None


def _entry(path: Path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = files.read_json(path, "journal unit")
    except AdvgenError:
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


class Journal:
    """OUT/journal/unit-NNNNN.json (and with `parts`, OUT/parts/part-NNNNN.jsonl): units keyed by content.

    `salt` is mixed into every key (see the module docstring); `stop_after` raises `Interrupted`
    before the unit after that many computed ones; `bar` (a tqdm bar) is advanced by `advance(rows)`
    for every inline unit, reused or computed.
    """

    def __init__(
        self,
        out: Path,
        resume: bool,
        stop_after: int | None = None,
        bar: Any = None,
        *,
        salt: str = "",
        parts: bool = False,
        advance: Callable[[Sequence[Any]], int] = len,
    ) -> None:
        self.dir, self.pdir = out / "journal", (out / "parts" if parts else None)
        if not resume:
            for d in (self.dir, self.pdir):
                if d is not None and d.exists():
                    shutil.rmtree(d)
        self.salt, self.stop_after, self.bar, self.advance = salt, stop_after, bar, advance
        self.n = self.computed = self.reused = 0

    def full_key(self, key: str) -> str:
        return key_of(self.salt, key) if self.salt else key

    def _path(self, u: int) -> Path:
        return self.dir / f"unit-{u:05d}.json"

    def check_stop(self) -> None:
        if self.stop_after is not None and self.computed >= self.stop_after:
            raise Interrupted(f"stopped after {self.computed} units (simulated interruption)")

    # ---- inline units (the attack) ----

    def unit(self, key: str, compute: Callable[[], list[Any]]) -> list[Any]:
        """The next unit's rows: reused if intact and made for this key and salt, else computed and recorded."""
        path, full = self._path(self.n), self.full_key(key)
        self.n += 1
        rows = read_unit(path, full)
        if rows is not None:
            self.reused += 1
        else:
            self.check_stop()
            rows = compute()
            doc = {"key": full, "rows": rows, "sha256": digest(_rows_text(rows))}
            files.atomic_write_text(path, json.dumps(doc, ensure_ascii=False) + "\n")
            self.computed += 1
        if self.bar is not None:
            self.bar.update(self.advance(rows))
        return rows

    # ---- units whose rows live in a part file (the scan) ----

    def part(self, u: int) -> Path:
        if self.pdir is None:
            raise AdvgenError("this journal keeps no part files")
        return self.pdir / f"part-{u:05d}.jsonl"

    def load_part(self, u: int, key: str) -> str | None:
        """Unit `u`'s part text if its entry names this key and salt and the part matches its sha256."""
        doc = _entry(self._path(u), self.full_key(key))
        if doc is None or not self.part(u).is_file():
            return None
        try:
            text = self.part(u).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text if doc.get("sha256") == digest(text) else None

    def save_part(self, u: int, key: str, text: str) -> None:
        """The rows first, then the entry: an entry always names a complete part."""
        files.atomic_write_text(self.part(u), text)
        entry = {"key": self.full_key(key), "rows": text.count("\n"), "sha256": digest(text)}
        files.atomic_write_text(self._path(u), files.dumps(entry) + "\n")
        self.computed += 1
