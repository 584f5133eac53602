"""One check per command-line option, shared by every command that takes it, run before any work.

Commands used to check their own arguments, or not: a negative `--seed` was refused by run,
validate and attack, accepted by discover, scan and train-reference, and crashed check-claim after
the whole model run; `scan --batch-size 100000` was accepted; `train-reference --steps 0` silently
ran the default schedule. `check_options` reads every option below that a parsed command line
holds (None means "the default") and raises an `AdvgenError` naming the first bad one. The CLI calls
it before dispatching; Python callers use `check(name, value)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from advgen.core.types import AdvgenError

MAX_SEED = 2**63 - 1
"""Seeds are stored in manifests (JSON) and fed to numpy and torch: a non-negative 64-bit integer."""
MAX_BATCH = 1024
"""Prompts per forward: one forward's activations grow with the batch."""

# Choices of options that several layers read; here (torch-free) so the CLI takes them without importing the model code.
BACKENDS = ("local", "ray")
"""Where evaluation units run (`advgen.model.backends`)."""
ABLATIONS = ("abc_mean", "ioi_mean", "resample_abc", "zero")
"""Knockouts of heads outside a kept subgraph (`advgen.circuits.ablation`)."""
NM_PATHS = ("mlp", "direct")
"""Head -> logits paths of discovery's name-mover rule (`advgen.circuits.discovery_roles.NM_PATHS`)."""
OBJECTIVES = ("break", "divergence")
"""What `advgen attack` searches for: prompts that flip the model, or where circuit and model part."""
DIVERGENCE_ABLATIONS = ("abc_mean", "zero")
"""Ablations the divergence search can run: a searched prompt is its own group (`advgen.attacks.divergence`)."""
DIVERGENCE_MEASURES = ("ld", "kl")


@dataclass(frozen=True)
class Rule:
    low: int
    high: int | None = None
    text: str = ""
    """How a message states the rule (default: 'between LOW and HIGH' or '>= LOW')."""

    def ok(self, v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= self.low and (self.high is None or v <= self.high)

    def describe(self) -> str:
        return self.text or (f"between {self.low} and {self.high}" if self.high is not None else f">= {self.low}")


RULES: dict[str, Rule] = {
    "seed": Rule(0, MAX_SEED, ">= 0 (and below 2**63)"),
    "batch_size": Rule(1, MAX_BATCH),
    "n": Rule(1),
    "steps": Rule(1),
    "stop_after": Rule(1),
    "unit": Rule(1),
    "workers": Rule(1),
    "greedy_steps": Rule(1),
    "worst_k": Rule(0),
    "scrub_draws": Rule(1),
    "n_clean": Rule(2),
    "budget": Rule(1),
    "limit": Rule(1),
    "sample": Rule(1),
}
"""Option (argparse dest) -> allowed integers. Upper bounds that depend on the command (`--n` of
generate vs run, `--budget`) stay with the command; this is the floor every command shares."""


def check(name: str, value: Any) -> None:
    """Raise unless `value` is allowed for option `name` (None: the option's default, always allowed)."""
    rule = RULES.get(name)
    if value is None or rule is None or rule.ok(value):
        return
    raise AdvgenError(f"--{name.replace('_', '-')} must be {rule.describe()}, got {value!r}")


def check_text(name: str, value: Any) -> None:
    """Text from the command line must be writable as UTF-8: bytes that are not UTF-8 arrive as lone
    surrogates (Python's surrogateescape) and would fail only when a manifest is written, after the run."""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(v, (str, PurePath)):
            try:
                str(v).encode("utf-8")
            except UnicodeEncodeError:
                raise AdvgenError(f"--{name.replace('_', '-')} {str(v)!r} is not valid UTF-8 text; rename or retype it") from None


def check_options(args: Any, get: Callable[[Any, str], Any] = getattr) -> None:
    """Every option of RULES that `args` (an argparse Namespace) holds, and all its text, checked before any work."""
    for name in RULES:
        if hasattr(args, name):
            check(name, get(args, name))
    for name, value in sorted(vars(args).items()):
        check_text(name, value)
