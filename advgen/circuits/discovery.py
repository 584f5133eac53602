"""Discover an IOI circuit in any loadable model: scores + patching -> roles, with evidence per head.

Method (all effects are changes of mean LD, divided by the clean mean LD F(M)):
1. cache the clean IOI prompts (with d LD / dz) and their ABC twins: 2 forwards + 1 backward;
2. attribution patching from those caches (free), then exhaustive activation patching per head
   and position kind, many heads per forward; their rank correlation is reported;
3. path patching heads -> logits (analytic from the caches) picks name movers (large negative
   effect, attends to IO, positive direct logit attribution) and negative name movers
   (positive effect, negative DLA);
4. path patching heads -> the name movers' queries at END picks S-inhibition heads; path patching
   into their keys and values (every position) picks S-inhibition heads that act through those;
5. induction / duplicate-token / previous-token heads need both their attention pattern (random
   repeated tokens via TransformerLens' head_detector, or the IOI readout) and a causal effect
   at their IOI position (S2, S2, S1+1) under activation patching;
6. backup name movers: heads whose direct effect on LD grows when the name movers are knocked out.
Roles the model does not show are reported as missing, never filled in. The settings and the role
rules are `advgen.circuits.discovery_roles`; the PNG figures `advgen.circuits.discovery_plots`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.circuits import ablation, behaviour, curves, mlp_nodes, patching, paths, scores
from advgen.circuits.direct_effects import attribution_patching, direct_logit_attribution, path_patching_logits
from advgen.circuits.discovery_plots import HEATMAPS, heatmaps, scatter
from advgen.circuits.discovery_roles import Settings, assign_roles
from advgen.circuits.format import DEFAULT_POSITIONS, Circuit, CircuitHead, CircuitMLP
from advgen.core.types import Head, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.prompts import datasets


@dataclass(frozen=True)
class Discovery:
    circuit: Circuit
    matrices: dict[str, np.ndarray]
    """score name -> [L, H]."""
    report: dict[str, Any]


def backup_gain(
    model: LoadedModel,
    prompts: PromptSet,
    clean: patching.RunCache,
    abc: patching.RunCache,
    name_movers: list[Head],
    batch_size: int,
) -> tuple[np.ndarray, int]:
    """Per head, the rise of its direct logit attribution when the name movers are ABC-mean ablated."""
    if not name_movers:
        return np.zeros((model.n_layers, model.n_heads)), 0
    vals = ablation.ablation_values(ablation.PAPER_ABLATION, prompts, clean, abc)
    kept = ablation.all_but(model.n_layers, model.n_heads, name_movers)
    recorded = _cache_under(
        model, prompts, [patching.Patch(i, kept, vals.sources[i], keep=True) for i in range(len(prompts))], batch_size
    )
    dla_ko, _ = direct_logit_attribution(model, prompts, recorded)
    dla, _ = direct_logit_attribution(model, prompts, clean)
    gain = (dla_ko - dla) / abs(float(clean.ld.mean()))
    for h in name_movers:
        gain[h.layer, h.head] = 0.0
    return gain, len(prompts)


def _cache_under(model: LoadedModel, prompts: PromptSet, patches: list[patching.Patch], batch_size: int) -> patching.RunCache:
    """cache_run with z replaced per the patches (used for the name-mover knockout)."""
    L, H = model.n_layers, model.n_heads
    srcs = {}
    for p in patches:
        srcs[p.prompt] = p

    def hook_for(layer: int, idx: list[int], width: int):
        masks = torch.stack([patching._row_mask(prompts[i], srcs[i], L, H, width)[layer] for i in idx])
        src = torch.stack([torch.nn.functional.pad(srcs[i].source[layer], (0, 0, 0, 0, 0, width - len(prompts[i]))) for i in idx])
        return lambda t, hook: torch.where(masks[..., None].to(t.device), src.to(t.device, t.dtype), t)

    return patching.cache_run(
        model,
        prompts,
        batch_size,
        extra_hooks=lambda idx, width: [(f"blocks.{layer}.attn.hook_z", hook_for(layer, idx, width)) for layer in range(L)],
    )


STAGES = (
    "caching clean, ABC and S1-twin runs",
    "attribution patching",
    "activation patching",
    "path patching to the logits",
    "head scores and detectors",
    "path patching to name-mover queries, keys and values",
    "backup knockout",
    "behaviour records of the kept heads",
)
"""What `discover` reports through `progress`, in order, before each step (a CLI turns them into a progress bar)."""


@dataclass(frozen=True)
class _Runs:
    """The clean and ABC prompts and cached runs, every score matrix measured so far, and what it cost."""

    clean_ps: PromptSet
    abc_ps: PromptSet
    clean: patching.RunCache
    abc: patching.RunCache
    f_m: float
    m: dict[str, np.ndarray]
    rank: dict[str, float]
    forwards: dict[str, int]
    seconds: dict[str, float]


def discover(
    model: LoadedModel, settings: Settings = Settings(), name: str | None = None, progress: Callable[[str], Any] | None = None
) -> Discovery:
    """Run every step of the method; returns the circuit, all score matrices and a report."""
    s, t0, say = settings, time.perf_counter(), progress or (lambda *_: None)
    r = _patching(model, s, say)
    _scores_and_paths(model, s, r, say)
    m, f_m = r.m, r.f_m
    roles = assign_roles(m, s)
    say(STAGES[7])
    mlp_eff = mlp_nodes.mlp_path_effects(
        model, r.clean_ps, r.abc_ps, f_m, s.batch_size
    )  # 2 forwards: END states of clean and ABC
    heads, mlps = _circuit_heads(model, roles, m, s, mlp_nodes.propose(mlp_eff, s.nm_effect))
    mlp_report = {
        "rule": f"END output from the ABC twin lowers LD by >= nm_effect ({s.nm_effect}) x F(M), later MLPs recomputed",
        "pp_mlp_logits": [round(float(x), 6) for x in mlp_eff],
        "proposed": {n.node: n.note for n in mlps},
    }
    found, missing = _roles_found(roles)
    fc = curves.discovery_curves(
        model, r.clean_ps, r.clean, r.abc, m, s.curve_ablation, s.seed, s.batch_size * 4, [h.head for h in heads]
    )
    forwards = {**r.forwards, "mlp_end_states": len(r.clean_ps) + len(r.abc_ps), "faithfulness_curves": fc["forwards"]}
    settings_d = asdict(s)
    circuit = Circuit(
        name=name or f"discovered-{Path(model.name).name}",
        model=model.name,
        heads=tuple(heads),
        mlps=mlps,
        n_layers=model.n_layers,
        n_heads=model.n_heads,
        provenance={
            "method": "advgen discover (attribution + activation + path patching, head_detector scores)",
            "settings": settings_d,
            "clean_mean_ld": round(f_m, 5),
            "roles_found": found,
            "roles_missing": missing,
        },
    )
    report = {
        "model": model.name,
        "model_source": model.source,
        "runtime": model.runtime,
        "settings": settings_d,
        "clean_mean_ld": f_m,
        "abc_mean_ld": float(r.abc.ld.mean()),
        "roles_found": found,
        "roles_missing": missing,
        **_direct_share(m),
        "heads": {str(h.head): {"role": h.role.value, "why": h.note} for h in heads},
        "mlp_nodes": mlp_report,
        "attribution_vs_activation_spearman": r.rank,
        "forward_equivalents": forwards,
        "faithfulness_curves": fc,
        "seconds": {**r.seconds, "total": time.perf_counter() - t0},
    }
    return Discovery(circuit, m, report)


def _patching(model: LoadedModel, s: Settings, say: Callable[[str], Any]) -> _Runs:
    """Steps 1-3 of the method: the cached runs, attribution and activation patching, path patching to the logits."""
    clean_ps, abc_ps, s1_ps = datasets.ioi_sets(model.tokenizer, s.n, s.seed)
    say(STAGES[0])
    ta = time.perf_counter()
    clean, abc, s1 = (patching.cache_run(model, ps, s.batch_size, grad=ps is clean_ps) for ps in (clean_ps, abc_ps, s1_ps))
    corrupt, t_cache = {"abc": abc, "s1": s1}, time.perf_counter() - ta
    say(f"clean mean LD F(M) = {(f_m := float(clean.ld.mean())):.3f} over {len(clean_ps)} prompts")
    say(STAGES[1])
    ta, attr = time.perf_counter(), attribution_patching(model, clean_ps, clean, corrupt)
    t_attr = time.perf_counter() - ta + t_cache
    say(STAGES[2])
    ta = time.perf_counter()
    act, n_act = patching.activation_patching(model, clean_ps, clean, corrupt, batch_size=s.batch_size * 4)
    t_act, rank = time.perf_counter() - ta, {k: scores.spearman(act[k], attr[k]) for k in act}
    say(f"activation patching: {n_act} prompt-forwards in {t_act:.1f}s; attribution rank corr (ALL) {rank['ALL']:.3f}")
    m: dict[str, np.ndarray] = {f"act_{k}": v for k, v in act.items()}
    m.update({f"attr_{k}": v for k, v in attr.items()})
    say(STAGES[3])
    m["pp_logits"] = path_patching_logits(model, clean_ps, clean, abc)
    m["pp_logits_mlp"] = paths.path_patching_logits_via_mlps(model, clean_ps, clean, abc)  # the name-mover rule's path by default
    forwards = {
        "cache_clean_forward": len(clean_ps),
        "cache_abc_forward": len(abc_ps),
        "cache_s1_twin_forward": len(s1_ps),
        "cache_clean_backward": len(clean_ps),
        "activation_patching": n_act,
    }
    return _Runs(
        clean_ps, abc_ps, clean, abc, f_m, m, rank, forwards, {"attribution_total": t_attr, "activation_patching": t_act}
    )


def _scores_and_paths(model: LoadedModel, s: Settings, r: _Runs, say: Callable[[str], Any]) -> None:
    """Steps 4-6 into `r`: head scores and detectors, path patching into the name movers, the backup knockout."""
    m, clean_ps, clean, abc = r.m, r.clean_ps, r.clean, r.abc
    say(STAGES[4])
    m.update(scores.ioi_scores(model, clean_ps, clean).scores)
    det = scores.detector_scores(model, s.detector_seqs, s.detector_len, s.seed)
    m.update(det.scores)
    nms = [h for h, (role, _) in assign_roles(m, s).items() if role == Role.NAME_MOVER]  # first pass: who the name movers are
    say(STAGES[5])
    m["pp_queries"], n_q = paths.path_patching_queries(
        model, clean_ps, clean, abc, [(h.layer, h.head) for h in nms], s.batch_size * 4
    )
    kv, n_kv = paths.path_patching_kv(model, clean_ps, clean, abc, [(h.layer, h.head) for h in nms], s.batch_size * 4)
    m["pp_keys"], m["pp_values"] = kv["k"], kv["v"]
    say(STAGES[6])
    m["backup_gain"], n_b = backup_gain(model, clean_ps, clean, abc, nms, s.batch_size)
    r.forwards.update(
        {
            "path_patching_queries": n_q,
            "path_patching_keys_values": n_kv,
            "backup_knockout": n_b,
            "head_detector_sequences": det.forwards,
        }
    )


def _roles_found(roles: dict[Head, tuple[Role, str]]) -> tuple[list[str], list[str]]:
    """Roles with at least one head, and the catalogue's roles with none (reported, never silently dropped)."""
    found = sorted({r.value for r, _ in roles.values()})
    return found, [r.value for r in Role if r.value not in found]


def _circuit_heads(
    model: LoadedModel, roles: dict[Head, tuple[Role, str]], m: dict[str, np.ndarray], s: Settings, mlps: tuple[CircuitMLP, ...]
) -> tuple[tuple[CircuitHead, ...], tuple[CircuitMLP, ...]]:
    """Each kept head with its role, positions, every score as evidence, and its behaviour record; the MLP nodes with theirs."""
    heads = []
    for h in sorted(roles):
        role, why = roles[h]
        ev = {k: round(float(v[h.layer, h.head]), 5) for k, v in sorted(m.items()) if np.isfinite(v[h.layer, h.head])}
        heads.append(CircuitHead(h, role, ("ALL",) if "kept at ALL" in why else DEFAULT_POSITIONS[role], ev, why))
    return behaviour.with_records(model, heads, m, behaviour.BehaviourSettings(s.n, s.seed, s.batch_size), s.sinh_effect, mlps)


def _direct_share(m: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "heads_direct_share_of_ld": float(np.sum(m["dla_ld"])),
        "note_direct_share": (
            "sum over heads of direct logit attribution / F(M); the rest reaches the logits through MLPs, embeddings and biases"
        ),
    }


def write_discovery(d: Discovery, out: str | Path, command: str = "") -> list[Path]:
    """OUT circuit JSON; beside it discovery.json (every score matrix + report) and PNG heatmaps."""
    from advgen.circuits.discovery_doc import DiscoveryDoc, build
    from advgen.core.files import atomic_write_text, dumps
    from advgen.core.records import package_versions

    out = Path(out)
    written = [d.circuit.save(out)]
    folder = out.parent
    report = {k: v for k, v in d.report.items() if k != "seconds"}  # wall times would break byte-identical reruns
    doc = build(DiscoveryDoc, report, command, package_versions(), d.matrices)  # the shape, stated once (NaN written null)
    written.append(atomic_write_text(folder / "discovery.json", dumps(doc.to_dict()) + "\n"))
    title = f"{d.report['model']}, F(M) = clean mean LD = {d.report['clean_mean_ld']:.2f}"
    for fname, names in HEATMAPS.items():
        heatmaps(folder / fname, names, d.matrices, title)
        written.append(folder / fname)
    scatter(folder / "attribution_vs_activation.png", d.matrices, d.report["attribution_vs_activation_spearman"])
    written.append(folder / "attribution_vs_activation.png")
    return written
