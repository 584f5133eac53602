"""Records are bound to the model they were measured on: identity, staleness, and measuring when missing.

A behaviour record describes one model's weights; reused on another model (another checkpoint of
the same name, another tokenizer) it would compile predictions about a mechanism that is not
there. So every record carries `model_identity`, and `stale_records` says why a circuit's records
cannot be used on a model (missing, partial, unlabelled or from other weights), for
`advgen.circuits.behaviour.ensure_records` to measure them afresh.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from advgen.circuits.format import Circuit
from advgen.model.loading import LoadedModel
from advgen.prompts.templates import tokenizer_hash

_WEIGHT_HASHES: dict[int, tuple[Any, str]] = {}


def model_identity(model: LoadedModel) -> dict[str, str]:
    """Which model a record was measured on: its name, tokenizer hash and a sha256 over every weight (cached per model)."""
    hf = model.hf_model
    hit = _WEIGHT_HASHES.get(id(hf))
    if hit is None or hit[0]() is not hf:
        h = hashlib.sha256()
        for k, t in sorted(hf.state_dict().items()):
            h.update(k.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        hit = (weakref.ref(hf), h.hexdigest())
        _WEIGHT_HASHES[id(hf)] = hit
    return {"model": str(model.name), "tokenizer_hash": tokenizer_hash(model.tokenizer), "weights_sha256": hit[1]}


def stale_records(circuit: Circuit, ident: Mapping[str, str]) -> str | None:
    """Why the circuit's records cannot be used on the model with identity `ident` (None: every node has one measured on it)."""
    nodes = [(f"head {h.head}", h.behaviour) for h in circuit.heads] + [(f"MLP node {m.node}", m.behaviour) for m in circuit.mlps]
    if not any(b for _, b in nodes):
        return "the circuit has no behaviour records"
    missing = [name for name, b in nodes if not b]
    if missing:
        return f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no behaviour record"
    for name, b in nodes:
        on = b.get("measured_on") or {}
        if not on:
            return f"{name}'s record does not say which model it was measured on (it predates model identities)"
        if (on.get("weights_sha256"), on.get("tokenizer_hash")) != (ident["weights_sha256"], ident["tokenizer_hash"]):
            return (
                f"{name}'s record was measured on another model ({on.get('model')!r}, weights "
                f"{str(on.get('weights_sha256'))[:12]}), not on {ident['model']!r} (weights {ident['weights_sha256'][:12]})"
            )
    return None
