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
Roles the model does not show are reported as missing, never filled in.
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
from advgen.circuits.format import DEFAULT_POSITIONS, Circuit, CircuitHead, CircuitMLP
from advgen.core.types import AdvgenError, Head, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts import datasets

NM_PATHS = {"mlp": ("pp_logits_mlp", "path->MLPs->logits"), "direct": ("pp_logits", "path->logits")}
"""name-mover rule path -> (score matrix it reads, label in the role's note); its keys are `options.NM_PATHS` (the CLI's choices)."""


@dataclass(frozen=True)
class Settings:
    """Thresholds, as fractions of the clean mean LD F(M) unless noted."""

    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    nm_effect: float = 0.10
    """path patching to logits must lower LD by at least this much for a name mover."""
    nm_path: str = "mlp"
    """which head -> logits path the name-mover rule reads: "mlp" (pp_logits_mlp: later MLPs
    recomputed, the IOI paper's path; a mover whose write the last MLP carries counts) or "direct"
    (pp_logits, the rule before this option existed). Negative name movers always use the direct path: that role is
    a head's own write against IO, and via MLPs a layer-0 relay would qualify."""
    backup_effect: float = 0.03
    """direct effect gain (under name-mover knockout) for a backup name mover."""
    sinh_effect: float = 0.05
    """path patching to name-mover queries must lower LD by this much for S-inhibition."""
    upstream_effect: float = 0.03
    """activation patching at the role's position must lower LD by this much (induction, dup, prev)."""
    pattern_score: float = 0.25
    """attention score (absolute probability) for a pattern role."""
    max_name_movers: int = 3
    detector_seqs: int = 8
    detector_len: int = 20
    curve_ablation: str = ablation.PAPER_ABLATION
    """ablation of the heads outside each top-k circuit in the faithfulness curves (`advgen.circuits.curves`)."""

    def __post_init__(self) -> None:
        if self.nm_path not in NM_PATHS:  # checked here, before any model run
            raise AdvgenError(f"discover settings: nm_path {self.nm_path!r}, expected one of {', '.join(NM_PATHS)}")
        if self.curve_ablation not in ablation.ABLATIONS:
            raise AdvgenError(f"discover settings: curve_ablation {self.curve_ablation!r}, expected one of {', '.join(ablation.ABLATIONS)}")


@dataclass(frozen=True)
class Discovery:
    circuit: Circuit
    matrices: dict[str, np.ndarray]
    """score name -> [L, H]."""
    report: dict[str, Any]


def _heads(mask: np.ndarray) -> list[Head]:
    return [Head(int(a), int(b)) for a, b in zip(*np.nonzero(mask), strict=False)]


def assign_roles(m: dict[str, np.ndarray], s: Settings) -> dict[Head, tuple[Role, str]]:
    """Roles from score matrices; one role per head, the first rule that fires (order below)."""
    key, via = NM_PATHS[s.nm_path]
    pp = m[key]
    L, H = pp.shape
    roles: dict[Head, tuple[Role, str]] = {}
    io_pref = m["attn_END_to_IO"] > m["attn_END_to_S2"]
    nm = (pp <= -s.nm_effect) & (m["dla_ld"] > 0) & io_pref
    order = sorted(_heads(nm), key=lambda h: pp[h.layer, h.head])[: s.max_name_movers]
    for h in order:
        roles[h] = (Role.NAME_MOVER, f"{via} {pp[h.layer, h.head]:+.2f}, END->IO {m['attn_END_to_IO'][h.layer, h.head]:.2f}")
    direct = m["pp_logits"]
    for h in _heads((direct >= s.nm_effect / 2) & (m["dla_ld"] < 0)):
        roles.setdefault(h, (Role.NEGATIVE_NAME_MOVER, f"path->logits {direct[h.layer, h.head]:+.2f}, DLA {m['dla_ld'][h.layer, h.head]:+.2f}"))
    if "backup_gain" in m:
        for h in _heads((m["backup_gain"] >= s.backup_effect) & ~nm):
            roles.setdefault(h, (Role.BACKUP_NAME_MOVER, f"DLA gain under name-mover knockout {m['backup_gain'][h.layer, h.head]:+.2f}"))
    if "pp_queries" in m and order:
        sinh = np.nan_to_num(m["pp_queries"], nan=0.0) <= -s.sinh_effect
        for h in sorted(_heads(sinh), key=lambda h: m["pp_queries"][h.layer, h.head]):
            roles.setdefault(h, (Role.S_INHIBITION, f"path->NM queries {m['pp_queries'][h.layer, h.head]:+.2f}, END->S2 {m['attn_END_to_S2'][h.layer, h.head]:.2f}"))
    elif not order:
        # no name-mover heads to path-patch into (the logits are written by MLPs): fall back to the
        # S-inhibition signature itself: END attends to S2 and patching END from ABC lowers LD
        sinh = (m["act_END"] <= -s.sinh_effect) & (m["attn_END_to_S2"] > m["attn_END_to_IO"])
        for h in sorted(_heads(sinh), key=lambda h: m["act_END"][h.layer, h.head]):
            roles.setdefault(h, (Role.S_INHIBITION, f"no name movers; patch@END {m['act_END'][h.layer, h.head]:+.2f}, "
                                 f"END->S2 {m['attn_END_to_S2'][h.layer, h.head]:.2f} vs END->IO {m['attn_END_to_IO'][h.layer, h.head]:.2f}"))
    upstream = [
        (Role.INDUCTION, "S2", ("induction_score", "attn_S2_to_S1+1")),
        (Role.DUPLICATE_TOKEN, "S2", ("duplicate_token_score", "attn_S2_to_S1")),
        (Role.PREVIOUS_TOKEN, "S1+1", ("previous_token_score", "attn_S1+1_to_S1")),
    ]
    for role, kind, pats in upstream:
        pattern = np.maximum(*(m[p] for p in pats if p in m)) if all(p in m for p in pats) else m[pats[1]]
        eff = m[f"act_{kind}"]
        for h in _heads((pattern >= s.pattern_score) & (eff <= -s.upstream_effect)):
            roles.setdefault(h, (role, f"pattern {pattern[h.layer, h.head]:.2f}, patch@{kind} {eff[h.layer, h.head]:+.2f}"))
    _sinh_via_kv(m, s, roles)
    # a head that matters only when patched at every position acts on tokens no slot names (e.g.
    # between S2 and END); when it is in layers before the END heads and looks at S2 it is kept at ALL
    slots = np.minimum.reduce([m[f"act_{k}"] for k in ("END", "S2", "S1+1", "S1") if f"act_{k}" in m])
    spread = (m["act_ALL"] <= -s.upstream_effect) & (slots > m["act_ALL"] / 2)
    for h in _heads(spread):
        if h not in roles:
            roles[h] = (Role.S_INHIBITION, f"moves S2 forward: patch@ALL {m['act_ALL'][h.layer, h.head]:+.2f} but "
                        f"at most {slots[h.layer, h.head]:+.2f} at any one slot; kept at ALL positions")
    return roles


def _sinh_via_kv(m: dict[str, np.ndarray], s: Settings, roles: dict[Head, tuple[Role, str]]) -> None:
    """S-inhibition through the name movers' keys or values (after the query and upstream rules,
    so a duplicate-token or induction head is not relabelled by its effect on keys at S2)."""
    if "pp_keys" not in m or "pp_values" not in m:
        return
    kv = np.minimum(np.nan_to_num(m["pp_keys"], nan=0.0), np.nan_to_num(m["pp_values"], nan=0.0))
    for h in sorted(_heads(kv <= -s.sinh_effect), key=lambda h: kv[h.layer, h.head]):
        roles.setdefault(h, (Role.S_INHIBITION, f"path->NM keys {m['pp_keys'][h.layer, h.head]:+.2f}, values "
                             f"{m['pp_values'][h.layer, h.head]:+.2f}, queries {m['pp_queries'][h.layer, h.head]:+.2f}"))


def backup_gain(model: LoadedModel, prompts: PromptSet, clean: patching.RunCache, abc: patching.RunCache,
                name_movers: list[Head], batch_size: int) -> tuple[np.ndarray, int]:
    """Per head, the rise of its direct logit attribution when the name movers are ABC-mean ablated."""
    if not name_movers:
        return np.zeros((model.n_layers, model.n_heads)), 0
    vals = ablation.ablation_values(ablation.PAPER_ABLATION, prompts, clean, abc)
    kept = ablation.all_but(model.n_layers, model.n_heads, name_movers)
    recorded = _cache_under(model, prompts, [patching.Patch(i, kept, vals.sources[i], keep=True) for i in range(len(prompts))], batch_size)
    dla_ko, _ = patching.direct_logit_attribution(model, prompts, recorded)
    dla, _ = patching.direct_logit_attribution(model, prompts, clean)
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

    return patching.cache_run(model, prompts, batch_size, extra_hooks=lambda idx, width: [
        (f"blocks.{layer}.attn.hook_z", hook_for(layer, idx, width)) for layer in range(L)])


STAGES = ("caching clean, ABC and S1-twin runs", "attribution patching", "activation patching", "path patching to the logits",
          "head scores and detectors", "path patching to name-mover queries, keys and values", "backup knockout",
          "behaviour records of the kept heads")
"""What `discover` reports through `progress`, in order, before each step (a CLI turns them into a progress bar)."""


def discover(model: LoadedModel, settings: Settings = Settings(), name: str | None = None, progress: Callable[[str], Any] | None = None) -> Discovery:
    """Run every step of the method; returns the circuit, all score matrices and a report."""
    s, t0, say = settings, time.perf_counter(), progress or (lambda *_: None)
    clean_ps, abc_ps, s1_ps = datasets.ioi_sets(model.tokenizer, s.n, s.seed)
    say(STAGES[0])
    ta = time.perf_counter()
    clean, abc, s1 = (patching.cache_run(model, ps, s.batch_size, grad=ps is clean_ps) for ps in (clean_ps, abc_ps, s1_ps))
    corrupt, t_cache = {"abc": abc, "s1": s1}, time.perf_counter() - ta
    say(f"clean mean LD F(M) = {(f_m := float(clean.ld.mean())):.3f} over {len(clean_ps)} prompts")
    say(STAGES[1])
    ta, attr = time.perf_counter(), patching.attribution_patching(model, clean_ps, clean, corrupt)
    t_attr = time.perf_counter() - ta + t_cache
    say(STAGES[2])
    ta = time.perf_counter()
    act, n_act = patching.activation_patching(model, clean_ps, clean, corrupt, batch_size=s.batch_size * 4)
    t_act, rank = time.perf_counter() - ta, {k: scores.spearman(act[k], attr[k]) for k in act}
    say(f"activation patching: {n_act} prompt-forwards in {t_act:.1f}s; attribution rank corr (ALL) {rank['ALL']:.3f}")
    m: dict[str, np.ndarray] = {f"act_{k}": v for k, v in act.items()}
    m.update({f"attr_{k}": v for k, v in attr.items()})
    say(STAGES[3])
    m["pp_logits"] = patching.path_patching_logits(model, clean_ps, clean, abc)
    m["pp_logits_mlp"] = paths.path_patching_logits_via_mlps(model, clean_ps, clean, abc)  # the name-mover rule's path by default
    say(STAGES[4])
    m.update(scores.ioi_scores(model, clean_ps, clean).scores)
    det = scores.detector_scores(model, s.detector_seqs, s.detector_len, s.seed)
    m.update(det.scores)
    nms = [h for h, (r, _) in assign_roles(m, s).items() if r == Role.NAME_MOVER]  # first pass: who the name movers are
    say(STAGES[5])
    m["pp_queries"], n_q = paths.path_patching_queries(model, clean_ps, clean, abc, [(h.layer, h.head) for h in nms], s.batch_size * 4)
    kv, n_kv = paths.path_patching_kv(model, clean_ps, clean, abc, [(h.layer, h.head) for h in nms], s.batch_size * 4)
    m["pp_keys"], m["pp_values"] = kv["k"], kv["v"]
    say(STAGES[6])
    m["backup_gain"], n_b = backup_gain(model, clean_ps, clean, abc, nms, s.batch_size)
    roles = assign_roles(m, s)
    say(STAGES[7])
    mlp_eff = mlp_nodes.mlp_path_effects(model, clean_ps, abc_ps, f_m, s.batch_size)  # 2 forwards: END states of clean and ABC
    heads, mlps = _circuit_heads(model, roles, m, s, mlp_nodes.propose(mlp_eff, s.nm_effect))
    mlp_report = {"rule": f"END output from the ABC twin lowers LD by >= nm_effect ({s.nm_effect}) x F(M), later MLPs recomputed",
                  "pp_mlp_logits": [round(float(x), 6) for x in mlp_eff], "proposed": {n.node: n.note for n in mlps}}
    found, missing = _roles_found(roles)
    fc = curves.discovery_curves(model, clean_ps, clean, abc, m, s.curve_ablation, s.seed, s.batch_size * 4, [h.head for h in heads])
    forwards = {
        "cache_clean_forward": len(clean_ps), "cache_abc_forward": len(abc_ps), "cache_s1_twin_forward": len(s1_ps), "cache_clean_backward": len(clean_ps),
        "activation_patching": n_act, "path_patching_queries": n_q, "path_patching_keys_values": n_kv, "backup_knockout": n_b,
        "head_detector_sequences": det.forwards, "mlp_end_states": len(clean_ps) + len(abc_ps), "faithfulness_curves": fc["forwards"]}
    settings_d = asdict(s)
    circuit = Circuit(name=name or f"discovered-{Path(model.name).name}", model=model.name, heads=tuple(heads), mlps=mlps,
                      n_layers=model.n_layers, n_heads=model.n_heads, provenance={
                          "method": "advgen discover (attribution + activation + path patching, head_detector scores)",
                          "settings": settings_d, "clean_mean_ld": round(f_m, 5), "roles_found": found, "roles_missing": missing})
    report = {
        "model": model.name, "model_source": model.source, "runtime": model.runtime, "settings": settings_d, "clean_mean_ld": f_m,
        "abc_mean_ld": float(abc.ld.mean()), "roles_found": found, "roles_missing": missing, **_direct_share(m),
        "heads": {str(h.head): {"role": h.role.value, "why": h.note} for h in heads},
        "mlp_nodes": mlp_report, "attribution_vs_activation_spearman": rank, "forward_equivalents": forwards, "faithfulness_curves": fc,
        "seconds": {"attribution_total": t_attr, "activation_patching": t_act, "total": time.perf_counter() - t0},
    }
    return Discovery(circuit, m, report)


def _roles_found(roles: dict[Head, tuple[Role, str]]) -> tuple[list[str], list[str]]:
    """Roles with at least one head, and the catalogue's roles with none (reported, never silently dropped)."""
    found = sorted({r.value for r, _ in roles.values()})
    return found, [r.value for r in Role if r.value not in found]


def _circuit_heads(model: LoadedModel, roles: dict[Head, tuple[Role, str]], m: dict[str, np.ndarray], s: Settings,
                   mlps: tuple[CircuitMLP, ...]) -> tuple[tuple[CircuitHead, ...], tuple[CircuitMLP, ...]]:
    """Each kept head with its role, positions, every score as evidence, and its behaviour record; the MLP nodes with theirs."""
    heads = []
    for h in sorted(roles):
        role, why = roles[h]
        ev = {k: round(float(v[h.layer, h.head]), 5) for k, v in sorted(m.items()) if np.isfinite(v[h.layer, h.head])}
        heads.append(CircuitHead(h, role, ("ALL",) if "kept at ALL" in why else DEFAULT_POSITIONS[role], ev, why))
    return behaviour.with_records(model, heads, m, behaviour.BehaviourSettings(s.n, s.seed, s.batch_size), s.sinh_effect, mlps)


def _direct_share(m: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"heads_direct_share_of_ld": float(np.sum(m["dla_ld"])),
            "note_direct_share": "sum over heads of direct logit attribution / F(M); the rest reaches the logits through MLPs, embeddings and biases"}


HEATMAPS = {
    "patching.png": ("act_ALL", "act_END", "act_S2", "act_S1+1", "act_S1"),
    "attribution.png": ("attr_ALL", "attr_END", "attr_S2", "attr_S1+1", "attr_S1"),
    "path_patching.png": ("pp_logits", "pp_logits_mlp", "pp_queries", "pp_keys", "pp_values", "dla_ld", "backup_gain"),
    "attention.png": ("attn_END_to_IO", "attn_END_to_S2", "attn_S2_to_S1", "attn_S2_to_S1+1", "attn_S1+1_to_S1"),
    "detectors.png": ("previous_token_score", "duplicate_token_score", "induction_score"),
}


PANEL_TITLES = {
    **{f"act_{k}": f"patched at {k}" for k in patching.KINDS}, **{f"attr_{k}": f"estimated at {k}" for k in patching.KINDS},
    "pp_logits": "path: head -> logits", "pp_logits_mlp": "path: head -> MLPs -> logits", "pp_queries": "path: head -> name-mover queries",
    "pp_keys": "path: head -> name-mover keys", "pp_values": "path: head -> name-mover values",
    "dla_ld": "direct logit attribution", "backup_gain": "backup gain (name movers ablated)",
    "previous_token_score": "previous-token score", "duplicate_token_score": "duplicate-token score", "induction_score": "induction score",
}
FILE_TITLES = {
    "patching.png": "Activation patching: change in mean LD / F(M) when a head's output is taken from the corrupted twin",
    "attribution.png": "Attribution patching: linear estimate of the same change / F(M)",
    "path_patching.png": "Path patching and direct effects on LD, / F(M)",
    "attention.png": "Mean attention probability, query slot -> key slot",
    "detectors.png": "Head detector scores on repeated random-token sequences",
}


def _heatmaps(path: Path, names: tuple[str, ...], m: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    names = tuple(k for k in names if k in m)
    L, H = next(iter(m.values())).shape
    fig, axes = plt.subplots(1, len(names), figsize=(1.0 + min(max(2.6, 0.45 * H + 1.4), 4.5) * len(names), 1.6 + min(0.4 * L, 4.8)), squeeze=False)
    for ax, k in zip(axes[0], names, strict=True):
        v = np.nan_to_num(m[k])
        lim = max(float(np.abs(v).max()), 1e-9)
        signed = float(v.min()) < 0
        im = ax.imshow(v, cmap="RdBu" if signed else "Blues", vmin=-lim if signed else 0, vmax=lim, aspect="auto")
        ax.set_title(PANEL_TITLES.get(k, k.replace("attn_", "").replace("_to_", " -> ")), fontsize=8)
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        cb = fig.colorbar(im, ax=ax, fraction=0.046)
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_powerlimits((-2, 3))
        cb.ax.yaxis.set_major_formatter(fmt)
        cb.ax.yaxis.get_offset_text().set_fontsize(6)
        cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"{FILE_TITLES.get(path.name, '')} ({title})" if path.name in FILE_TITLES else title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def _scatter(path: Path, m: dict[str, np.ndarray], rank: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for k in patching.KINDS:
        if f"act_{k}" in m:
            ax.scatter(m[f"act_{k}"].ravel(), m[f"attr_{k}"].ravel(), s=8, label=f"{k} (rho {rank.get(k, float('nan')):.2f})")
    ax.axline((0, 0), slope=1, color="grey", lw=0.5)
    ax.set_xlabel("activation patching effect / F(M)")
    ax.set_ylabel("attribution patching estimate / F(M)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


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
        _heatmaps(folder / fname, names, d.matrices, title)
        written.append(folder / fname)
    _scatter(folder / "attribution_vs_activation.png", d.matrices, d.report["attribution_vs_activation_spearman"])
    written.append(folder / "attribution_vs_activation.png")
    return written
