"""Measure an induction model: copying on the induction task, previous-token and induction heads, and which heads carry it.

Every figure is computed from the weights in the directory on inputs drawn with `EVAL_SEED`, so
`python -m advgen.reference.induction --measure DIR` rewrites the same numbers byte for byte.
- task: the built-in `induction` task's prompts (`[A][B] ... [A]`): LD = logit(B) - logit(C),
  share with LD > 0, top-1 = B;
- previous-token score of a head: its mean attention from each token to the one before it, on
  documents without repeats;
- induction score of a head: on `BOS r1..r20 r1..r20` (20 distinct random words, repeated), its mean
  attention from the second r_k to the first r_(k+1);
- carriers: heads whose mean ablation (their output at every position replaced by its mean over
  the task's prompts, at that position) removes at least `CARRY_SHARE` of the clean task LD.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advgen.reference import ind_corpus

EVAL_SEED = 12345
N_TASK = 400
N_DOCS = 64
CARRY_SHARE = 0.25
SCORE_MIN = 0.4
"""A head is called a previous-token (induction) head when its score is at least this."""


def load_hf(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


def task_batch(tok: Any, n: int = N_TASK, seed: int = EVAL_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """The induction task's clean prompts, right-padded: (ids, END positions, [answer, foil] ids, template ids)."""
    from advgen.tasks.lexicons import resolve_lexicons
    from advgen.tasks.registry import resolve_task
    from advgen.tasks.sample import task_sets

    task = resolve_task("induction")
    clean, _ = task_sets(task, resolve_lexicons(task, tok), tok, n, seed)
    L = max(len(p) for p in clean)
    ids = torch.full((len(clean), L), tok.bos_token_id, dtype=torch.long)
    for i, p in enumerate(clean):
        ids[i, : len(p)] = torch.tensor(p.token_ids)
    end = torch.tensor([p.positions["END"] for p in clean])
    ans = torch.tensor([[p.io_token, p.s_token] for p in clean])
    return ids, end, ans, [p.template_id for p in clean]


def _task_scores(model: Any, ids: torch.Tensor, end: torch.Tensor, ans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(LD per prompt, top-1 == answer per prompt), read at each prompt's own END (right padding)."""
    logits = model(input_ids=ids).logits[torch.arange(len(ids)), end]
    ld = logits.gather(1, ans[:, :1])[:, 0] - logits.gather(1, ans[:, 1:])[:, 0]
    return ld, logits.argmax(-1) == ans[:, 0]


def head_scores(model: Any, n_docs: int = N_DOCS, seed: int = EVAL_SEED) -> dict[str, dict[str, float]]:
    """Previous-token and induction score of every head (module docstring)."""
    rng = np.random.default_rng(seed)
    n_words = len(ind_corpus.WORDS)
    length = model.config.n_positions - 1
    repeat_len = length // 2
    corpus = ind_corpus.CorpusSettings(seq_words=length)
    bare, spaced = ind_corpus.word_ids(n_words)
    plain = np.zeros((n_docs, 1 + length), dtype=np.int64)
    rep = np.zeros((n_docs, 1 + 2 * repeat_len), dtype=np.int64)
    for r in range(n_docs):
        w = ind_corpus.document(rng, "plain", corpus, n_words)
        plain[r, 1], plain[r, 2:] = bare[w[0]], spaced[w[1:]]
        v = rng.permutation(n_words)[:repeat_len]
        rep[r, 1], rep[r, 2 : 1 + repeat_len] = bare[v[0]], spaced[v[1:]]
        rep[r, 1 + repeat_len :] = spaced[v]
    att_plain = model(input_ids=torch.from_numpy(plain), output_attentions=True).attentions
    att_rep = model(input_ids=torch.from_numpy(rep), output_attentions=True).attentions
    out: dict[str, dict[str, float]] = {}
    q = torch.arange(2 + repeat_len, 1 + 2 * repeat_len)  # the second r_1 .. r_(n-1)
    k = q - repeat_len + 1  # the first r_(k+1)
    t = torch.arange(2, plain.shape[1])
    for layer, (ap, ar) in enumerate(zip(att_plain, att_rep, strict=True)):
        for h in range(ap.shape[1]):
            out[f"a{layer}.h{h}"] = {
                "previous_token": round(float(ap[:, h, t, t - 1].mean()), 4),
                "induction": round(float(ar[:, h, q, k].mean()), 4),
            }
    return out


def _head_ablation(model: Any, ids: torch.Tensor, end: torch.Tensor, ans: torch.Tensor) -> dict[str, float]:
    """Task LD with each head's output mean-ablated (mean over prompts, per position)."""
    cfg = model.config
    d_head = cfg.n_embd // cfg.n_head
    means: list[torch.Tensor] = []
    hooks = [b.attn.c_proj.register_forward_pre_hook(lambda _m, a: means.append(a[0].mean(0))) for b in model.transformer.h]
    try:
        model(input_ids=ids)
    finally:
        for hk in hooks:
            hk.remove()
    out: dict[str, float] = {}
    for layer, block in enumerate(model.transformer.h):
        for h in range(cfg.n_head):
            sl = slice(h * d_head, (h + 1) * d_head)

            def hook(_m: Any, a: tuple, sl: slice = sl, mean: torch.Tensor = means[layer]) -> tuple:
                x = a[0].clone()
                x[:, :, sl] = mean[:, sl]
                return (x, *a[1:])

            hk = block.attn.c_proj.register_forward_pre_hook(hook)
            try:
                out[f"a{layer}.h{h}"] = round(float(_task_scores(model, ids, end, ans)[0].mean()), 4)
            finally:
                hk.remove()
    return out


@torch.no_grad()
def measure(model: Any, tok: Any) -> dict[str, Any]:
    ids, end, ans, templates = task_batch(tok)
    ld, top1 = _task_scores(model, ids, end, ans)
    per_template = {
        t: {
            "ld_mean": round(float(ld[[i for i, x in enumerate(templates) if x == t]].mean()), 4),
            "top1": round(float(top1[[i for i, x in enumerate(templates) if x == t]].float().mean()), 4),
        }
        for t in sorted(set(templates))
    }
    clean = float(ld.mean())
    ablated = _head_ablation(model, ids, end, ans)
    scores = head_scores(model)
    return {
        "eval_seed": EVAL_SEED,
        "task_prompts": len(ids),
        "task": {
            "ld_mean": round(clean, 4),
            "ld_positive": round(float((ld > 0).float().mean()), 4),
            "top1": round(float(top1.float().mean()), 4),
            "per_template": per_template,
        },
        "head_scores": scores,
        "previous_token_heads": [h for h, s in scores.items() if s["previous_token"] >= SCORE_MIN],
        "induction_heads": [h for h, s in scores.items() if s["induction"] >= SCORE_MIN],
        "ablated_ld_mean": ablated,
        "carriers": sorted(
            (h for h, v in ablated.items() if clean > 0 and clean - v >= CARRY_SHARE * clean), key=lambda h: ablated[h]
        ),
        "score_min": SCORE_MIN,
        "carry_share": CARRY_SHARE,
    }


def card(info: dict[str, Any]) -> str:
    s, m = info["settings"], info["measurements"]
    rows = "\n".join(
        f"| {h} | {v['previous_token']:.3f} | {v['induction']:.3f} | {m['ablated_ld_mean'][h]:.3f} |"
        for h, v in m["head_scores"].items()
    )
    tmpl = "\n".join(f"| {t} | {v['ld_mean']:.3f} | {v['top1']:.3f} |" for t, v in m["task"]["per_template"].items())
    forced = (
        (
            "\nLayer 0's head 0 is a previous-token head **by construction** (`--force-previous-token`: a fixed "
            "position code and fixed query/key weights, `advgen/reference/ind_force.py`); every other weight, layer 1 "
            "included, was learnt.\n"
        )
        if s.get("force_previous_token")
        else ""
    )
    command = info.get("command", f"python -m advgen.reference.induction --out DIR --seed {s['seed']}")
    return f"""# advgen bundled induction model

A {s["n_layer"]}-layer, {s["n_head"]}-head, d={s["n_embd"]} GPT-2 with its MLPs zeroed and frozen (attention
only), trained by `{command}` for {s["steps"]} steps
(batch {s["batch_size"]}, lr {s["lr"]}) on advgen's own corpus: documents of {info["words_per_document"]} words drawn
with replacement from {info["n_words"]} nouns, with planted repeats (kind shares {info["corpus_kind_shares"]}).
Word-level tokenizer, {info["vocab_size"]} tokens (each word with and without its leading space, and BOS).
Final training loss (mean of the last 100 steps): {info["final_loss_mean_last_100_steps"]}.
{forced}
It is advgen's test bed for the `induction` task (`[A][B] ... [A] -> [B]`). Not a language model.

## Induction task (built-in task `induction`, {m["task_prompts"]} prompts, seed {m["eval_seed"]})

LD = logit(B) - logit(C): mean {m["task"]["ld_mean"]:.3f}, LD > 0 on {100 * m["task"]["ld_positive"]:.1f} %, top-1 = B on
{100 * m["task"]["top1"]:.1f} %.

| template | LD mean | top-1 |
|---|---|---|
{tmpl}

## Heads

Previous-token score: mean attention to the token before, on documents without repeats.
Induction score: on 20 random words repeated, mean attention from the second r_k to the first r_(k+1).
Ablated LD: the task's mean LD with that head mean-ablated.

| head | previous-token | induction | ablated LD |
|---|---|---|---|
{rows}

Previous-token heads (score >= {m["score_min"]}): {", ".join(m["previous_token_heads"]) or "none"}.
Induction heads (score >= {m["score_min"]}): {", ".join(m["induction_heads"]) or "none"}.
Heads whose ablation removes >= {int(100 * m["carry_share"])} % of the LD: {", ".join(m["carriers"]) or "none"}.

All figures: `python -m advgen.reference.induction --measure DIR`.
"""


def measure_dir(path: Path) -> dict[str, Any]:
    """Measure the model in `path` into its training_info.json and write MODEL_CARD.md."""
    torch.set_num_threads(1)
    model, tok = load_hf(Path(path))
    res = measure(model, tok)
    info_path = Path(path) / "training_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info["measurements"] = res
    # [layer, head] pairs at the top level: what `bench_task_attack --circuit auto` and the tests read
    for key in ("previous_token_heads", "induction_heads"):
        info[key] = [[int(h[1:].split(".")[0]), int(h.split(".h")[1])] for h in res[key]]
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    if "settings" in info:
        (Path(path) / "MODEL_CARD.md").write_text(card(info))
    return res
