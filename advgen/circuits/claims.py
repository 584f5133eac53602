"""Check a circuit claim under several metrics and ablations, not one.

F(X) = mean LD with every head outside X knocked out (circuit heads kept only at their positions).
- faithfulness: |F(M) - F(C)|, and F(C)/F(M) with a paired bootstrap interval;
- completeness: incompleteness |F(C\\K) - F(M\\K)| for random K, K = each role, and a greedy K;
- minimality: for each head v, the largest |F(C\\(K+v)) - F(C\\K)| over the K tried, vs 1 % of F(M);
- metric x ablation table: mean LD, per-example mean |LD_model - LD_circuit|, KL(model || circuit),
  accuracy, loss recovered (nats and %), for every ablation in `advgen.circuits.ablation`;
- worst cases: the prompts where circuit and model diverge most (paper's ablation);
- causal scrubbing (`advgen.circuits.scrubbing`): every unnamed activation resampled from a name
  twin; per-example spread and sign flips beside the mean, for every column of the table;
- absolute performance (`advgen.circuits.absolute`): loss in nats, LD, and the circuit-only
  model's place on the ladder of reference models.
Every variant of one ablation runs in one stacked batch, over one set of cached activations.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.circuits import ablation, patching, scrubbing
from advgen.circuits.absolute import absolute_performance
from advgen.circuits.format import Circuit
from advgen.circuits.patching import RowStats
from advgen.core.files import atomic_write_text, dumps, jsonl_text
from advgen.core.types import AdvgenError, Head, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.model.metrics import bootstrap_ci
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts.datasets import ioi_sets

GAP_EPS = 1e-5
"""Relative loss gap (empty circuit vs model) below which loss recovered (%) is undefined (float32 noise)."""
METRICS = ("mean_ld", "ratio_to_model", "mean_abs_ld_diff", "kl_model_circuit", "accuracy", "loss_recovered_nats", "loss_recovered_pct")


@dataclass(frozen=True)
class ClaimSettings:
    n: int = 100
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    ablations: tuple[str, ...] = ablation.ABLATIONS
    n_random_k: int = 8
    greedy_steps: int = 4
    worst_k: int = 20
    minimality_k: tuple[str, ...] = ("empty", "role", "greedy", "random")
    """K sets (minus v) tried per head in the minimality search."""
    minimality_random_k: int = 2
    """how many of the random K sets the minimality search tries."""
    minimality_threshold: float = 0.01
    """fraction of F(M) a head must move F for the circuit to need it."""
    scrub_draws: int = 1
    """name twins per example in causal scrubbing."""
    ladder: bool = True
    """place the circuit on the ladder of reference models (runs each ladder model on the prompts)."""
    failures_max: int = 300
    """error agreement (`--failures`): at most this many errors and this many successes per failure set (seeded sample)."""
    agreement_steps: int = 3
    """error agreement: heads added back by the greedy search."""
    mlps: str = "auto"
    """MLP_MODES: "keep" runs every MLP (the heads' claim); "ablate" knocks out every MLP output the circuit's MLP nodes
    do not name, with the row's ablation (the empty circuit knocks out every MLP); "auto" ablates when the circuit has
    MLP nodes, else keeps. Faithfulness table and completeness / minimality; scrubbing and the ladder keep every MLP."""


MLP_MODES = ("auto", "keep", "ablate")


def mlp_mode(setting: str, circuit: Circuit) -> str:
    """"keep" or "ablate" for this circuit: a circuit that names MLP nodes claims the other MLPs are not needed."""
    if setting not in MLP_MODES:
        raise AdvgenError(f"--mlps {setting!r}: choose one of {list(MLP_MODES)}")
    return ("ablate" if circuit.mlps else "keep") if setting == "auto" else setting


@dataclass(frozen=True)
class ClaimResult:
    table: dict[str, dict[str, Any]]
    """ablation -> metric -> value (intervals as {mean, low, high})."""
    completeness: dict[str, Any]
    minimality: dict[str, Any]
    worst_cases: list[dict[str, Any]]
    header: dict[str, Any]
    markdown: str
    causal_scrubbing: dict[str, Any] = field(default_factory=dict)
    absolute: dict[str, Any] = field(default_factory=dict)
    error_agreement: list[dict[str, Any]] = field(default_factory=list)
    """one block per failure set (`advgen.circuits.failures`): its source and the agreement per ablation."""


def _paired_ratio_ci(num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = 1000) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    r = num[idx].mean(1) / den[idx].mean(1)
    lo, hi = np.percentile(r, [2.5, 97.5])
    return {"mean": float(num.mean() / den.mean()), "low": float(lo), "high": float(hi)}


def metric_row(model_ld: np.ndarray, model_loss: np.ndarray, c: RowStats, empty: RowStats, seed: int) -> dict[str, Any]:
    """Every metric of one kept subgraph against the full model, with bootstrap intervals."""
    ld, loss, e_loss = c.ld.numpy(), c.loss.numpy(), empty.loss.numpy()
    gap_total = float(e_loss.mean() - model_loss.mean())
    rec = float(e_loss.mean() - loss.mean())
    return {
        "mean_ld": bootstrap_ci(ld, seed).as_dict(),
        "ratio_to_model": _paired_ratio_ci(ld, model_ld, seed),
        "faithfulness_gap": bootstrap_ci(model_ld - ld, seed).as_dict(),
        "mean_abs_ld_diff": bootstrap_ci(np.abs(model_ld - ld), seed).as_dict(),
        "kl_model_circuit": bootstrap_ci(c.kl.numpy(), seed).as_dict(),
        "accuracy": bootstrap_ci((ld > 0).astype(float), seed).as_dict(),
        "loss_model": float(model_loss.mean()),
        "loss_circuit": float(loss.mean()),
        "loss_empty": float(e_loss.mean()),
        "loss_recovered_nats": rec,
        # undefined when knocking everything out costs (numerically) nothing: float noise is not a percentage
        "loss_recovered_pct": 100.0 * rec / gap_total if abs(gap_total) > GAP_EPS * max(1.0, abs(float(model_loss.mean())))
        else float("nan"),
        "empty_mean_ld": float(empty.ld.mean()),
        **scrubbing.spread(ld, model_ld),
    }


def _f(stats: RowStats) -> float:
    return float(stats.ld.mean())


def _worst_cases(prompts: PromptSet, model_ld: np.ndarray, circ: RowStats, k: int) -> list[dict[str, Any]]:
    """The k prompts where the circuit's LD is furthest from the model's."""
    dev = np.abs(model_ld - circ.ld.numpy())
    out = []
    for i in np.argsort(-dev, kind="stable")[:k]:
        p = prompts[int(i)]
        out.append({"text": p.text, "io": p.io, "s": p.s, "template_id": p.template_id, "order": p.order,
                    "pair_id": p.pair_id, "ld_model": float(model_ld[i]), "ld_circuit": float(circ.ld[i]),
                    "abs_diff": float(dev[i]), "kl_model_circuit": float(circ.kl[i])})
    return out


def scrub_block(model: LoadedModel, circuit: Circuit, prompts: PromptSet, ref_logp: torch.Tensor, model_ld: np.ndarray,
                model_loss: np.ndarray, s: ClaimSettings) -> dict[str, Any]:
    """The `causal_scrubbing` block, with a `metrics` row shaped like the ablation table's columns."""
    try:
        summary, run = scrubbing.causal_scrubbing(model, circuit, prompts, s.seed, s.scrub_draws, s.batch_size * 4, ref_logp=ref_logp)
    except AdvgenError as e:  # prompts not rendered from the template pack: no name twins to draw
        return {"skipped": str(e)}
    circ = RowStats(*(torch.from_numpy(a.mean(0)) for a in (run.scrubbed_ld, run.scrubbed_loss, run.scrubbed_kl)))
    empty = RowStats(torch.from_numpy(run.baseline_ld.mean(0)), torch.from_numpy(run.baseline_loss.mean(0)), circ.kl)
    return {**summary, "metrics": metric_row(model_ld, model_loss, circ, empty, s.seed)}


def check_claim(model: LoadedModel, circuit: Circuit, settings: ClaimSettings = ClaimSettings(),
                prompts: tuple[PromptSet, PromptSet] | None = None, progress: bool = False) -> ClaimResult:
    """Faithfulness table, scrubbing, absolute performance, completeness, minimality, worst cases."""
    from tqdm.auto import tqdm

    s = settings
    circuit.check_against(model.n_layers, model.n_heads)
    clean_ps, abc_ps = prompts if prompts else ioi_sets(model.tokenizer, s.n, s.seed)[:2]
    bar = tqdm(total=len(s.ablations) + 4, desc="check-claim", unit="step", disable=not progress)
    mode = mlp_mode(s.mlps, circuit)
    clean = patching.cache_run(model, clean_ps, s.batch_size, mlp=mode == "ablate")
    abc = patching.cache_run(model, abc_ps, s.batch_size, mlp=mode == "ablate")
    c_mlps = tuple((m.layer, pos) for m in circuit.mlps for pos in m.positions) if mode == "ablate" else None
    bar.update()
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    io = torch.tensor([p.io_token for p in clean_ps], device="cpu")  # ref_logp is a host tensor
    model_ld = clean.ld.double().numpy()
    model_loss = (-ref_logp[torch.arange(len(clean_ps), device="cpu"), io]).numpy()
    f_m = float(model_ld.mean())
    c_entries = ablation.circuit_entries(circuit)
    table: dict[str, dict[str, Any]] = {}
    worst: list[dict[str, Any]] = []
    vals = {}
    for ab in s.ablations:
        vals[ab] = ablation.ablation_values(ab, clean_ps, clean, abc, s.seed)
        circ, empty = ablation.run_kept(model, clean_ps, [c_entries, ()], vals[ab], ref_logp, s.batch_size * 4,
                                        None if c_mlps is None else [c_mlps, ()])
        table[ab] = metric_row(model_ld, model_loss, circ, empty, s.seed)
        if ab == ablation.PAPER_ABLATION:
            worst = _worst_cases(clean_ps, model_ld, circ, s.worst_k)
        bar.update()
    scrub = scrub_block(model, circuit, clean_ps, ref_logp, model_ld, model_loss, s)
    bar.update()
    paper = ablation.PAPER_ABLATION
    paper_row = table.get(paper)
    if paper_row is None:
        c_stats, empty_stats = ablation.run_kept(
            model, clean_ps, [c_entries, ()], ablation.ablation_values(paper, clean_ps, clean, abc, s.seed), ref_logp, s.batch_size * 4,
            None if c_mlps is None else [c_mlps, ()])
        paper_row = metric_row(model_ld, model_loss, c_stats, empty_stats, s.seed)
    absolute = absolute_performance(model, clean_ps, paper_row, scrub, s.batch_size, s.ladder)
    bar.update()
    comp, mini = completeness_minimality(model, clean_ps, circuit, vals.get(paper) or ablation.ablation_values(paper, clean_ps, clean, abc, s.seed),
                                         ref_logp, f_m, s, c_mlps)
    bar.update()
    bar.close()
    header = {"model": model.name, "model_source": model.source, "runtime": model.runtime, "circuit": circuit.name, "n_heads_in_circuit": len(circuit),
              "n": len(clean_ps), "seed": s.seed, "F_M": f_m, "settings": asdict(s), "paper_setting": paper}
    if circuit.mlps:  # format 2: said, never silently dropped
        header["mlp_nodes"] = [m.node for m in circuit.mlps]
    if circuit.mlps or mode == "ablate":
        header["mlps"] = mode
        header["mlp_note"] = (
            "every MLP output the circuit's MLP nodes do not name is knocked out with the row's ablation (the empty circuit knocks "
            "out every MLP); causal scrubbing and the ladder keep every MLP" if mode == "ablate" else
            "check-claim knocks out heads only: every MLP, the circuit's MLP nodes included, runs unablated in the "
            "circuit and in the empty-circuit runs, so these figures are the heads' claim with all MLPs kept")
    md = markdown(header, table, comp, mini, scrub, absolute)
    return ClaimResult(table, comp, mini, worst, header, md, scrub, absolute)


def completeness_minimality(
    model: LoadedModel, prompts: PromptSet, circuit: Circuit, vals: ablation.AblationValues, ref_logp: torch.Tensor,
    f_m: float, s: ClaimSettings, c_mlps: tuple[tuple[int, str], ...] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Incompleteness for random / per-role / greedy K, and minimality per head (paper's ablation); `c_mlps`: the MLP
    outputs C\\K keeps when MLPs are knocked out (M\\K keeps every MLP)."""
    L, H = model.n_layers, model.n_heads
    heads = sorted(circuit.head_set())
    rng = random.Random(s.seed)
    f_c: dict[frozenset[Head], float] = {}
    f_mk: dict[frozenset[Head], float] = {}

    def evaluate(ks: Sequence[frozenset[Head]], with_m: bool = True) -> None:
        """F(C\\K) (and F(M\\K)) for every new K, all in one stacked run."""
        todo_c = [k for k in dict.fromkeys(ks) if k not in f_c]
        todo_m = [k for k in dict.fromkeys(ks) if k not in f_mk] if with_m else []
        kept = [ablation.circuit_entries(circuit, k) for k in todo_c] + [ablation.all_but(L, H, k) for k in todo_m]
        if not kept:
            return
        mk = None if c_mlps is None else [c_mlps] * len(todo_c) + [None] * len(todo_m)
        st = ablation.run_kept(model, prompts, kept, vals, ref_logp, s.batch_size * 4, mk)
        for k, r in zip(todo_c, st[: len(todo_c)], strict=True):
            f_c[k] = _f(r)
        for k, r in zip(todo_m, st[len(todo_c) :], strict=True):
            f_mk[k] = _f(r)

    def inc(k: frozenset[Head]) -> float:
        return abs(f_c[k] - f_mk[k])

    randoms = list(dict.fromkeys(frozenset(h for h in heads if rng.random() < 0.5) for _ in range(s.n_random_k)))
    per_role = {r.value: frozenset(circuit.heads_with(r)) for r in Role if circuit.heads_with(r)}
    evaluate([frozenset(), *randoms, *per_role.values()])
    greedy: frozenset[Head] = frozenset()
    greedy_path = []
    for _ in range(min(s.greedy_steps, len(heads))):
        cands = [greedy | {h} for h in heads if h not in greedy]
        evaluate(cands)
        greedy = max(cands, key=lambda k: (inc(k), sorted(k)))
        greedy_path.append({"K": sorted(map(str, greedy)), "incompleteness": inc(greedy)})
    comp = {
        "F_M": f_m, "F_C": f_c[frozenset()],
        "random_K": [{"K": sorted(map(str, k)), "F_C_minus_K": f_c[k], "F_M_minus_K": f_mk[k], "incompleteness": inc(k)} for k in randoms],
        "per_role_K": {r: {"K": sorted(map(str, k)), "F_C_minus_K": f_c[k], "F_M_minus_K": f_mk[k], "incompleteness": inc(k)} for r, k in per_role.items()},
        "greedy_K": greedy_path,
        "max_incompleteness": max([inc(k) for k in f_mk] or [0.0]),
    }
    # minimality: for each v, K candidates = empty, v's role class, greedy set, random sets (all minus v)
    base_ks = ([frozenset()] + (list(per_role.values()) if "role" in s.minimality_k else [])
               + ([greedy] if "greedy" in s.minimality_k else []) + (randoms[: s.minimality_random_k] if "random" in s.minimality_k else []))
    pairs = {v: list(dict.fromkeys(k - {v} for k in base_ks)) for v in heads}
    evaluate([k for v in heads for k in pairs[v]] + [k | {v} for v in heads for k in pairs[v]], with_m=False)
    mini: dict[str, Any] = {"threshold": s.minimality_threshold * abs(f_m), "K_tried": list(s.minimality_k), "heads": {}}
    for v in heads:
        best = max(pairs[v], key=lambda k: (abs(f_c[k | {v}] - f_c[k]), sorted(k)))
        score = abs(f_c[best | {v}] - f_c[best])
        mini["heads"][str(v)] = {"score": score, "score_pct_of_F_M": 100 * score / abs(f_m) if f_m else float("nan"),
                                 "K": sorted(map(str, best)), "needed": score >= s.minimality_threshold * abs(f_m)}
    mini["all_needed"] = all(h["needed"] for h in mini["heads"].values())
    return comp, mini


def _num(x: float) -> str:
    return f"{x:.3f}" if x == 0 or abs(x) >= 0.01 or not np.isfinite(x) else f"{x:.2e}"


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return f"{_num(v['mean'])} [{_num(v['low'])}, {_num(v['high'])}]"
    return _num(v)


ROW_NAMES = {"mean_ld": "F(C) = mean LD", "ratio_to_model": "F(C) / F(M)", "faithfulness_gap": "F(M) - F(C)",
             "mean_abs_ld_diff": "mean abs(LD_model - LD_circuit)", "kl_model_circuit": "KL(model ‖ circuit)",
             "accuracy": "accuracy (LD > 0)", "sign_flip_rate": "sign flips (share of examples)",
             "per_example_sd_pct": "per-example sd (% of F(M))", "per_example_quantiles_pct": "per-example 5/25/50/75/95 % (% of F(M))",
             "loss_recovered_nats": "loss recovered (nats)", "loss_recovered_pct": "loss recovered (%)",
             "empty_mean_ld": "mean LD, all heads ablated"}
SCRUB_COLUMN = "causal scrubbing"


def _cell(v: Any) -> str:
    if isinstance(v, dict) and "mean" not in v:
        return " / ".join(f"{x:.0f}" for x in v.values())
    return _fmt(v)


def _table_lines(header: dict[str, Any], table: dict[str, dict[str, Any]], scrub: dict[str, Any]) -> list[str]:
    cols = {**table, **({SCRUB_COLUMN: scrub["metrics"]} if scrub.get("metrics") else {})}
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for k, label in ROW_NAMES.items():
        if k == "empty_mean_ld" and header.get("mlps") == "ablate":  # the empty circuit knocks out every MLP too
            label = "mean LD, all heads and MLPs ablated (causal scrubbing: all heads)"
        lines.append(f"| {label} | " + " | ".join(_cell(c[k]) if k in c else "" for c in cols.values()) + " |")
    if scrub.get("skipped"):
        lines += ["", f"Causal scrubbing skipped: {scrub['skipped']}"]
    elif scrub:
        lines += ["", f"Causal scrubbing ({scrub['draws']} draw(s) per example): the circuit keeps **{scrub['ld_kept_pct']:.1f} %** of "
                  f"the model's LD [{scrub['ld_kept_pct_ci']['low']:.1f}, {scrub['ld_kept_pct_ci']['high']:.1f}], per-example sd "
                  f"{scrub['sd']:.1f} %, sign flips {100 * scrub['sign_flip_rate']:.1f} %; everything resampled (empty circuit): "
                  f"{scrub['baseline_ld_kept_pct']:.1f} %. Mean p(IO): model {scrub['mean_p_io_model']:.3f}, scrubbed "
                  f"{scrub['mean_p_io_scrubbed']:.3f}; the donor's own IO name beats the prompt's IO in "
                  f"{100 * scrub['donor_io_beats_io_rate']:.0f} % of scrubbed examples (mean p {scrub['mean_p_donor_io_scrubbed']:.3f}). "
                  f"Resampling: {scrub['resampling']}."]
    return lines


def _num_or(v: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and np.isfinite(v) else "n/a"


def _absolute_lines(header: dict[str, Any], a: dict[str, Any]) -> list[str]:
    if not a:
        return []
    lines = ["", f"Absolute performance (`{header['paper_setting']}` circuit-only model; IOI loss = -log p(IO) at END, nats): "
             f"loss recovered {_num_or(a['loss_recovered_nats'])} nats ({_num_or(a['loss_recovered_pct'], '{:.1f}')} %); "
             f"ladder position of the circuit: **{a['ladder_position']}**"
             + (f", like a model with {a['ladder_equivalent_params']:,.0f} parameters ({a['times_smaller']:.1f} x smaller than this "
                f"model's {a['model_parameters']:,})" if a.get("ladder_equivalent_params") else "") + "."]
    if "placements" not in a:
        return lines
    lines += ["", "| variant | IOI loss (nats) | mean LD | ladder position | like N parameters |", "|---|---|---|---|---|"]
    for k in ("model", "circuit", "scrubbed", "empty"):
        pl = a["placements"][k]
        eq = f"{pl['equivalent_params']:,.0f}" if pl["equivalent_params"] else ""
        lines.append(f"| {k} | {a['ioi_loss'][k]:.3f} | {a['ioi_mean_ld'][k]:.3f} | {pl['position']} | {eq} |")
    lines += ["", f"Ladder ({a['ladder_basis']}):", "", "| ladder model | parameters | held-out corpus loss | IOI loss | IOI mean LD | IOI accuracy |",
              "|---|---|---|---|---|---|"]
    for r in a["ladder"]:
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['heldout_loss']:.3f} | {r['ioi_loss']:.3f} | {r['ioi_mean_ld']:.3f} | {r['ioi_accuracy']:.3f} |")
    return lines


def _completeness_lines(header: dict[str, Any], comp: dict[str, Any], mini: dict[str, Any]) -> list[str]:
    lines = ["", f"Completeness (`{header['paper_setting']}`): F(C) = {comp['F_C']:.3f}; max incompleteness "
             f"abs(F(C\\K) - F(M\\K)) = {comp['max_incompleteness']:.3f}", "", "| K | F(C\\K) | F(M\\K) | incompleteness |", "|---|---|---|---|"]
    for r, d in comp["per_role_K"].items():
        lines.append(f"| role {r} | {d['F_C_minus_K']:.3f} | {d['F_M_minus_K']:.3f} | {d['incompleteness']:.3f} |")
    for d in comp["random_K"]:
        lines.append(f"| random {{{', '.join(d['K'])}}} | {d['F_C_minus_K']:.3f} | {d['F_M_minus_K']:.3f} | {d['incompleteness']:.3f} |")
    for j, d in enumerate(comp["greedy_K"], 1):
        lines.append(f"| greedy step {j} {{{', '.join(d['K'])}}} | | | {d['incompleteness']:.3f} |")
    lines += ["", f"Minimality (threshold {mini['threshold']:.3f} = 1 % of F(M)); all heads needed: {mini['all_needed']}", "",
              "| head | max abs(F(C\\(K+v)) - F(C\\K)) | % of F(M) | K | needed |", "|---|---|---|---|---|"]
    for h, d in mini["heads"].items():
        lines.append(f"| {h} | {d['score']:.3f} | {d['score_pct_of_F_M']:.1f} | {{{', '.join(d['K'])}}} | {d['needed']} |")
    return lines


def markdown(header: dict[str, Any], table: dict[str, dict[str, Any]], comp: dict[str, Any], mini: dict[str, Any],
             scrub: dict[str, Any] | None = None, absolute: dict[str, Any] | None = None) -> str:
    """claims.md: the metric x ablation table (with the scrubbing column), absolute performance, completeness, minimality."""
    lines = [f"## Claim check: circuit `{header['circuit']}` ({header['n_heads_in_circuit']} heads) on `{header['model']}`",
             "", f"n = {header['n']} clean IOI prompts, seed {header['seed']}; F(M) = {header['F_M']:.3f}. "
             f"Paper's setting = `{header['paper_setting']}` + mean LD. Intervals: bootstrap 95 %.", ""]
    if header.get("mlp_note"):
        lines += [f"MLP nodes {', '.join(header.get('mlp_nodes') or []) or 'none'} (--mlps {header['mlps']}): {header['mlp_note']}.", ""]
    lines += _table_lines(header, table, scrub or {})
    lines += _absolute_lines(header, absolute or {})
    lines += _completeness_lines(header, comp, mini)
    return "\n".join(lines) + "\n"


def write_claims(res: ClaimResult, out: str | Path, command: str = "") -> list[Path]:
    """DIR/claims.json, DIR/claims.md, DIR/worst_cases.jsonl (atomic writes)."""
    out = Path(out)
    from advgen.circuits.claims_doc import claims_doc
    from advgen.core.records import package_versions

    doc = claims_doc(res.header, command, package_versions(), {
        "table": res.table, "causal_scrubbing": res.causal_scrubbing, "absolute": res.absolute, "completeness": res.completeness,
        "minimality": res.minimality, **({"error_agreement": res.error_agreement} if res.error_agreement else {})})
    md = res.markdown + (f"\nCommand: `{command}`\n" if command else "")
    return [atomic_write_text(out / "claims.json", dumps(doc.to_dict()) + "\n"), atomic_write_text(out / "claims.md", md),
            atomic_write_text(out / "worst_cases.jsonl", jsonl_text(res.worst_cases))]
