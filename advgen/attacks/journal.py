"""The attack run's journal: the shared content-keyed journal (`advgen.core.journal`) plus the attack's salt.

Units are keyed by a hash of what they evaluate *and* of everything that determines their rows
(`content_salt`: the weights' hash, the tokenizer's hash, the template text, the circuit and every
setting), so `--resume` reuses exactly the units an interrupted run of the same content finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from advgen.circuits.format import Circuit
from advgen.core.journal import Interrupted, Journal, key_of, module_digest, read_unit
from advgen.model.loading import LoadedModel
from advgen.prompts.templates import resolve_templates, tokenizer_hash

__all__ = ["REUSED", "Interrupted", "Journal", "content_salt", "evaluated", "read_unit"]

REUSED = "control_reused_from"
"""Key in a row's `extra` marking a control row copied from an earlier evaluation of the same prompt (no model call)."""


def evaluated(rows: Sequence[Mapping[str, Any]]) -> int:
    """Model evaluations behind `rows`: reused control rows cost nothing."""
    return sum(REUSED not in r.get("extra", {}) for r in rows)


def content_salt(model: LoadedModel, circuit: Circuit, cfg: Any) -> str:
    """What determines an attack's rows beyond its unit keys: weights, tokenizer, template text, circuit, settings."""
    templates = [(t.id, t.text) for t in resolve_templates(cfg.templates)]
    settings = dataclasses.asdict(cfg)
    return key_of(
        "attack", module_digest(model.hf_model), tokenizer_hash(model.tokenizer), templates, circuit.to_dict(), settings
    )
