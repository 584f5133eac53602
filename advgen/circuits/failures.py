"""Does the circuit explain the model's mistakes, or only its successes? Error agreement.

Faithfulness is measured on prompts the model gets right; a circuit that reproduces the model
there can still miss why it fails. Over a failure set (an attack's breaks, a scan's failures, any
validated JSONL) this measures, for each ablation (every head outside the circuit knocked out,
circuit heads kept at their positions, as in the claim table):
- error agreement: the share of the model's errors (LD < 0, recomputed here) where the circuit
  alone also has LD < 0, with a bootstrap interval; the empty circuit's share beside it, because
  a circuit that always prefers S would agree on every error;
- success agreement on prompts of the same set the model gets right, as the comparison;
- mean |LD_model - LD_circuit| on each group.
Then a greedy search under one ablation adds back, one head at a time (at every position), the head
outside the circuit whose return raises error agreement most: what the circuit is missing.
Ablation means come from the set's own ABC twins (S2 replaced by a third name) of the same
template and length, the claim table's rule; a row whose twin cannot be made is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from advgen.circuits import ablation, patching
from advgen.circuits.format import Circuit
from advgen.circuits.patching import Entry, RowStats
from advgen.core.types import AdvgenError, Head, PromptSet
from advgen.model.loading import LoadedModel
from advgen.model.metrics import bootstrap_ci
from advgen.model.validate import DEFAULT_BATCH
from advgen.prompts.lexicon import build_lexicon
from advgen.prompts.rows import abc_twin, prompt_of_row
from advgen.prompts.templates import tokenizer_hash

Located = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class AgreementSettings:
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    ablations: tuple[str, ...] = ablation.ABLATIONS
    greedy_ablation: str = ablation.PAPER_ABLATION
    """the ablation the add-back search runs under (the paper's)."""
    greedy_steps: int = 3
    """heads added back, one per step."""
    top_candidates: int = 5
    """single heads listed with their own gain at the first step."""


@dataclass(frozen=True)
class FailurePrompts:
    """A failure set as prompts: each with its ABC twin, and the rows that could not be used."""

    prompts: PromptSet
    twins: PromptSet
    file_error: tuple[bool, ...]
    """per prompt: the source file counted it as an error (its LD < 0 there)."""
    skipped: tuple[dict[str, str], ...]


def failure_prompts(tokenizer: Any, errors: Sequence[Located], successes: Sequence[Located], seed: int) -> FailurePrompts:
    """Rebuild and check every row's prompt (a bad row is an error naming file, line and slot); twin it or skip it."""
    pool = build_lexicon(tokenizer).name_texts
    prompts, twins, flags, skipped = [], [], [], []
    for is_err, group in ((True, errors), (False, successes)):
        for where, row in group:
            p = prompt_of_row(row, tokenizer, where)
            t = abc_twin(p, tokenizer, pool, seed)
            if isinstance(t, str):
                skipped.append({"row": where, "reason": t})
                continue
            prompts.append(p)
            twins.append(t)
            flags.append(is_err)
    th = tokenizer_hash(tokenizer)
    return FailurePrompts(PromptSet(tuple(prompts), th), PromptSet(tuple(twins), th), tuple(flags), tuple(skipped))


def _ci(x: np.ndarray, seed: int) -> dict[str, float] | None:
    return bootstrap_ci(x.astype(float), seed).as_dict() if x.size else None


def _group(
    model_ld: np.ndarray, circ_ld: np.ndarray, empty_ld: np.ndarray, mask: np.ndarray, sign: int, seed: int
) -> dict[str, Any]:
    m, c, e = model_ld[mask], circ_ld[mask], empty_ld[mask]
    return {
        "n": int(mask.sum()),
        "agreement": _ci(np.sign(c) == sign, seed),
        "empty_agreement": float(np.mean(np.sign(e) == sign)) if m.size else None,
        "abs_ld_diff": _ci(np.abs(m - c), seed),
        "mean_ld_model": float(m.mean()) if m.size else None,
        "mean_ld_circuit": float(c.mean()) if m.size else None,
    }


def _subset(ps: PromptSet, vals: ablation.AblationValues, idx: np.ndarray) -> tuple[PromptSet, ablation.AblationValues]:
    return PromptSet(tuple(ps[int(i)] for i in idx), ps.tokenizer_hash), ablation.AblationValues(
        vals.name, tuple(vals.sources[int(i)] for i in idx)
    )


def _with(entries: tuple[Entry, ...], heads: Sequence[Head]) -> tuple[Entry, ...]:
    return entries + tuple((h.layer, h.head, "ALL") for h in heads)


def add_back(
    model: LoadedModel,
    circuit: Circuit,
    ps: PromptSet,
    vals: ablation.AblationValues,
    ref_logp: torch.Tensor,
    model_ld: np.ndarray,
    start: float,
    s: AgreementSettings,
) -> dict[str, Any]:
    """Greedy: each step adds the outside head whose return (at every position) raises error agreement most;
    it stops, and says so, when no head raises it above `start` (the agreement so far)."""
    err = np.flatnonzero(model_ld < 0)
    e_ps, e_vals = _subset(ps, vals, err)
    e_ref = ref_logp[torch.from_numpy(err)]
    base = ablation.circuit_entries(circuit)
    outside = [
        Head(layer, h)
        for layer in range(model.n_layers)
        for h in range(model.n_heads)
        if Head(layer, h) not in circuit.head_set()
    ]
    added: list[Head] = []
    steps: list[dict[str, Any]] = []
    first: list[dict[str, Any]] = []
    for _ in range(min(s.greedy_steps, len(outside))):
        cands = [h for h in outside if h not in added]
        st = ablation.run_kept(model, e_ps, [_with(base, [*added, h]) for h in cands], e_vals, e_ref, s.batch_size * 4)
        score = [float(np.mean(r.ld.numpy() < 0)) for r in st]
        best = max(range(len(cands)), key=lambda i: (score[i], -i))
        if not first:
            order = sorted(range(len(cands)), key=lambda i: (-score[i], i))[: s.top_candidates]
            first = [{"head": str(cands[i]), "error_agreement": score[i]} for i in order]
        if score[best] <= start:
            return {
                "ablation": vals.name,
                "first_step_candidates": first,
                "steps": steps,
                "stopped": (
                    f"no outside head raises error agreement above {100 * start:.1f} % "
                    f"(best: {cands[best]} at {100 * score[best]:.1f} %)"
                ),
            }
        start = score[best]
        added.append(cands[best])
        (full,) = ablation.run_kept(model, ps, [_with(base, added)], vals, ref_logp, s.batch_size * 4)
        ld = full.ld.numpy()
        steps.append(
            {
                "added": [str(h) for h in added],
                "error_agreement": _ci(ld[err] < 0, s.seed),
                "success_agreement": _ci(ld[model_ld > 0] > 0, s.seed),
                "abs_ld_diff_errors": float(np.abs(model_ld - ld)[err].mean()),
            }
        )
    return {"ablation": vals.name, "first_step_candidates": first, "steps": steps, "stopped": None}


def error_agreement(
    model: LoadedModel, circuit: Circuit, fp: FailurePrompts, settings: AgreementSettings = AgreementSettings()
) -> dict[str, Any]:
    """Error and success agreement per ablation, and the greedy add-back, over one failure set."""
    s = settings
    if s.greedy_ablation not in ablation.ABLATIONS or any(a not in ablation.ABLATIONS for a in s.ablations):
        raise AdvgenError(f"unknown ablation in {[*s.ablations, s.greedy_ablation]}; ablations: {list(ablation.ABLATIONS)}")
    ps = fp.prompts
    if not len(ps):
        raise AdvgenError("no usable prompt in the failure set (every row's ABC twin failed; see skipped)")
    clean = patching.cache_run(model, ps, s.batch_size)
    abc = patching.cache_run(model, fp.twins, s.batch_size)
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    model_ld = clean.ld.double().numpy()
    err, ok = model_ld < 0, model_ld > 0
    entries = ablation.circuit_entries(circuit)
    table: dict[str, Any] = {}
    greedy: dict[str, Any] = {}
    for ab in dict.fromkeys([*s.ablations, s.greedy_ablation]):
        vals = ablation.ablation_values(ab, ps, clean, abc, s.seed)
        circ, empty = ablation.run_kept(model, ps, [entries, ()], vals, ref_logp, s.batch_size * 4)
        if ab in s.ablations:
            table[ab] = _row(model_ld, circ, empty, err, ok, s.seed)
        if ab == s.greedy_ablation and err.any():
            greedy = add_back(model, circuit, ps, vals, ref_logp, model_ld, float(np.mean(circ.ld.numpy()[err] < 0)), s)
    groups: dict[tuple[str, int], int] = {}
    for p in ps:
        groups[(p.template_id, len(p))] = groups.get((p.template_id, len(p)), 0) + 1
    return {
        "n_prompts": len(ps),
        "n_errors": int(err.sum()),
        "n_successes": int(ok.sum()),
        "relabelled": int(np.sum(err != np.array(fp.file_error))),
        "skipped": len(fp.skipped),
        "skipped_rows": list(fp.skipped[:20]),
        "single_prompt_groups": sum(1 for v in groups.values() if v == 1),
        "settings": asdict(s),
        "table": table,
        "add_back": greedy,
    }


def _row(model_ld: np.ndarray, circ: RowStats, empty: RowStats, err: np.ndarray, ok: np.ndarray, seed: int) -> dict[str, Any]:
    c, e = circ.ld.numpy(), empty.ld.numpy()
    return {"errors": _group(model_ld, c, e, err, -1, seed), "successes": _group(model_ld, c, e, ok, 1, seed)}


def _pct(ci: dict[str, float] | None) -> str:
    return f"{100 * ci['mean']:.1f} % [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]" if ci else "n/a (no prompt)"


def _ld(ci: dict[str, float] | None) -> str:
    return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "n/a"


def agreement_markdown(source: dict[str, Any], block: dict[str, Any]) -> list[str]:
    """claims.md's section for one failure set: the per-ablation table, then the add-back steps."""
    lines = [
        "",
        f"### Error agreement on `{source['path']}` ({source['kind']})",
        "",
        f"{source['meaning']}. Used {block['n_prompts']} prompts ({block['n_errors']} errors, {block['n_successes']} successes "
        "by "
        f"this run's LD; the file had {source['n_errors_total']} errors and {source['n_successes_total']} successes before the "
        "cap); "
        f"{block['relabelled']} changed group when recomputed; {block['skipped']} skipped (no ABC twin); "
        f"{block['single_prompt_groups']} template-and-length groups hold one prompt (there the mean ablation is that prompt's "
        "own twin).",
        "",
        "| ablation | error agreement (circuit LD < 0) | empty circuit | success agreement (circuit LD > 0) | empty circuit "
        "| abs(LD model - LD circuit): errors | successes |",
        "|---|---|---|---|---|---|---|",
    ]
    for ab, r in block["table"].items():
        e, o = r["errors"], r["successes"]
        emp = ["n/a" if x["empty_agreement"] is None else f"{100 * x['empty_agreement']:.1f} %" for x in (e, o)]
        lines.append(
            f"| {ab} | {_pct(e['agreement'])} | {emp[0]} | {_pct(o['agreement'])} | {emp[1]} | {_ld(e['abs_ld_diff'])} "
            f"| {_ld(o['abs_ld_diff'])} |"
        )
    g = block.get("add_back") or {}
    if g.get("stopped"):
        lines += ["", f"Heads added back (greedy, `{g['ablation']}`): stopped after {len(g['steps'])} step(s): {g['stopped']}."]
    if g.get("steps"):
        lines += [
            "",
            f"Heads added back (greedy, `{g['ablation']}`, each at every position), the error agreement they reach:",
            "",
            "| step | heads added | error agreement | success agreement | abs(LD diff) on errors |",
            "|---|---|---|---|---|",
        ]
        for j, st in enumerate(g["steps"], 1):
            lines.append(
                f"| {j} | {', '.join(st['added'])} | {_pct(st['error_agreement'])} | {_pct(st['success_agreement'])} "
                f"| {st['abs_ld_diff_errors']:.3f} |"
            )
    if g.get("first_step_candidates"):
        lines += [
            "",
            "Best single heads at the first step: "
            + ", ".join(f"{c['head']} ({100 * c['error_agreement']:.1f} %)" for c in g["first_step_candidates"])
            + ".",
        ]
    return lines


def agreement_for(
    model: LoadedModel,
    circuit: Circuit,
    sources: Sequence[tuple[dict[str, Any], Sequence[Located], Sequence[Located]]],
    s: AgreementSettings,
) -> tuple[list[dict[str, Any]], str]:
    """(one block per failure set, claims.md's section): `sources` = (description, error rows, success rows)."""
    blocks, lines = (
        [],
        [
            "",
            "## Error agreement: does the circuit also make the model's mistakes?",
            "",
            "Each ablation knocks out every head outside the circuit (circuit heads kept at their positions). Error agreement = "
            "share of the model's errors (LD < 0) where the circuit alone also has LD < 0; success agreement = share of its "
            "successes where the circuit has LD > 0; the empty circuit (every head knocked out) is the floor. Intervals: "
            "bootstrap 95 %.",
        ],
    )
    for meta, errors, successes in sources:
        block = {
            "source": meta,
            **error_agreement(model, circuit, failure_prompts(model.tokenizer, errors, successes, s.seed), s),
        }
        blocks.append(block)
        lines += agreement_markdown(meta, block)
    return blocks, "\n".join(lines) + "\n"
