"""The greater-than model's measurements in training_info.json and its MODEL_CARD.md.

Every figure in the card is computed here from the weights in the directory, on prompts drawn
with `EVAL_SEED`, so rerunning `python -m advgen.reference.greater_than --measure DIR`
reproduces it byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from advgen.reference import gt_corpus, gt_measure

EVAL_SEED = 12345
PER_YY = 5
"""5 prompts for each YY in 02..98: 485 prompts, about the paper's 490."""
GPT2_PUBLISHED = "GPT-2 small: PD 81.7 % (unverified); ACDC's setting 84 % (model), 72 % (its circuit)"


def seed_summary(dirs: list[Path]) -> list[dict[str, Any]]:
    """The headline figures of other seeds' runs, read from their training_info.json (made by the same command)."""
    rows = []
    for d in dirs:
        info = json.loads((d / "training_info.json").read_text())
        m = info["measurements"]
        rows.append(
            {
                "seed": info["settings"]["seed"],
                "pd_greater": m["greater"]["pd_mean"],
                "pd_smaller": m["smaller"]["pd_mean"],
                "pd_yy_blind": m["greater"]["pd_yy_blind"],
                "carriers": m["greater"]["carriers"],
                "train_seconds": info["train_seconds_this_process"],
            }
        )
    return rows


def measure_dir(path: Path, other_seeds: list[Path] | None = None) -> dict[str, Any]:
    """Measure the model in `path`, add the figures to its training_info.json, write MODEL_CARD.md.

    `other_seeds`: directories of the same command run with other seeds, summarised beside this one.
    """
    torch.set_num_threads(1)
    model, tok = gt_measure.load_hf(path)
    gt_corpus.check_year_tokens(tok)
    greater = gt_measure.measure(model, tok, gt_measure.year_prompts(EVAL_SEED, PER_YY))
    smaller = gt_measure.measure(model, tok, gt_measure.year_prompts(EVAL_SEED, PER_YY, gt_measure.SMALLER_TEMPLATE))
    mlps = [f"m{i}" for i in range(model.config.n_layer)]
    res = {
        "eval_seed": EVAL_SEED,
        "prompts_per_yy": PER_YY,
        "ablation": "mean over the same prompts, END position only",
        "carry_share": gt_measure.CARRY_SHARE,
        "greater_template": gt_measure.GREATER_TEMPLATE,
        "smaller_template": gt_measure.SMALLER_TEMPLATE,
        "greater": greater,
        "smaller": smaller,
        "mlps_carry_pd": [m for m in greater["carriers"] if m in mlps],
        "heads_carry_pd": [h for h in greater["carriers"] if h not in mlps],
        "gpt2_small_published": GPT2_PUBLISHED,
    }
    info_path = path / "training_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info["measurements"] = res
    if other_seeds:
        info["other_seeds"] = seed_summary(other_seeds)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    (path / "MODEL_CARD.md").write_text(card(info))
    return res


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ablation_rows(g: dict, s: dict) -> list[str]:
    rows = ["| component | attention END->YY | PD drop (greater) | PD drop (smaller) |", "|---|---|---|---|"]
    for k, v in sorted(g["pd_drop_mean_ablation"].items(), key=lambda kv: -kv[1]):
        att = g["attention_end_to_yy"].get(k)
        rows.append(f"| {k} | {'' if att is None else f'{att:.3f}'} | {v:+.4f} | {s['pd_drop_mean_ablation'][k]:+.4f} |")
    return rows


def card(info: dict) -> str:
    """MODEL_CARD.md text from training_info.json's content."""
    m, st = info["measurements"], info.get("settings", {})
    g, s = m["greater"], m["smaller"]
    mlp_line = (
        f"MLPs that carry PD (drop >= {_pct(m['carry_share'])} of clean PD): {', '.join(m['mlps_carry_pd'])}."
        if m["mlps_carry_pd"]
        else f"No MLP carries PD by this test (each MLP's mean-ablation lowers PD by less than {_pct(m['carry_share'])} of the "
        "clean PD)."
    )
    lines = [
        "# greater-than: advgen's bundled year-comparison model",
        "",
        "A small GPT-2 (with MLPs) trained by `python -m advgen.reference.greater_than --out DIR --seed "
        f"{st.get('seed', 0)}` on the project's own year corpus (advgen/reference/gt_corpus.py); "
        'the task of Hanna et al. 2023 ("How does GPT-2 compute greater-than?").',
        "",
        "## Model and training",
        f"- {st.get('n_layer')} layers, {st.get('n_head')} heads, d_model {st.get('n_embd')}, n_ctx {st.get('seq_len')}, "
        f"vocab {info.get('vocab_size')}, {info.get('n_parameters')} parameters, tied embeddings.",
        f"- {st.get('steps')} steps of about {st.get('tokens_per_batch')} tokens, AdamW lr {st.get('lr')} (warm-up, cosine), "
        f"one CPU thread: {info.get('train_seconds_this_process')} s of training (on a shared, loaded 2-core machine).",
        f"- Final loss (mean of the last 100 steps): {info.get('final_loss_mean_last_100_steps')}.",
        f"- Corpus: {st.get('n_docs')} one-sentence documents, shares by kind {json.dumps(info.get('corpus_kind_shares'))}: "
        "greater contexts (spans, rising prices, rising lists) 66 %, smaller contexts (spans told backwards, falling prices, "
        "falling lists) 28 %, filler 6 %. Centuries 11-18; both years of a sentence share a century.",
        '- Tokenizer: byte-level BPE with digit pairs isolated, so " 1732" is " 17" + "32" as in GPT-2, for every century '
        "11-18 and every two-digit year (checked at build and load). BOS `<|endoftext|>` has id 0 and starts every document.",
        f"- Held-out nouns (never in the paper's template in training): {', '.join(info.get('heldout_nouns', []))}.",
        "",
        "## Measurements (`python -m advgen.reference.greater_than --measure DIR`)",
        f"Prompts: {g['n_prompts']} per context, {m['prompts_per_yy']} per YY in 02..98, held-out nouns, seed {m['eval_seed']}.",
        "",
        "| context | template | mean PD | share PD > 0 | PD of a YY-blind model |",
        "|---|---|---|---|---|",
        f"| greater (right: greater) | `{m['greater_template']}` | {_pct(g['pd_mean'])} | {_pct(g['pd_positive_share'])} | "
        f"{_pct(g['pd_yy_blind'])} |",
        f"| smaller (right: smaller) | `{m['smaller_template']}` | {_pct(s['pd_mean'])} | {_pct(s['pd_positive_share'])} | "
        f"{_pct(s['pd_yy_blind'])} |",
        "",
        f"For comparison, {m['gpt2_small_published']} (GREATER-THAN-FACTS.md). In the smaller context the right answer is "
        "a smaller year, so PD > 0 there is over-generalisation; the YY-blind column is the PD of the prompts' average year "
        "distribution, what a model that ignores YY would score.",
        "",
        "## Which components carry PD",
        f"Ablation: {m['ablation']}; a component carries PD when ablating it alone lowers mean PD by at least "
        f"{_pct(m['carry_share'])} of the clean PD.",
        f"- Heads that carry PD: {', '.join(m['heads_carry_pd']) or 'none'}.",
        f"- {mlp_line}",
        "",
        *_ablation_rows(g, s),
        "",
        *_seed_rows(info, g),
    ]
    return "\n".join(lines)


def _seed_rows(info: dict, g: dict) -> list[str]:
    others = info.get("other_seeds")
    if not others:
        return []
    rows = [
        "## Other training seeds (same command, same measurement)",
        "| seed | PD greater | PD smaller | YY-blind PD | carriers | training s |",
        "|---|---|---|---|---|---|",
        f"| {info['settings']['seed']} (this model) | {_pct(g['pd_mean'])} | {_pct(info['measurements']['smaller']['pd_mean'])} "
        f"| {_pct(g['pd_yy_blind'])} | {', '.join(g['carriers'])} | {info['train_seconds_this_process']} |",
    ]
    rows += [
        f"| {r['seed']} | {_pct(r['pd_greater'])} | {_pct(r['pd_smaller'])} | {_pct(r['pd_yy_blind'])} "
        f"| {', '.join(r['carriers'])} | {r['train_seconds']} |"
        for r in others
    ]
    return [*rows, ""]
