"""Path patching into receiver heads' inputs: queries at END, keys and values at every position.

A sender head's ABC-twin output is added to the residual stream that only the receivers' query
(or key, or value) computation sees; the rest of the forward is a clean run, so the receivers'
changed outputs propagate to the logits. Testing all three inputs matters: a signal can steer a
name mover by where it looks (query, key) or by what it reads (value).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import torch

from advgen.circuits.direct_effects import head_outputs_end, ld_from_resid
from advgen.circuits.patching import Patch, RunCache, patched_run
from advgen.core.types import PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH, end_logits, model_device


def path_patching_queries(
    model: LoadedModel,
    prompts: PromptSet,
    clean: RunCache,
    abc: RunCache,
    receivers: Sequence[tuple[int, int]],
    batch_size: int = DEFAULT_BATCH,
) -> tuple[np.ndarray, int]:
    """[L, H] effect on LD of each sender head's ABC output reaching only the receivers' queries at END.

    For receiver (Lr, hr): q' = W_Q[hr] . LN1(resid_pre[Lr] + delta_sender) + b_Q, set at END;
    the rest of the forward is a normal clean run, so the receivers' changed outputs propagate.
    """
    L, H, n = model.n_layers, model.n_heads, len(prompts)
    dev = model_device(model)
    out = np.full((L, H), np.nan)
    if not receivers:
        return out, 0
    delta = head_outputs_end(model, prompts, abc) - head_outputs_end(model, prompts, clean)  # [n,L,H,d]
    senders = [(ls, hs) for ls in range(max(lr for lr, _ in receivers)) for hs in range(H)]
    patches, keys = [], []
    with torch.no_grad():
        for ls, hs in senders:
            rec = [(lr, hr) for lr, hr in receivers if lr > ls]
            for i in range(n):
                qp = []
                for lr, hr in rec:
                    blk = model.bridge.blocks[lr]
                    x = blk.ln1((clean.resid_pre[i, lr] + delta[i, ls, hs]).to(dev))
                    q = x @ blk.attn.W_Q[hr].float() + blk.attn.b_Q[hr].float()
                    qp.append((lr, hr, q))
                patches.append(Patch(i, (), None, q_patch=tuple(qp)))
            keys.append((ls, hs))
    st = patched_run(model, prompts, patches, batch_size)
    base = float(clean.ld.mean())
    eff = ((st.ld.view(len(keys), n).mean(1) - base) / abs(base)).numpy()
    for (ls, hs), e in zip(keys, eff, strict=True):
        out[ls, hs] = e
    return out, len(patches)


def resid_pre_all(
    model: LoadedModel, prompts: PromptSet, layers: Sequence[int], batch_size: int = DEFAULT_BATCH
) -> list[dict[int, torch.Tensor]]:
    """Per prompt, {layer: [T, d_model]} residual stream entering each of `layers`, every position."""
    out: list[dict[int, torch.Tensor]] = [{} for _ in prompts]
    for idx in prompts.batches(batch_size):

        def factory(_idx: list[int], idx: list[int] = idx) -> list[tuple[str, Callable[..., Any]]]:
            def make(layer: int) -> Callable[..., None]:
                def hook(t: torch.Tensor, hook: Any) -> None:
                    for r, i in enumerate(idx):
                        out[i][layer] = t[r, : len(prompts[i])].detach().float().cpu()

                return hook

            return [(f"blocks.{layer}.hook_resid_pre", make(layer)) for layer in layers]

        sub = PromptSet(tuple(prompts[i] for i in idx), prompts.tokenizer_hash)
        with torch.no_grad():
            end_logits(model, sub, len(idx), hooks=factory)
    return out


def path_patching_kv(
    model: LoadedModel,
    prompts: PromptSet,
    clean: RunCache,
    abc: RunCache,
    receivers: Sequence[tuple[int, int]],
    batch_size: int = DEFAULT_BATCH,
) -> tuple[dict[str, np.ndarray], int]:
    """{"k", "v"} -> [L, H] effect on LD of each sender head's ABC output (every position) reaching
    only the receivers' keys (or values): k' = W_K . LN1(resid_pre + delta_sender) + b_K at every
    position; the rest of the forward is a clean run. Complements `path_patching_queries`: a
    signal can steer a name mover through what it reads (values) or where it looks (keys)."""
    L, H, n = model.n_layers, model.n_heads, len(prompts)
    out = {w: np.full((L, H), np.nan) for w in ("k", "v")}
    if not receivers:
        return out, 0
    rl = sorted({lr for lr, _ in receivers})
    pre = resid_pre_all(model, prompts, rl, batch_size)
    W_O = [model.bridge.blocks[layer].attn.W_O.detach().float().cpu() for layer in range(L)]
    dev = model_device(model)
    senders = [(ls, hs) for ls in range(max(rl)) for hs in range(H)]
    patches: dict[str, list[Patch]] = {"k": [], "v": []}
    with torch.no_grad():
        for ls, hs in senders:
            rec = [(lr, hr) for lr, hr in receivers if lr > ls]
            for i in range(n):
                delta = (abc.z[i][ls, :, hs] - clean.z[i][ls, :, hs]) @ W_O[ls][hs]  # [T, d]
                for w in ("k", "v"):
                    kv = []
                    for lr, hr in rec:
                        attn = model.bridge.blocks[lr].attn
                        x = model.bridge.blocks[lr].ln1((pre[i][lr] + delta).to(dev))
                        W, b = (attn.W_K, attn.b_K) if w == "k" else (attn.W_V, attn.b_V)
                        kv.append((lr, hr, w, x @ W[hr].float() + b[hr].float()))
                    patches[w].append(Patch(i, (), None, kv_patch=tuple(kv)))
    base = float(clean.ld.mean())
    total = 0
    for w, ps in patches.items():
        st = patched_run(model, prompts, ps, batch_size)
        eff = ((st.ld.view(len(senders), n).mean(1) - base) / abs(base)).numpy()
        for (ls, hs), e in zip(senders, eff, strict=True):
            out[w][ls, hs] = e
        total += len(ps)
    return out, total


def path_patching_logits_via_mlps(model: LoadedModel, prompts: PromptSet, clean: RunCache, abc: RunCache) -> np.ndarray:
    """[L, H] effect on LD of each head's ABC output at END reaching the logits directly or through
    the later MLPs (every other head frozen at its clean output, MLPs recomputed): the IOI paper's
    head -> logits path. The direct-only path misses a name mover whose write the last MLP carries.

    MLPs act per position and frozen heads move nothing, so only END's residual changes: each
    later MLP is recomputed on END's clean mid-block residual plus the accumulated change.
    """
    L = model.n_layers
    dev = model_device(model)
    out_c = head_outputs_end(model, prompts, clean)  # [n, L, H, d]
    delta = head_outputs_end(model, prompts, abc) - out_c
    post = torch.cat([clean.resid_pre[:, 1:], clean.resid_final[:, None]], 1)  # [n, L, d] leaving each block
    with torch.no_grad():
        mid = torch.stack(
            [
                clean.resid_pre[:, layer] + out_c[:, layer].sum(1) + model.bridge.blocks[layer].attn.b_O.float().cpu()
                for layer in range(L)
            ],
            1,
        )  # [n, L, d] after each block's attention
        d = torch.zeros_like(delta)  # accumulated change at END, per sender
        for layer in range(L):
            d = d + torch.where(torch.arange(L, device=d.device)[None, :, None, None] == layer, delta, torch.zeros_like(delta))
            sent = torch.arange(L, device=d.device)[None, :, None, None] <= layer  # senders at or below this layer
            blk = model.bridge.blocks[layer]
            mlp_new = blk.mlp(blk.ln2((mid[:, layer, None, None] + d).to(dev))).float().cpu()
            mlp_old = (post[:, layer] - mid[:, layer])[:, None, None]
            d = d + torch.where(sent, mlp_new - mlp_old, torch.zeros_like(d))
        ld = ld_from_resid(model, prompts, clean.resid_final[:, None, None, :] + d)  # [n, L, H]
    base = clean.ld.mean()
    return ((ld.mean(0) - base) / abs(base)).numpy()


def end_write_contributions(
    model: LoadedModel,
    prompts: PromptSet,
    mid: torch.Tensor,
    mlp_out: torch.Tensor,
    resid_final: torch.Tensor,
    writes: torch.Tensor,
    layers: Sequence[int],
    fixed: Collection[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt and write: LD(clean) - LD(that write removed at END), directly and along the real path.

    `writes` [n, K, d] are residual-stream writes at END (a head's z @ W_O, or an MLP's output);
    `layers[k]` is the first block whose MLP sees write k (a head's own layer; an MLP's layer + 1,
    n_layers when no MLP follows); `mid` and `mlp_out` [n, L, d] are each block's END residual after its
    attention and its MLP output, `resid_final` [n, d] the final LayerNorm input. The direct
    figure removes the write from the final residual only; the path figure also recomputes every
    MLP at or after the write's layer on END's changed residual (other heads frozen: they move
    nothing at END), as `path_patching_logits_via_mlps` does. A write the later MLPs reverse has
    opposite signs on the two figures. MLPs in `fixed` keep their clean output (a circuit's MLP
    nodes, whose own records count what passes through them). Returns ([n, K] direct, [n, K] path).
    """
    n, K = writes.shape[:2]
    lay = torch.tensor(list(layers), device="cpu")  # host-side indices, like the recordings they select
    with torch.no_grad():
        d = -writes.float().cpu()
        for layer in range(int(lay.min()) if K else model.n_layers, model.n_layers):
            on = torch.nonzero(lay <= layer).flatten()  # writes made at or before this block's MLP (only these are run)
            if layer in fixed or not len(on):
                continue
            blk = model.bridge.blocks[layer]
            w = next(blk.parameters())  # the block runs where its weights are; the result comes back to the host
            new = blk.mlp(blk.ln2((mid[:, layer, None].cpu() + d[:, on]).to(w.device, w.dtype))).float().cpu()
            d[:, on] = d[:, on] + new - mlp_out[:, layer, None].float().cpu()
        base = ld_from_resid(model, prompts, resid_final)[:, None]
        direct = base - ld_from_resid(model, prompts, resid_final[:, None] - writes.float())
        path = base - ld_from_resid(model, prompts, resid_final[:, None] + d)
    return direct.numpy(), path.numpy()
