"""MLP outputs in patched runs: knock out every MLP (layer, position) a kept subgraph does not name.

Heads are knocked out through `hook_z` (`patching.patched_run`); a circuit with MLP nodes claims the
other MLPs are not needed either, so its check replaces their outputs (`mlp.hook_out`) with the same
ablation's values: the ABC-twin mean per template and length, a resampled twin, or zeros. Kept apart
from `patching` so that module stays about heads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from advgen.core.types import Prompt

MLPEntry = tuple[int, str]
"""(layer, position kind) of an MLP output a subgraph keeps, e.g. (1, "END")."""


class MLPRecorder:
    """Every MLP's output at every position during one batch, copied to the host once (`cache_run(mlp=True)`)."""

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.got: dict[int, torch.Tensor] = {}

    def hooks(self) -> list[tuple[str, Callable[..., Any]]]:
        def keep(t: torch.Tensor, hook: Any, layer: int = 0) -> None:
            self.got[layer] = t.detach().float()

        return [
            (f"blocks.{layer}.mlp.hook_out", lambda t, hook, layer=layer: keep(t, hook, layer)) for layer in range(self.n_layers)
        ]

    def collect(self, idx: Sequence[int], lengths: Sequence[int], out: list[Any]) -> None:
        """out[i] = [L, T_i, d] for each prompt i of the batch (padding cut)."""
        mb = torch.stack([self.got[layer] for layer in range(self.n_layers)], 1).cpu()  # [b, L, W, d]
        for r, (i, n) in enumerate(zip(idx, lengths, strict=True)):
            out[i] = mb[r, :, :n].clone()


def mlp_mask(
    p: Prompt, kept: Sequence[MLPEntry], n_layers: int, width: int, positions: Callable[[Prompt, str], list[int]]
) -> torch.Tensor:
    """[L, width] True where the MLP output is replaced: every real position of every layer except `kept`; never padding."""
    m = torch.ones(n_layers, width, dtype=torch.bool, device="cpu")
    m[:, len(p) :] = False
    for layer, kind in kept:
        m[layer, positions(p, kind)] = False
    return m


def mlp_hooks(
    rows: Sequence[Prompt],
    kept: Sequence[Sequence[MLPEntry] | None],
    sources: Sequence[torch.Tensor | None],
    n_layers: int,
    width: int,
    positions: Callable[[Prompt, str], list[int]],
) -> list[tuple[str, Callable[..., Any]]]:
    """`mlp.hook_out` replacements for one batch: row r's MLPs outside kept[r] take sources[r] ([L, T, d]; None = zeros).

    A row whose `kept` is None runs every MLP unchanged (a heads-only knockout)."""
    if all(k is None for k in kept):
        return []
    masks = torch.stack(
        [
            mlp_mask(p, k, n_layers, width, positions)
            if k is not None
            else torch.zeros(n_layers, width, dtype=torch.bool, device="cpu")
            for p, k in zip(rows, kept, strict=True)
        ]
    )  # [b, L, W]
    hooks: list[tuple[str, Callable[..., Any]]] = []
    for layer in range(n_layers):
        lm = masks[:, layer]
        if not lm.any():
            continue
        srcs = [None if s is None else _fit(s[layer], width) for s in sources]

        def hook(t: torch.Tensor, hook: Any, lm: torch.Tensor = lm, srcs: list = srcs) -> torch.Tensor:
            src = torch.stack([torch.zeros(t.shape[1], t.shape[2], device="cpu") if s is None else s for s in srcs]).to(
                t.device, t.dtype
            )
            return torch.where(lm[..., None].to(t.device), src, t)

        hooks.append((f"blocks.{layer}.mlp.hook_out", hook))
    return hooks


def _fit(s: torch.Tensor, width: int) -> torch.Tensor:
    """[T, d] padded with zeros or cut to `width` rows (padding rows are never replaced)."""
    return F.pad(s, (0, 0, 0, width - s.shape[0])) if s.shape[0] < width else s[:width]
