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
A row's metrics are `advgen.circuits.claim_metrics`; the claims.md text is `advgen.circuits.claims_md`.
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
from advgen.circuits.claim_metrics import metric_row, worst_cases
from advgen.circuits.claims_md import markdown
from advgen.circuits.format import Circuit
from advgen.circuits.patching import Entry, RowStats
from advgen.core.files import atomic_write_text, dumps, jsonl_text
from advgen.core.types import AdvgenError, Head, PromptSet, Role
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts.datasets import ioi_sets


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
    """ "keep" or "ablate" for this circuit: a circuit that names MLP nodes claims the other MLPs are not needed."""
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


def _f(stats: RowStats) -> float:
    return float(stats.ld.mean())


def scrub_block(
    model: LoadedModel,
    circuit: Circuit,
    prompts: PromptSet,
    ref_logp: torch.Tensor,
    model_ld: np.ndarray,
    model_loss: np.ndarray,
    s: ClaimSettings,
) -> dict[str, Any]:
    """The `causal_scrubbing` block, with a `metrics` row shaped like the ablation table's columns."""
    try:
        summary, run = scrubbing.causal_scrubbing(
            model, circuit, prompts, s.seed, s.scrub_draws, s.batch_size * 4, ref_logp=ref_logp
        )
    except AdvgenError as e:  # prompts not rendered from the template pack: no name twins to draw
        return {"skipped": str(e)}
    circ = RowStats(*(torch.from_numpy(a.mean(0)) for a in (run.scrubbed_ld, run.scrubbed_loss, run.scrubbed_kl)))
    empty = RowStats(torch.from_numpy(run.baseline_ld.mean(0)), torch.from_numpy(run.baseline_loss.mean(0)), circ.kl)
    return {**summary, "metrics": metric_row(model_ld, model_loss, circ, empty, s.seed)}


def check_claim(
    model: LoadedModel,
    circuit: Circuit,
    settings: ClaimSettings = ClaimSettings(),
    prompts: tuple[PromptSet, PromptSet] | None = None,
    progress: bool = False,
) -> ClaimResult:
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
    ref_logp, model_ld, model_loss = _model_reference(clean, clean_ps)
    f_m = float(model_ld.mean())
    c_entries = ablation.circuit_entries(circuit)
    table: dict[str, dict[str, Any]] = {}
    worst: list[dict[str, Any]] = []
    vals = {}
    for ab in s.ablations:
        vals[ab] = ablation.ablation_values(ab, clean_ps, clean, abc, s.seed)
        circ, empty = _circuit_and_empty(model, clean_ps, c_entries, c_mlps, vals[ab], ref_logp, s)
        table[ab] = metric_row(model_ld, model_loss, circ, empty, s.seed)
        if ab == ablation.PAPER_ABLATION:
            worst = worst_cases(clean_ps, model_ld, circ, s.worst_k)
        bar.update()
    scrub = scrub_block(model, circuit, clean_ps, ref_logp, model_ld, model_loss, s)
    bar.update()
    paper = ablation.PAPER_ABLATION
    paper_row = table.get(paper)
    if paper_row is None:
        paper_vals = ablation.ablation_values(paper, clean_ps, clean, abc, s.seed)
        c_stats, empty_stats = _circuit_and_empty(model, clean_ps, c_entries, c_mlps, paper_vals, ref_logp, s)
        paper_row = metric_row(model_ld, model_loss, c_stats, empty_stats, s.seed)
    absolute = absolute_performance(model, clean_ps, paper_row, scrub, s.batch_size, s.ladder)
    bar.update()
    k_vals = vals.get(paper) or ablation.ablation_values(paper, clean_ps, clean, abc, s.seed)
    comp, mini = completeness_minimality(model, clean_ps, circuit, k_vals, ref_logp, f_m, s, c_mlps)
    bar.update()
    bar.close()
    header = _header(model, circuit, len(clean_ps), s, f_m, mode)
    md = markdown(header, table, comp, mini, scrub, absolute)
    return ClaimResult(table, comp, mini, worst, header, md, scrub, absolute)


def _model_reference(clean: patching.RunCache, clean_ps: PromptSet) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The full model's END log-probabilities, per-example LD and IO loss, every row's reference."""
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    io = torch.tensor([p.io_token for p in clean_ps], device="cpu")  # ref_logp is a host tensor
    model_ld = clean.ld.double().numpy()
    model_loss = (-ref_logp[torch.arange(len(clean_ps), device="cpu"), io]).numpy()
    return ref_logp, model_ld, model_loss


def _circuit_and_empty(
    model: LoadedModel,
    prompts: PromptSet,
    c_entries: tuple[Entry, ...],
    c_mlps: tuple[tuple[int, str], ...] | None,
    vals: ablation.AblationValues,
    ref_logp: torch.Tensor,
    s: ClaimSettings,
) -> list[RowStats]:
    """The circuit alone and the empty circuit under one ablation, in one stacked run."""
    return ablation.run_kept(
        model, prompts, [c_entries, ()], vals, ref_logp, s.batch_size * 4, None if c_mlps is None else [c_mlps, ()]
    )


def _header(model: LoadedModel, circuit: Circuit, n: int, s: ClaimSettings, f_m: float, mode: str) -> dict[str, Any]:
    """claims.json's header: what was checked, on which model, under which settings; MLP nodes and mode said."""
    header = {
        "model": model.name,
        "model_source": model.source,
        "runtime": model.runtime,
        "circuit": circuit.name,
        "n_heads_in_circuit": len(circuit),
        "n": n,
        "seed": s.seed,
        "F_M": f_m,
        "settings": asdict(s),
        "paper_setting": ablation.PAPER_ABLATION,
    }
    if circuit.mlps:  # format 2: said, never silently dropped
        header["mlp_nodes"] = [m.node for m in circuit.mlps]
    if circuit.mlps or mode == "ablate":
        header["mlps"] = mode
        header["mlp_note"] = (
            "every MLP output the circuit's MLP nodes do not name is knocked out with the row's ablation (the empty circuit "
            "knocks "
            "out every MLP); causal scrubbing and the ladder keep every MLP"
            if mode == "ablate"
            else "check-claim knocks out heads only: every MLP, the circuit's MLP nodes included, runs unablated in the "
            "circuit and in the empty-circuit runs, so these figures are the heads' claim with all MLPs kept"
        )
    return header


class _Knockouts:
    """F(C\\K) and F(M\\K) for every K tried, each new K run once (paper's ablation), many K in one stacked run."""

    def __init__(
        self,
        model: LoadedModel,
        prompts: PromptSet,
        circuit: Circuit,
        vals: ablation.AblationValues,
        ref_logp: torch.Tensor,
        s: ClaimSettings,
        c_mlps: tuple[tuple[int, str], ...] | None,
    ) -> None:
        self.model, self.prompts, self.circuit, self.vals, self.ref_logp, self.s, self.c_mlps = (
            model,
            prompts,
            circuit,
            vals,
            ref_logp,
            s,
            c_mlps,
        )
        self.f_c: dict[frozenset[Head], float] = {}
        self.f_mk: dict[frozenset[Head], float] = {}

    def evaluate(self, ks: Sequence[frozenset[Head]], with_m: bool = True) -> None:
        """F(C\\K) (and F(M\\K)) for every new K, all in one stacked run."""
        L, H, c_mlps = self.model.n_layers, self.model.n_heads, self.c_mlps
        todo_c = [k for k in dict.fromkeys(ks) if k not in self.f_c]
        todo_m = [k for k in dict.fromkeys(ks) if k not in self.f_mk] if with_m else []
        kept = [ablation.circuit_entries(self.circuit, k) for k in todo_c] + [ablation.all_but(L, H, k) for k in todo_m]
        if not kept:
            return
        mk = None if c_mlps is None else [c_mlps] * len(todo_c) + [None] * len(todo_m)
        st = ablation.run_kept(self.model, self.prompts, kept, self.vals, self.ref_logp, self.s.batch_size * 4, mk)
        for k, r in zip(todo_c, st[: len(todo_c)], strict=True):
            self.f_c[k] = _f(r)
        for k, r in zip(todo_m, st[len(todo_c) :], strict=True):
            self.f_mk[k] = _f(r)

    def inc(self, k: frozenset[Head]) -> float:
        return abs(self.f_c[k] - self.f_mk[k])

    def k_row(self, k: frozenset[Head]) -> dict[str, Any]:
        return {"K": sorted(map(str, k)), "F_C_minus_K": self.f_c[k], "F_M_minus_K": self.f_mk[k], "incompleteness": self.inc(k)}


def completeness_minimality(
    model: LoadedModel,
    prompts: PromptSet,
    circuit: Circuit,
    vals: ablation.AblationValues,
    ref_logp: torch.Tensor,
    f_m: float,
    s: ClaimSettings,
    c_mlps: tuple[tuple[int, str], ...] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Incompleteness for random / per-role / greedy K, and minimality per head (paper's ablation); `c_mlps`: the MLP
    outputs C\\K keeps when MLPs are knocked out (M\\K keeps every MLP)."""
    heads = sorted(circuit.head_set())
    rng = random.Random(s.seed)
    ko = _Knockouts(model, prompts, circuit, vals, ref_logp, s, c_mlps)
    randoms = list(dict.fromkeys(frozenset(h for h in heads if rng.random() < 0.5) for _ in range(s.n_random_k)))
    per_role = {r.value: frozenset(circuit.heads_with(r)) for r in Role if circuit.heads_with(r)}
    ko.evaluate([frozenset(), *randoms, *per_role.values()])
    greedy: frozenset[Head] = frozenset()
    greedy_path = []
    for _ in range(min(s.greedy_steps, len(heads))):
        cands = [greedy | {h} for h in heads if h not in greedy]
        ko.evaluate(cands)
        greedy = max(cands, key=lambda k: (ko.inc(k), sorted(k)))
        greedy_path.append({"K": sorted(map(str, greedy)), "incompleteness": ko.inc(greedy)})
    comp = {
        "F_M": f_m,
        "F_C": ko.f_c[frozenset()],
        "random_K": [ko.k_row(k) for k in randoms],
        "per_role_K": {r: ko.k_row(k) for r, k in per_role.items()},
        "greedy_K": greedy_path,
        "max_incompleteness": max([ko.inc(k) for k in ko.f_mk] or [0.0]),
    }
    # minimality: for each v, K candidates = empty, v's role class, greedy set, random sets (all minus v)
    base_ks = (
        [frozenset()]
        + (list(per_role.values()) if "role" in s.minimality_k else [])
        + ([greedy] if "greedy" in s.minimality_k else [])
        + (randoms[: s.minimality_random_k] if "random" in s.minimality_k else [])
    )
    return comp, _minimality(ko, heads, base_ks, f_m, s)


def _minimality(
    ko: _Knockouts, heads: Sequence[Head], base_ks: Sequence[frozenset[Head]], f_m: float, s: ClaimSettings
) -> dict[str, Any]:
    """For each head v, the largest change of F(C\\K) when v is removed too, over the K sets tried (each minus v)."""
    pairs = {v: list(dict.fromkeys(k - {v} for k in base_ks)) for v in heads}
    ko.evaluate([k for v in heads for k in pairs[v]] + [k | {v} for v in heads for k in pairs[v]], with_m=False)
    f_c = ko.f_c
    mini: dict[str, Any] = {"threshold": s.minimality_threshold * abs(f_m), "K_tried": list(s.minimality_k), "heads": {}}
    for v in heads:
        best = max(pairs[v], key=lambda k: (abs(f_c[k | {v}] - f_c[k]), sorted(k)))
        score = abs(f_c[best | {v}] - f_c[best])
        mini["heads"][str(v)] = {
            "score": score,
            "score_pct_of_F_M": 100 * score / abs(f_m) if f_m else float("nan"),
            "K": sorted(map(str, best)),
            "needed": score >= s.minimality_threshold * abs(f_m),
        }
    mini["all_needed"] = all(h["needed"] for h in mini["heads"].values())
    return mini


def write_claims(res: ClaimResult, out: str | Path, command: str = "") -> list[Path]:
    """DIR/claims.json, DIR/claims.md, DIR/worst_cases.jsonl (atomic writes)."""
    out = Path(out)
    from advgen.circuits.claims_doc import claims_doc
    from advgen.core.records import package_versions

    doc = claims_doc(
        res.header,
        command,
        package_versions(),
        {
            "table": res.table,
            "causal_scrubbing": res.causal_scrubbing,
            "absolute": res.absolute,
            "completeness": res.completeness,
            "minimality": res.minimality,
            **({"error_agreement": res.error_agreement} if res.error_agreement else {}),
        },
    )
    md = res.markdown + (f"\nCommand: `{command}`\n" if command else "")
    return [
        atomic_write_text(out / "claims.json", dumps(doc.to_dict()) + "\n"),
        atomic_write_text(out / "claims.md", md),
        atomic_write_text(out / "worst_cases.jsonl", jsonl_text(res.worst_cases)),
    ]
