"""Typed reading of one JSON document's fields: a field missing or of the wrong type is an AdvgenError naming the
file and the field's dotted path. The typed summary records of `attack`, `run` / `validate` and `scan` read through these.

NaN and +-Infinity are written `null` (`advgen.core.files.dumps`); `number` reads a null number as NaN, so a
record read from a file and written again gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from advgen.core.files import type_name
from advgen.core.types import AdvgenError, Interval

NUM: tuple[type, ...] = (int, float)
_WANT = {int: "integer", float: "number", str: "string", dict: "object", list: "array", type(None): "null"}


def path_of(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def check(v: Any, types: tuple[type, ...], where: str, at: str, null: bool = False) -> Any:
    """`v` if it has one of `types` (bool is no number; null only where allowed), else a named error."""
    if v is None and null:
        return None
    if isinstance(v, bool) or not isinstance(v, types):
        want = " or ".join(dict.fromkeys(_WANT.get(t, t.__name__) for t in (*types, *((type(None),) if null else ()))))
        raise AdvgenError(f"{where}: field {at!r} must be {want.replace('integer or number', 'number')}, got {type_name(v)}")
    return v


def req(d: Mapping[str, Any], key: str, types: tuple[type, ...], where: str, at: str, null: bool = False) -> Any:
    """A field the current shape always writes: absent is an error naming it."""
    if key not in d:
        raise AdvgenError(f"{where}: field {path_of(at, key)!r} is missing")
    return check(d[key], types, where, path_of(at, key), null)


def opt(d: Mapping[str, Any], key: str, types: tuple[type, ...], where: str, at: str) -> Any:
    """A field older run directories may lack: absent or null is None."""
    return check(d.get(key), types, where, path_of(at, key), null=True)


def obj(v: Any, where: str, at: str) -> Mapping[str, Any]:
    """`v` if it is a JSON object, else a named error (`at` "" is the document itself)."""
    if not isinstance(v, Mapping):
        raise AdvgenError(f"{where}: {'field ' + repr(at) if at else 'the document'} must be object, got {type_name(v)}")
    return v


def number(d: Mapping[str, Any], key: str, where: str, at: str) -> float:
    """A required number; null (how NaN is written) reads as NaN. An integer stays an integer (same bytes again)."""
    v = req(d, key, NUM, where, at, null=True)
    return float("nan") if v is None else v


def count(d: Mapping[str, Any], key: str, where: str, at: str) -> int:
    """A required integer (no null)."""
    return req(d, key, (int,), where, at)


def interval(d: Mapping[str, Any], key: str, where: str, at: str) -> Interval:
    """A required {mean, low, high} object, each a number or null (NaN)."""
    sub = obj(req(d, key, (dict,), where, at), where, path_of(at, key))
    return Interval(*(number(sub, k, where, path_of(at, key)) for k in ("mean", "low", "high")))


def table(d: Mapping[str, Any], key: str, where: str, at: str) -> Mapping[str, Any]:
    """A required object of objects (a breakdown by group): each value checked to be an object."""
    sub = req(d, key, (dict,), where, at)
    for k, v in sub.items():
        obj(v, where, path_of(path_of(at, key), k))
    return sub
