"""Attention patterns of a circuit's heads on a few example prompts: heatmaps and a circuitsvis view.

The one place the report runs a model: a single forward per example prompt, caching only
`hook_pattern` of the layers that hold the chosen heads. Everything else in the report reads files.
The interactive view is circuitsvis's `AttentionHeads` with the JS bundle the circuitsvis wheel
ships (dist/cdn/iife.js) inlined once, so the report never loads anything from a CDN.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.circuits.format import Circuit
from advgen.core.types import AdvgenError, Head, Role
from advgen.model.validate import model_device

ROLE_ORDER = (
    Role.NAME_MOVER,
    Role.S_INHIBITION,
    Role.INDUCTION,
    Role.DUPLICATE_TOKEN,
    Role.PREVIOUS_TOKEN,
    Role.NEGATIVE_NAME_MOVER,
    Role.BACKUP_NAME_MOVER,
)


@dataclass(frozen=True)
class Example:
    """One prompt shown in the heatmaps: its label, tokens (with slot marks) and per-head patterns."""

    label: str
    tokens: tuple[str, ...]
    patterns: Mapping[Head, np.ndarray]
    """[query, key] attention probabilities of each head."""


def pick_heads(circuit: Circuit, per_role: int = 2) -> list[tuple[Head, str]]:
    """Up to `per_role` heads of each role, in the order the IOI algorithm uses them."""
    out: list[tuple[Head, str]] = []
    roles = [r for r in ROLE_ORDER if r in circuit.roles] + sorted(set(circuit.roles) - set(ROLE_ORDER), key=str)
    for role in roles:
        heads = sorted(circuit.heads_with(role))[:per_role]
        out += [(h, role.value) for h in heads]
    return out


def token_ids(tok: Any, row: Mapping[str, Any]) -> list[int]:
    """The row's token ids as the validator saw them (BOS prepended when n_tokens says so)."""
    ids = list(tok(row["text"], add_special_tokens=False)["input_ids"])
    n = int(row.get("n_tokens", len(ids)))
    if n == len(ids) + 1:
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ids = [int(bos)] + ids
    elif n != len(ids):
        raise AdvgenError(f"row {row.get('pair_id')!r}: text gives {len(ids)} tokens, the run recorded {n}; wrong tokenizer?")
    return ids


def _labels(tok: Any, ids: Sequence[int], positions: Mapping[str, int]) -> tuple[str, ...]:
    marks: dict[int, list[str]] = {}
    for slot, i in positions.items():
        if slot in ("IO", "S1", "S2", "END"):
            marks.setdefault(int(i), []).append(slot)
    out = []
    for i, t in enumerate(ids):
        s = tok.decode([t]).replace("\n", "\\n")
        out.append(f"{s} [{'/'.join(marks[i])}]" if i in marks else s)
    return tuple(out)


def patterns(model: Any, heads: Sequence[Head], rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Example]:
    """Run each (label, row) once and keep the [q, k] pattern of each head."""
    for h in heads:
        h.check_in(model.n_layers, model.n_heads, f"model {model.name!r}")
    layers = sorted({h.layer for h in heads})
    out = []
    for label, row in rows:
        ids = token_ids(model.tokenizer, row)
        store: dict[int, torch.Tensor] = {}

        def make(layer: int, store: dict[int, torch.Tensor] = store):
            def hook(pattern: torch.Tensor, hook: Any) -> None:
                store[layer] = pattern[0].detach().float().cpu()

            return hook

        fwd = [(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in layers]
        with torch.inference_mode(), model.bridge.hooks(fwd_hooks=fwd):
            model.bridge(torch.tensor([ids], device=model_device(model)))
        missing = [layer for layer in layers if layer not in store]
        if missing:
            raise AdvgenError(f"model {model.name!r} did not fire blocks.{missing[0]}.attn.hook_pattern")
        pats = {h: store[h.layer][h.head].numpy() for h in heads}
        out.append(Example(label, _labels(model.tokenizer, ids, row.get("positions") or {}), pats))
    return out


def circuitsvis_bundle() -> tuple[str, str]:
    """(version, JS) of the browser bundle inside the installed circuitsvis package, safe to inline in <script>."""
    spec = importlib.util.find_spec("circuitsvis")
    if spec is None or not spec.submodule_search_locations:
        raise AdvgenError("circuitsvis is not installed (pip install circuitsvis); the interactive attention view needs it")
    path = Path(next(iter(spec.submodule_search_locations))) / "dist" / "cdn" / "iife.js"
    if not path.exists():
        raise AdvgenError(
            f"{path}: this circuitsvis install ships no browser bundle; the view would need a CDN, so it is skipped"
        )
    js = re.sub(r"//# sourceMappingURL=\S*\s*$", "", path.read_text(encoding="utf-8"))
    return metadata.version("circuitsvis"), js.replace("</script", "<\\/script")


def _js(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def interactive_html(examples: Sequence[Example], heads: Sequence[tuple[Head, str]], div_prefix: str = "advgen-cv") -> str:
    """circuitsvis AttentionHeads per example prompt (all chosen heads), bundle inlined once; deterministic ids."""
    version, js = circuitsvis_bundle()
    names = [f"{h} {role}" for h, role in heads]
    parts = [f"<script>/* circuitsvis {version}: dist/cdn/iife.js from the installed package, inlined */\n{js}\n</script>"]
    for i, ex in enumerate(examples):
        props = {
            "attention": [np.round(np.nan_to_num(ex.patterns[h]), 4).tolist() for h, _ in heads],
            "tokens": list(ex.tokens),
            "attentionHeadNames": names,
            "maskUpperTri": True,
        }
        div = f"{div_prefix}-{i}"
        parts.append(
            f'<p class="note">{html.escape(ex.label)}</p><div id="{div}" class="circuitsvis"></div>'
            f"<script>CircuitsVis.render({_js(div)}, CircuitsVis.AttentionHeads, {_js(props)});</script>"
        )
    return "\n".join(parts)
