"""Which MLPs a discovered circuit names as nodes: a measured rule, the MLP analogue of the name-mover rule.

An MLP whose END output, taken from the ABC twin (other names, same template), lowers LD by at
least `threshold` x F(M) along its real path (the later MLPs recomputed at END, every head frozen)
carries name information to the logits; it becomes node m{layer} at END. Heads cannot name such
a mechanism, so without the node the compiler would miss what passes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from advgen.circuits import paths
from advgen.circuits.format import CircuitMLP
from advgen.core.types import PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH, end_logits


def end_states(model: LoadedModel, prompts: PromptSet, batch_size: int = DEFAULT_BATCH) -> dict[str, torch.Tensor]:
    """One forward per batch: at END, each block's residual after attention ("mid") and MLP output ("mlp") [n, L, d], and the
    final LayerNorm input ("final") [n, d]."""
    L, n = model.n_layers, len(prompts)
    got: dict[str, list[dict[int, torch.Tensor]]] = {
        "mid": [{} for _ in range(n)],
        "mlp": [{} for _ in range(n)],
        "final": [{} for _ in range(n)],
    }

    def factory(idx: list[int]) -> list[tuple[str, Callable[..., Any]]]:
        ends = [prompts[i].end for i in idx]

        def keep(t: torch.Tensor, hook: Any, key: str = "mid", layer: int = 0) -> None:
            for r, i in enumerate(idx):
                got[key][i][layer] = t[r, ends[r]].float().cpu().clone()

        hooks: list[tuple[str, Callable[..., Any]]] = [("ln_final.hook_in", lambda t, hook: keep(t, hook, "final", 0))]
        for layer in range(L):
            hooks.append((f"blocks.{layer}.ln2.hook_in", lambda t, hook, layer=layer: keep(t, hook, "mid", layer)))
            hooks.append((f"blocks.{layer}.mlp.hook_out", lambda t, hook, layer=layer: keep(t, hook, "mlp", layer)))
        return hooks

    with torch.no_grad():
        end_logits(model, prompts, batch_size, hooks=factory)
    out = {k: torch.stack([torch.stack([g[layer] for layer in range(L)]) for g in got[k]]) for k in ("mid", "mlp")}
    out["final"] = torch.stack([g[0] for g in got["final"]])
    return out


def mlp_path_effects(
    model: LoadedModel, clean_ps: PromptSet, abc_ps: PromptSet, f_m: float, batch_size: int = DEFAULT_BATCH
) -> np.ndarray:
    """[L] change of mean LD / |F(M)| when each MLP's END output is taken from the ABC twin, the later MLPs recomputed."""
    clean, abc = end_states(model, clean_ps, batch_size), end_states(model, abc_ps, batch_size)
    writes = clean["mlp"] - abc["mlp"]  # removing this from the clean run puts the twin's output in its place
    L = model.n_layers
    _, path = paths.end_write_contributions(
        model, clean_ps, clean["mid"], clean["mlp"], clean["final"], writes, [layer + 1 for layer in range(L)]
    )
    return -path.mean(0) / abs(f_m)


def propose(effects: np.ndarray, threshold: float) -> tuple[CircuitMLP, ...]:
    """MLP nodes at END for the layers whose ABC patch lowers LD by at least `threshold` x F(M)."""
    return tuple(
        CircuitMLP(
            int(layer),
            ("END",),
            {"pp_mlp_logits": round(float(effects[layer]), 5)},
            f"path->MLPs->logits {float(effects[layer]):+.2f} (END output from the ABC twin)",
        )
        for layer in np.nonzero(effects <= -threshold)[0]
    )
