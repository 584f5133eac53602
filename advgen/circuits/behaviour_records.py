"""Behaviour records as data: what a circuit head or MLP node was measured to do, and their JSON form.

The records' types and vocabulary (slots, mentioned names, probe sites), apart from the measurement
that fills them (`advgen.circuits.behaviour`): the compiler, the circuit JSON and the tests read and
write records without loading what measures them. `from_dict` names the circuit and node of a
malformed record; `to_dict` rounds to 5 decimals, so a record read and written keeps its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from advgen.core.types import AdvgenError

SLOTS = ("IO", "S1", "S1+1", "S2", "END-1", "other_names", "filler")
"""Where a head's attention mass at its query goes; the masses of one prompt sum to 1."""
MENTIONED = ("IO", "S")
SITES = ("before", "after")
"""Where the probe sentence goes: before the whole text, or after the first clause's sentence."""


@dataclass(frozen=True)
class Mention:
    """Change (probe naming the slot's name minus probe naming 'someone') at one site, mean over pairs."""

    d_mass_io: float
    """Change of attention mass on every token of the IO name."""
    d_mass_s: float
    """Change of attention mass on every token of the S name."""
    d_write: float
    """Change of the head's direct logit attribution to IO - S (measured, for comparison)."""
    se: float
    """Standard error of d_mass_io - d_mass_s over pairs."""
    n: int


@dataclass(frozen=True)
class HeadBehaviour:
    head: str
    query: str
    mass: Mapping[str, float]
    """Mean attention mass per slot (SLOTS) on clean prompts."""
    mention: Mapping[str, Mapping[str, Mention]]
    """Mentioned name ("IO" / "S") -> site -> change."""
    write_gain: float
    """LD per unit of IO-minus-S attention mass (least-squares slope over prompts), along `write_path`."""
    write_sign: str
    """"copies" (gain > 0) or "suppresses" (gain < 0)."""
    dla_ld: float
    """Mean direct logit attribution to IO - S on clean prompts."""
    feeds_query_of: tuple[str, ...] = ()
    feeds_effect: float | None = None
    """Path-patching effect (/ F(M)) of this head on those heads' queries, where measured."""
    n_prompts: int = 0
    write_gain_direct: float | None = None
    """The same slope for the head's direct write only (final LayerNorm frozen), kept beside the path figure."""
    write_path: str = "direct"
    """"direct+mlps": the gain counts the write's effect through every later MLP (recomputed at END);
    "direct": a record from before that was measured (its gain is the direct one)."""
    measured_on: Mapping[str, str] = field(default_factory=dict)
    """`model_identity` of the model the record was measured on (empty in records from before it was kept)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feeds_query_of"] = list(self.feeds_query_of)
        d["measured_on"] = dict(self.measured_on)
        return {k: _round(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<behaviour>") -> HeadBehaviour:
        try:
            mention = {y: {site: Mention(**m) for site, m in sites.items()} for y, sites in d["mention"].items()}
            return cls(
                str(d["head"]),
                str(d["query"]),
                {k: float(v) for k, v in d["mass"].items()},
                mention,
                float(d["write_gain"]),
                str(d["write_sign"]),
                float(d["dla_ld"]),
                tuple(d.get("feeds_query_of") or ()),
                d.get("feeds_effect"),
                int(d.get("n_prompts", 0)),
                _opt_float(d.get("write_gain_direct")),
                str(d.get("write_path", "direct")),
                {str(k): str(v) for k, v in (d.get("measured_on") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AdvgenError(f"{where}: malformed behaviour record ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class WriteChange:
    """Change of an MLP node's LD contribution at END, probe minus its 'someone' control, mean over pairs."""

    d_write: float
    """Along the real path (later MLPs that are not nodes recomputed): what the compiler sums."""
    d_write_direct: float
    se: float
    """Standard error of d_write over pairs."""
    n: int


@dataclass(frozen=True)
class MLPBehaviour:
    """An MLP node's record: its IO-minus-S write at END and how each mention probe changes it (measured, not modelled)."""

    node: str
    query: str
    dla_ld: float
    """Mean direct logit attribution of the MLP's END output to IO - S on clean prompts."""
    path_ld: float
    """Mean LD contribution of that output along the real path on clean prompts."""
    mention: Mapping[str, Mapping[str, WriteChange]]
    """Mentioned name ("IO" / "S") -> site -> change."""
    n_prompts: int = 0
    measured_on: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["measured_on"] = dict(self.measured_on)
        return {k: _round(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<behaviour>") -> MLPBehaviour:
        try:
            mention = {y: {site: WriteChange(**m) for site, m in sites.items()} for y, sites in d["mention"].items()}
            return cls(
                str(d["node"]),
                str(d["query"]),
                float(d["dla_ld"]),
                float(d["path_ld"]),
                mention,
                int(d.get("n_prompts", 0)),
                {str(k): str(v) for k, v in (d.get("measured_on") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AdvgenError(f"{where}: malformed MLP node record ({type(e).__name__}: {e})") from None


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 5)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v
