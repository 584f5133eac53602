"""What cached runs say without another forward: attribution patching, each head's write at END, LD from final
residuals, path patching from a head to the logits, direct logit attribution.

Linear algebra on the recordings of `patching.cache_run` through the model's real final LayerNorm
and unembedding; apart from the batched patched runs (`advgen.circuits.patching`), which do run
the model. Discovery, the path-patching variants (`paths`) and the head scores read these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from advgen.circuits.patching import KINDS, RunCache, io_s_tokens, positions_of, source_for
from advgen.core.types import AdvgenError, PromptSet
from advgen.model.loading import LoadedModel


def _unembed_parts(model: LoadedModel) -> tuple[torch.nn.LayerNorm, torch.Tensor]:
    hf = model.hf_model
    ln = getattr(hf.base_model, "ln_f", None) or getattr(hf.base_model, "norm", None)
    if ln is None:
        raise AdvgenError(f"model {model.name!r}: no final LayerNorm found (path patching supports GPT-2-style models)")
    return ln, hf.get_output_embeddings().weight.detach()


def head_outputs_end(model: LoadedModel, prompts: PromptSet, cache: RunCache) -> torch.Tensor:
    """[n, L, H, d_model] each head's write into the residual stream at END (z @ W_O, no bias)."""
    W_O = torch.stack(
        [model.bridge.blocks[layer].attn.W_O.detach().float().cpu() for layer in range(model.n_layers)]
    )  # [L,H,dh,d]
    zend = torch.stack([cache.z[i][:, p.end] for i, p in enumerate(prompts)])  # [n, L, H, dh]
    return torch.einsum("nlhe,lhed->nlhd", zend, W_O)


def ld_from_resid(model: LoadedModel, prompts: PromptSet, resid: torch.Tensor) -> torch.Tensor:
    """LD from final residuals [n, ..., d] through the real final LayerNorm and unembedding."""
    ln, W_U = _unembed_parts(model)
    io, s = io_s_tokens(prompts)
    direction = (W_U[io.to(W_U.device)] - W_U[s.to(W_U.device)]).float()  # [n, d]
    with torch.no_grad():
        x = ln(resid.to(W_U.device, W_U.dtype)).float()
    return torch.einsum("n...d,nd->n...", x, direction).cpu()


def path_patching_logits(model: LoadedModel, prompts: PromptSet, clean: RunCache, abc: RunCache) -> np.ndarray:
    """[L, H] effect of each head's ABC output reaching the logits directly (LayerNorm recomputed)."""
    delta = head_outputs_end(model, prompts, abc) - head_outputs_end(model, prompts, clean)  # [n,L,H,d]
    ld = ld_from_resid(model, prompts, clean.resid_final[:, None, None, :] + delta)  # [n, L, H]
    base = clean.ld.mean()
    return ((ld.mean(0) - base) / abs(base)).numpy()


def direct_logit_attribution(model: LoadedModel, prompts: PromptSet, clean: RunCache) -> tuple[np.ndarray, np.ndarray]:
    """[L, H] per-head direct contribution to LD and to the IO logit at END (final LN scale frozen)."""
    ln, W_U = _unembed_parts(model)
    out = head_outputs_end(model, prompts, clean).float().cpu()  # [n, L, H, d]; reduced on the CPU, like the recordings
    r = clean.resid_final.float().cpu()
    scale = ((r - r.mean(-1, keepdim=True)).pow(2).mean(-1) + ln.eps).sqrt()  # [n]
    g, W = ln.weight.detach().float().cpu(), W_U.detach().float().cpu()
    centred = (out - out.mean(-1, keepdim=True)) * g / scale[:, None, None, None]
    io, s = (t.cpu() for t in io_s_tokens(prompts))
    dla_ld = torch.einsum("nlhd,nd->nlh", centred, W[io] - W[s]).mean(0)
    dla_io = torch.einsum("nlhd,nd->nlh", centred, W[io]).mean(0)
    return dla_ld.numpy(), dla_io.numpy()


def attribution_patching(
    model: LoadedModel,
    prompts: PromptSet,
    clean: RunCache,
    corrupt: Mapping[str, RunCache] | RunCache,
    kinds: Sequence[str] = KINDS,
) -> dict[str, np.ndarray]:
    """Linear estimate (z_abc - z_clean) . dLD/dz, from a clean run with gradients (no extra forwards)."""
    if clean.grad_z is None:
        raise AdvgenError("attribution patching needs the clean cache run with grad=True")
    L, H = model.n_layers, model.n_heads
    base = float(clean.ld.mean())
    out = {k: np.zeros((L, H)) for k in kinds}
    for i, p in enumerate(prompts):
        contrib: dict[int, torch.Tensor] = {}
        for k in kinds:
            src = source_for(k, corrupt)
            if id(src) not in contrib:
                contrib[id(src)] = ((src.z[i] - clean.z[i]) * clean.grad_z[i]).sum(-1)  # [L, T, H]
            out[k] += contrib[id(src)][:, positions_of(p, k)].sum(1).numpy()
    return {k: v / len(prompts) / abs(base) for k, v in out.items()}
