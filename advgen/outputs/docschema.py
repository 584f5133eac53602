"""Typed readers for the documents the report reads: a field of the wrong type is a named error.

The report reads summary.json, modes.json, baseline.json, discovery.json, claims.json,
manifest.json and circuit.json of a run directory; discovery.json through its typed record alone
(advgen.circuits.discovery_doc.read_discovery, which checks every field), so it has no schema here.
Each schema below lists, as dotted paths (`*` = any key of an object or any item of an array),
the fields the report uses and the JSON types it accepts. A field may be absent (readers fall
back), and every number may be `null` (advgen writes NaN as null), but a present field of another
type (`"modes": []`, `"seen": "x"`) is an `AdvgenError` naming the file, the field's path and both
types, before any section renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advgen.core.files import type_name
from advgen.core.types import AdvgenError

OBJ: tuple[type, ...] = (dict,)
ARR: tuple[type, ...] = (list,)
STR: tuple[type, ...] = (str,)
NUM: tuple[type, ...] = (int, float, type(None))
"""A number, or null (NaN and +-Infinity are written null)."""
INT: tuple[type, ...] = (int, type(None))
TEXT: tuple[type, ...] = (str, type(None))
SIGN: tuple[type, ...] = (int, float, str, type(None))
SEEN: tuple[type, ...] = (dict, int, float, type(None))
BOOLISH: tuple[type, ...] = (bool, type(None))

_CI = {"mean": NUM, "low": NUM, "high": NUM, "n": INT}
_SAMPLE = {"random_sample": OBJ, "random_sample.breaks": INT, "random_sample.attack": OBJ, "random_sample.attack.n": INT}
_YIELD = {"guided": OBJ, "guided.breaks_per_1000": NUM, "baseline": OBJ, "baseline.breaks_per_1000": NUM, "ratio": NUM}


def _under(prefix: str, fields: Mapping[str, tuple[type, ...]]) -> dict[str, tuple[type, ...]]:
    return {f"{prefix}.{k}": v for k, v in fields.items()}


SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "summary.json": {
        "modes": OBJ, "modes.*": OBJ, "modes.*.predicted_sign": SIGN, "modes.*.seen": SEEN,
        **_under("modes.*.seen", _CI), "modes.*.verdict": TEXT, **_under("modes.*", _SAMPLE),
        "yield": OBJ, "yield.guided_per_1000": NUM, "yield.random_per_1000": NUM, "yield.ratio": NUM,
        "baseline": OBJ, **_under("baseline", _YIELD), "natural_failure_rate": NUM,
    },
    "modes.json": {
        "modes": OBJ, "modes.*": OBJ, "modes.*.prediction": OBJ, "modes.*.prediction.expected_sign": SIGN,
        "modes.*.prediction.attack_minus_control": SEEN, **_under("modes.*.prediction.attack_minus_control", _CI),
        "modes.*.prediction.n": INT, "modes.*.prediction.verdict": TEXT, **_under("modes.*", _SAMPLE),
    },
    "baseline.json": _YIELD,
    "claims.json": {
        "table": OBJ, "table.*": OBJ, "table.*.ratio_to_model": (dict, int, float, type(None)), "table.*.ratio_to_model.mean": NUM,
        "table.*.per_example_quantiles_pct": OBJ, "table.*.per_example_quantiles_pct.*": NUM,
        "table.*.per_example_sd_pct": NUM, "table.*.sign_flip_rate": NUM, "table.*.loss_recovered_pct": NUM,
        "paper_setting": TEXT, "circuit": TEXT, "minimality": OBJ, "causal_scrubbing": OBJ,
        "causal_scrubbing.metrics": OBJ, "causal_scrubbing.metrics.ratio_to_model": (dict, int, float, type(None)),
        "causal_scrubbing.metrics.ratio_to_model.mean": NUM, "causal_scrubbing.metrics.sign_flip_rate": NUM,
        "causal_scrubbing.metrics.per_example_quantiles_pct": OBJ,
        "absolute": OBJ, "absolute.ladder_equivalent_params": NUM, "absolute.times_smaller": NUM,
        "absolute.loss_recovered_nats": NUM, "absolute.loss_recovered_pct": NUM, "absolute.ladder_position": TEXT,
        "absolute.ladder_basis": TEXT, "absolute.ladder": ARR, "absolute.ladder.*": OBJ, "absolute.ladder.*.parameters": NUM,
        "absolute.ladder.*.ioi_loss": NUM, "absolute.ladder.*.name": STR, "absolute.ioi_loss": OBJ, "absolute.ioi_loss.*": NUM,
        "absolute.placements": OBJ, "absolute.placements.*": OBJ, "absolute.placements.*.position": TEXT,
        "absolute.placements.*.equivalent_params": NUM,
        "model": TEXT, "model_source": TEXT, "seed": INT, "command": TEXT, "versions": OBJ, "settings": OBJ, "settings.seed": INT,
        "error_agreement": ARR, "error_agreement.*": OBJ, "error_agreement.*.source": OBJ, "error_agreement.*.source.path": TEXT,
        "error_agreement.*.table": OBJ, "error_agreement.*.table.*": OBJ, "error_agreement.*.table.*.*": OBJ,
        "error_agreement.*.table.*.*.agreement": (dict, type(None)), "error_agreement.*.table.*.*.agreement.mean": NUM,
        "error_agreement.*.table.*.*.empty_agreement": (int, float, type(None)), "error_agreement.*.add_back": OBJ,
        "error_agreement.*.add_back.steps": ARR, "error_agreement.*.add_back.steps.*.added": ARR,
        "error_agreement.*.add_back.steps.*.abs_ld_diff_errors": NUM,
    },
    "manifest.json": {"model": TEXT, "model_source": TEXT, "seed": INT, "command": TEXT, "versions": OBJ, "settings": OBJ},
    "circuit.json": {"name": TEXT, "heads": ARR},
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
