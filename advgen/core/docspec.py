"""Records stated once as their JSON fields: each dataclass field says, through `spec`, what JSON type it holds.

`load_record` reads a JSON object into such a record, in its field order (the file's key order): strictly (every
field there, unless `opt`) or leniently (an absent field is None, an older shape's variant is accepted). Either
way a field of the wrong type is an AdvgenError naming the file and the dotted path (`advgen.core.docfields`).
`plain_record` writes the record back: the same keys in the same order, so a document read and written again
keeps its bytes; NaN stays NaN (written null by `advgen.core.files.dumps`).

Kinds: num (number, null read as NaN), int, str, bool, ci ({mean, low, high}), nummap (object of numbers), strs
(array of strings), map / list (any object / array, carried verbatim), rec / recmap / reclist (a record, an object
of records, an array of records). `null`: null is a value of its own (read None, written null).
A record class with `EMPTY_OK = True` may be the empty object {} (not measured), written back as {}; one with
`ALONE = key` may hold that key alone (causal scrubbing's `skipped`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Any

from advgen.core import docfields as f
from advgen.core.files import type_name
from advgen.core.types import AdvgenError, Interval

NAN = float("nan")


def spec(kind: str, cls: type | None = None, opt: bool = False, null: bool = False) -> Any:
    """A record field of JSON kind `kind` (`cls`: the record class of rec / recmap / reclist); `opt`: the current
    shape may leave it out (None is then not written); `null`: null is a value (None) of its own."""
    return field(default=None, metadata={"kind": kind, "cls": cls, "opt": opt, "null": null})


def _ci(v: Any, w: str, at: str, strict: bool) -> Interval:
    if not strict and not isinstance(v, Mapping):  # older documents: a bare number
        x = f.check(v, f.NUM, w, at, null=True)
        return Interval(NAN if x is None else x, NAN, NAN)
    d = f.obj(v, w, at)
    if strict:
        return Interval(*(f.number(d, k, w, at) for k in ("mean", "low", "high")))
    got = (f.opt(d, k, f.NUM, w, at) for k in ("mean", "low", "high"))
    return Interval(*(NAN if x is None else x for x in got))


def _value(meta: Mapping[str, Any], v: Any, w: str, at: str, strict: bool) -> Any:
    kind, cls = meta["kind"], meta["cls"]
    if v is None and (meta["null"] or kind == "num"):
        return NAN if kind == "num" else None
    if kind == "num":
        return f.check(v, f.NUM, w, at, null=True)
    if kind in ("int", "str"):
        return f.check(v, (int,) if kind == "int" else (str,), w, at)
    if kind == "bool":
        if not isinstance(v, bool):
            raise AdvgenError(f"{w}: field {at!r} must be boolean, got {type_name(v)}")
        return v
    if kind == "ci":
        return _ci(v, w, at, strict)
    if kind in ("map", "nummap", "recmap"):
        d = f.check(v, (dict,), w, at)
        if kind == "map":
            return d
        if kind == "nummap":
            return {k: _value({"kind": "num", "cls": None, "null": False}, x, w, f.path_of(at, k), strict) for k, x in d.items()}
        return {k: load_record(cls, x, w, f.path_of(at, k), strict) for k, x in d.items()}
    if kind in ("list", "strs", "reclist"):
        a = f.check(v, (list,), w, at)
        if kind == "list":
            return a
        if kind == "strs":
            return tuple(f.check(x, (str,), w, f"{at}[{i}]") for i, x in enumerate(a))
        return tuple(load_record(cls, x, w, f"{at}[{i}]", strict) for i, x in enumerate(a))
    if kind == "rec":
        return load_record(cls, v, w, at, strict)
    raise AdvgenError(f"{w}: field {at!r}: unknown kind {kind!r}")  # a programming error, said plainly


class PlainRecord:
    """Base of a spec'd record whose JSON form is its fields in order (`plain_record`): the one `to_dict` they share."""

    def to_dict(self) -> dict[str, Any]:
        return plain_record(self)


def load_record(cls: Any, d: Any, w: str, at: str, strict: bool) -> Any:
    """`d` (a JSON object) as a `cls` record: strictly, every non-`opt` field must be there (unless `d` is {} and
    `cls.EMPTY_OK`); leniently, an absent field is None."""
    d = f.obj(d, w, at)
    alone = getattr(cls, "ALONE", None)
    need = strict and not (not d and getattr(cls, "EMPTY_OK", False)) and not (alone is not None and alone in d)
    vals: dict[str, Any] = {}
    for fl in fields(cls):
        meta = fl.metadata
        if "kind" not in meta:
            continue
        if fl.name not in d:
            if need and not meta["opt"]:
                raise AdvgenError(f"{w}: field {f.path_of(at, fl.name)!r} is missing")
            continue
        vals[fl.name] = _value(meta, d[fl.name], w, f.path_of(at, fl.name), strict)
    return cls(**vals)


def _plain(v: Any) -> Any:
    if isinstance(v, Interval):
        return v.as_dict()
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def plain_record(rec: Any) -> dict[str, Any]:
    """The record as its JSON object: every field in order; an `opt` field that is None is left out; a record
    whose every field is None is {}."""
    specs = [fl for fl in fields(rec) if "kind" in fl.metadata]
    if all(getattr(rec, fl.name) is None for fl in specs):
        return {}
    return {fl.name: _plain(getattr(rec, fl.name)) for fl in specs if not (getattr(rec, fl.name) is None and fl.metadata["opt"])}


def is_number(x: Any) -> bool:
    """A finite number (not NaN: a null as read, nor absent)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
