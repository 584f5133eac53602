"""The report's Run section: where a run came from (model, seed, command, versions), without local paths.

Run and attack directories carry manifest.json; discover and check-claim directories record the
same in the header of discovery.json / claims.json, which is read when the manifest lacks a value,
through their typed records (advgen.circuits.discovery_doc, advgen.circuits.claims_doc).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advgen.circuits.claims_doc import load_claims
from advgen.circuits.discovery_doc import read_discovery
from advgen.circuits.format import Circuit
from advgen.core.version import version
from advgen.outputs.htmlparts import table
from advgen.outputs.rundata import RunData

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def provenance(data: RunData) -> dict[str, Any]:
    """Model, seed, command, versions: manifest.json, else the header of discovery.json / claims.json (typed records)."""
    m: dict[str, Any] = {k: v for k, v in data.manifest.to_dict().items() if v is not None}  # its record's fields
    for doc in (read_discovery(data.run_dir), load_claims(data.run_dir)):
        if doc is None:
            continue
        for k, v in (
            ("model", doc.model),
            ("model_source", doc.model_source),
            ("seed", doc.seed),
            ("command", doc.command),
            ("versions", doc.versions),
            ("runtime", doc.runtime),
        ):
            if m.get(k) in (None, "", {}) and v not in (None, ""):
                m[k] = v
    return m


def source_label(src: Any) -> str:
    """Where the model came from, without this machine's paths for the bundled model."""
    s = str(src or "")
    try:
        return f"bundled: {Path(s).resolve().relative_to(PACKAGE_ROOT)}" if s else "not recorded"
    except ValueError:
        return s


def section_run(data: RunData) -> str:
    m = provenance(data)
    versions = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items()) or "not recorded"
    rows = [
        ["run directory", data.run_dir.resolve().name],
        ["model", f"{m.get('model') or 'not recorded'} ({source_label(m.get('model_source'))})"],
        ["seed", str(m.get("seed", "not recorded"))],
        ["command", m.get("command") or "not recorded"],
        ["device / precision", runtime_label(m.get("runtime"))],
        ["circuit", circuit_label(data.circuit)],
        ["versions", versions],
        ["report written by", f"advgen {version()}"],
    ]  # the run's own advgen is in versions; a later advgen may report it
    return table(["", ""], rows)


def circuit_label(c: Circuit | None) -> str:
    """The circuit's name and every node with its role and positions: heads, then MLP nodes (format 2)."""
    if c is None:
        return "none"
    heads = ", ".join(f"{h.head} {h.role.value} @{'+'.join(h.positions)}" for h in c.heads)
    text = f"{c.name}: {len(c.heads)} heads ({heads or 'none'})"
    if c.mlps:
        nodes = [f"{m.node} @{'+'.join(m.positions)}" for m in sorted(c.mlps, key=lambda m: m.layer)]
        text += f"; MLP nodes {', '.join(nodes)}"
    return text


def runtime_label(rt: Any) -> str:
    """Device and dtype of the run; reduced precision is said in words, never left to be inferred."""
    if not isinstance(rt, Mapping) or not rt:
        return "not recorded (float32 on the CPU before advgen recorded it)"
    dtype = str(rt.get("dtype", "float32"))
    text = (
        f"{rt.get('device', '?')}, {dtype}, {rt.get('attn_implementation', '?')} attention, "
        f"Hub kernels {rt.get('hub_kernels', '?')}"
    )
    if dtype != "float32":
        text += " - REDUCED PRECISION: numbers differ from float32 (tolerance in docs/gpu.md)"
    return text
