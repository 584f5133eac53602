"""Check a circuit claim of any generic task: faithfulness and completeness under every ablation and metric.

F(X) = a metric's mean with everything outside X ablated: every head output and every MLP output
at every position, except the circuit's heads and MLP nodes at their own positions.
- faithfulness: F(C) / F(M) per metric (mean logit difference, accuracy = share with LD > 0,
  p(answer) - p(foil), the metric of "prob_diff" tasks),
  with paired bootstrap 95 % intervals; also (F(C) - F(empty)) / (F(M) - F(empty)), KL(model ||
  circuit) and the share of the answer's loss recovered;
- completeness: the circuit's heads (all positions) and MLP nodes knocked out of the full model,
  F(M \\ C) / F(M): how much of the behaviour is left without the circuit (low = complete);
- ablations: "twin_mean" (mean over the corrupted twins of the same template and length, per
  position: the twin removes what the task needs and keeps the rest), "resample" (another
  prompt's twin of the same template, seeded), "zero";
- worst cases: the prompts whose circuit LD is furthest from the model's (the first ablation).
Every variant of one ablation runs in one stacked batch over one pair of cached runs.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.circuits.format import Circuit
from advgen.circuits.task_runs import Row, TaskCache, answer_masks, cache_task_run, end_scores, patched_rows, twin_sets
from advgen.core.types import AdvgenError, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import bootstrap_ci
from advgen.model.validate import DEFAULT_BATCH
from advgen.tasks.spec import Task

TASK_ABLATIONS = ("twin_mean", "resample", "zero")
N_BOOT = 1000


@dataclass(frozen=True)
class TaskClaimSettings:
    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    ablations: tuple[str, ...] = TASK_ABLATIONS
    worst_k: int = 20

    def __post_init__(self) -> None:
        bad = [a for a in self.ablations if a not in TASK_ABLATIONS]
        if bad or not self.ablations:
            raise AdvgenError(
                f"check-claim settings: unknown ablation(s) {bad or 'none given'}; ablations: {list(TASK_ABLATIONS)}"
            )
        if self.worst_k < 0:
            raise AdvgenError(f"--worst-k must be >= 0, got {self.worst_k}")


@dataclass(frozen=True)
class TaskClaimResult:
    table: dict[str, dict[str, Any]]
    """ablation -> metric -> value (intervals as {mean, low, high})."""
    completeness: dict[str, dict[str, Any]]
    worst_cases: list[dict[str, Any]]
    header: dict[str, Any]
    markdown: str


def ablation_sources(
    name: str, prompts: PromptSet, twin: TaskCache, seed: int
) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """Per clean prompt, the (z, MLP output) that replaces what is ablated; None = zeros."""
    if name == "zero":
        return [(None, None)] * len(prompts)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((p.template_id, len(p)), []).append(i)
    out: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(None, None)] * len(prompts)
    rng = random.Random(f"resample:{seed}")
    for key in sorted(groups):
        members = groups[key]
        if name == "twin_mean":
            z, mlp = torch.stack([twin.z[i] for i in members]).mean(0), torch.stack([twin.mlp[i] for i in members]).mean(0)
            for i in members:
                out[i] = (z, mlp)
            continue
        donors = members[:]
        rng.shuffle(donors)
        for k, i in enumerate(members):
            j = donors[(k + 1) % len(members)] if donors[k] == i and len(members) > 1 else donors[k]
            out[i] = (twin.z[j], twin.mlp[j])
    return out


def _paired_ratio(num: np.ndarray, den: np.ndarray, seed: int) -> dict[str, float]:
    """mean(num) / mean(den) with a paired percentile bootstrap 95 % interval (prompts resampled together)."""
    idx = np.random.default_rng(seed).integers(0, len(num), size=(N_BOOT, len(num)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num[idx].mean(1) / den[idx].mean(1)
        mean = float(num.mean() / den.mean()) if den.mean() != 0 else float("nan")
    lo, hi = np.nanpercentile(r, [2.5, 97.5]) if np.isfinite(r).any() else (float("nan"), float("nan"))
    return {"mean": mean, "low": float(lo), "high": float(hi)}


def metric_block(model_st: np.ndarray, circ: np.ndarray, empty: np.ndarray, seed: int) -> dict[str, Any]:
    """Every metric of one kept subgraph against the full model. Columns of the stats: LD, loss, KL, p(answer) - p(foil)."""
    ld_m, ld_c, ld_e = model_st[:, 0], circ[:, 0], empty[:, 0]
    acc_m, acc_c = (ld_m > 0).astype(float), (ld_c > 0).astype(float)
    gap_ld, gap_loss = float(ld_m.mean() - ld_e.mean()), float(empty[:, 1].mean() - model_st[:, 1].mean())
    pd_m, pd_c = model_st[:, 3], circ[:, 3]
    return {
        "mean_ld": bootstrap_ci(ld_c, seed).as_dict(),
        "mean_prob_diff": bootstrap_ci(pd_c, seed).as_dict(),
        "faithfulness_prob_diff": _paired_ratio(pd_c, pd_m, seed),
        "faithfulness_ld": _paired_ratio(ld_c, ld_m, seed),
        "normalised_faithfulness_ld": float((ld_c.mean() - ld_e.mean()) / gap_ld) if abs(gap_ld) > 1e-9 else float("nan"),
        "accuracy": bootstrap_ci(acc_c, seed).as_dict(),
        "faithfulness_accuracy": _paired_ratio(acc_c, acc_m, seed),
        "kl_model_circuit": bootstrap_ci(circ[:, 2], seed).as_dict(),
        "loss_circuit": float(circ[:, 1].mean()),
        "loss_recovered_pct": 100.0 * float(empty[:, 1].mean() - circ[:, 1].mean()) / gap_loss
        if abs(gap_loss) > 1e-6
        else float("nan"),
        "empty_mean_ld": float(ld_e.mean()),
        "empty_accuracy": float((ld_e > 0).mean()),
    }


def completeness_block(model_st: np.ndarray, knocked: np.ndarray, seed: int) -> dict[str, Any]:
    """The full model without the circuit: what is left of each metric, and how far it fell."""
    ld_m, ld_k = model_st[:, 0], knocked[:, 0]
    left = _paired_ratio(ld_k, ld_m, seed)
    acc_left = _paired_ratio((ld_k > 0).astype(float), (ld_m > 0).astype(float), seed)
    return {
        "mean_ld_without_circuit": bootstrap_ci(ld_k, seed).as_dict(),
        "ld_left": left,
        "ld_fall": 1.0 - left["mean"],
        "accuracy_without_circuit": bootstrap_ci((ld_k > 0).astype(float), seed).as_dict(),
        "accuracy_left": acc_left,
        "kl_model_knocked": bootstrap_ci(knocked[:, 2], seed).as_dict(),
    }


def _worst(prompts: PromptSet, model_st: np.ndarray, circ: np.ndarray, k: int, ablation: str) -> list[dict[str, Any]]:
    dev = np.abs(model_st[:, 0] - circ[:, 0])
    return [
        {
            "text": prompts[int(i)].text,
            "answer": prompts[int(i)].answer,
            "foil": prompts[int(i)].foil,
            "template_id": prompts[int(i)].template_id,
            "pair_id": prompts[int(i)].pair_id,
            "ablation": ablation,
            "ld_model": float(model_st[i, 0]),
            "ld_circuit": float(circ[i, 0]),
            "abs_diff": float(dev[i]),
            "kl_model_circuit": float(circ[i, 2]),
        }
        for i in np.argsort(-dev, kind="stable")[:k]
    ]


def _rows(circuit: Circuit, n: int, sources: list[tuple[torch.Tensor | None, torch.Tensor | None]]) -> list[Row]:
    """circuit kept, empty circuit, circuit knocked out: n rows each."""
    heads = tuple((h.head.layer, h.head.head, pos) for h in circuit.heads for pos in h.positions)
    mlps = tuple((m.layer, pos) for m in circuit.mlps for pos in m.positions)
    ko_h = tuple((h.head.layer, h.head.head, "ALL") for h in circuit.heads)
    ko_m = tuple((m.layer, "ALL") for m in circuit.mlps)
    return (
        [Row(i, heads, mlps, True, *sources[i]) for i in range(n)]
        + [Row(i, keep=True, z_src=sources[i][0], mlp_src=sources[i][1]) for i in range(n)]
        + [Row(i, ko_h, ko_m, False, *sources[i]) for i in range(n)]
    )


def check_task_claim(
    model: LoadedModel, circuit: Circuit, task: Task, settings: TaskClaimSettings = TaskClaimSettings()
) -> TaskClaimResult:
    """Faithfulness (every metric x ablation), completeness and worst cases of `circuit` on `task`'s prompts."""
    s = settings
    circuit.check_task(task)
    circuit.check_against(model.n_layers, model.n_heads)
    clean_ps, twin_ps = twin_sets(task, model.tokenizer, s.n, s.seed)
    n = len(clean_ps)
    with torch.no_grad():
        clean = cache_task_run(model, clean_ps, (), s.batch_size)
        twin = cache_task_run(model, twin_ps, (), s.batch_size)
        _, answer_loss, _, _ = end_scores(clean.logp, *answer_masks(clean_ps, clean.logp.shape[-1]))  # log-probs are logits too
        model_st = torch.stack([clean.ld, answer_loss, torch.zeros(n, dtype=torch.float64, device="cpu"), clean.pd], 1).numpy()
        table, comp, worst = {}, {}, []
        for ab in s.ablations:
            st = patched_rows(
                model, clean_ps, _rows(circuit, n, ablation_sources(ab, clean_ps, twin, s.seed)), clean.logp, s.batch_size * 4
            ).numpy()
            circ, empty, knocked = st[:n], st[n : 2 * n], st[2 * n :]
            table[ab] = metric_block(model_st, circ, empty, s.seed)
            comp[ab] = completeness_block(model_st, knocked, s.seed)
            if ab == s.ablations[0]:
                worst = _worst(clean_ps, model_st, circ, s.worst_k, ab)
    header = {
        "model": model.name,
        "model_source": model.source,
        "runtime": model.runtime,
        "task": task.describe(),
        "circuit": circuit.name,
        "heads": [str(h.head) for h in sorted(circuit.heads, key=lambda h: h.head)],
        "mlp_nodes": [m.node for m in circuit.mlps],
        "n": n,
        "seed": s.seed,
        "settings": asdict(s),
        "model_mean_ld": bootstrap_ci(model_st[:, 0], s.seed).as_dict(),
        "model_accuracy": float((model_st[:, 0] > 0).mean()),
        "twin_mean_ld": float(twin.ld.mean()),
        "model_mean_prob_diff": bootstrap_ci(model_st[:, 3], s.seed).as_dict(),
        "forward_equivalents": {"cache": 2 * n, "patched": 3 * n * len(s.ablations)},
    }
    return TaskClaimResult(table, comp, worst, header, claims_markdown(header, table, comp))


def _ci(d: dict[str, float]) -> str:
    return f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def claims_markdown(header: dict[str, Any], table: dict[str, dict[str, Any]], comp: dict[str, dict[str, Any]]) -> str:
    h = header
    lines = [
        f"# Circuit claim: {h['circuit']} on {h['model']}, task {h['task']['name']}",
        "",
        f"{h['n']} prompts (seed {h['seed']}); model mean LD {_ci(h['model_mean_ld'])}, accuracy {h['model_accuracy']:.3f}; "
        f"corrupted twins' mean LD {h['twin_mean_ld']:.3f}.",
        "",
        f"Circuit: heads {', '.join(h['heads']) or 'none'}; MLP nodes {', '.join(h['mlp_nodes']) or 'none'}. "
        "Everything else (every other head and MLP output, every other position) is ablated.",
        "",
        "| ablation | F(C)/F(M) mean LD [95% CI] | normalised | accuracy C [CI] | acc C / acc M [CI] | F(C)/F(M) "
        "p(answer)-p(foil) [CI] | "
        "KL(M‖C) | loss recovered % | without C: LD left [CI] | accuracy left |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ab, r in table.items():
        c = comp[ab]
        lines.append(
            f"| {ab} | {_ci(r['faithfulness_ld'])} | {r['normalised_faithfulness_ld']:.3f} | {_ci(r['accuracy'])} | "
            f"{_ci(r['faithfulness_accuracy'])} | {_ci(r['faithfulness_prob_diff'])} | {r['kl_model_circuit']['mean']:.3f} | "
            f"{r['loss_recovered_pct']:.1f} | "
            f"{_ci(c['ld_left'])} | {c['accuracy_left']['mean']:.3f} |"
        )
    lines += [
        "",
        "Faithfulness F(C)/F(M): 1 = the circuit alone does what the model does. Completeness: the circuit knocked "
        "out of the full model (all positions); a small share left = the circuit is what carries the behaviour.",
    ]
    return "\n".join(lines) + "\n"


def write_task_claims(res: TaskClaimResult, out: str | Path, command: str = "") -> list[Path]:
    """OUT/claims.json, claims.md, worst_cases.jsonl."""
    from advgen.core.files import atomic_write_text, dumps, finite, jsonl_text
    from advgen.core.records import package_versions

    out = Path(out)
    doc = {**res.header, "command": command, "versions": package_versions(), "table": res.table, "completeness": res.completeness}
    return [
        atomic_write_text(out / "claims.json", dumps(finite(doc)) + "\n"),
        atomic_write_text(out / "claims.md", (f"Command: `{command}`\n\n" if command else "") + res.markdown),
        atomic_write_text(out / "worst_cases.jsonl", jsonl_text(finite(res.worst_cases))),
    ]
