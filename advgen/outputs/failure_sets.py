"""The model's mistakes (and, beside them, its successes) read from a run directory, a scan or a JSONL.

`check-claim --failures PATH` asks whether the circuit reproduces the model's errors. PATH is:
- an `advgen attack` directory: errors = its breaks (attack LD < 0 while the clean prompt's LD > 0),
  successes = the attack prompts the model withstood (LD > 0), the same edits without the failure;
- an `advgen scan` directory: errors = its failing prompts (adversarial/results.jsonl), successes =
  the scanned prompts with LD > 0 (parts/*.jsonl);
- an `advgen run` directory or any validated JSONL (rows with text, io, s, positions, logit_diff):
  errors = rows with LD < 0, successes = rows with LD > 0.
Each group is capped at `cap` rows by a seeded sample (file order kept), and the counts before the
cap are recorded. The bytes read are hashed, so a run directory's identity changes with its inputs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core.files import read_jsonl_lines
from advgen.core.rundir import check_complete
from advgen.core.types import AdvgenError

Located = tuple[str, dict[str, Any]]
"""(file:line, row)."""
ROW_FIELDS = ("text", "io", "s", "positions", "logit_diff")
NUM = (int, float)
TYPES = {"text": (str,), "io": (str,), "s": (str,), "positions": (dict,), "logit_diff": NUM}


@dataclass(frozen=True)
class FailureSource:
    """One failure set: which rows are the model's errors, which its successes, and how they were chosen."""

    path: str
    kind: str
    """"attack", "scan", "run" or "jsonl"."""
    errors: tuple[Located, ...]
    successes: tuple[Located, ...]
    n_errors_total: int
    n_successes_total: int
    meaning: str
    """What the two groups are, in words (written beside the figures)."""
    digest: str
    """sha256 of every byte read."""


def _rows(path: Path, h: Any) -> list[Located]:
    h.update(path.read_bytes())
    got = read_jsonl_lines(path, required=ROW_FIELDS, types=TYPES, allow_empty=True)
    return [(f"{path}:{line}", row) for _, line, row in got]


def _cap(rows: list[Located], cap: int, seed: int) -> tuple[Located, ...]:
    if len(rows) <= cap:
        return tuple(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), cap))
    return tuple(rows[i] for i in keep)


def _sampled(rows: Iterable[Located], cap: int, seed: int) -> tuple[list[Located], int]:
    """A seeded uniform sample of at most cap rows from a stream (reservoir), in stream order, and the stream's length."""
    rng, keep, n = random.Random(seed), [], 0
    for r in rows:
        if len(keep) < cap:
            keep.append((n, r))
        else:
            j = rng.randrange(n + 1)
            if j < cap:
                keep[j] = (n, r)
        n += 1
    return [r for _, r in sorted(keep, key=lambda x: x[0])], n


def read_failures(path: str | Path, cap: int = 300, seed: int = 0) -> FailureSource:
    """The failure set at `path` (attack, scan or run directory, or a JSONL file); a bad row names file and line."""
    p, h = Path(path), hashlib.sha256()
    if cap < 1:
        raise AdvgenError(f"--failures-max must be >= 1, got {cap}")
    if not p.exists():
        raise AdvgenError(f"--failures {p}: not found (pass an attack, scan or run directory, or a validated JSONL)")
    if p.is_file():
        rows, kind, meaning = _rows(p, h), "jsonl", "errors = rows with LD < 0; successes = rows with LD > 0"
        errors, successes = [r for r in rows if r[1]["logit_diff"] < 0], [r for r in rows if r[1]["logit_diff"] > 0]
    elif (p / "adversarial" / "results.jsonl").is_file():
        check_complete(p)
        kind, meaning = (
            "scan",
            "errors = the scan's failing prompts (LD < 0); successes = scanned prompts with LD > 0 (seeded sample)",
        )
        errors = _rows(p / "adversarial" / "results.jsonl", h)
        parts = sorted((p / "parts").glob("*.jsonl"))
        successes, n_s = _sampled((r for part in parts for r in _rows(part, h) if r[1]["logit_diff"] > 0), cap, seed)
        src = FailureSource(str(p), kind, _cap(errors, cap, seed), tuple(successes), len(errors), n_s, meaning, h.hexdigest())
        return _nonempty(src)
    elif (p / "results.jsonl").is_file():
        check_complete(p)
        rows = _rows(p / "results.jsonl", h)
        if any("is_break" in r for _, r in rows):
            kind, meaning = (
                "attack",
                (
                    "errors = the attack's breaks (attack LD < 0, clean LD > 0); "
                    "successes = attack prompts the model withstood (LD > 0)"
                ),
            )
            attacks = [r for r in rows if r[1].get("family") == "attack"]
            errors = [r for r in attacks if r[1].get("is_break") is True]
            successes = [r for r in attacks if r[1]["logit_diff"] > 0]
        else:
            kind, meaning = "run", "errors = rows with LD < 0; successes = rows with LD > 0"
            errors, successes = [r for r in rows if r[1]["logit_diff"] < 0], [r for r in rows if r[1]["logit_diff"] > 0]
    else:
        raise AdvgenError(
            f"--failures {p}: a directory without results.jsonl or adversarial/results.jsonl "
            "(pass an attack, scan or run directory, or a validated JSONL)"
        )
    src = FailureSource(
        str(p), kind, _cap(errors, cap, seed), _cap(successes, cap, seed + 1), len(errors), len(successes), meaning, h.hexdigest()
    )
    return _nonempty(src)


def _nonempty(src: FailureSource) -> FailureSource:
    if not src.errors:
        raise AdvgenError(f"--failures {src.path}: no errors of the model in it ({src.meaning}); nothing to agree on")
    return src


def source_meta(src: FailureSource) -> dict[str, Any]:
    """What claims.json records about a failure set: where, what kind, what the groups mean, how many, which bytes."""
    return {
        "path": src.path,
        "kind": src.kind,
        "meaning": src.meaning,
        "n_errors_total": src.n_errors_total,
        "n_successes_total": src.n_successes_total,
        "n_errors_used": len(src.errors),
        "n_successes_used": len(src.successes),
        "sha256": src.digest,
    }
