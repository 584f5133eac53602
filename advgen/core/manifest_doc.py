"""manifest.json as a typed record: the provenance every run directory carries, its shape stated once.

`advgen.core.records.manifest` writes the document through `Manifest` (its fields in the file's key order, so the
bytes are the record's). `Manifest.from_dict` reads the current shape (schema 2) strictly: a field missing or of the
wrong type is an AdvgenError naming the file and the field's dotted path. `read_manifest` is the reader of run
directories: it also reads schema 1 (no `schema_version`; `command` was the process's argv) and older or partial
documents, a field they lack being None (an absent manifest.json reads as the empty record); a field of the wrong type
is an error either way, and a `schema_version` this advgen does not know is refused by name before any field is read.
`model`, `model_source`, `seed` and `command` may be null in documents read leniently (older writers), never in the
current shape.

`runtime` (how the model ran) is a record of its own, left out by writers whose model records none, written {} by a
scan whose driver held no model. `settings` is carried verbatim (each command records its own options), with one
field typed: `settings.task`.

The `settings.task` wrinkle, decided: the field is a typed union, `str | TaskSetting`. A scan records the task's name
as a string (beside it `settings.task_source`: the built-in or YAML file it came from); every other task run records
the task's description object (`Task.describe()`: name, source, metric, engine, template count, roles), read as a
`TaskSetting`. IOI runs record no task. `Manifest.task_field` returns the union as written; `Manifest.task_ref` folds
both shapes into one `TaskSetting` (a scan's name with its `task_source`), which is what readers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgen.core import docfields as f
from advgen.core.docspec import PlainRecord, load_record, spec
from advgen.core.files import read_json
from advgen.core.types import AdvgenError

FILE = "manifest.json"
MANIFEST_SCHEMA = 2
"""Version of manifest.json's shape. 1: no `schema_version` field (advgen before the job layer);
2: `schema_version` first, and `command` is the job's equivalent `advgen` command line (without
`--out` and the options that do not change the files), never the process's argv."""


@dataclass(frozen=True)
class Runtime(PlainRecord):
    """How the model ran (`LoadedModel.runtime`): device, dtype, attention implementation, Hub kernels."""

    EMPTY_OK = True

    device: str | None = spec("str")
    dtype: str | None = spec("str")
    attn_implementation: str | None = spec("str")
    hub_kernels: str | None = spec("str")


@dataclass(frozen=True)
class TaskSetting(PlainRecord):
    """`settings.task` of a task run (`Task.describe()`); a scan's string reads as one with `name` and `source` only."""

    name: str | None = spec("str")
    source: str | None = spec("str")
    metric: str | None = spec("str", opt=True)
    engine: str | None = spec("str", opt=True)
    templates: int | None = spec("int", opt=True)
    roles: tuple[str, ...] | None = spec("strs", opt=True)


_NOT_NULL = ("model", "model_source", "seed", "command")


@dataclass(frozen=True)
class Manifest(PlainRecord):
    """manifest.json: schema version, model (name, source, runtime), tokenizer hash, seed, settings, command, versions."""

    schema_version: int | None = spec("int")
    model: str | None = spec("str", null=True)
    model_source: str | None = spec("str", null=True)
    runtime: Runtime | None = spec("rec", Runtime, opt=True)
    tokenizer_hash: str | None = spec("str")
    seed: int | None = spec("int", null=True)
    settings: Mapping[str, Any] | None = spec("map")
    command: str | None = spec("str", null=True)
    versions: Mapping[str, Any] | None = spec("map")

    @classmethod
    def from_dict(cls, d: Any, where: str | Path = FILE) -> Manifest:
        """The current shape, strictly: every field there and typed, `schema_version` this advgen's."""
        w = str(where)
        version = check_manifest(f.obj(d, w, ""), w)
        if version != MANIFEST_SCHEMA:
            raise AdvgenError(f"{w}: manifest schema_version {version}, expected {MANIFEST_SCHEMA} (read it with read_manifest)")
        rec = load_record(cls, d, w, "", strict=True)
        for k in _NOT_NULL:
            if getattr(rec, k) is None:
                f.check(None, (int,) if k == "seed" else (str,), w, k)
        return rec.checked(w, strict=True)

    def checked(self, where: str, strict: bool) -> Manifest:
        """`versions` holds strings; `settings.task` is a string or a task object (see the module docstring)."""
        for k, v in (self.versions or {}).items():
            f.check(v, (str,), where, f.path_of("versions", k))
        _task(self.settings, where, strict)
        return self

    @property
    def task_field(self) -> str | TaskSetting | None:
        """`settings.task` as written: a scan's task name, another task run's description, None for IOI."""
        return _task(self.settings, FILE, strict=False)

    @property
    def task_ref(self) -> TaskSetting | None:
        """The task the run measured, either shape folded into one record (None: IOI, or not recorded)."""
        t = self.task_field
        if not isinstance(t, str):
            return t
        src = (self.settings or {}).get("task_source")
        return TaskSetting(name=t, source=src if isinstance(src, str) else None)

    @property
    def task_name(self) -> str | None:
        t = self.task_ref
        return t.name if t is not None and t.name else None


def _task(settings: Mapping[str, Any] | None, where: str, strict: bool) -> str | TaskSetting | None:
    t = (settings or {}).get("task")
    if t is None or isinstance(t, str):
        return t
    if not isinstance(t, Mapping):
        f.check(t, (str, dict), where, "settings.task")
    return load_record(TaskSetting, t, where, "settings.task", strict)


def check_manifest(doc: Mapping[str, Any], where: str | Path) -> int:
    """The manifest's schema version (1 when absent); a version this advgen does not know is a named error."""
    found = doc.get("schema_version", 1)
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found <= MANIFEST_SCHEMA:
        raise AdvgenError(
            f"{where}: manifest schema_version {found!r}, this advgen reads versions 1 to {MANIFEST_SCHEMA} "
            "(written by a newer advgen? upgrade advgen to read it)"
        )
    return found


def read_manifest(src: str | Path | Mapping[str, Any] | None, where: str | Path | None = None) -> Manifest:
    """A manifest (a path, or a document already read) as its record, leniently: schema 1 and older shapes too, a
    field they lack None; an absent file (or None) is the empty record. `where` names it in errors (default: the path)."""
    if src is None or (not isinstance(src, Mapping) and not Path(src).exists()):
        return Manifest()
    w = str(where if where is not None else src if not isinstance(src, Mapping) else FILE)
    doc = f.obj(src if isinstance(src, Mapping) else read_json(Path(src)), w, "")
    check_manifest(doc, w)
    return load_record(Manifest, doc, w, "", strict=False).checked(w, strict=False)
