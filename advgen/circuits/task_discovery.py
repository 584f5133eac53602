"""Discover any generic task's circuit from one clean run and one corrupted-twin run.

Method (reads measurements, never a task's or a model's name):
1. cache the clean prompts and their corrupted twins (`task_runs.cache_task_run`): every head's z,
   every MLP's output, each role's attention signature (mean attention from the role's query
   position to its key position), the END logits;
2. activation patching: each head's output (all positions), and each MLP's output, taken from
   the twin into the clean run; effect = (mean LD_patched - mean LD_clean) / (mean LD_twin - mean
   LD_clean), a ratio of means over prompts (per-prompt ratios explode where a twin barely moves
   LD). 1 = this node alone carries the whole clean-vs-twin difference, 0 = none of it;
3. members: nodes with |effect| >= max(effect_share x the largest |effect| of any node,
   min_effect). The share keeps what is comparable to the strongest node; the floor keeps a model
   whose nodes all barely matter from being handed a circuit of noise;
4. roles: a member head takes the role whose signature is highest among those above chance,
   chance_k x the uniform share 1 / (query position + 1) (a query at position q spreads uniform
   attention over q + 1 keys, BOS included). A member with no signature above chance is listed as
   unassigned, with its numbers, and kept out of the circuit (it has no role of the task to
   carry); MLP members become nodes at ALL positions (they were patched at all of them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.circuits.format import Circuit, CircuitHead, CircuitMLP
from advgen.circuits.task_runs import Row, TaskCache, cache_task_run, patched_rows, twin_sets
from advgen.core.types import AdvgenError, Head, PromptSet, Role, RoleName, TaskRole
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.tasks.spec import Task, TaskError

TWIN_EPS = 1e-3
"""|mean LD_twin - mean LD_clean| below this: the twin does not move the metric, so nothing can be patched."""
ZERO_EFFECT = 1e-6
"""An MLP effect below this is float error, not an effect: patched and clean runs batch prompts differently."""


@dataclass(frozen=True)
class TaskDiscoverySettings:
    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    effect_share: float = 0.2
    """a member's |effect| is at least this share of the largest |effect| of any head or MLP."""
    min_effect: float = 0.05
    """and at least this (5 % of the clean-vs-twin difference), so a model where nothing matters gets no circuit."""
    chance_k: float = 3.0
    """a role's signature must exceed chance_k x 1 / (query position + 1): clearly selective attention, not a uniform spread."""

    def __post_init__(self) -> None:
        if not (0 < self.effect_share <= 1 and self.min_effect >= 0 and self.chance_k > 0):
            raise AdvgenError(
                f"discover settings: effect_share in (0, 1], min_effect >= 0 and chance_k > 0, got "
                f"{self.effect_share}, {self.min_effect}, {self.chance_k}"
            )


@dataclass(frozen=True)
class Unassigned:
    """A head whose effect clears the threshold but whose attention matches no role above chance."""

    head: Head
    effect: float
    signatures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskDiscovery:
    circuit: Circuit
    matrices: dict[str, np.ndarray]
    """"effect" [L, H], "sig_<role>" [L, H], "mlp_effect" [1, L]."""
    thresholds: dict[str, float]
    unassigned: tuple[Unassigned, ...]
    report: dict[str, Any]


def role_name(name: str) -> RoleName:
    """IOI's `Role` member where the name is one, else the task's own role."""
    return Role(name) if name in {r.value for r in Role} else TaskRole(name)


def effects(
    model: LoadedModel, clean_ps: PromptSet, clean: TaskCache, twin: TaskCache, batch_size: int, metric: str = "logit_diff"
) -> tuple[np.ndarray, np.ndarray]:
    """[L, H] head effects and [L] MLP effects on the task's metric: each node's twin output patched in at every position."""
    L, H, n = model.n_layers, model.n_heads, len(clean_ps)
    rows = [Row(i, heads=((layer, h, "ALL"),), z_src=twin.z[i]) for layer in range(L) for h in range(H) for i in range(n)]
    rows += [Row(i, mlps=((layer, "ALL"),), mlp_src=twin.mlp[i]) for layer in range(L) for i in range(n)]
    col, c_m, t_m = (3, clean.pd, twin.pd) if metric == "prob_diff" else (0, clean.ld, twin.ld)
    ld = patched_rows(model, clean_ps, rows, clean.logp, batch_size)[:, col].view(L * H + L, n).mean(1)
    base, drop = float(c_m.mean()), float(t_m.mean() - c_m.mean())
    if abs(drop) < TWIN_EPS:
        raise TaskError(
            f"the corrupted twins do not move the metric {metric} (mean clean {base:.4f}, twin {float(t_m.mean()):.4f}): "
            "the model does not use what the twin removes, so patching measures nothing"
        )
    eff = ((ld - base) / drop).numpy()
    return eff[: L * H].reshape(L, H), eff[L * H :]


def chance_levels(task: Task, prompts: PromptSet) -> dict[str, float]:
    """Per role, the mean over prompts of 1 / (query position + 1): uniform attention's share of one key."""
    return {r.name: float(np.mean([1.0 / (p.positions[r.query] + 1) for p in prompts])) for r in task.roles}


def threshold(head_eff: np.ndarray, mlp_eff: np.ndarray, s: TaskDiscoverySettings) -> float:
    top = float(max(np.abs(head_eff).max(initial=0.0), np.abs(mlp_eff).max(initial=0.0)))
    return max(s.effect_share * top, s.min_effect)


def assign(
    task: Task, eff: np.ndarray, sigs: dict[str, np.ndarray], chance: dict[str, float], thr: float, s: TaskDiscoverySettings
) -> tuple[list[CircuitHead], list[Unassigned]]:
    """Members by effect, roles by signature above chance (the rule in the module docstring)."""
    heads, lost = [], []
    for layer, h in zip(*np.nonzero(np.abs(eff) >= thr), strict=True):
        e = float(eff[layer, h])
        sig = {r: round(float(m[layer, h]), 5) for r, m in sigs.items()}
        above = {r: v for r, v in sig.items() if v > s.chance_k * chance[r]}
        if not above:
            lost.append(Unassigned(Head(int(layer), int(h)), round(e, 5), sig))
            continue
        r = max(above, key=lambda k: (above[k], k))
        spec = task.role(r)
        scores = {"patching_effect": round(e, 5), **{f"attn_{k}": v for k, v in sig.items()}}
        note = (
            f"patch from twin (all positions) {e:+.3f}; attention {spec.query}->{spec.key} {sig[r]:.3f} "
            f"(chance x{s.chance_k:g} = {s.chance_k * chance[r]:.3f})"
        )
        heads.append(CircuitHead(Head(int(layer), int(h)), role_name(r), spec.positions, scores, note))
    return heads, lost


def precision_recall(found: frozenset[Head], reference: Circuit) -> dict[str, Any]:
    ref = reference.head_set()
    hit = found & ref
    return {
        "reference": reference.name,
        "precision": len(hit) / len(found) if found else float("nan"),
        "recall": len(hit) / len(ref) if ref else float("nan"),
        "found_not_in_reference": sorted(map(str, found - ref)),
        "reference_not_found": sorted(map(str, ref - found)),
    }


def discover_task(
    model: LoadedModel,
    task: Task,
    settings: TaskDiscoverySettings = TaskDiscoverySettings(),
    name: str | None = None,
    reference: Circuit | None = None,
) -> TaskDiscovery:
    """Clean + twin caches, per-node activation patching, the rule -> a circuit of `task` with its evidence."""
    s = settings
    if not task.roles:
        raise TaskError(
            f"task {task.name!r} ({task.source}) defines no roles; discovery names each head by its role's attention signature"
        )
    clean_ps, twin_ps = twin_sets(task, model.tokenizer, s.n, s.seed)
    with torch.no_grad():
        clean = cache_task_run(model, clean_ps, task.roles, s.batch_size)
        twin = cache_task_run(model, twin_ps, (), s.batch_size)
        head_eff, mlp_eff = effects(model, clean_ps, clean, twin, s.batch_size * 4, task.metric)
    sigs = {r: clean.attn[r].mean(0).numpy() for r in task.role_names}
    chance = chance_levels(task, clean_ps)
    thr = threshold(head_eff, mlp_eff, s)
    heads, lost = assign(task, head_eff, sigs, chance, thr, s)
    mlps = _mlp_nodes(mlp_eff, thr)
    thresholds = _thresholds(task, s, thr, chance, float(max(np.abs(head_eff).max(), np.abs(mlp_eff).max())))
    f_m, f_t = float(clean.ld.mean()), float(twin.ld.mean())
    found = sorted({h.role.value for h in heads})
    prov = {
        "method": "advgen discover --task (activation patching from the corrupted twin + role attention signatures)",
        "task": task.describe(),
        "settings": asdict(s),
        "clean_mean_ld": round(f_m, 5),
        "twin_mean_ld": round(f_t, 5),
        "roles_found": found,
        "roles_missing": [r for r in task.role_names if r not in found],
        "unassigned": [str(u.head) for u in lost],
    }
    circuit = Circuit(
        name=name or f"discovered-{Path(model.name).name}-{task.name}",
        model=model.name,
        heads=tuple(heads),
        n_layers=model.n_layers,
        n_heads=model.n_heads,
        provenance=prov,
        mlps=mlps,
        task=task.name,
    )
    matrices = {"effect": head_eff, "mlp_effect": mlp_eff[None, :], **{f"sig_{r}": v for r, v in sigs.items()}}
    report = _report(model, task, circuit, thresholds, lost, s, (f_m, f_t, len(clean_ps)), mlp_eff)
    if reference is not None:
        report["reference"] = precision_recall(circuit.head_set(), reference)
    return TaskDiscovery(circuit, matrices, thresholds, tuple(lost), report)


def _mlp_nodes(mlp_eff: np.ndarray, thr: float) -> tuple[CircuitMLP, ...]:
    """The MLPs whose output from the twin (all positions) moves the metric by at least the threshold."""
    return tuple(
        CircuitMLP(
            int(layer),
            ("ALL",),
            {"patching_effect": round(float(mlp_eff[layer]), 5)},
            f"MLP output from the twin (all positions) {float(mlp_eff[layer]):+.3f}",
        )
        for layer in np.nonzero(np.abs(mlp_eff) >= thr)[0]
    )


def _thresholds(task: Task, s: TaskDiscoverySettings, thr: float, chance: dict[str, float], largest: float) -> dict[str, float]:
    """The effect threshold and what it came from; each role's chance level and the signature minimum above it."""
    return {
        "effect": thr,
        "effect_share": s.effect_share,
        "min_effect": s.min_effect,
        "largest_abs_effect": largest,
        "chance_k": s.chance_k,
        **{f"chance_{r}": chance[r] for r in task.role_names},
        **{f"signature_min_{r}": s.chance_k * chance[r] for r in task.role_names},
    }


def _report(
    model: LoadedModel,
    task: Task,
    c: Circuit,
    thresholds: dict[str, float],
    lost: list[Unassigned],
    s: TaskDiscoverySettings,
    lds: tuple[float, float, int],
    mlp_eff: np.ndarray,
) -> dict[str, Any]:
    f_m, f_t, n = lds
    zero_mlps = bool(np.all(np.abs(mlp_eff) < ZERO_EFFECT))
    return {
        "model": model.name,
        "model_source": model.source,
        "runtime": model.runtime,
        "task": task.describe(),
        "settings": asdict(s),
        "n": n,
        "clean_mean_ld": f_m,
        "twin_mean_ld": f_t,
        "thresholds": thresholds,
        "rule": {
            "effect": (
                "(mean metric with the node's output from the twin, all positions - mean clean metric) / (mean twin metric "
                "- mean clean metric)"
            ),
            "metric": task.metric,
            "member": f"|effect| >= max({s.effect_share} x largest |effect|, {s.min_effect})",
            "role": (
                f"highest mean attention query->key among roles above {s.chance_k} x 1/(query position + 1); none: unassigned"
            ),
            "mlp": "an MLP whose |effect| clears the same threshold is a node at ALL positions",
        },
        "roles_found": list(c.provenance["roles_found"]),
        "roles_missing": list(c.provenance["roles_missing"]),
        "heads": {str(h.head): {"role": h.role.value, "positions": list(h.positions), **dict(h.scores)} for h in c.heads},
        "unassigned": [{"head": str(u.head), "effect": u.effect, "signatures": u.signatures} for u in lost],
        "mlp_nodes": [m.node for m in c.mlps],
        "mlp_effects": [round(float(x), 6) for x in mlp_eff],
        "mlp_note": (
            f"every MLP's patching effect is 0 (|effect| < {ZERO_EFFECT:g}, float error; its output does not differ between "
            "clean and twin runs: "
            "zero MLPs), so there are no MLP nodes"
        )
        if zero_mlps
        else "",
        "forward_equivalents": {
            "cache_clean": n,
            "cache_twin": n,
            "activation_patching": n * (model.n_layers * model.n_heads + model.n_layers),
        },
    }


def _heatmap(path: Path, d: TaskDiscovery) -> Path:
    """One panel per matrix: patching effect, then each role's attention signature, then the MLP effects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(d.matrices)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, k in zip(axes[0], names, strict=True):
        v = np.nan_to_num(d.matrices[k])
        lim = max(float(np.abs(v).max()), 1e-9)
        signed = float(v.min()) < 0
        im = ax.imshow(v, cmap="RdBu" if signed else "Blues", vmin=-lim if signed else 0, vmax=lim, aspect="auto")
        ax.set_title(
            {"effect": "head effect (twin patched in)", "mlp_effect": "MLP effect (twin patched in)"}.get(
                k, f"attention: {k.removeprefix('sig_')}"
            ),
            fontsize=8,
        )
        ax.set_xlabel("layer" if k == "mlp_effect" else "head", fontsize=8)
        ax.set_ylabel("" if k == "mlp_effect" else "layer", fontsize=8)
        ax.set_xticks(range(v.shape[1]))
        ax.set_yticks(range(v.shape[0]))
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=6)
    fig.suptitle(f"{d.report['model']}, task {d.circuit.task}: effect = share of the clean-vs-twin LD difference", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return path


def discovery_markdown(d: TaskDiscovery, command: str = "") -> str:
    r, t = d.report, d.thresholds
    lines = [
        f"# Discovery: task {d.circuit.task} on {r['model']}",
        "",
        f"Command: `{command}`" if command else "",
        "",
        f"{r['n']} prompts; mean LD clean {r['clean_mean_ld']:.3f}, corrupted twin {r['twin_mean_ld']:.3f}.",
        "",
        f"Members: |effect| >= {t['effect']:.3f} (= max({t['effect_share']} x largest |effect| {t['largest_abs_effect']:.3f}, "
        f"{t['min_effect']})). Roles: signature > {t['chance_k']:g} x chance.",
        "",
        "| head | role | position | effect | " + " | ".join(f"attn {k}" for k in d.circuit.provenance["task"]["roles"]) + " |",
        "|---|---|---|---|" + "---|" * len(d.circuit.provenance["task"]["roles"]),
    ]
    for h in sorted(d.circuit.heads, key=lambda h: h.head):
        sigs = " | ".join(f"{h.scores[f'attn_{k}']:.3f}" for k in d.circuit.provenance["task"]["roles"])
        lines.append(f"| {h.head} | {h.role.value} | {','.join(h.positions)} | {h.scores['patching_effect']:+.3f} | {sigs} |")
    lines += [
        "",
        "Unassigned members (effect clears the threshold, no role signature above chance): "
        + (", ".join(f"{u.head} (effect {u.effect:+.3f}, {u.signatures})" for u in d.unassigned) or "none"),
        "",
        f"Roles missing: {', '.join(r['roles_missing']) or 'none'}.",
        "",
        f"MLP nodes: {', '.join(r['mlp_nodes']) or 'none'}. {r['mlp_note']}".rstrip(),
    ]
    if "reference" in r:
        ref = r["reference"]
        lines += [
            "",
            f"Against {ref['reference']}: precision {ref['precision']:.2f}, recall {ref['recall']:.2f} "
            f"(found, not in it: {ref['found_not_in_reference'] or 'none'}; in it, not found: "
            f"{ref['reference_not_found'] or 'none'}).",
        ]
    return "\n".join(lines) + "\n"


def write_task_discovery(d: TaskDiscovery, out: str | Path, command: str = "") -> list[Path]:
    """OUT/circuit.json, discovery.json (matrices, thresholds, rule, report), discovery.png, discovery.md."""
    from advgen.circuits.discovery_doc import TaskDiscoveryDoc, build
    from advgen.core.files import atomic_write_text, dumps
    from advgen.core.records import package_versions

    out = Path(out)
    written = [d.circuit.save(out / "circuit.json")]
    doc = build(TaskDiscoveryDoc, d.report, command, package_versions(), d.matrices)  # the shape, stated once (NaN written null)
    written.append(atomic_write_text(out / "discovery.json", dumps(doc.to_dict()) + "\n"))
    written.append(_heatmap(out / "discovery.png", d))
    written.append(atomic_write_text(out / "discovery.md", discovery_markdown(d, command)))
    return written
