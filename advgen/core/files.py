"""Write and read files atomically: the bottom layer every stage writes through.

Every file is written to a temporary name in its target directory and renamed into place, so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.core.types import AdvgenError

POSITION_KEYS = ("IO", "S1", "S1+1", "S2", "END")


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def jsonl_text(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(dumps(r) + "\n" for r in rows)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Flat CSV: positions become pos_<slot> columns, nested values JSON strings."""
    flat = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k == "positions":
                d.update({f"pos_{s}": v.get(s, "") for s in POSITION_KEYS})
            elif isinstance(v, (dict, list)):
                d[k] = dumps(v)
            else:
                d[k] = v
        flat.append(d)
    cols: list[str] = []
    for d in flat:
        cols += [c for c in d if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue()


def read_jsonl(path: str | Path, required: Sequence[str] = ("text", "io", "s")) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a missing field or bad line is an error naming file and line."""
    path = Path(path)
    if not path.exists():
        raise AdvgenError(f"file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AdvgenError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise AdvgenError(f"{path}:{n}: expected a JSON object per line")
            missing = [k for k in required if k not in row]
            if missing:
                raise AdvgenError(f"{path}:{n}: row is missing field(s) {missing}")
            rows.append(row)
    if not rows:
        raise AdvgenError(f"{path}: no rows")
    return rows
