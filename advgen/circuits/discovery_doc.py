"""discover's discovery.json as typed records: one shape per engine, stated once, and one reader.

`discovery.write_discovery` (IOI) builds discovery.json through `DiscoveryDoc`, `task_discovery.write_task_discovery`
(a generic task) through `TaskDiscoveryDoc`: each shape is the fields of its record, in the file's key order.
`from_dict` reads the current shape strictly: a field missing or of the wrong type is an AdvgenError naming the
file and the field. `read_discovery` is the one reader of any discovery.json (the report's panel, Run section and
curve table; the EAP-IG export). A document with a `task` field is a generic task's, any other IOI's. Older and
partial documents are read too, a field they lack being None: IOI ones from before `versions`, the MLP-node block
(`mlp_nodes`), `runtime`, `faithfulness_curves` or its `circuit_first` curve (all added 2026-12-01..04); task ones
from before `rule.metric` (2026-12-04). A task's `reference` is written only when advgen ships the task's circuit
for the model.

Carried verbatim (Mapping / list: no reader picks them apart): `settings` (its `seed` is checked), `versions`,
`runtime`, a task's `task` and `rule`, the curves' `points`. `matrices` (score name -> [rows][columns], numbers or
null for NaN) are large and read only as whole arrays (`arrays`): typed as lists of lists, checked rectangular.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Self

import numpy as np

from advgen.core import docfields as f
from advgen.core import files
from advgen.core.docspec import PlainRecord, load_record, spec
from advgen.core.types import AdvgenError

FILE = "discovery.json"
DECIMALS = 6
"""Score matrices are written rounded to this many decimals (a rerun gives the same bytes)."""


@dataclass(frozen=True)
class IoiHead(PlainRecord):
    """One kept head of an IOI discovery: its role and why the rule gave it that role."""

    role: str | None = spec("str")
    why: str | None = spec("str")


@dataclass(frozen=True)
class MlpNodes(PlainRecord):
    """IOI discovery's MLP-node rule (`advgen.circuits.mlp_nodes`): the rule in words, each layer's measured effect
    (a list of numbers, one per layer), and the proposed nodes with their notes."""

    rule: str | None = spec("str")
    pp_mlp_logits: list[Any] | None = spec("list")
    proposed: Mapping[str, Any] | None = spec("map")


@dataclass(frozen=True)
class CurveSize(PlainRecord):
    """Faithfulness of the top-k heads at one of MIB's sizes (a fraction of the model's heads)."""

    size: float | None = spec("num")
    n_heads: int | None = spec("int")
    faithfulness: float | None = spec("num")


@dataclass(frozen=True)
class Curve(PlainRecord):
    """One ranking's faithfulness curve (`advgen.circuits.curves.curve`); `circuit_heads` only on `circuit_first`."""

    sizes: tuple[CurveSize, ...] | None = spec("reclist", CurveSize)
    points: list[Any] | None = spec("list")
    top_heads: tuple[str, ...] | None = spec("strs")
    cpr: float | None = spec("num")
    cmd: float | None = spec("num")
    mean_ld_model: float | None = spec("num")
    mean_ld_empty: float | None = spec("num")
    forwards: int | None = spec("int")
    circuit_heads: tuple[str, ...] | None = spec("strs", opt=True)

    def at(self, size: float) -> CurveSize | None:
        """This curve's point at `size` (None: not measured there)."""
        return next((p for p in self.sizes or () if p.size == size), None)


@dataclass(frozen=True)
class Curves(PlainRecord):
    """The `faithfulness_curves` block (`curves.discovery_curves`): signed (read CPR), absolute (read CMD) and
    circuit-first rankings under one ablation; `circuit_first` is None in documents from before it."""

    ablation: str | None = spec("str")
    rank_score: str | None = spec("str")
    nodes: str | None = spec("str")
    n_nodes: int | None = spec("int")
    n_prompts: int | None = spec("int")
    mib_sizes: list[Any] | None = spec("list")
    signed: Curve | None = spec("rec", Curve)
    absolute: Curve | None = spec("rec", Curve)
    circuit_first: Curve | None = spec("rec", Curve)
    cpr: float | None = spec("num")
    cmd: float | None = spec("num")
    forwards: int | None = spec("int")

    def rankings(self) -> dict[str, Curve]:
        """The curves present, by ranking name, in the file's order."""
        return {k: c for k in ("signed", "absolute", "circuit_first") if (c := getattr(self, k)) is not None}


@dataclass(frozen=True)
class TaskHead:
    """One kept head of a task discovery: its role, positions, and scores (`patching_effect`, `attn_<role>`...), the
    scores written as the head's further keys."""

    role: str | None = None
    positions: tuple[str, ...] | None = None
    scores: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "positions": list(self.positions or ()), **(self.scores or {})}

    @classmethod
    def from_dict(cls, d: Any, where: str, at: str, strict: bool) -> TaskHead:
        d = f.obj(d, where, at)
        get = f.req if strict else f.opt
        pos = get(d, "positions", (list,), where, at)
        return cls(
            get(d, "role", (str,), where, at),
            None
            if pos is None
            else tuple(f.check(p, (str,), where, f"{f.path_of(at, 'positions')}[{i}]") for i, p in enumerate(pos)),
            {k: f.number(d, k, where, at) for k in d if k not in ("role", "positions")},
        )


@dataclass(frozen=True)
class Unassigned(PlainRecord):
    """A task discovery's member head whose attention matches no role above chance."""

    head: str | None = spec("str")
    effect: float | None = spec("num")
    signatures: Mapping[str, float] | None = spec("nummap")


@dataclass(frozen=True)
class Reference(PlainRecord):
    """The found heads against the circuit advgen ships for this task and model (`task_discovery.precision_recall`)."""

    reference: str | None = spec("str")
    precision: float | None = spec("num")
    recall: float | None = spec("num")
    found_not_in_reference: tuple[str, ...] | None = spec("strs")
    reference_not_found: tuple[str, ...] | None = spec("strs")


class _Shared:
    """What both shapes have and the readers ask of either: the run's seed and the score matrices as arrays."""

    settings: Mapping[str, Any] | None
    matrices: Mapping[str, Any] | None

    @property
    def seed(self) -> int | None:
        """settings.seed (checked an integer when read); None in a document without it."""
        return (self.settings or {}).get("seed")

    def arrays(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Those of `names` that are matrices of the document, as float arrays (null -> NaN)."""
        m = self.matrices or {}
        return {k: np.array(m[k], dtype=float).reshape(len(m[k]), -1) if m[k] else np.zeros((0, 0)) for k in names if k in m}

    def checked(self, where: str, strict: bool) -> Self:
        """The record after the checks its field kinds cannot state: settings.seed, the matrices' shape."""
        if self.settings is not None:
            (f.req if strict else f.opt)(self.settings, "seed", (int,), where, "settings")
        for k, rows in (self.matrices or {}).items():
            _check_matrix(rows, where, f.path_of("matrices", k))
        return self


def _check_matrix(rows: Any, where: str, at: str) -> None:
    rows = f.check(rows, (list,), where, at)
    for i, row in enumerate(rows):
        f.check(row, (list,), where, f"{at}[{i}]")
        if len(row) != len(rows[0]):
            raise AdvgenError(f"{where}: field '{at}[{i}]' has {len(row)} entries, row 0 has {len(rows[0])}")
        for j, x in enumerate(row):
            f.check(x, f.NUM, where, f"{at}[{i}][{j}]", null=True)


@dataclass(frozen=True)
class DiscoveryDoc(PlainRecord, _Shared):
    """The whole of an IOI discovery.json: header (model, runtime, settings), F(M) and the ABC twins' mean LD, roles
    found and missing, the heads' direct share, the kept heads, MLP nodes, the attribution-vs-activation rank
    correlation per position kind, forward counts, faithfulness curves, command, versions, and every score matrix."""

    model: str | None = spec("str")
    model_source: str | None = spec("str", null=True)
    runtime: Mapping[str, Any] | None = spec("map")
    settings: Mapping[str, Any] | None = spec("map")
    clean_mean_ld: float | None = spec("num")
    abc_mean_ld: float | None = spec("num")
    roles_found: tuple[str, ...] | None = spec("strs")
    roles_missing: tuple[str, ...] | None = spec("strs")
    heads_direct_share_of_ld: float | None = spec("num")
    note_direct_share: str | None = spec("str")
    heads: Mapping[str, IoiHead] | None = spec("recmap", IoiHead)
    mlp_nodes: MlpNodes | None = spec("rec", MlpNodes)
    attribution_vs_activation_spearman: Mapping[str, float] | None = spec("nummap")
    forward_equivalents: Mapping[str, float] | None = spec("nummap")
    faithfulness_curves: Curves | None = spec("rec", Curves)
    command: str | None = spec("str")
    versions: Mapping[str, Any] | None = spec("map")
    matrices: Mapping[str, list[list[float | None]]] | None = spec("map")

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> DiscoveryDoc:
        """The current IOI shape, strictly; `read_discovery` reads older ones too."""
        return load_record(cls, d, str(where), "", strict=True).checked(str(where), True)


@dataclass(frozen=True)
class TaskDiscoveryDoc(PlainRecord, _Shared):
    """The whole of a generic task's discovery.json: header (model, runtime, task, settings), n, mean metric clean and
    twin, thresholds and the rule in words, roles, kept heads, unassigned members, MLP nodes and effects, forward
    counts, the comparison with a shipped circuit (`reference`, when there is one), command, versions, matrices."""

    model: str | None = spec("str")
    model_source: str | None = spec("str", null=True)
    runtime: Mapping[str, Any] | None = spec("map")
    task: Mapping[str, Any] | None = spec("map")
    settings: Mapping[str, Any] | None = spec("map")
    n: int | None = spec("int")
    clean_mean_ld: float | None = spec("num")
    twin_mean_ld: float | None = spec("num")
    thresholds: Mapping[str, float] | None = spec("nummap")
    rule: Mapping[str, Any] | None = spec("map")
    roles_found: tuple[str, ...] | None = spec("strs")
    roles_missing: tuple[str, ...] | None = spec("strs")
    heads: Mapping[str, TaskHead] | None = spec("map")
    """Read by `TaskHead.from_dict` (its scores are the head's further keys, which no field kind states)."""
    unassigned: tuple[Unassigned, ...] | None = spec("reclist", Unassigned)
    mlp_nodes: tuple[str, ...] | None = spec("strs")
    mlp_effects: list[Any] | None = spec("list")
    mlp_note: str | None = spec("str")
    forward_equivalents: Mapping[str, float] | None = spec("nummap")
    reference: Reference | None = spec("rec", Reference, opt=True)
    command: str | None = spec("str")
    versions: Mapping[str, Any] | None = spec("map")
    matrices: Mapping[str, list[list[float | None]]] | None = spec("map")

    @classmethod
    def from_dict(cls, d: Any, where: str | Path) -> TaskDiscoveryDoc:
        """The current task shape, strictly; `read_discovery` reads older ones too."""
        return cls.load(d, str(where), strict=True)

    @classmethod
    def load(cls, d: Any, where: str, strict: bool) -> TaskDiscoveryDoc:
        doc = load_record(cls, d, where, "", strict)
        if doc.heads is not None:
            doc = replace(
                doc, heads={k: TaskHead.from_dict(v, where, f.path_of("heads", k), strict) for k, v in doc.heads.items()}
            )
        return doc.checked(where, strict)


AnyDiscovery = DiscoveryDoc | TaskDiscoveryDoc
"""What `read_discovery` returns: both have the header, roles_found / roles_missing, heads, seed and arrays."""


def discovery_of(d: Any, where: str | Path) -> AnyDiscovery:
    """Any discovery.json's JSON, typed: fields older documents lack are None; a field of the wrong type is an error."""
    w = str(where)
    if "task" in f.obj(d, w, ""):
        return TaskDiscoveryDoc.load(d, w, strict=False)
    return load_record(DiscoveryDoc, d, w, "", strict=False).checked(w, False)


def read_discovery(path: str | Path) -> AnyDiscovery | None:
    """PATH/discovery.json (or the file PATH) read by `discovery_of`; None when it is absent."""
    p = Path(path)
    p = p / FILE if p.is_dir() else p
    if not p.exists():
        return None
    return discovery_of(files.read_json(p), p)


def written_matrices(m: Mapping[str, np.ndarray]) -> dict[str, list[Any]]:
    """The score matrices as discovery.json holds them: by name, rounded to `DECIMALS`."""
    return {k: np.round(v, DECIMALS).tolist() for k, v in sorted(m.items())}


def build(
    cls: type[DiscoveryDoc] | type[TaskDiscoveryDoc],
    report: Mapping[str, Any],
    command: str,
    versions: Mapping[str, Any],
    matrices: Mapping[str, np.ndarray],
) -> AnyDiscovery:
    """The record a writer writes, from its engine's report (checked like a file, so a shape drift fails here)."""
    doc = {**report, "command": command, "versions": versions, "matrices": written_matrices(matrices)}
    unknown = sorted(set(doc) - {fl.name for fl in fields(cls)})
    if unknown:
        raise AdvgenError(f"{FILE} (writing): fields {unknown} are not in {cls.__name__}")
    return cls.from_dict(doc, f"{FILE} (writing)")
