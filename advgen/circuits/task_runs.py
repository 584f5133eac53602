"""Generic cached and patched runs for any task's prompts (no IOI slot names anywhere).

`patching.cache_run` reads IOI's slots (IO, S1, S2) for its attention readouts, so the generic
engines record here instead: one forward per prompt set keeps every head's output `hook_z`, every
MLP's output, the attention at each of the task's role signatures (query -> key), and the END
logits. Patched runs then stack many variants along the batch dimension; each row replaces some
heads' z and some MLPs' outputs (at named positions) with a source (a twin, a mean, zeros), or,
with `keep`, replaces everything except them. Only three numbers per row leave the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from advgen.circuits.patching import positions_of
from advgen.core.types import AdvgenError, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH, end_logits, map_end_logits
from advgen.prompts.templates import tokenizer_hash
from advgen.tasks.lexicons import Lexicons, resolve_lexicons
from advgen.tasks.sample import task_sets
from advgen.tasks.spec import RoleSpec, Task, TaskError

_LEXICONS: dict[tuple[str, str, str, str], Lexicons] = {}
"""Resolved lexicons per (task, its lexicons, tokenizer): resolving "vocab-words" tokenizes the whole vocabulary."""


def twin_sets(task: Task, tokenizer: Any, n: int, seed: int) -> tuple[PromptSet, PromptSet]:
    """The task's clean prompts and their corrupted twins (a named error for a task without twins)."""
    if task.corrupt is None:
        raise TaskError(
            f"task {task.name!r} ({task.source}) defines no corrupted twin ('corrupt: {{slot: ...}}'); "
            "patching and the twin-mean / resample ablations need one"
        )
    key = (task.name, task.source, repr(sorted(task.lexicons.items())), tokenizer_hash(tokenizer))
    if key not in _LEXICONS:
        _LEXICONS[key] = resolve_lexicons(task, tokenizer)
    clean, twins = task_sets(task, _LEXICONS[key], tokenizer, n, seed)
    assert twins is not None  # task.corrupt is set
    return clean, twins


HeadEntry = tuple[int, int, str]
"""(layer, head, position name)."""
MLPEntry = tuple[int, str]
"""(layer, position name): block `layer`'s MLP output at that position."""


@dataclass(frozen=True)
class TaskCache:
    """What one run of a prompt set recorded (CPU float32)."""

    z: tuple[torch.Tensor, ...]
    """Per prompt [n_layers, T, n_heads, d_head]."""
    mlp: tuple[torch.Tensor, ...]
    """Per prompt [n_layers, T, d_model]: each block's MLP output."""
    attn: dict[str, torch.Tensor]
    """Role name -> [n, n_layers, n_heads]: attention from the role's query position to its key position."""
    logp: torch.Tensor
    """[n, vocab] float64 log-probabilities at END."""
    ld: torch.Tensor
    """[n] float64 logit(answer) - logit(foil) at END (sets: log-sum-exp over each, as the validator reads it)."""
    pd: torch.Tensor
    """[n] float64 p(answer) - p(foil) at END (sets: summed; the metric of "prob_diff" tasks)."""


def answer_masks(prompts: PromptSet, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, vocab] bool masks of each prompt's answer and foil tokens (one each, or a set task's sets)."""
    a = torch.zeros(len(prompts), vocab, dtype=torch.bool, device="cpu")
    f = torch.zeros(len(prompts), vocab, dtype=torch.bool, device="cpu")
    for i, p in enumerate(prompts):
        a[i, list(p.answer_tokens or (p.io_token,))] = True
        f[i, list(p.foil_tokens or (p.s_token,))] = True
    return a, f


def end_scores(
    logits: torch.Tensor, a: torch.Tensor, f: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LD, loss of the answer, p(answer) - p(foil), log-probs) from END logits [b, vocab] and answer/foil masks.

    A one-token set gives exactly the one-token figures (log-sum-exp of one logit is that logit); sets give
    the validator's set metrics, so patching and claims read the same LD and PD as `advgen run`."""
    lg = logits.double()
    lp = torch.log_softmax(lg, -1)
    neg = torch.tensor(float("-inf"), dtype=lg.dtype, device=lg.device)
    la = torch.where(a.to(lg.device), lp, neg).logsumexp(-1)
    lf = torch.where(f.to(lg.device), lp, neg).logsumexp(-1)
    return la - lf, -la, la.exp() - lf.exp(), lp


def cache_task_run(
    model: LoadedModel, prompts: PromptSet, roles: Sequence[RoleSpec] = (), batch_size: int = DEFAULT_BATCH
) -> TaskCache:
    """One forward per batch recording z, MLP outputs and each role's attention signature."""
    L, H, n = model.n_layers, model.n_heads, len(prompts)
    z: list[list[torch.Tensor]] = [[] for _ in range(n)]
    mlp: list[list[torch.Tensor]] = [[] for _ in range(n)]
    attn = {r.name: torch.zeros(n, L, H, device="cpu") for r in roles}
    qk = {r.name: [(positions_of(p, r.query)[0], positions_of(p, r.key)[0]) for p in prompts] for r in roles}

    def factory(idx: list[int]) -> list[tuple[str, Callable[..., Any]]]:
        def keep(t: torch.Tensor, store: list[list[torch.Tensor]]) -> None:
            host = t.detach().float().cpu()
            for r, i in enumerate(idx):
                store[i].append(host[r, : len(prompts[i])].clone())

        def pattern(t: torch.Tensor, hook: Any, layer: int) -> None:
            rows = torch.arange(len(idx), device=t.device)
            for name, pairs in qk.items():
                q = torch.tensor([pairs[i][0] for i in idx], device=t.device)
                k = torch.tensor([pairs[i][1] for i in idx], device=t.device)
                attn[name][idx, layer] = t[rows, :, q, k].detach().float().cpu()

        hooks: list[tuple[str, Callable[..., Any]]] = []
        for layer in range(L):
            hooks.append((f"blocks.{layer}.attn.hook_z", lambda t, hook: keep(t, z)))
            hooks.append((f"blocks.{layer}.mlp.hook_out", lambda t, hook: keep(t, mlp)))
            if qk:
                hooks.append((f"blocks.{layer}.attn.hook_pattern", lambda t, hook, layer=layer: pattern(t, hook, layer)))
        return hooks

    logits = end_logits(model, prompts, batch_size, hooks=factory).double()
    if any(len(z[i]) != L or len(mlp[i]) != L for i in range(n)):
        raise AdvgenError(
            f"model {model.name!r}: the z / MLP-output hooks did not fire once per layer; generic patching needs a GPT-2-style "
            "block"
        )
    ld, _, pd, logp = end_scores(logits, *answer_masks(prompts, logits.shape[-1]))
    return TaskCache(tuple(torch.stack(v) for v in z), tuple(torch.stack(v) for v in mlp), attn, logp, ld, pd)


@dataclass(frozen=True)
class Row:
    """One row of a patched run: prompt `prompt`, with the named heads and MLPs replaced by the sources.

    keep=True flips it: every head and MLP output at every real position is replaced except the named ones
    (a circuit kept, the rest ablated). A source None means zeros.
    """

    prompt: int
    heads: tuple[HeadEntry, ...] = ()
    mlps: tuple[MLPEntry, ...] = ()
    keep: bool = False
    z_src: torch.Tensor | None = None
    mlp_src: torch.Tensor | None = None


def _masks(prompts: PromptSet, row: Row, L: int, H: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[L, width, H] and [L, width]: True where the row replaces z / the MLP output."""
    p = prompts[row.prompt]
    zm = torch.zeros(L, width, H, dtype=torch.bool, device="cpu")  # moved to the activation's device in the hook
    mm = torch.zeros(L, width, dtype=torch.bool, device="cpu")
    for layer, head, pos in row.heads:
        zm[layer, positions_of(p, pos), head] = True
    for layer, pos in row.mlps:
        mm[layer, positions_of(p, pos)] = True
    if row.keep:
        zm, mm = ~zm, ~mm
        zm[:, len(p) :], mm[:, len(p) :] = False, False
    return zm, mm


def _pad(src: torch.Tensor | None, width: int, shape: tuple[int, ...]) -> torch.Tensor:
    if src is None:
        return torch.zeros(width, *shape, device="cpu")
    return torch.nn.functional.pad(src, (0,) * (2 * len(shape)) + (0, width - src.shape[0]))


def _at(src: torch.Tensor | None, layer: int) -> torch.Tensor | None:
    return None if src is None else src[layer]


def _hooks(prompts: PromptSet, rows: Sequence[Row], idx: list[int], L: int, H: int) -> list[tuple[str, Callable[..., Any]]]:
    width = max(len(prompts[rows[i].prompt]) for i in idx)
    masks = [_masks(prompts, rows[i], L, H, width) for i in idx]
    hooks: list[tuple[str, Callable[..., Any]]] = []
    for layer in range(L):
        zm = torch.stack([m[0][layer] for m in masks])
        mm = torch.stack([m[1][layer] for m in masks])

        def zhook(t: torch.Tensor, hook: Any, zm: torch.Tensor = zm, layer: int = layer) -> torch.Tensor:
            src = torch.stack([_pad(_at(rows[i].z_src, layer), width, tuple(t.shape[2:])) for i in idx])
            return torch.where(zm[..., None].to(t.device), src.to(t.device, t.dtype), t)

        def mhook(t: torch.Tensor, hook: Any, mm: torch.Tensor = mm, layer: int = layer) -> torch.Tensor:
            src = torch.stack([_pad(_at(rows[i].mlp_src, layer), width, tuple(t.shape[2:])) for i in idx])
            return torch.where(mm[..., None].to(t.device), src.to(t.device, t.dtype), t)

        if zm.any():
            hooks.append((f"blocks.{layer}.attn.hook_z", zhook))
        if mm.any():
            hooks.append((f"blocks.{layer}.mlp.hook_out", mhook))
    return hooks


def patched_rows(
    model: LoadedModel,
    prompts: PromptSet,
    rows: Sequence[Row],
    ref_logp: torch.Tensor,
    batch_size: int = DEFAULT_BATCH,
    chunk: int = 512,
) -> torch.Tensor:
    """[len(rows), 4] float64 per row, at END: LD, loss of the answer (nats), KL(model || patched), p(answer) - p(foil)."""
    L, H = model.n_layers, model.n_heads
    out = []
    for c0 in range(0, len(rows), chunk):
        part = rows[c0 : c0 + chunk]
        ps = PromptSet(tuple(prompts[r.prompt] for r in part), prompts.tokenizer_hash)
        a, f = answer_masks(ps, ref_logp.shape[-1])
        ref = ref_logp[[r.prompt for r in part]]

        def reduce(
            logits: torch.Tensor, idx: list[int], a: torch.Tensor = a, f: torch.Tensor = f, ref: torch.Tensor = ref
        ) -> torch.Tensor:
            ld, loss, pd, lp = end_scores(logits, a[idx], f[idx])
            rp = ref[idx].to(lp.device)
            kl = (rp.exp() * (rp - lp)).sum(-1)
            return torch.stack([ld, loss, kl, pd], 1)

        local = _local(part)
        out.append(
            map_end_logits(model, ps, reduce, batch_size, hooks=lambda idx, local=local, ps=ps: _hooks(ps, local, idx, L, H))
        )
    return torch.cat(out) if out else torch.empty(0, 4, dtype=torch.float64, device="cpu")


def _local(part: Sequence[Row]) -> list[Row]:
    """Rows re-indexed to the chunk's own prompt set (row i is prompt i of it)."""
    return [Row(i, r.heads, r.mlps, r.keep, r.z_src, r.mlp_src) for i, r in enumerate(part)]
