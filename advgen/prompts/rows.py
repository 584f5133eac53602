"""IOI prompts rebuilt from the rows of a run directory or a validated JSONL, and their ABC twins.

A row records its text, names and slot positions, not its token ids. Rebuilding re-tokenizes the
text (BOS first, as advgen renders every prompt) and checks each slot against the tokens, so a row
from another tokenizer, or one edited by hand, is an error naming its file, line and slot, never a
prompt whose metric is silently read at the wrong position. (`datasets.row_prompt` instead derives
slots from the name mentions, first IO, first and second S: right for a user's prompt file, wrong for
an attack row whose added sentences mention the names again.) The ABC twin replaces the token at S2
by a third name (the IOI paper's corruption), only when the replacement keeps every other token.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from advgen.core.types import AdvgenError, Prompt
from advgen.prompts.templates import single_token_id

SLOTS = ("IO", "S1", "S2", "END")
"""Slots every IOI row must name; S1+1 follows from S1 when a row omits it."""


def _ids(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _positions(row: Mapping[str, Any], n: int, where: str) -> dict[str, int]:
    pos = row.get("positions")
    if not isinstance(pos, Mapping):
        raise AdvgenError(f"{where}: row has no positions object (slot -> token index)")
    out: dict[str, int] = {}
    for slot in SLOTS:
        v = pos.get(slot)
        if isinstance(v, bool) or not isinstance(v, int):
            raise AdvgenError(f"{where}: slot {slot} has no integer position (got {v!r})")
        if not 0 <= v < n:
            raise AdvgenError(f"{where}: slot {slot} at token {v} is outside the prompt's {n} tokens")
        out[slot] = v
    for slot, v in pos.items():  # other slots (PLACE, OBJECT, S1+1) are kept when they are token indices
        if slot not in out and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n:
            out[slot] = v
    out.setdefault("S1+1", out["S1"] + 1)
    if out["END"] != n - 1:
        raise AdvgenError(
            f"{where}: slot END is token {out['END']}, but the text has {n} tokens (BOS included): END must be the last"
        )
    return out


def prompt_of_row(row: Mapping[str, Any], tokenizer: Any, where: str) -> Prompt:
    """The row's prompt, re-tokenized with BOS and checked slot by slot (IO, S1, S2 decode to ' name')."""
    text, io, s = row.get("text"), row.get("io"), row.get("s")
    if not all(isinstance(x, str) and x for x in (text, io, s)):
        raise AdvgenError(f"{where}: row needs non-empty text, io and s strings")
    assert isinstance(text, str) and isinstance(io, str) and isinstance(s, str)
    if tokenizer.bos_token_id is None:
        raise AdvgenError("the tokenizer has no BOS token; advgen rows count BOS at position 0")
    ids = [tokenizer.bos_token_id, *_ids(tokenizer, text)[0]]
    if "n_tokens" in row and row["n_tokens"] != len(ids):
        raise AdvgenError(
            f"{where}: the row says {row['n_tokens']} tokens, this tokenizer gives {len(ids)} (BOS included): "
            "was it made with another model's tokenizer?"
        )
    pos = _positions(row, len(ids), where)
    for slot, name in (("IO", io), ("S1", s), ("S2", s)):
        got = tokenizer.decode([ids[pos[slot]]])
        if got != " " + name:
            raise AdvgenError(f"{where}: slot {slot} is token {got!r}, not {' ' + name!r}")
    try:
        io_tok, s_tok = single_token_id(tokenizer, io, "IO name"), single_token_id(tokenizer, s, "S name")
    except AdvgenError as e:
        raise AdvgenError(f"{where}: {e}") from None
    return Prompt(
        text=text,
        io=io,
        s=s,
        token_ids=tuple(ids),
        positions=pos,
        io_token=io_tok,
        s_token=s_tok,
        template_id=str(row.get("template_id", "")),
        order=str(row.get("order", "")),
        family=str(row.get("family", "clean")),
        pair_id=str(row.get("pair_id", "")),
        extra={"row": where},
    )


def abc_twin(p: Prompt, tokenizer: Any, pool: Sequence[str], seed: int, tries: int = 8) -> Prompt | str:
    """p with S2 replaced by a third name from `pool` (start fixed by seed and text), or why none fits.

    A name qualifies when it is not in the text and the new text tokenizes to the same ids except at S2."""
    words = set(re.findall(r"\w+", p.text))
    cands = [n for n in pool if n not in words]
    if not cands:
        return "no third name outside the prompt"
    ids, offsets = _ids(tokenizer, p.text)
    a, b = offsets[p.positions["S2"] - 1]
    start = int(hashlib.sha256(f"{seed}|{p.text}".encode()).hexdigest(), 16) % len(cands)
    for k in range(min(tries, len(cands))):
        c = cands[(start + k) % len(cands)]
        text = p.text[:a] + p.text[a:b].replace(p.s, c, 1) + p.text[b:]
        new = _ids(tokenizer, text)[0]
        if len(new) == len(ids) and all(
            x == y for i, (x, y) in enumerate(zip(new, ids, strict=True)) if i != p.positions["S2"] - 1
        ):
            return Prompt(
                text=text,
                io=p.io,
                s=p.s,
                token_ids=(p.token_ids[0], *new),
                positions=dict(p.positions),
                io_token=p.io_token,
                s_token=p.s_token,
                template_id=p.template_id,
                order="ABC",
                family="abc",
                pair_id=p.pair_id,
                extra={**p.extra, "third": c},
            )
    return f"none of {min(tries, len(cands))} third names keeps the other tokens"
