"""The typed check of manifest.json, the one run-directory document the report reads that has no record yet.

Every other document the report reads is read through its typed record, which checks every field and names the
file and the dotted path: summary.json (advgen.attacks.summary, advgen.outputs.run_summary), modes.json and
baseline.json (advgen.attacks.tables_doc), discovery.json (advgen.circuits.discovery_doc), claims.json
(advgen.circuits.claims_doc), circuit.json (advgen.circuits.format.Circuit). The schema below lists, as dotted
paths (`*` = any key of an object or any item of an array), the manifest fields the report and the dataset card
use and the JSON types they accept. A field may be absent (readers fall back), and every number may be `null`,
but a present field of another type (`"versions": "1.0"`) is an `AdvgenError` naming the file, the field's path
and both types, before any section renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.core.files import type_name
from advgen.core.types import AdvgenError

OBJ: tuple[type, ...] = (dict,)
INT: tuple[type, ...] = (int, type(None))
TEXT: tuple[type, ...] = (str, type(None))

SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "manifest.json": {"model": TEXT, "model_source": TEXT, "seed": INT, "command": TEXT, "versions": OBJ, "settings": OBJ},
}


def _matches(doc: Any, parts: Sequence[str], path: str) -> list[tuple[str, Any]]:
    """(concrete path, value) of every present field matching the pattern's parts."""
    if not parts:
        return [(path, doc)]
    head, rest = parts[0], parts[1:]
    if isinstance(doc, Mapping):
        keys = list(doc) if head == "*" else [head] if head in doc else []
        return [m for k in keys for m in _matches(doc[k], rest, f"{path}.{k}" if path else str(k))]
    if isinstance(doc, list) and head == "*":
        return [m for i, v in enumerate(doc) for m in _matches(v, rest, f"{path}[{i}]")]
    return []


def check_doc(doc: Any, path: Path) -> None:
    """Raise if a field the report reads from `path` (by its file name) has a type the report does not accept."""
    schema = SCHEMAS.get(path.name)
    if schema is None:
        return
    if not isinstance(doc, Mapping):
        raise AdvgenError(f"{path}: expected a JSON object, got {type_name(doc)}")
    for pattern, allowed in schema.items():
        for where, v in _matches(doc, pattern.split("."), ""):
            if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
                want = " or ".join(dict.fromkeys("null" if t is type(None) else type_name(t()) for t in allowed))
                raise AdvgenError(f"{path}: field {where!r} must be {want}, got {type_name(v)}")
