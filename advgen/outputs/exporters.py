"""Exports of a run directory into the formats other tools read: JSONL, CSV, Parquet, HF datasets,
auto-circuit and lm-evaluation-harness. Every export is a directory with a dataset card.

Rows are read from DIR/results.jsonl and grouped into splits: `clean`, `control`, `baseline`, one
split per attack mode (named by the mode), and any other family of a plain run (e.g. `abc`).
Tabular formats flatten a row the same way (`table_row`): `positions` becomes `pos_<slot>` integer
columns and every other nested value (extra, params, head_signals) a JSON string, so the column
types stay fixed across rows whose free-form fields differ. `source_row` undoes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advgen.core.files import dumps
from advgen.core.types import AdvgenError
from advgen.outputs import cards, integrations
from advgen.outputs.rundata import (
    MARKER_KEY,
    RunData,
    arrow_table,
    columns,
    load_run,
    splits,
    table_row,
)

FORMATS = ("jsonl", "csv", "parquet", "hf", "auto-circuit", "lm-eval")

# ---- atomic directory output -------------------------------------------------------------------


def _is_previous_export(out: Path) -> bool:
    card = out / "README.md"
    return card.exists() and f"\n{MARKER_KEY}:" in card.read_text(encoding="utf-8", errors="replace")


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `out`; on success it replaces `out` (only a previous export)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_previous_export(out))):
        raise AdvgenError(f"--out {out} exists and is not an advgen export; choose a new path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


# ---- the formats -------------------------------------------------------------------------------


def csv_text(flat_rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), lineterminator="\n")
    w.writeheader()
    w.writerows(flat_rows)
    return buf.getvalue()


def _write_files(data: RunData, tmp: Path, fmt: str) -> dict[str, str]:
    """jsonl / csv / parquet: one file per split; returns {split: relative path}."""
    parts = splits(data.rows)
    cols = columns(data.rows)
    paths: dict[str, str] = {}
    for name, rows in parts.items():
        rel = f"data/{name}.{fmt}"
        if fmt == "jsonl":
            _write(tmp / rel, "".join(dumps(r) + "\n" for r in rows))
        elif fmt == "csv":
            _write(tmp / rel, csv_text([table_row(r, cols) for r in rows], cols))
        else:
            import pyarrow.parquet as pq

            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow_table(rows, cols), tmp / rel, compression="zstd")
        paths[name] = rel
    return paths


def _write_hf(data: RunData, tmp: Path) -> dict[str, str]:
    """A DatasetDict saved with save_to_disk; fingerprints from content so equal runs give equal bytes."""
    import datasets

    cols = columns(data.rows)
    dd = {}
    for name, rows in splits(data.rows).items():
        table = arrow_table(rows, cols)
        fp = hashlib.sha256((name + "\n" + "".join(dumps(r) for r in rows)).encode()).hexdigest()[:16]
        dd[name] = datasets.Dataset(datasets.table.InMemoryTable(table), split=datasets.NamedSplit(name), fingerprint=fp)
    was_off = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        datasets.DatasetDict(dd).save_to_disk(str(tmp / "hf"))
    finally:
        if not was_off:
            datasets.enable_progress_bars()
    return {name: f"hf/{name}" for name in dd}


def export(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write run_dir's rows to directory `out` in format `fmt`, with a dataset card (README.md)."""

    if fmt not in FORMATS:
        raise AdvgenError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    data = load_run(run_dir)
    writers: dict[str, Callable[[RunData, Path], dict[str, str]]] = {
        "jsonl": lambda d, t: _write_files(d, t, "jsonl"),
        "csv": lambda d, t: _write_files(d, t, "csv"),
        "parquet": lambda d, t: _write_files(d, t, "parquet"),
        "hf": _write_hf,
        "auto-circuit": integrations.write_auto_circuit,
        "lm-eval": integrations.write_lm_eval,
    }
    with atomic_dir(out) as tmp:
        files = writers[fmt](data, tmp)
        _write(tmp / "README.md", cards.dataset_card(data, fmt, files))
    return Path(out)
