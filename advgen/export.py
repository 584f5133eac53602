"""Write and read run files: JSONL / CSV rows, manifest and summary, always atomically.

Every file is written to a temporary name in its target directory and renamed into place, so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from advgen.types import AdvgenError, Evaluation, Prompt, PromptMetrics

PROMPT_FIELDS = ("text", "io", "s", "template_id", "order", "family", "pair_id", "positions", "extra")
METRIC_FIELDS = ("logit_diff", "io_logit", "s_logit", "io_prob", "s_prob", "io_rank", "s_beats_io")
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


def prompt_row(p: Prompt) -> dict[str, Any]:
    return {
        "text": p.text,
        "io": p.io,
        "s": p.s,
        "template_id": p.template_id,
        "order": p.order,
        "family": p.family,
        "pair_id": p.pair_id,
        "positions": dict(p.positions),
        "n_tokens": len(p),
        "extra": dict(p.extra),
    }


def metric_row(m: PromptMetrics) -> dict[str, Any]:
    return {
        "logit_diff": m.logit_diff,
        "io_logit": m.io_logit,
        "s_logit": m.s_logit,
        "io_prob": m.io_prob,
        "s_prob": m.s_prob,
        "io_rank": m.io_rank,
        "s_beats_io": m.s_beats_io,
    }


def result_rows(ev: Evaluation) -> list[dict[str, Any]]:
    rows = []
    for i, (p, m) in enumerate(zip(ev.prompts, ev.metrics, strict=True)):
        row = {**prompt_row(p), **metric_row(m)}
        if ev.head_signals:
            row["head_signals"] = {k: v[i] for k, v in ev.head_signals.items()}
        rows.append(row)
    return rows


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


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("advgen", "torch", "transformers", "transformer-lens", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def manifest(model: Any, tokenizer_hash: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance for a run directory; no timestamps, so equal runs give equal bytes."""
    return {
        "model": getattr(model, "name", str(model)),
        "model_source": getattr(model, "source", ""),
        "tokenizer_hash": tokenizer_hash,
        "seed": seed,
        "settings": dict(settings),
        "command": "advgen " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name == "advgen" else " ".join(sys.argv),
        "versions": package_versions(),
    }


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
