"""Knockouts: what a head's output is replaced with when it is outside the kept subgraph.

Four ablations, because the IOI paper's faithfulness moves with this choice:
- "abc_mean": mean over ABC prompts of the same template (and length), per position (the paper's);
- "ioi_mean": the same mean over the clean IOI prompts themselves (can leak task information);
- "resample_abc": the output on another ABC prompt of the same template (seeded);
- "zero": zeros.
A kept subgraph is a set of (layer, head, position kind) entries; everything else is replaced.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from advgen.circuits.format import Circuit
from advgen.circuits.mlp_patch import MLPEntry
from advgen.circuits.patching import Entry, Patch, RowStats, RunCache, patched_run
from advgen.core import options
from advgen.core.types import AdvgenError, Head, PromptSet
from advgen.model.validate import DEFAULT_BATCH

ABLATIONS = options.ABLATIONS
PAPER_ABLATION = "abc_mean"


def _groups(prompts: PromptSet) -> dict[tuple[str, int], list[int]]:
    g: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(prompts):
        g.setdefault((p.template_id, len(p)), []).append(i)
    return g


@dataclass(frozen=True)
class AblationValues:
    """Per clean prompt, the replacement z [L, T, H, d_head] (None = zeros) for one ablation."""

    name: str
    sources: tuple[torch.Tensor | None, ...]
    mlp_sources: tuple[torch.Tensor | None, ...] | None = None
    """Per clean prompt, the replacement MLP outputs [L, T, d_model] by the same rule (None = zeros); only when both
    caches recorded MLP outputs (`cache_run(mlp=True)`)."""


def ablation_values(name: str, prompts: PromptSet, clean: RunCache, abc: RunCache, seed: int = 0) -> AblationValues:
    """Replacement activations for every clean prompt; ABC twins share each prompt's template and length."""
    if name not in ABLATIONS:
        raise AdvgenError(f"unknown ablation {name!r}; ablations: {list(ABLATIONS)}")
    n = len(prompts)
    if name == "zero":
        return AblationValues(name, (None,) * n, (None,) * n if clean.mlp is not None and abc.mlp is not None else None)
    z = _replacements(name, prompts, clean.z, abc.z, seed)
    mlp = _replacements(name, prompts, clean.mlp, abc.mlp, seed) if clean.mlp is not None and abc.mlp is not None else None
    return AblationValues(name, z, mlp)


def _replacements(
    name: str, prompts: PromptSet, clean: tuple[torch.Tensor, ...], abc: tuple[torch.Tensor, ...], seed: int
) -> tuple[torch.Tensor | None, ...]:
    """One activation per clean prompt: the group mean (ABC or clean) or a resampled ABC twin of the same template and length."""
    groups = _groups(prompts)
    out: list[torch.Tensor | None] = [None] * len(prompts)
    if name in ("abc_mean", "ioi_mean"):
        acts = abc if name == "abc_mean" else clean
        for members in groups.values():
            mean = torch.stack([acts[i] for i in members]).mean(0)
            for i in members:
                out[i] = mean
    else:
        rng = random.Random(seed)
        for key in sorted(groups):
            members = groups[key]
            donors = members[:]
            rng.shuffle(donors)
            for k, i in enumerate(members):
                j = donors[k]
                if j == i and len(members) > 1:
                    j = donors[(k + 1) % len(members)]
                out[i] = abc[j]
    return tuple(out)


def circuit_entries(circuit: Circuit, drop: Iterable[Head] = ()) -> tuple[Entry, ...]:
    """(layer, head, position) entries a circuit keeps, minus the heads in `drop`."""
    dropped = set(drop)
    return tuple((h.head.layer, h.head.head, pos) for h in circuit.heads if h.head not in dropped for pos in h.positions)


def all_but(n_layers: int, n_heads: int, drop: Iterable[Head]) -> tuple[Entry, ...]:
    """The whole model minus `drop` (every position of every other head kept)."""
    dropped = set(drop)
    return tuple((layer, head, "ALL") for layer in range(n_layers) for head in range(n_heads) if Head(layer, head) not in dropped)


def run_kept(
    model,
    prompts: PromptSet,
    kept: Sequence[tuple[Entry, ...]],
    values: AblationValues,
    ref_logp: torch.Tensor,
    batch_size: int = DEFAULT_BATCH,
    mlps: Sequence[tuple[MLPEntry, ...] | None] | None = None,
) -> list[RowStats]:
    """Per-prompt stats for each kept subgraph, all variants stacked along the batch dimension.

    `mlps[v]`: the MLP (layer, position) outputs variant v keeps, every other MLP output replaced by the ablation's
    (values must carry `mlp_sources`); None, or `mlps` None: every MLP runs as is."""
    n = len(prompts)
    mk = list(mlps) if mlps is not None else [None] * len(kept)
    if any(m is not None for m in mk) and values.mlp_sources is None:
        raise AdvgenError(f"ablation {values.name!r}: MLP knockouts need MLP outputs recorded (cache_run(..., mlp=True))")
    patches = [
        Patch(
            i,
            entries,
            values.sources[i],
            keep=True,
            mlp_kept=m,
            mlp_source=None if m is None or values.mlp_sources is None else values.mlp_sources[i],
        )
        for entries, m in zip(kept, mk, strict=True)
        for i in range(n)
    ]
    st = patched_run(model, prompts, patches, batch_size, ref_logp=ref_logp)
    return [
        RowStats(st.ld[v * n : (v + 1) * n], st.loss[v * n : (v + 1) * n], st.kl[v * n : (v + 1) * n]) for v in range(len(kept))
    ]


def knockout(
    model,
    prompts: PromptSet,
    heads: Sequence[Head],
    values: AblationValues,
    ref_logp: torch.Tensor,
    batch_size: int = DEFAULT_BATCH,
) -> RowStats:
    """The model with `heads` replaced at every position (everything else intact)."""
    return run_kept(model, prompts, [all_but(model.n_layers, model.n_heads, heads)], values, ref_logp, batch_size)[0]
