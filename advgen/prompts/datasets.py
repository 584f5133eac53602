"""Seeded sampling of clean IOI prompts and their matched ABC counterparts.

Sampling is balanced: prompts cycle through every (template, order) cell before any repeats,
so small samples still cover all templates and both name orders evenly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from advgen.core.types import AdvgenError, Prompt, PromptSet
from advgen.prompts.lexicon import Lexicon, build_lexicon
from advgen.prompts.templates import (
    ORDERS,
    Fill,
    Template,
    check_template,
    render,
    resolve_templates,
    tokenizer_hash,
)


@dataclass(frozen=True)
class Spec:
    """An unrendered prompt: which template, which order, which fillers."""

    template: Template
    order: str
    fill: Fill
    pair_id: str
    third: str
    """A name distinct from IO and S, drawn with the prompt so its ABC twin is fixed by the seed."""


def iter_specs(
    templates: Sequence[Template],
    lexicon: Lexicon,
    n: int,
    seed: int,
    orders: Sequence[str] = ORDERS,
) -> Iterator[Spec]:
    """n specs one at a time (memory flat in n), balanced over templates x orders, names distinct."""
    if n < 1:
        raise AdvgenError(f"--n must be >= 1, got {n}")
    if not templates:
        raise AdvgenError("no templates given")
    rng = random.Random(seed)
    names = lexicon.name_texts
    if len(names) < 3:
        raise AdvgenError(f"need at least 3 single-token names, lexicon has {len(names)}")
    cells = [(t, o) for t in templates for o in orders]
    done = 0
    while done < n:
        block = cells[:]
        rng.shuffle(block)
        for t, o in block[: n - done]:
            io, s, c = rng.sample(names, 3)
            extra_slots = sorted({sl for sl in t.slots if sl.startswith("X")})
            x = tuple(rng.sample([m for m in names if m not in (io, s, c)], len(extra_slots)))
            fill = Fill(io=io, s=s, x=x, place=rng.choice(lexicon.places), object=rng.choice(lexicon.objects))
            yield Spec(t, o, fill, pair_id=f"s{seed}-{done:06d}", third=c)
            done += 1


def sample_specs(
    templates: Sequence[Template],
    lexicon: Lexicon,
    n: int,
    seed: int,
    orders: Sequence[str] = ORDERS,
) -> list[Spec]:
    """n specs, balanced over templates x orders, names distinct within a prompt."""
    return list(iter_specs(templates, lexicon, n, seed, orders))


def render_spec(sp: Spec, tokenizer: Any, *, abc: bool = False, prepend_bos: bool = True) -> Prompt:
    """One spec rendered; with abc=True its S2 is replaced by the third name (p_ABC twin)."""
    fill, family = (replace(sp.fill, c=sp.third), "abc") if abc else (sp.fill, "clean")
    return render(sp.template, sp.order, fill, tokenizer, prepend_bos=prepend_bos, family=family, pair_id=sp.pair_id)


def build(specs: Sequence[Spec], tokenizer: Any, *, abc: bool = False, prepend_bos: bool = True) -> PromptSet:
    """Render specs; with abc=True each prompt's S2 is replaced by a third name (p_ABC twin)."""
    prompts = [render_spec(sp, tokenizer, abc=abc, prepend_bos=prepend_bos) for sp in specs]
    return PromptSet(tuple(prompts), tokenizer_hash(tokenizer))


def _slotify(text: str, io: str, s: str, c: str | None, where: str) -> str:
    """Turn literal text into template text: first IO -> {IO}, S mentions -> {S1}, {S2}, ..."""
    import re

    counts = {io: 0, s: 0, **({c: 0} if c else {})}
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in sorted(counts, key=len, reverse=True)) + r")(?!\w)")
    found: list[str] = []

    def sub(m: re.Match[str]) -> str:
        w = m.group(1)
        counts[w] += 1
        k = counts[w]
        if w == io:
            slot = "IO" if k == 1 else f"IO{k}"
        elif w == s:
            slot = "S1" if k == 1 else ("S2" if (k == 2 and not c) else f"S{k + (1 if c else 0)}")
        else:
            if k > 1:
                raise AdvgenError(f"{where}: the third name {w!r} may appear only once (it stands at S2)")
            slot = "S2"
        found.append(slot)
        return "{" + slot + "}"

    out = pattern.sub(sub, text.replace("{", "{{").replace("}", "}}"))
    for need, word in (("IO", io), ("S1", s), ("S2", c or s)):
        if need not in found:
            raise AdvgenError(f"{where}: text does not contain the {need} mention ({word!r})")
    if "{{" in out:
        raise AdvgenError(f"{where}: text contains braces, which are not supported")
    return out


ROW_TYPES: Mapping[str, tuple[type, ...]] = {
    "text": (str,),
    "io": (str,),
    "s": (str,),
    "c": (str, type(None)),
    "template_id": (str, int),
    "order": (str,),
    "family": (str,),
    "pair_id": (str, int),
    "extra": (dict, type(None)),
}
"""Types a prompt JSONL row's fields must have (absent fields are fine, except text, io, s)."""


def _third_name(row: Mapping[str, Any]) -> str | None:
    """C of an ABC row: the row's `c`, or the `extra.fill.c` an advgen export carries."""
    if row.get("c") is not None:
        return str(row["c"])
    extra = row.get("extra")
    fill = extra.get("fill") if isinstance(extra, dict) else None
    c = fill.get("c") if isinstance(fill, dict) else None
    return c if isinstance(c, str) and c else None


def row_prompt(row: Mapping[str, Any], n: int, where: str, tokenizer: Any, prepend_bos: bool = True) -> Prompt:
    """One JSONL row as a verified Prompt; any problem is an AdvgenError starting with `where`."""
    for k in ("text", "io", "s"):
        if not isinstance(row.get(k), str) or not row[k]:
            raise AdvgenError(f"{where}: field {k!r} must be a non-empty string")
    c = _third_name(row)
    ttext = _slotify(row["text"], row["io"], row["s"], c, where)
    t = Template(id=str(row.get("template_id", "row")), text=ttext, pack="jsonl", source=where)
    try:
        check_template(t)
        order = t.written_order
        return render(
            t,
            order,
            Fill(io=row["io"], s=row["s"], c=c),
            tokenizer,
            prepend_bos=prepend_bos,
            family=str(row.get("family", "clean")),
            pair_id=str(row.get("pair_id", f"row{n}")),
            extra=_carried_extra(dict(row)),
        )
    except AdvgenError as e:
        raise AdvgenError(f"{where}: {e}") from None


def _carried_extra(row: dict[str, Any]) -> dict[str, Any]:
    """Provenance a row brings along, minus what rendering recomputes."""
    extra = row.get("extra")
    return {k: v for k, v in extra.items() if k not in ("fill", "text_order")} if isinstance(extra, dict) else {}


def ioi_sets(tokenizer: Any, n: int, seed: int, templates: str | None = None) -> tuple[PromptSet, PromptSet, PromptSet]:
    """Clean IOI prompts, their ABC twins (S2 -> third name) and S1 twins (S1 -> third name)."""
    specs = sample_specs(resolve_templates(templates), build_lexicon(tokenizer), n, seed)
    s1 = [
        render(sp.template, sp.order, replace(sp.fill, s=sp.third, c=sp.fill.s), tokenizer, family="s1_twin", pair_id=sp.pair_id)
        for sp in specs
    ]
    return build(specs, tokenizer), build(specs, tokenizer, abc=True), PromptSet(tuple(s1), tokenizer_hash(tokenizer))
