"""Why a compiled cell was falsified, measured on the cell's own attack / control pairs.

A cell is falsified when LD(attack) - LD(control) has the opposite sign to the records'
prediction. The prediction is a sum over circuit nodes (a head: gain x its attention shift; an
MLP node: its recorded write change), so three things can be wrong, and each is read here on the
prompts of the random sample that falsified the cell (no new prompts):
- the circuit's nodes moved LD as predicted, but the rest of the model wrote the other way, further
  (cause "outside the circuit", naming the components that did);
- the nodes moved as predicted along their paths, yet they themselves wrote the falsifying change
  directly: the path figures (each write removed whole, later MLPs recomputed) do not add up to the
  change they are summed into (cause "path not additive");
- a head's attention to the mentioned name did not move as its record says (cause "attention"), or its write moved
  by more (or other) than its gain times its measured attention change (cause "gain"); the node's miss is split
  into these two parts and the larger names the cause;
- an MLP node's write moved unlike its record (cause "mlp node").
Every head and MLP of the model is read at END in one pass: its direct logit attribution and its
contribution along the real path (later MLPs recomputed, the circuit's MLP nodes held, as the
records measure it), attack minus control, mean over pairs. The rule reads only these
measurements and the records; it never reads which model or mode it is looking at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from advgen.attacks.failure_mode import FailureMode
from advgen.circuits.behaviour import name_mass
from advgen.circuits.format import Circuit
from advgen.circuits.reads import read_heads
from advgen.core.records import AttackRow
from advgen.core.types import Head, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import bootstrap_ci
from advgen.prompts.rows import prompt_of_row
from advgen.prompts.templates import tokenizer_hash

MAX_PAIRS = 200
"""Pairs read per falsified cell (the sample's first, in run order): enough for a stable mean, bounded cost."""
TOP_OUTSIDE = 3
"""Components outside the circuit named in a cause."""
CAUSES = ("outside the circuit", "path not additive", "attention", "gain", "mlp node", "no node prediction")


@dataclass(frozen=True)
class NodeShift:
    """One component's change, attack minus control, mean over the cell's pairs."""

    node: str
    """"a{l}.h{h}", "m{l}" (an MLP), or "rest" (embeddings, biases, LayerNorm scale: what the components leave)."""
    in_circuit: bool
    direct: float
    """Change of its direct logit attribution to IO - S."""
    path: float
    """Change of its contribution along the real path (later MLPs recomputed, the circuit's MLP nodes held)."""
    predicted: float | None = None
    """Circuit nodes: the records' predicted LD change for this cell (dose x the node's per-mention term)."""
    attention: float | None = None
    """Circuit heads: change of END attention mass on the mentioned name minus the other name."""
    attention_predicted: float | None = None
    """Circuit heads: the record's change of that mass for this cell (dose x per mention)."""


@dataclass(frozen=True)
class CellCause:
    cell: str
    mode: str
    params: Mapping[str, Any]
    n: int
    """Pairs read."""
    predicted: float | None
    observed: Mapping[str, float]
    """LD(attack) - LD(control): mean and bootstrap 95 % interval (the rows' LDs)."""
    circuit: float
    """Sum over the circuit's nodes of their path change: the records' measure, compared with `predicted`."""
    circuit_direct: float
    """Sum over the circuit's nodes of their direct change: the exact accounting (direct changes of every component
    and the rest add up to the observed mean)."""
    outside: float
    """observed mean - circuit_direct: what the rest of the model wrote directly."""
    cause: str
    """One of CAUSES."""
    text: str
    """The cause in one sentence, with its numbers."""
    nodes: tuple[NodeShift, ...]
    """The circuit's nodes, then the components outside it with the largest direct change the falsifying way, then "rest"."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "params": dict(self.params),
            "observed": dict(self.observed),
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CellCause:
        return cls(**{**d, "nodes": tuple(NodeShift(**n) for n in d["nodes"])})


def _pairs(rows: Sequence[AttackRow], cell: str) -> list[tuple[AttackRow, AttackRow]]:
    ctl = {r["candidate"]: r for r in rows if r["phase"] == "sample" and r["family"] == "control"}
    att = [r for r in rows if r["phase"] == "sample" and r["family"] == "attack" and r["cell"] == cell and r["candidate"] in ctl]
    return [(a, ctl[a["candidate"]]) for a in att[:MAX_PAIRS]]


def _node_terms(mode: FailureMode, cell: Mapping[str, Any]) -> dict[str, tuple[float, float | None]]:
    """node -> (predicted LD change, predicted attention change or None) for this cell, from the compiled records."""
    spec = getattr(mode, "edit_spec", None)
    if spec is None:
        return {}
    out: dict[str, tuple[float, float | None]] = {}
    for c in spec.contributions:
        if c.site == cell.get("site"):
            dose = float(cell.get("dose", 1))
            out[str(c.head)] = (dose * c.shift, dose * c.d_mentioned if isinstance(c.head, Head) else None)
    return out


def explain_cell(
    model: LoadedModel, circuit: Circuit, mode: FailureMode, cell_key: str, rows: Sequence[AttackRow], batch_size: int, seed: int
) -> CellCause | None:
    """The measured cause of one falsified cell (None when the sample holds fewer than 2 pairs of it)."""
    pairs = _pairs(rows, cell_key)
    if len(pairs) < 2:
        return None
    cell = mode.cells[int(cell_key.rsplit(":", 1)[1])]
    tok = model.tokenizer
    prompts = [
        prompt_of_row(r, tok, f"cell {cell_key}, candidate {r['candidate']}, {r['family']}") for pair in pairs for r in pair
    ]
    heads = [Head(a, b) for a in range(model.n_layers) for b in range(model.n_heads)]
    layers = list(range(model.n_layers))
    node_layers = [m.layer for m in circuit.mlps]
    reads = read_heads(model, PromptSet(tuple(prompts), tokenizer_hash(tok)), heads, batch_size, layers, held=node_layers)
    names = [str(h) for h in heads] + [f"m{x}" for x in layers]
    a, c = np.arange(0, len(prompts), 2), np.arange(1, len(prompts), 2)
    d_direct, d_path = (reads.dla[a] - reads.dla[c]).mean(0), (reads.path[a] - reads.path[c]).mean(0)
    obs = np.array([x["logit_diff"] - y["logit_diff"] for x, y in pairs])
    observed = bootstrap_ci(obs, seed).as_dict()
    terms = _node_terms(mode, cell)
    members = {str(h.head) for h in circuit.heads} | {m.node for m in circuit.mlps}
    mentioned = getattr(mode, "mentioned", None)
    nodes: list[NodeShift] = []
    for j, name in enumerate(names):
        pred, att_pred = terms.get(name, (None, None))
        att = None
        if name in members and j < len(heads):
            h = heads[j]
            m = np.array([name_mass(prompts[i], reads.rows[i][h]) for i in range(len(prompts))])
            diff = (m[a, 0] - m[a, 1]) - (m[c, 0] - m[c, 1])  # IO minus S, attack minus control
            att = float(diff.mean() * (-1 if mentioned == "S" else 1))
        nodes.append(NodeShift(name, name in members, float(d_direct[j]), float(d_path[j]), pred, att, att_pred))
    rest = float(obs.mean() - d_direct.sum())
    nodes.append(NodeShift("rest", False, rest, rest))
    return classify(cell_key, mode.name, dict(cell), len(pairs), mode.predicted_shift(cell), observed, nodes)


def classify(
    cell: str,
    mode: str,
    params: dict[str, Any],
    n: int,
    predicted: float | None,
    observed: Mapping[str, float],
    nodes: Sequence[NodeShift],
) -> CellCause:
    """Name the cause from the nodes' measured changes: did the circuit carry the predicted sign, and if not, which node
    missed?"""
    inside = [x for x in nodes if x.in_circuit]
    circ, circ_direct = float(sum(x.path for x in inside)), float(sum(x.direct for x in inside))
    obs = float(observed["mean"])
    outside = obs - circ_direct
    others = sorted((x for x in nodes if not x.in_circuit and x.node != "rest"), key=lambda x: -x.direct * np.sign(obs))
    named = ", ".join(f"{x.node} {x.direct:+.2f}" for x in others[:TOP_OUTSIDE])
    keep = tuple(inside) + tuple(others[:TOP_OUTSIDE]) + tuple(x for x in nodes if x.node == "rest")
    wrote = f"the circuit's nodes wrote {circ_direct:+.2f} directly, the rest of the model {outside:+.2f} (most: {named})"
    if predicted is None or not any(x.predicted is not None for x in inside):
        cause, text = "no node prediction", f"LD moved {obs:+.2f} and the mode predicts a sign only; {wrote}"
    elif np.sign(circ) != np.sign(predicted):
        miss = max((x for x in inside if x.predicted is not None), key=lambda x: abs(x.path - (x.predicted or 0.0)))
        cause, text = _node_cause(miss, circ, predicted)
    else:
        along = f"the circuit's nodes moved LD {circ:+.2f} along their paths, with the predicted sign ({predicted:+.2f}); "
        cause = "outside the circuit" if abs(outside) >= abs(circ_direct) else "path not additive"
        text = along + wrote
    return CellCause(cell, mode, params, n, predicted, observed, circ, circ_direct, outside, cause, text, keep)


def _node_cause(x: NodeShift, circ: float, predicted: float) -> tuple[str, str]:
    """Split the node's miss: its attention error at its gain, and the rest of its write change (the gain's error)."""
    head = f"the circuit's nodes moved LD {circ:+.2f} against the predicted {predicted:+.2f}; the largest miss is {x.node}"
    if x.attention is None or x.attention_predicted is None or x.predicted is None:
        return "mlp node", f"{head}: its write moved LD {x.path:+.2f} where its record says {x.predicted:+.2f}"
    gain = x.predicted / x.attention_predicted if x.attention_predicted else 0.0  # LD per unit of attention on the mentioned name
    via_attention = gain * x.attention
    att_err, write_err = via_attention - x.predicted, x.path - via_attention
    text = (
        f"{head}: its attention to the mentioned name moved {x.attention:+.3f} (record {x.attention_predicted:+.3f}), "
        f"which at its gain is LD {via_attention:+.2f}; its write moved LD {x.path:+.2f} (predicted {x.predicted:+.2f}), "
        f"so {att_err:+.2f} of the miss is the attention's and {write_err:+.2f} the write's beyond it"
    )
    return ("attention" if abs(att_err) >= abs(write_err) else "gain"), text


def explain_falsified(
    model: LoadedModel,
    circuit: Circuit,
    modes: Sequence[FailureMode],
    cell_verdicts: Mapping[str, str],
    rows: Sequence[AttackRow],
    batch_size: int,
    seed: int,
) -> list[CellCause]:
    """A measured cause for every falsified cell of the run, in cell order."""
    by_name = {m.name: m for m in modes}
    out = []
    for key in sorted(k for k, v in cell_verdicts.items() if v == "falsified"):
        mode = by_name.get(key.rsplit(":", 1)[0])
        got = None if mode is None else explain_cell(model, circuit, mode, key, rows, batch_size, seed)
        if got is not None:
            out.append(got)
    return out


def causes_markdown(causes: Sequence[CellCause]) -> str:
    if not causes:
        return ""
    lines = [
        "",
        "## Falsified cells: measured cause",
        "",
        "| cell | params | pairs | predicted | seen LD(attack) - LD(control) | circuit, along paths | circuit, direct | rest, "
        "direct | cause |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in causes:
        p = "none" if c.predicted is None else f"{c.predicted:+.2f}"
        o = c.observed
        lines.append(
            f"| {c.cell} | {', '.join(f'{k}={v}' for k, v in c.params.items())} | {c.n} | {p} | "
            f"{o['mean']:+.2f} [{o['low']:+.2f}, {o['high']:+.2f}] | {c.circuit:+.2f} | {c.circuit_direct:+.2f} | "
            f"{c.outside:+.2f} | {c.cause} |"
        )
    lines.append("")
    lines += [f"- {c.cell}: {c.text}" for c in causes]
    return "\n".join(lines) + "\n"
