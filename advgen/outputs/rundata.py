"""A run directory read once (`RunData`), its rows grouped into splits and flattened to tables.

Rows are read from DIR/results.jsonl and grouped into splits: `clean`, `control`, `baseline`, one
split per attack mode (named by the mode), and any other family of a plain run (e.g. `abc`).
Tabular formats flatten a row the same way (`table_row`): `positions` becomes `pos_<slot>` integer
columns and every other nested value (extra, params, head_signals) a JSON string, so the column
types stay fixed across rows whose free-form fields differ. `source_row` undoes it.
The run's circuit.json is read through its record (`Circuit`), the only place a run records its circuit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.attacks.task_summary_doc import read_task_summary
from advgen.circuits.format import Circuit
from advgen.core.files import dumps, read_json, read_jsonl_lines
from advgen.core.manifest_doc import Manifest, read_manifest
from advgen.core.rundir import check_complete
from advgen.core.types import AdvgenError

FIXED_SPLITS = ("clean", "control", "baseline")
MARKER_KEY = "advgen_export"
"""Front-matter key of our dataset cards; an existing --out directory is replaced only if it has one."""
POS_PREFIX = "pos_"
SCALAR_FIRST = ("text", "io", "s", "family", "mode", "template_id", "order", "pair_id", "n_tokens")


@dataclass(frozen=True)
class RunData:
    """What a run directory holds, read once: rows plus the provenance files beside them."""

    run_dir: Path
    rows: tuple[dict[str, Any], ...]
    manifest: Manifest
    """manifest.json through its record (advgen.core.manifest_doc); the empty record when the directory has none."""
    summary: Mapping[str, Any]
    circuit: Circuit | None
    """circuit.json (attack and discover directories); None for a plain run."""

    @property
    def seed(self) -> int:
        seed = self.manifest.seed
        return seed if seed is not None and seed >= 0 else 0

    @property
    def task(self) -> str:
        """The task the run measured: "ioi" unless its manifest names another (task runs record it in settings)."""
        return self.manifest.task_name or "ioi"

    @property
    def model_spec(self) -> str:
        """What to pass to `load_model` for the run's model: its local source dir if it still exists, else its name."""
        src = self.manifest.model_source or ""
        return src if src and Path(src).is_dir() else self.manifest.model or ""


NUM = (int, float)
ROW_TYPES: Mapping[str, tuple[type, ...]] = {
    "text": (str,),
    "io": (str,),
    "s": (str,),
    "family": (str,),
    "positions": (dict,),
    "logit_diff": NUM,
    "io_logit": NUM,
    "s_logit": NUM,
    "io_prob": NUM,
    "s_prob": NUM,
    "io_rank": (int,),
    "s_beats_io": (bool,),
    "mode": (str, type(None)),
    "template_id": (str,),
    "order": (str,),
    "pair_id": (str,),
    "n_tokens": (int,),
    "extra": (dict,),
    "params": (dict,),
    "head_signals": (dict,),
    "is_break": (bool, type(None)),
    "explained": (bool, type(None)),
    "clean_logit_diff": (int, float, type(None)),
    "control_breaks": (bool, type(None)),
}
"""Types of a run directory's result fields: a non-numeric logit_diff is an error, not a string column."""


def _read_json(path: Path, want: type = dict) -> Any:
    doc = read_json(path)
    if not isinstance(doc, want):
        raise AdvgenError(f"{path}: expected a JSON {'object' if want is dict else want.__name__}")
    return doc


def read_circuit(run_dir: Path) -> Circuit | None:
    """DIR/circuit.json as its record (None when absent); a field missing or of the wrong type names the file."""
    p = run_dir / "circuit.json"
    return Circuit.load(p) if p.exists() else None


def _check_row(row: Mapping[str, Any], where: str) -> None:
    pos = row["positions"]
    bad = [k for k, v in pos.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise AdvgenError(f"{where}: positions {bad} must be integers")


def load_run(run_dir: str | Path) -> RunData:
    """Read DIR/results.jsonl, manifest.json, summary.json and circuit.json (when present).

    A directory left half-written (lock) or changed after its run finished is refused
    (`rundir.check_complete`); every row's fields are type-checked, naming file and line.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise AdvgenError(f"run directory not found: {d}" if not d.exists() else f"{d} is a file, not a run directory")
    check_complete(d)
    if not (d / "results.jsonl").is_file():
        raise AdvgenError(f"{d} has no results.jsonl; is it an `advgen run` or `advgen attack` directory?")
    got = read_jsonl_lines(
        d / "results.jsonl", required=("text", "io", "s", "family", "positions", "logit_diff"), types=ROW_TYPES
    )
    for _, line, row in got:
        _check_row(row, f"{d / 'results.jsonl'}:{line}")
    manifest = read_manifest(d / "manifest.json")  # typed, every field (the empty record when absent)
    summary = _read_json(d / "summary.json") if (d / "summary.json").exists() else {}
    read_task_summary(summary, d / "summary.json")  # a task attack's: every field typed (its record), before any use
    return RunData(d, tuple(row for _, _, row in got), manifest, summary, read_circuit(d))


def sanitize(name: str) -> str:
    """A split name HF datasets accepts (\\w+): lower case, runs of other characters -> '_'."""
    s = re.sub(r"[^0-9a-zA-Z_]+", "_", name).strip("_").lower()
    return s or "unnamed"


def split_of(row: Mapping[str, Any]) -> str:
    """clean / control / baseline by family; attacks by their mode; other families by name."""
    fam = str(row.get("family") or "clean")
    if fam == "attack":
        name = sanitize(str(row.get("mode") or "attack"))
        return f"attack_{name}" if name in FIXED_SPLITS else name
    return sanitize(fam)


def splits(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per split, in a fixed order (clean, control, attacks A-Z, baseline, others A-Z)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    attack = set()
    for r in rows:
        name = split_of(r)
        groups.setdefault(name, []).append(dict(r))
        if r.get("family") == "attack":
            attack.add(name)

    def key(name: str) -> tuple[int, str]:
        rank = {"clean": 0, "control": 1, "baseline": 3}.get(name, 2 if name in attack else 4)
        return rank, name

    return {k: groups[k] for k in sorted(groups, key=key)}


# ---- flat table rows ---------------------------------------------------------------------------


def position_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in (r.get("positions") or {}) if k not in keys]
    first = ["IO", "S1", "S1+1", "S2", "END"]
    return [k for k in first if k in keys] + sorted(k for k in keys if k not in first)


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column order of the flat table: prompt fields, positions, metrics, then free-form fields."""
    seen: list[str] = []
    for r in rows:
        seen += [k for k in r if k not in seen]
    head = [c for c in SCALAR_FIRST if c in seen]
    rest = [c for c in seen if c not in head and c != "positions"]
    pos = [POS_PREFIX + k for k in position_keys(rows)] if "positions" in seen else []
    return head + pos + rest


def table_row(row: Mapping[str, Any], cols: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = row.get("positions") or {}
    for c in cols:
        if c.startswith(POS_PREFIX) and c not in row:
            out[c] = pos.get(c[len(POS_PREFIX) :])
        else:
            v = row.get(c)
            out[c] = dumps(v) if isinstance(v, (dict, list)) else v
    return out


def json_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns whose values are dicts/lists in the source rows (JSON strings in tables)."""
    return [c for c in columns(rows) if any(isinstance(r.get(c), (dict, list)) for r in rows)]


def source_row(flat: Mapping[str, Any], json_cols: Sequence[str]) -> dict[str, Any]:
    """Inverse of `table_row`: pos_* back into `positions`, JSON strings back into objects."""
    out: dict[str, Any] = {}
    pos: dict[str, int] = {}
    for k, v in flat.items():
        if k.startswith(POS_PREFIX):
            if v is not None and v == v:
                pos[k[len(POS_PREFIX) :]] = int(v)
        elif k in json_cols and isinstance(v, str):
            out[k] = json.loads(v)
        else:
            out[k] = v
    out["positions"] = pos
    return out


def arrow_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> Any:
    """A pyarrow table with one schema for every split (types from all rows, nulls allowed)."""
    import pyarrow as pa

    flat = [table_row(r, cols) for r in rows]
    fields = []
    for c in cols:
        vals = [f[c] for f in flat if f[c] is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            t = pa.bool_()
        elif vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            t = pa.int64()
        elif vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            t = pa.float64()
            for f in flat:
                f[c] = None if f[c] is None else float(f[c])
        elif not vals:
            t = pa.string()
        else:
            t = pa.string()
            for f in flat:
                f[c] = f[c] if f[c] is None or isinstance(f[c], str) else dumps(f[c])
        fields.append(pa.field(c, t))
    return pa.Table.from_pylist(flat, schema=pa.schema(fields))
