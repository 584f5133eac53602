"""Tasks written in YAML: read strictly, checked whole, every error naming the file, line and slot.

    task: capital               # the task's name (circuits record it)
    metric: logit_diff          # or prob_diff
    lexicons: {country: [France, Spain], word: vocab-words}
    slots: {COUNTRY: country, F1: word}
    templates: [{id: t1, text: "The capital of {COUNTRY} is"}]
    answer: {slot: COUNTRY, map: {France: Paris, Spain: Madrid}}
    foil:   {slot: COUNTRY, map: {France: Madrid, Spain: Paris}}
    corrupt: {slot: COUNTRY}    # the twin: that slot's (first) mention given a fresh value
    roles: {mover: {query: END, key: COUNTRY}}
    edits: {insert_before: COUNTRY, filler: word}

The whole file is checked before any model loads, so a typo fails in a second, not after a run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from advgen.core.files import read_text
from advgen.core.yamlsafe import MAX_YAML_CHARS, StrictLoader, load_yaml
from advgen.tasks.spec import (
    COMPARES,
    METRICS,
    POSITION_RE,
    SLOT_RE,
    AnswerRule,
    Corruption,
    Edits,
    RoleSpec,
    Task,
    TaskError,
    TaskTemplate,
)

KEYS = {"task", "description", "metric", "lexicons", "slots", "templates", "answer", "foil", "corrupt", "roles", "edits"}
GENERATED = ("vocab-words", "range:A-B")
"""Generated lexicons: "vocab-words" = the tokenizer's single-token lowercase words of 3+ letters; "range:00-99" =
the numbers A..B written with A's width (zero-padded: two-digit years)."""
RANGE_RE = re.compile(r"range:(\d+)-(\d+)")


def expand_range(spec: str) -> tuple[str, ...] | None:
    """ "range:02-98" -> ("02", ..., "98"); None if `spec` is not a range."""
    m = RANGE_RE.fullmatch(spec)
    if not m:
        return None
    a, b = m.groups()
    return tuple(str(i).zfill(len(a)) for i in range(int(a), int(b) + 1))


class _Lines(StrictLoader):
    """Strict loading that records each mapping's line under "__line__"."""


def _mapping(loader: _Lines, node: yaml.MappingNode) -> dict[str, Any]:
    d: dict[str, Any] = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    d["__line__"] = node.start_mark.line + 1
    return d


_Lines.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _line(d: Any) -> Any:
    return d.get("__line__", "?") if isinstance(d, dict) else "?"


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "__line__"}


def load_task(path: str | Path) -> Task:
    """A task file, checked whole (slots, lexicons, answer rule, roles, edits)."""
    path = Path(path)
    where = str(path)
    doc = load_yaml(read_text(path, "task file", limit=4 * MAX_YAML_CHARS), where, _Lines)
    if not isinstance(doc, dict):
        raise TaskError(f"{where}: a task file is a mapping with keys {sorted(KEYS)}")
    return task_from_doc(doc, where)


def task_from_doc(doc: Mapping[str, Any], where: str) -> Task:
    unknown = sorted(set(doc) - KEYS - {"__line__"})
    if unknown:
        raise TaskError(f"{where}:{_line(doc)}: unknown key(s) {unknown}; a task file has {sorted(KEYS)}")
    for k in ("task", "lexicons", "slots", "templates", "answer", "foil"):
        if k not in doc:
            raise TaskError(f"{where}: missing required key {k!r}")
    name = doc["task"]
    if not isinstance(name, str) or not name.strip():
        raise TaskError(f"{where}: 'task' must be a non-empty name")
    lexicons = _lexicons(doc["lexicons"], where)
    slots = _slots(doc["slots"], lexicons, where)
    templates = _templates(doc["templates"], slots, where)
    answer, foil = (
        _rule(doc["answer"], "answer", slots, lexicons, templates, where),
        _rule(doc["foil"], "foil", slots, lexicons, templates, where),
    )
    metric = doc.get("metric", "logit_diff")
    if metric not in METRICS:
        raise TaskError(f"{where}: metric {metric!r} is not one of {list(METRICS)}")
    corrupt = _corrupt(doc.get("corrupt"), slots, templates, where)
    roles = _roles(doc.get("roles") or {}, slots, where)
    edits = _edits(doc.get("edits"), slots, lexicons, where)
    return Task(
        name=name.strip(),
        description=str(doc.get("description", "")).strip(),
        templates=templates,
        lexicons=lexicons,
        slots=slots,
        answer=answer,
        foil=foil,
        metric=metric,
        corrupt=corrupt,
        roles=roles,
        edits=edits,
        source=where,
    )


def _lexicons(raw: Any, where: str) -> dict[str, tuple[str, ...] | str]:
    if not isinstance(raw, dict) or not _plain(raw):
        raise TaskError(f"{where}:{_line(raw)}: 'lexicons' must map lexicon names to word lists (or {list(GENERATED)})")
    out: dict[str, tuple[str, ...] | str] = {}
    for k, v in _plain(raw).items():
        if isinstance(v, list):  # numbers written bare (century: [11, 12]) are words too
            v = [str(w) if isinstance(w, int) and not isinstance(w, bool) else w for w in v]
        if isinstance(v, str) and expand_range(v) is not None:
            words = expand_range(v) or ()
            if not words:
                raise TaskError(f"{where}:{_line(raw)}: lexicon {k!r}: {v!r} is an empty range")
            out[k] = words
        elif isinstance(v, str):
            if v != "vocab-words":
                raise TaskError(f"{where}:{_line(raw)}: lexicon {k!r}: {v!r} is not a word list or one of {list(GENERATED)}")
            out[k] = v
        elif isinstance(v, list) and v and all(isinstance(w, str) and w.strip() == w and w for w in v):
            if len(set(v)) != len(v):
                raise TaskError(f"{where}:{_line(raw)}: lexicon {k!r} lists a word twice")
            out[k] = tuple(str(w) for w in v)
        else:
            raise TaskError(f"{where}:{_line(raw)}: lexicon {k!r} must be a non-empty list of words without surrounding spaces")
    return out


def _slots(raw: Any, lexicons: Mapping[str, Any], where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not _plain(raw):
        raise TaskError(f"{where}:{_line(raw)}: 'slots' must map slot names to lexicon names")
    out = {}
    for slot, lex in _plain(raw).items():
        if not SLOT_RE.fullmatch("{" + slot + "}") or slot == "END":
            raise TaskError(f"{where}:{_line(raw)}: slot name {slot!r} must be a letter then letters, digits or _ (and not END)")
        if lex not in lexicons:
            raise TaskError(
                f"{where}:{_line(raw)}: slot {{{slot}}} uses lexicon {lex!r}, which 'lexicons' does not define "
                f"({sorted(lexicons)})"
            )
        out[slot] = lex
    return out


def _templates(raw: Any, slots: Mapping[str, str], where: str) -> tuple[TaskTemplate, ...]:
    if not isinstance(raw, list) or not raw:
        raise TaskError(f"{where}: 'templates' must be a non-empty list of {{id, text}}")
    out, seen = [], set()
    for i, e in enumerate(raw):
        line = _line(e)
        if not isinstance(e, dict) or not isinstance(e.get("text"), str) or not e["text"].strip():
            raise TaskError(f"{where}:{line}: template #{i + 1} needs a non-empty 'text'")
        tid = str(e.get("id", f"t{i + 1:02d}"))
        if tid in seen:
            raise TaskError(f"{where}:{line}: duplicate template id {tid!r}")
        seen.add(tid)
        t = TaskTemplate(tid, e["text"], f"{where}:{line}")
        stray = [s for s in SLOT_RE.findall(t.text) if s not in slots]
        if stray or "{" in SLOT_RE.sub("", t.text) or "}" in SLOT_RE.sub("", t.text):
            what = f"slot {{{stray[0]}}} is not declared in 'slots'" if stray else "a brace that is not a {SLOT}"
            raise TaskError(f"{where}:{line}: template {tid!r}: {what}")
        for m in SLOT_RE.finditer(t.text):
            if m.start() > 0 and t.text[m.start() - 1].isalnum():
                raise TaskError(
                    f"{where}:{line}: template {tid!r}: slot {{{m.group(1)}}} is glued to a word; a slot follows a space, "
                    "starts the text, or follows another slot or a sign ({XX}{YY}, ${XX}), so its token is known"
                )
        out.append(t)
    return tuple(out)


def _rule(
    raw: Any, what: str, slots: Mapping[str, str], lexicons: Mapping[str, Any], templates: tuple[TaskTemplate, ...], where: str
) -> AnswerRule:
    if not isinstance(raw, dict) or not isinstance(raw.get("slot"), str):
        raise TaskError(
            f"{where}:{_line(raw)}: '{what}' must be {{slot: NAME}}, {{slot: NAME, map: {{value: word}}}} "
            "or {slot: NAME, compare: '>', over: LEXICON}"
        )
    unknown = sorted(set(raw) - {"slot", "map", "compare", "over", "space", "__line__"})
    if unknown:
        raise TaskError(f"{where}:{_line(raw)}: {what}: unknown key(s) {unknown}; use slot, map, compare, over, space")
    slot = raw["slot"]
    if slot not in slots:
        raise TaskError(f"{where}:{_line(raw)}: {what} slot {{{slot}}} is not declared in 'slots'")
    missing = [t.id for t in templates if slot not in t.slots]
    if missing:
        raise TaskError(f"{where}:{_line(raw)}: {what} slot {{{slot}}} is missing from template(s) {missing}")
    space = raw.get("space", True)
    if not isinstance(space, bool):
        raise TaskError(f"{where}:{_line(raw)}: {what} 'space' must be true or false")
    if "compare" in raw:
        return _set_rule(raw, what, slot, slots, lexicons, where, space)
    mapping = raw.get("map") or {}
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v.strip() == v and v for v in _plain(mapping).values()):
        raise TaskError(f"{where}:{_line(raw)}: {what} 'map' must map slot values to single words")
    mapping = {str(k): v for k, v in _plain(mapping).items()}
    lex = lexicons[slots[slot]]
    if mapping and isinstance(lex, tuple):
        unmapped = [w for w in lex if w not in mapping]
        if unmapped:
            raise TaskError(f"{where}:{_line(raw)}: {what} 'map' has no entry for {{{slot}}} value(s) {unmapped[:5]}")
    elif mapping:
        raise TaskError(f"{where}:{_line(raw)}: {what} 'map' needs {{{slot}}} to use a listed lexicon, not {lex!r}")
    return AnswerRule(slot, mapping, space=space)


def _set_rule(
    raw: Mapping[str, Any], what: str, slot: str, slots: Mapping[str, str], lexicons: Mapping[str, Any], where: str, space: bool
) -> AnswerRule:
    at = f"{where}:{_line(raw)}: {what}"
    if raw["compare"] not in COMPARES:
        raise TaskError(f"{at}: compare {raw['compare']!r} is not one of {list(COMPARES)}")
    over = raw.get("over", slots[slot])
    words = lexicons.get(over)
    if not isinstance(words, tuple):
        raise TaskError(f"{at}: 'over' must name a listed or range lexicon, got {over!r}")
    own = lexicons[slots[slot]]
    for w in (*words, *(own if isinstance(own, tuple) else ())):
        try:
            float(w)
        except ValueError:
            raise TaskError(
                f"{at}: a set rule compares numbers; {w!r} (slot {{{slot}}} or lexicon {over!r}) is not one"
            ) from None
    return AnswerRule(slot, compare=raw["compare"], over=words, space=space)


def _corrupt(raw: Any, slots: Mapping[str, str], templates: tuple[TaskTemplate, ...], where: str) -> Corruption | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("slot") not in slots:
        raise TaskError(f"{where}:{_line(raw)}: 'corrupt' must be {{slot: NAME, mention: K}} with a declared slot")
    value = raw.get("value", "")
    value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, str):
        raise TaskError(f"{where}:{_line(raw)}: corrupt 'value' must be a word, e.g. \"01\"")
    mention = raw.get("mention", 1)
    if not isinstance(mention, int) or mention < 1:
        raise TaskError(f"{where}:{_line(raw)}: corrupt mention must be an integer >= 1, got {mention!r}")
    for t in templates:
        n = SLOT_RE.findall(t.text).count(raw["slot"])
        if n < mention:
            raise TaskError(
                f"{where}:{_line(raw)}: corrupt asks for mention {mention} of {{{raw['slot']}}}, template {t.id!r} has {n}"
            )
    return Corruption(raw["slot"], mention, value)


def _position(p: Any, slots: Mapping[str, str], at: str) -> str:
    if not isinstance(p, str) or not POSITION_RE.fullmatch(p):
        raise TaskError(f"{at}: position {p!r} must be END, ALL, SLOT, SLOT@2 or SLOT+1")
    base = p.split("@")[0].split("+")[0]
    if p not in ("END", "ALL") and base not in slots:
        raise TaskError(f"{at}: position {p!r} names slot {{{base}}}, which is not declared in 'slots'")
    return p


def _roles(raw: Any, slots: Mapping[str, str], where: str) -> tuple[RoleSpec, ...]:
    if not isinstance(raw, dict):
        raise TaskError(f"{where}: 'roles' must map role names to {{query, key}}")
    out = []
    for name, r in _plain(raw).items():
        at = f"{where}:{_line(r)}: role {name!r}"
        if not isinstance(r, dict) or "query" not in r or "key" not in r:
            raise TaskError(f"{at}: needs 'query' and 'key' positions (where its heads attend from and to)")
        out.append(
            RoleSpec(str(name), _position(r["query"], slots, at), _position(r["key"], slots, at), str(r.get("description", "")))
        )
    return tuple(out)


def _edits(raw: Any, slots: Mapping[str, str], lexicons: Mapping[str, Any], where: str) -> Edits | None:
    if raw is None:
        return None
    at = f"{where}:{_line(raw)}: edits"
    if not isinstance(raw, dict) or "insert_before" not in raw or "filler" not in raw:
        raise TaskError(f"{at}: needs 'insert_before' (a position) and 'filler' (a lexicon)")
    if raw["filler"] not in lexicons:
        raise TaskError(f"{at}: filler lexicon {raw['filler']!r} is not defined in 'lexicons'")
    dose = raw.get("max_dose", 3)
    if not isinstance(dose, int) or not 1 <= dose <= 8:
        raise TaskError(f"{at}: max_dose must be an integer in 1..8, got {dose!r}")
    mention = raw.get("mention", "")
    if mention:
        if not isinstance(mention, str) or mention.count("{E}") != 1:
            raise TaskError(f"{at}: mention must be text with exactly one {{E}} (the inserted value), got {mention!r}")
        unknown = sorted(set(re.findall(r"\{(\w+)\}", mention)) - {"E", *slots})
        if unknown:
            raise TaskError(f"{at}: mention names slots {unknown} that the task does not define")
    return Edits(_position(raw["insert_before"], slots, at), raw["filler"], dose, mention)
