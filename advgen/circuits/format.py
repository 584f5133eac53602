"""Circuits as readable JSON: which heads play which role, and at which token positions.

A circuit file is checked on load (roles from the fixed `Role` enum, known positions) and again
against a model (every head inside its layer/head ranges), so a typo fails with the head named.
Format 2 adds MLP nodes (`"mlps": [{"node": "m3", "positions": ["END"]}]`): a mechanism that runs
through an MLP can be named. A circuit without MLP nodes is still written as format 1, and
format-1 files load unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advgen.core.files import finite, read_json
from advgen.core.types import AdvgenError, Head, Role, RoleName, TaskRole
from advgen.tasks.spec import POSITION_RE, Task

FORMAT = "advgen-circuit/1"
FORMAT_MLP = "advgen-circuit/2"
"""Written when the circuit has MLP nodes; files of either format load."""
POSITIONS = ("END", "S2", "S1+1", "S1", "IO", "ALL")
"""Where a head may be kept: slot positions of the prompt, or ALL positions."""
BUILTIN_DIR = Path(__file__).parent / "data"

DEFAULT_POSITIONS: dict[Role, tuple[str, ...]] = {
    Role.NAME_MOVER: ("END",),
    Role.NEGATIVE_NAME_MOVER: ("END",),
    Role.BACKUP_NAME_MOVER: ("END",),
    Role.S_INHIBITION: ("END",),
    Role.INDUCTION: ("S2",),
    Role.DUPLICATE_TOKEN: ("S2",),
    Role.PREVIOUS_TOKEN: ("S1+1",),
}


class CircuitError(AdvgenError):
    """A circuit file or circuit/model mismatch; the message names the file and the head."""


@dataclass(frozen=True)
class CircuitHead:
    head: Head
    role: RoleName
    positions: tuple[str, ...]
    scores: Mapping[str, float] = field(default_factory=dict)
    """Evidence for the role, e.g. {"induction_score": 0.41, "patching_effect": -0.8}."""
    note: str = ""
    behaviour: Mapping[str, Any] = field(default_factory=dict)
    """Measured head behaviour record (`advgen.circuits.behaviour_records.HeadBehaviour.to_dict`); empty if not measured."""


@dataclass(frozen=True)
class CircuitMLP:
    """An MLP node: block `layer`'s MLP output, kept at `positions`."""

    layer: int
    positions: tuple[str, ...] = ("END",)
    scores: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    behaviour: Mapping[str, Any] = field(default_factory=dict)
    """Measured record (`advgen.circuits.behaviour_records.MLPBehaviour.to_dict`); empty if not measured."""

    @property
    def node(self) -> str:
        return f"m{self.layer}"


@dataclass(frozen=True)
class Circuit:
    name: str
    model: str
    """The model the circuit was found in (informational; the range check is what binds)."""
    heads: tuple[CircuitHead, ...]
    n_layers: int | None = None
    n_heads: int | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    mlps: tuple[CircuitMLP, ...] = ()
    """MLP nodes (format 2); `len(circuit)` still counts heads."""
    task: str = "ioi"
    """The task the circuit implements; written only when not IOI (IOI files stay byte-identical)."""

    def __len__(self) -> int:
        return len(self.heads)

    @property
    def roles(self) -> frozenset[RoleName]:
        return frozenset(h.role for h in self.heads)

    def heads_with(self, *roles: RoleName) -> tuple[Head, ...]:
        return tuple(h.head for h in self.heads if h.role in roles)

    def head_set(self) -> frozenset[Head]:
        return frozenset(h.head for h in self.heads)

    def positions_of(self, head: Head) -> tuple[str, ...]:
        for h in self.heads:
            if h.head == head:
                return h.positions
        raise CircuitError(f"head {head} is not in circuit {self.name!r}")

    def check_against(self, n_layers: int, n_heads: int) -> Circuit:
        """Raise if any head lies outside a model with these dimensions."""
        for h in self.heads:
            try:
                h.head.check_in(n_layers, n_heads, "model")
            except AdvgenError as e:
                raise CircuitError(f"circuit {self.name!r}: {e}") from None
        for m in self.mlps:
            if not 0 <= m.layer < n_layers:
                raise CircuitError(f"circuit {self.name!r}: MLP node {m.node} is outside the model's layers 0..{n_layers - 1}")
        return self

    def check_task(self, task: Task) -> Circuit:
        """Refuse a circuit of another task, or one whose roles or positions the task does not have."""
        if self.task != task.name:
            raise CircuitError(
                f"circuit {self.name!r} is for task {self.task!r}, not {task.name!r}; "
                f"pass a circuit of task {task.name!r} (or --task {self.task})"
            )
        if task.engine == "ioi":
            return self
        for h in self.heads:
            if h.role.value not in task.role_names:
                raise CircuitError(
                    f"circuit {self.name!r}: head {h.head} has role {h.role.value!r}, which task {task.name!r} does not "
                    f"define (its roles: {list(task.role_names)})"
                )
            for p in h.positions:
                base = p.split("@")[0].split("+")[0]
                if p not in ("END", "ALL") and base not in task.slots:
                    raise CircuitError(
                        f"circuit {self.name!r}: head {h.head} position {p!r} names a slot task {task.name!r} lacks"
                    )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_MLP if self.mlps else FORMAT,
            "name": self.name,
            **({"task": self.task} if self.task != "ioi" else {}),
            "model": self.model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "provenance": dict(self.provenance),
            "heads": [
                {
                    "head": str(h.head),
                    "role": h.role.value,
                    "positions": list(h.positions),
                    "scores": dict(h.scores),
                    "note": h.note,
                    **({"behaviour": dict(h.behaviour)} if h.behaviour else {}),
                }
                for h in sorted(self.heads, key=lambda h: (h.head.layer, h.head.head))
            ],
            **(
                {
                    "mlps": [
                        {
                            "node": m.node,
                            "positions": list(m.positions),
                            "scores": dict(m.scores),
                            "note": m.note,
                            **({"behaviour": dict(m.behaviour)} if m.behaviour else {}),
                        }
                        for m in sorted(self.mlps, key=lambda m: m.layer)
                    ]
                }
                if self.mlps
                else {}
            ),
        }

    def save(self, path: str | Path) -> Path:
        from advgen.core.files import atomic_write_text

        return atomic_write_text(path, json.dumps(finite(self.to_dict()), indent=2) + "\n")  # NaN is written null

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<circuit>") -> Circuit:
        if not isinstance(d, Mapping) or not isinstance(d.get("heads"), list):
            raise CircuitError(f"{where}: expected an object with a 'heads' list")
        fmt = d.get("format", FORMAT)
        if fmt not in (FORMAT, FORMAT_MLP):
            raise CircuitError(f"{where}: unknown format {fmt!r}, expected {FORMAT!r} or {FORMAT_MLP!r}")
        if "mlps" in d and fmt != FORMAT_MLP:
            raise CircuitError(f"{where}: 'mlps' (MLP nodes) need \"format\": {FORMAT_MLP!r}")
        task = d.get("task", "ioi")
        if not isinstance(task, str) or not task.strip():
            raise CircuitError(f"{where}: 'task' must be a task name, got {repr(task)[:40]}")
        mlps = _parse_mlps(d.get("mlps", []), where, task)
        heads: list[CircuitHead] = []
        seen: set[Head] = set()
        for i, e in enumerate(d["heads"]):
            h = _parse_head(e, f"{where}: heads[{i}]", task)
            if h.head in seen:
                raise CircuitError(f"{where}: heads[{i}]: head {h.head} listed twice")
            seen.add(h.head)
            heads.append(h)
        dims = {k: _dim(d.get(k), k, where) for k in ("n_layers", "n_heads")}
        prov = d.get("provenance") or {}
        if not isinstance(prov, Mapping):
            raise CircuitError(f"{where}: 'provenance' must be an object, got {type(prov).__name__}")
        c = cls(
            name=str(d.get("name", "circuit")),
            model=str(d.get("model", "")),
            heads=tuple(heads),
            n_layers=dims["n_layers"],
            n_heads=dims["n_heads"],
            provenance=dict(prov),
            mlps=mlps,
            task=task,
        )
        if c.n_layers and c.n_heads:
            try:
                c.check_against(c.n_layers, c.n_heads)
            except CircuitError as err:
                raise CircuitError(f"{where}: {err}") from None
        return c

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        path = Path(path)
        if not path.exists():
            raise CircuitError(f"circuit file not found: {path}")
        try:
            d = read_json(path, "circuit file")
        except AdvgenError as e:
            raise CircuitError(str(e)) from None
        return cls.from_dict(d, str(path))


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CircuitError(f"{what} must be a number, got {type(v).__name__} {repr(v)[:40]}")
    return float(v)


def _dim(v: Any, key: str, where: str) -> int | None:
    """n_layers / n_heads: absent (null) or a positive integer."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise CircuitError(f"{where}: {key!r} must be a positive integer, got {repr(v)[:40]}")
    return v


def _role(e: Any, at: str, head: Head, task: str) -> RoleName:
    """IOI's roles for an IOI circuit; for another task any role name (checked against the task when it is known)."""
    valid_roles = [r.value for r in Role]
    if isinstance(e["role"], str) and e["role"] in valid_roles:
        return Role(e["role"])
    if task != "ioi" and isinstance(e["role"], str) and re.fullmatch(r"[a-z][a-z0-9_]*", e["role"]):
        return TaskRole(e["role"])
    raise CircuitError(
        f"{at}: head {head} has unknown role {e['role']!r}; roles: {valid_roles}"
        + ("" if task == "ioi" else " or a lowercase role name of the task")
    )


def _parse_head(e: Any, at: str, task: str = "ioi") -> CircuitHead:
    """One entry of a circuit's 'heads' list, every field checked; errors name the entry and head."""
    if not isinstance(e, Mapping) or "head" not in e or "role" not in e:
        raise CircuitError(f"{at}: each head needs 'head' and 'role'")
    if not isinstance(e["head"], str):
        raise CircuitError(f"{at}: 'head' must be a string like 'a9.h9', got {repr(e['head'])[:40]}")
    try:
        head = Head.parse(e["head"])
    except AdvgenError as err:
        raise CircuitError(f"{at}: {err}") from None
    role = _role(e, at, head, task)
    default = DEFAULT_POSITIONS.get(role, ("ALL",)) if task == "ioi" and isinstance(role, Role) else ("ALL",)
    positions = _positions(e.get("positions") or default, at, f"head {head}", task)
    scores = e.get("scores") or {}
    if not isinstance(scores, Mapping):
        raise CircuitError(f"{at}: head {head}: 'scores' must be an object of numbers")
    vals = {str(k): _number(v, f"{at}: head {head}: score {k!r}") for k, v in scores.items()}
    note = e.get("note", "")
    behaviour = e.get("behaviour") or {}
    if not isinstance(behaviour, Mapping):
        raise CircuitError(f"{at}: head {head}: 'behaviour' must be an object (a measured behaviour record)")
    return CircuitHead(head, role, positions, vals, note if isinstance(note, str) else repr(note), dict(behaviour))


def _positions(raw: Any, at: str, what: str, task: str = "ioi") -> tuple[str, ...]:
    if not isinstance(raw, (list, tuple)) or not all(isinstance(p, str) for p in raw):
        raise CircuitError(f"{at}: {what}: 'positions' must be a list of strings, e.g. [\"END\"]")
    if task != "ioi":
        bad = [p for p in raw if not POSITION_RE.fullmatch(p)]
        if bad:
            raise CircuitError(f"{at}: {what} has malformed position(s) {bad}; use END, ALL, SLOT, SLOT@2 or SLOT+1")
        return tuple(raw)
    bad = [p for p in raw if p not in POSITIONS]
    if bad:
        raise CircuitError(f"{at}: {what} has unknown position(s) {bad}; positions: {list(POSITIONS)}")
    return tuple(raw)


def _parse_mlps(raw: Any, where: str, task: str = "ioi") -> tuple[CircuitMLP, ...]:
    """The 'mlps' list of a format-2 circuit: {"node": "m3", "positions": [...], "scores": {...}, "note": "", "behaviour":
    {...}}."""
    if not isinstance(raw, list):
        raise CircuitError(f'{where}: \'mlps\' must be a list of MLP nodes like {{"node": "m3"}}')
    out: dict[int, CircuitMLP] = {}
    for i, e in enumerate(raw):
        at = f"{where}: mlps[{i}]"
        node = e.get("node") if isinstance(e, Mapping) else None
        if not isinstance(node, str) or not re.fullmatch(r"m\d+", node):
            raise CircuitError(f"{at}: each MLP node needs 'node' like 'm3' (m + layer), got {repr(node)[:40]}")
        layer = int(node[1:])
        if layer in out:
            raise CircuitError(f"{at}: MLP node {node} listed twice")
        scores, beh = e.get("scores") or {}, e.get("behaviour") or {}
        if not isinstance(scores, Mapping) or not isinstance(beh, Mapping):
            raise CircuitError(f"{at}: MLP node {node}: 'scores' and 'behaviour' must be objects")
        note = e.get("note", "")
        out[layer] = CircuitMLP(
            layer,
            _positions(e.get("positions") or ["END"], at, f"MLP node {node}", task),
            {str(k): _number(v, f"{at}: MLP node {node}: score {k!r}") for k, v in scores.items()},
            note if isinstance(note, str) else repr(note),
            dict(beh),
        )
    return tuple(out.values())


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def resolve_circuit(spec: str | Path, n_layers: int | None = None, n_heads: int | None = None) -> Circuit:
    """A circuit JSON file or a built-in name (e.g. "gpt2-small-ioi"), checked against the model."""
    p = Path(spec)
    if p.exists() or p.suffix == ".json":
        c = Circuit.load(p)
    elif str(spec) in builtin_names():
        c = Circuit.load(BUILTIN_DIR / f"{spec}.json")
    else:
        raise CircuitError(f"no circuit file or built-in circuit {str(spec)!r}; built-ins: {builtin_names()}")
    if n_layers is not None and n_heads is not None:
        c.check_against(n_layers, n_heads)
    return c


def make_circuit(
    name: str,
    model: str,
    roles: Mapping[Role, Iterable[str]],
    n_layers: int | None = None,
    n_heads: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Circuit:
    """Build a circuit from {role: ["a9.h9", ...]} with each role's default positions."""
    heads = tuple(CircuitHead(Head.parse(h), r, DEFAULT_POSITIONS[r]) for r, hs in roles.items() for h in hs)
    return Circuit(name, model, heads, n_layers, n_heads, dict(provenance or {}))
