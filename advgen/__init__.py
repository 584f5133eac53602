"""advgen: circuit-driven adversarial prompts for interpretability claims.

One import, one function per job, each writing a complete run directory and returning a typed result:

    import advgen
    model = advgen.load_model("reference")
    run = advgen.run(model, n=200, seed=0, out="outputs/r")
    found = advgen.discover(model, "outputs/d")
    res = advgen.attack(model, "reference-ioi", advgen.AttackConfig(budget=2000, n_clean=200), "outputs/a")
    advgen.report("outputs/a", "outputs/a/report.html")

Names load on first use, so `import advgen` (and `advgen --help`) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "load_model": "advgen.model.loading",
    "generate": "advgen.jobs.prompts",
    "validate": "advgen.jobs.prompts",
    "run": "advgen.jobs.prompts",
    "discover": "advgen.jobs.circuits",
    "check_claim": "advgen.jobs.circuits",
    "attack": "advgen.jobs.attack",
    "scan": "advgen.jobs.scan",
    "report": "advgen.jobs.reports",
    "export": "advgen.jobs.reports",
    "AttackConfig": "advgen.attacks.attack_setup",
    "DivergenceSettings": "advgen.attacks.divergence",
    "ScanConfig": "advgen.outputs.scan",
    "ClaimSettings": "advgen.circuits.claims",
    "Circuit": "advgen.circuits.format",
    "resolve_circuit": "advgen.circuits.format",
    "AdvgenError": "advgen.core.types",
    "DiscoverySettings": "advgen.circuits.discovery_roles:Settings",
    "TaskDiscoverySettings": "advgen.circuits.task_discovery",
    "TaskClaimSettings": "advgen.circuits.task_claims",
}
__all__ = [
    "AdvgenError",
    "AttackConfig",
    "Circuit",
    "ClaimSettings",
    "DiscoverySettings",
    "DivergenceSettings",
    "ScanConfig",
    "TaskClaimSettings",
    "TaskDiscoverySettings",
    "attack",
    "check_claim",
    "discover",
    "export",
    "generate",
    "load_model",
    "report",
    "resolve_circuit",
    "run",
    "scan",
    "validate",
]

if TYPE_CHECKING:
    from advgen.attacks.attack_setup import AttackConfig
    from advgen.attacks.divergence import DivergenceSettings
    from advgen.circuits.claims import ClaimSettings
    from advgen.circuits.discovery_roles import Settings as DiscoverySettings
    from advgen.circuits.format import Circuit, resolve_circuit
    from advgen.circuits.task_claims import TaskClaimSettings
    from advgen.circuits.task_discovery import TaskDiscoverySettings
    from advgen.core.types import AdvgenError
    from advgen.jobs.attack import attack
    from advgen.jobs.circuits import check_claim, discover
    from advgen.jobs.prompts import generate, run, validate
    from advgen.jobs.reports import export, report
    from advgen.jobs.scan import scan
    from advgen.model.loading import load_model
    from advgen.outputs.scan import ScanConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'advgen' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
