"""A circuit as EAP-IG graph JSON (the format MIB's circuit track reads), from any run that holds one.

EAP-IG's graph (hannamw/EAP-IG, `Graph.to_json`; MIB, arXiv 2504.13151): nodes `input`, `a{l}.h{h}`
(attention heads), `m{l}` (MLPs), `logits`; an edge from every node to every node downstream of it in
the residual stream, named `src->dst<q|k|v>` into an attention head (one per input it reads) and
`src->dst` otherwise. The file is {"cfg", "nodes": {name: in_graph}, "edges": {name: {"score", "in_graph"}}}.

What advgen writes: the full graph of the model's shape; in_graph = the circuit's heads plus input,
logits and every MLP (advgen's ablations knock out heads only, so MLPs are always kept); an edge is
in the graph when both its ends are. advgen keeps heads at token positions; EAP-IG graphs have none,
so the positions are dropped. Scores (sign as EAP-IG's: the change of the metric when the edge is
corrupted, here mean LD / F(M)): edge-level where advgen measured the edge itself (path patching
head -> logits, and head -> the name mover's q/k/v when the circuit has exactly one name mover, since
that path patching is joint over the name movers); node-level otherwise (the source head's
activation-patching effect `act_ALL`; input and MLP sources have no score: 0). The extra key "advgen"
says which edges carry which.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import numpy as np

from advgen.circuits.discovery_doc import read_discovery
from advgen.circuits.format import Circuit, resolve_circuit
from advgen.core.manifest_doc import read_manifest
from advgen.core.types import AdvgenError, Role

SCORED = ("act_ALL", "pp_logits", "pp_queries", "pp_keys", "pp_values")
"""The discovery matrices the graph's scores read (the others are not scores of a node or an edge)."""


def node_names(n_layers: int, n_heads: int) -> list[str]:
    """Nodes in EAP-IG's order: input, then per layer its heads and its MLP, then logits."""
    out = ["input"]
    for layer in range(n_layers):
        out += [f"a{layer}.h{h}" for h in range(n_heads)] + [f"m{layer}"]
    return out + ["logits"]


def edges(n_layers: int, n_heads: int) -> list[tuple[str, str, str]]:
    """(src, dst, name) for every edge of a sequential (not parallel attention/MLP) transformer."""

    def readers(after: int, mlp_from: int) -> list[tuple[str, str]]:  # (dst, name suffix)
        out: list[tuple[str, str]] = []
        for layer in range(n_layers):
            if layer > after:
                out += [(f"a{layer}.h{h}", f"<{q}>") for h in range(n_heads) for q in "qkv"]
            if layer >= mlp_from:
                out.append((f"m{layer}", ""))
        return [*out, ("logits", "")]

    out = [("input", d, f"input->{d}{s}") for d, s in readers(-1, 0)]
    for layer in range(n_layers):
        out += [(f"a{layer}.h{h}", d, f"a{layer}.h{h}->{d}{s}") for h in range(n_heads) for d, s in readers(layer, layer)]
        out += [(f"m{layer}", d, f"m{layer}->{d}{s}") for d, s in readers(layer, layer + 1)]
    return out


def circuit_source(src: str | Path) -> tuple[Circuit, dict[str, np.ndarray]]:
    """The circuit (and discovery's score matrices, when there) of a discover / attack / check-claim run
    directory, a circuit JSON file, or a built-in circuit name."""
    p = Path(src)
    if p.is_dir():
        doc = read_discovery(p) if (p / "discovery.json").is_file() else None
        matrices = {} if doc is None else doc.arrays(SCORED)
        if (p / "circuit.json").is_file():
            return Circuit.load(p / "circuit.json"), matrices
        if (p / "claims.json").is_file() and (p / "manifest.json").is_file():
            words = shlex.split(read_manifest(p / "manifest.json").command or "")
            if len(words) > 2 and words[1] == "check-claim":
                return resolve_circuit(words[2]), matrices
        raise AdvgenError(
            f"{p} holds no circuit: expected circuit.json (a discover or attack run) or a check-claim run's claims.json + "
            "manifest.json"
        )
    return resolve_circuit(src), {}


def _node_score(circuit: Circuit, matrices: dict[str, np.ndarray], node: str) -> float:
    if not node.startswith("a"):
        return 0.0
    layer, head = (int(x) for x in node[1:].split(".h"))
    if "act_ALL" in matrices:
        return float(np.nan_to_num(matrices["act_ALL"][layer, head]))
    for h in circuit.heads:
        if (h.head.layer, h.head.head) == (layer, head):
            return float(h.scores.get("act_ALL", 0.0))
    return 0.0


def eap_ig_graph(circuit: Circuit, matrices: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The EAP-IG graph JSON document for `circuit` (see the module docstring for what is scored how)."""
    m = matrices or {}
    if circuit.n_layers is None or circuit.n_heads is None:
        raise AdvgenError(f"circuit {circuit.name!r} does not record n_layers / n_heads; EAP-IG's graph needs the model's shape")
    L, H = circuit.n_layers, circuit.n_heads
    kept = {f"a{h.layer}.h{h.head}" for h in circuit.head_set()} | {"input", "logits"} | {f"m{layer}" for layer in range(L)}
    nodes = {n: n in kept for n in node_names(L, H)}
    measured: dict[str, float] = {}
    if "pp_logits" in m:
        measured.update({f"a{a}.h{b}->logits": float(m["pp_logits"][a, b]) for a in range(L) for b in range(H)})
    nms = circuit.heads_with(Role.NAME_MOVER)
    if len(nms) == 1 and all(f"pp_{k}" in m for k in ("queries", "keys", "values")):
        nm = nms[0]
        for q, key in (("q", "pp_queries"), ("k", "pp_keys"), ("v", "pp_values")):
            measured.update(
                {
                    f"a{a}.h{b}->a{nm.layer}.h{nm.head}<{q}>": float(m[key][a, b])
                    for a in range(nm.layer)
                    for b in range(H)
                    if np.isfinite(m[key][a, b])
                }
            )
    node_score = {n: _node_score(circuit, m, n) for n in nodes}
    out_edges = {
        name: {"score": measured.get(name, node_score[src]), "in_graph": nodes[src] and nodes[dst]}
        for src, dst, name in edges(L, H)
    }
    return {
        "cfg": {"n_layers": L, "n_heads": H, "parallel_attn_mlp": False},
        "nodes": nodes,
        "edges": out_edges,
        "advgen": {
            "circuit": circuit.name,
            "model": circuit.model,
            "level": "edge+node" if measured else "node",
            "edge_scored": sorted(measured),
            "note": (
                "edges not in edge_scored carry their source node's score "
                "(activation patching at every position, act_ALL / F(M); 0 for input and MLPs); head positions dropped"
            ),
        },
    }
