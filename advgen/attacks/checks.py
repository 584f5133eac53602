"""Structural checks that an edited prompt keeps IO the only sensible answer for a human reader.

Every guided candidate (catalogue or compiled) and every random-baseline perturbation passes
through `check_unambiguous` before it is run, so both sides of the yield comparison obey the
same rules.
"""

from __future__ import annotations

import re

from advgen.core.types import AdvgenError, Prompt


def first_clause(p: Prompt) -> str:
    """The clause that introduces both names: from the first name mention to the punctuation after the second.

    "When Mary and John went to the store, John gave a drink to" -> "Mary and John went to the
    store" (templates without a full stop before S2 included: the clause ends at the comma).
    """
    hits = [m.start() for n in (p.io, p.s) if (m := re.search(rf"\b{re.escape(n)}\b", p.text))]
    if len(hits) < 2:
        raise AdvgenError(f"prompt {p.pair_id}: IO and S are not both in {p.text!r}")
    a, b = min(hits), max(hits)
    end = re.search(r"[.,]", p.text[b:])
    return p.text[a : b + end.start()] if end else p.text[a:]


def check_unambiguous(clean: Prompt, attack: Prompt, control: Prompt) -> None:
    """Structural checks that the attack keeps IO the only sensible answer; raise naming what broke.

    The final clause (from S2 to END) is the clean one; S2 is still S; IO and S are still the two
    names of the first clause; any other name is one of the fill's declared extra names.
    """
    for p in (attack, control):
        where = f"{p.family} of {clean.pair_id} ({p.extra.get('mode')})"
        tail_clean = clean.text[clean.text.rindex(clean.s) :]
        if not p.text.endswith(tail_clean):
            raise AdvgenError(f"{where}: final clause changed: {p.text!r} does not end with {tail_clean!r}")
        if (p.io, p.s) != (clean.io, clean.s) or p.io_token != clean.io_token or p.s_token != clean.s_token:
            raise AdvgenError(f"{where}: IO/S changed")
        if p.token_ids[p.positions["S2"]] != p.s_token or p.token_ids[p.positions["IO"]] != p.io_token:
            raise AdvgenError(f"{where}: S2 or IO position does not hold the right token")
        clause = first_clause(clean)
        if clause not in p.text[: len(p.text) - len(tail_clean)]:
            raise AdvgenError(f"{where}: first clause {clause!r} changed or missing before the final clause")
        declared = list(p.extra.get("fill", {}).get("x", []))
        for slot, pos in p.positions.items():
            if re.fullmatch(r"(IO\d*|S\d+)", slot) and p.token_ids[pos] not in (p.io_token, p.s_token):
                raise AdvgenError(f"{where}: slot {slot} holds neither IO nor S")
        names = {slot for slot in p.positions if slot.startswith("X")}
        if len(names) > len(declared):
            raise AdvgenError(f"{where}: more extra names than declared")
