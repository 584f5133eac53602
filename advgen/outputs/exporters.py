"""Exports of a run directory into the formats other tools read: JSONL, CSV, Parquet, HF datasets,
auto-circuit and lm-evaluation-harness. Every export is a directory with a dataset card.

Rows are read from DIR/results.jsonl and grouped into splits: `clean`, `control`, `baseline`, one
split per attack mode (named by the mode), and any other family of a plain run (e.g. `abc`).
Tabular formats flatten a row the same way (`table_row`): `positions` becomes `pos_<slot>` integer
columns and every other nested value (extra, params, head_signals) a JSON string, so the column
types stay fixed across rows whose free-form fields differ. `source_row` undoes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from advgen.core import locks
from advgen.core.files import atomic_write_text, csv_rows_text, dumps, follow_umask, read_json
from advgen.core.rundir import MARKER, file_hashes, write_marker
from advgen.core.types import AdvgenError
from advgen.outputs import cards, eap_ig, integrations
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
"""Formats of a run's rows."""
CIRCUIT_FORMATS = ("eap-ig",)
"""Formats of a run's circuit (`advgen.outputs.eap_ig`)."""
ALL_FORMATS = FORMATS + CIRCUIT_FORMATS

# ---- atomic directory output -------------------------------------------------------------------


EXPORT_KIND = "export"


def _is_previous_export(out: Path) -> bool:
    """True only for an advgen export left as written: its completion marker lists every file in it, with its sha256.

    A README.md alone (even one mentioning advgen) or any file added since makes it someone's data,
    which an export never deletes.
    """
    if not (out / MARKER).is_file():
        return False
    try:
        mark = read_json(out / MARKER)
    except AdvgenError:
        return False
    if not isinstance(mark, dict) or mark.get("kind") != EXPORT_KIND or not isinstance(mark.get("files"), dict):
        return False
    return file_hashes(out) == mark["files"]  # content, not names: a hand-edited file makes it someone's data


def _is_advgen_export(out: Path) -> bool:
    """An export by any advgen version (marker, or a card with our front-matter key) holding data besides its card."""
    if _is_previous_export(out):
        return True
    card = out / "README.md"
    if not card.is_file() or not any(p.name != "README.md" for p in out.iterdir()):
        return False
    text = card.read_text(encoding="utf-8", errors="replace")
    return text.startswith("---\n") and f"\n{MARKER_KEY}:" in text.split("\n---\n", 1)[0]


def check_export_out(run_dir: Path, out: Path, overwrite: bool = False) -> None:
    """Refusals before any work: a file, a path under a file, the run itself, or someone else's directory.

    Without `overwrite` only an unmodified export is replaced; with it, any advgen export (also one
    from an older version or with files added); never a directory that is not an advgen export.
    """
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise AdvgenError(
                f"--out {out} {'is an existing file' if parent == out else f'lies under {parent}, which is a file'}"
            )
    r, o = run_dir.resolve(), out.resolve()
    if o == r or r in o.parents or o in r.parents:
        raise AdvgenError(f"--out {out} overlaps the run directory {run_dir} it reads; choose a path outside it")
    if out.exists() and any(out.iterdir()) and not _is_previous_export(out):
        if overwrite and _is_advgen_export(out):
            return
        hint = " (pass --overwrite to replace it)" if _is_advgen_export(out) else ""
        raise AdvgenError(
            f"--out {out} is a non-empty directory that is not an advgen export (or was changed since){hint}; "
            "advgen never deletes it, choose a new path"
        )


def _check_replaceable(out: Path, overwrite: bool) -> None:
    replaceable = _is_previous_export(out) or (overwrite and _is_advgen_export(out)) if out.is_dir() else False
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not replaceable)):
        raise AdvgenError(f"--out {out} exists and is not an unmodified advgen export; choose a new path")


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside `out`; on success it replaces `out` (only a previous export).

    One export into `out` at a time (a lock file beside it, `advgen.core.locks`), and `out` is checked
    again right before the rename, so a file created there while the export ran is never deleted.
    """
    out = Path(out)
    _check_replaceable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.advgen-export.lock"
    locks.acquire(lock, EXPORT_KIND, str(out), f"--out {out}")
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        try:
            follow_umask(tmp, directory=True)  # mkdtemp makes 700; an export may be served to others
            yield tmp
            write_marker(tmp, EXPORT_KIND, "")
            _check_replaceable(out, overwrite)  # again: nothing written to `out` meanwhile is lost
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
    finally:
        lock.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    """A file of the export's staging directory, through the one atomic writer (the directory is renamed into place too)."""
    atomic_write_text(path, text)


# ---- the formats -------------------------------------------------------------------------------


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
            _write(tmp / rel, csv_rows_text([table_row(r, cols) for r in rows], cols))  # formula cells neutralised
        else:
            import pyarrow.parquet as pq

            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow_table(rows, cols), tmp / rel, compression="zstd")
        paths[name] = rel
    return paths


def _write_hf(data: RunData, tmp: Path) -> dict[str, str]:
    """A DatasetDict saved with save_to_disk; fingerprints from content so equal runs give equal bytes."""
    import datasets
    import datasets.table

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


def attributable_only(data: RunData) -> tuple[RunData, int]:
    """The run without its control-shared breaks (attack rows whose matched control broke too, and those controls' rows).

    Returns the filtered data and how many breaks were left out. A run that never recorded
    `control_breaks` (a plain run, a scan, an attack from before issue 28) is refused: it cannot say which to drop.
    """
    where = data.run_dir / "results.jsonl"
    attacks = [r for r in data.rows if r.get("family") == "attack"]
    if not attacks:
        raise AdvgenError(f"--attributable-only needs an attack run; {where} has no attack rows")
    missing = next((r for r in attacks if r.get("is_break") and not isinstance(r.get("control_breaks"), bool)), None)
    if missing is not None:
        raise AdvgenError(
            f"--attributable-only: {where} does not record control_breaks for break {missing.get('candidate')!r} "
            "(an attack run from before control_breaks existed; re-run advgen attack)"
        )
    shared = {r.get("candidate") for r in attacks if r.get("is_break") and r["control_breaks"]}
    keep = tuple(r for r in data.rows if r.get("family") not in ("attack", "control") or r.get("candidate") not in shared)
    return replace(data, rows=keep), len(shared)


def export(run_dir: str | Path, fmt: str, out: str | Path, overwrite: bool = False, only_attributable: bool = False) -> Path:
    """Write run_dir's rows to directory `out` in format `fmt`, with a dataset card (README.md).

    `only_attributable` leaves out the breaks whose matched control broke too (with their control rows).
    """

    if fmt not in ALL_FORMATS:
        raise AdvgenError(f"unknown export format {fmt!r}; formats: {', '.join(ALL_FORMATS)}")
    if fmt == "eap-ig":
        return export_eap_ig(run_dir, out, overwrite)
    data = load_run(run_dir)
    left_out = None
    if only_attributable:
        data, left_out = attributable_only(data)
    check_export_out(Path(run_dir), Path(out), overwrite)
    writers: dict[str, Callable[[RunData, Path], dict[str, str]]] = {
        "jsonl": lambda d, t: _write_files(d, t, "jsonl"),
        "csv": lambda d, t: _write_files(d, t, "csv"),
        "parquet": lambda d, t: _write_files(d, t, "parquet"),
        "hf": _write_hf,
        "auto-circuit": integrations.write_auto_circuit,
        "lm-eval": integrations.write_lm_eval,
    }
    with atomic_dir(out, overwrite) as tmp:
        files = writers[fmt](data, tmp)
        _write(tmp / "README.md", cards.dataset_card(data, fmt, files, left_out))
    return Path(out)


def export_eap_ig(source: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """OUT/graph.json: the circuit of a discover / attack / check-claim run (or a circuit file or
    built-in name) as EAP-IG graph JSON (`advgen.outputs.eap_ig`), with a short README.md."""
    circuit, matrices = eap_ig.circuit_source(source)
    graph = eap_ig.eap_ig_graph(circuit, matrices)
    check_export_out(Path(source), Path(out), overwrite)
    meta = graph["advgen"]
    card = (
        f"# {circuit.name} as an EAP-IG graph\n\nFrom `{source}`, by `advgen export --format eap-ig`. graph.json holds "
        f"{sum(graph['nodes'].values())} of {len(graph['nodes'])} nodes and "
        f"{sum(e['in_graph'] for e in graph['edges'].values())} "
        f"of {len(graph['edges'])} edges in the graph; scores are {meta['level']}-level "
        f"({len(meta['edge_scored'])} edges scored by path patching). {meta['note']}.\n"
    )
    with atomic_dir(out, overwrite) as tmp:
        _write(tmp / "graph.json", dumps(graph) + "\n")
        _write(tmp / "README.md", card)
    return Path(out)
