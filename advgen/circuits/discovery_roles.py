"""discover's settings and its role rules: which head gets which role, read off the measured [L, H] matrices.

Pure numpy on the score matrices (`advgen.circuits.discovery` measures them): each rule needs both
a pattern and a causal effect, as fractions of the clean mean LD F(M); one role per head, the first
rule that fires, in the order of `assign_roles`. Roles the model does not show stay missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advgen.circuits import ablation
from advgen.core.types import AdvgenError, Head, Role
from advgen.model.validate import DEFAULT_BATCH

NM_PATHS = {"mlp": ("pp_logits_mlp", "path->MLPs->logits"), "direct": ("pp_logits", "path->logits")}
"""name-mover rule path -> (score matrix it reads, label in the role's note); its keys are `options.NM_PATHS` (the CLI's
choices)."""


@dataclass(frozen=True)
class Settings:
    """Thresholds, as fractions of the clean mean LD F(M) unless noted."""

    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    nm_effect: float = 0.10
    """path patching to logits must lower LD by at least this much for a name mover."""
    nm_path: str = "mlp"
    """which head -> logits path the name-mover rule reads: "mlp" (pp_logits_mlp: later MLPs
    recomputed, the IOI paper's path; a mover whose write the last MLP carries counts) or "direct"
    (pp_logits, the rule before this option existed). Negative name movers always use the direct path: that role is
    a head's own write against IO, and via MLPs a layer-0 relay would qualify."""
    backup_effect: float = 0.03
    """direct effect gain (under name-mover knockout) for a backup name mover."""
    sinh_effect: float = 0.05
    """path patching to name-mover queries must lower LD by this much for S-inhibition."""
    upstream_effect: float = 0.03
    """activation patching at the role's position must lower LD by this much (induction, dup, prev)."""
    pattern_score: float = 0.25
    """attention score (absolute probability) for a pattern role."""
    max_name_movers: int = 3
    detector_seqs: int = 8
    detector_len: int = 20
    curve_ablation: str = ablation.PAPER_ABLATION
    """ablation of the heads outside each top-k circuit in the faithfulness curves (`advgen.circuits.curves`)."""

    def __post_init__(self) -> None:
        if self.nm_path not in NM_PATHS:  # checked here, before any model run
            raise AdvgenError(f"discover settings: nm_path {self.nm_path!r}, expected one of {', '.join(NM_PATHS)}")
        if self.curve_ablation not in ablation.ABLATIONS:
            raise AdvgenError(
                f"discover settings: curve_ablation {self.curve_ablation!r}, expected one of {', '.join(ablation.ABLATIONS)}"
            )


def _heads(mask: np.ndarray) -> list[Head]:
    return [Head(int(a), int(b)) for a, b in zip(*np.nonzero(mask), strict=False)]


def assign_roles(m: dict[str, np.ndarray], s: Settings) -> dict[Head, tuple[Role, str]]:
    """Roles from score matrices; one role per head, the first rule that fires (order below)."""
    roles: dict[Head, tuple[Role, str]] = {}
    movers = _name_movers(m, s, roles)
    _sinh_via_queries(m, s, roles, movers)
    _upstream(m, s, roles)
    _sinh_via_kv(m, s, roles)
    _spread(m, s, roles)
    return roles


def _name_movers(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]]) -> list[Head]:
    """Name movers (on the `nm_path` path), negative name movers (direct path), backup name movers; the name movers."""
    key, via = NM_PATHS[s.nm_path]
    pp = m[key]
    io_pref = m["attn_END_to_IO"] > m["attn_END_to_S2"]
    nm = (pp <= -s.nm_effect) & (m["dla_ld"] > 0) & io_pref
    order = sorted(_heads(nm), key=lambda h: pp[h.layer, h.head])[: s.max_name_movers]
    for h in order:
        roles[h] = (Role.NAME_MOVER, f"{via} {pp[h.layer, h.head]:+.2f}, END->IO {m['attn_END_to_IO'][h.layer, h.head]:.2f}")
    direct = m["pp_logits"]
    for h in _heads((direct >= s.nm_effect / 2) & (m["dla_ld"] < 0)):
        roles.setdefault(
            h, (Role.NEGATIVE_NAME_MOVER, f"path->logits {direct[h.layer, h.head]:+.2f}, DLA {m['dla_ld'][h.layer, h.head]:+.2f}")
        )
    if "backup_gain" in m:
        for h in _heads((m["backup_gain"] >= s.backup_effect) & ~nm):
            roles.setdefault(
                h, (Role.BACKUP_NAME_MOVER, f"DLA gain under name-mover knockout {m['backup_gain'][h.layer, h.head]:+.2f}")
            )
    return order


def _sinh_via_queries(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]], movers: list[Head]) -> None:
    """S-inhibition through the name movers' queries; without name movers, its signature at END itself."""
    if "pp_queries" in m and movers:
        sinh = np.nan_to_num(m["pp_queries"], nan=0.0) <= -s.sinh_effect
        for h in sorted(_heads(sinh), key=lambda h: m["pp_queries"][h.layer, h.head]):
            roles.setdefault(
                h,
                (
                    Role.S_INHIBITION,
                    f"path->NM queries {m['pp_queries'][h.layer, h.head]:+.2f}, END->S2 "
                    f"{m['attn_END_to_S2'][h.layer, h.head]:.2f}",
                ),
            )
    elif not movers:
        # no name-mover heads to path-patch into (the logits are written by MLPs): fall back to the
        # S-inhibition signature itself: END attends to S2 and patching END from ABC lowers LD
        sinh = (m["act_END"] <= -s.sinh_effect) & (m["attn_END_to_S2"] > m["attn_END_to_IO"])
        for h in sorted(_heads(sinh), key=lambda h: m["act_END"][h.layer, h.head]):
            roles.setdefault(
                h,
                (
                    Role.S_INHIBITION,
                    f"no name movers; patch@END {m['act_END'][h.layer, h.head]:+.2f}, "
                    f"END->S2 {m['attn_END_to_S2'][h.layer, h.head]:.2f} vs END->IO {m['attn_END_to_IO'][h.layer, h.head]:.2f}",
                ),
            )


def _upstream(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]]) -> None:
    """Induction, duplicate-token and previous-token heads: the attention pattern and a causal effect at the role's position."""
    upstream = [
        (Role.INDUCTION, "S2", ("induction_score", "attn_S2_to_S1+1")),
        (Role.DUPLICATE_TOKEN, "S2", ("duplicate_token_score", "attn_S2_to_S1")),
        (Role.PREVIOUS_TOKEN, "S1+1", ("previous_token_score", "attn_S1+1_to_S1")),
    ]
    for role, kind, pats in upstream:
        pattern = np.maximum(*(m[p] for p in pats if p in m)) if all(p in m for p in pats) else m[pats[1]]
        eff = m[f"act_{kind}"]
        for h in _heads((pattern >= s.pattern_score) & (eff <= -s.upstream_effect)):
            roles.setdefault(h, (role, f"pattern {pattern[h.layer, h.head]:.2f}, patch@{kind} {eff[h.layer, h.head]:+.2f}"))


def _spread(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]]) -> None:
    """A head that matters only when patched at every position acts on tokens no slot names (e.g.
    between S2 and END); when it is in layers before the END heads and looks at S2 it is kept at ALL."""
    slots = np.minimum.reduce([m[f"act_{k}"] for k in ("END", "S2", "S1+1", "S1") if f"act_{k}" in m])
    spread = (m["act_ALL"] <= -s.upstream_effect) & (slots > m["act_ALL"] / 2)
    for h in _heads(spread):
        if h not in roles:
            roles[h] = (
                Role.S_INHIBITION,
                f"moves S2 forward: patch@ALL {m['act_ALL'][h.layer, h.head]:+.2f} but "
                f"at most {slots[h.layer, h.head]:+.2f} at any one slot; kept at ALL positions",
            )


def _sinh_via_kv(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]]) -> None:
    """S-inhibition through the name movers' keys or values (after the query and upstream rules,
    so a duplicate-token or induction head is not relabelled by its effect on keys at S2)."""
    if "pp_keys" not in m or "pp_values" not in m:
        return
    kv = np.minimum(np.nan_to_num(m["pp_keys"], nan=0.0), np.nan_to_num(m["pp_values"], nan=0.0))
    for h in sorted(_heads(kv <= -s.sinh_effect), key=lambda h: kv[h.layer, h.head]):
        roles.setdefault(
            h,
            (
                Role.S_INHIBITION,
                f"path->NM keys {m['pp_keys'][h.layer, h.head]:+.2f}, values "
                f"{m['pp_values'][h.layer, h.head]:+.2f}, queries {m['pp_queries'][h.layer, h.head]:+.2f}",
            ),
        )
