"""The planted model's acceptance figures, measured through advgen's own pipeline.

    python -m advgen.reference.planted_check MODEL_DIR [--n 300] [--seed 0]

On the paper's 15 templates (held out of training): IOI accuracy and mean LD; the attention of
every planted head from its query slot to its key slot (the figures the issue asks for: duplicate
S2->S1, S-inhibition END->S2, name mover END->IO, plus previous-token S1+1->S1 and induction
S2->S1+1); and strictness: how often the answer (IO vs S) changes when every non-planted head
is resampled from an ABC prompt of the same template, (a) with the planted heads kept at every
position and (b) kept only at their circuit slot (what `check-claim` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from advgen.circuits import ablation
from advgen.circuits.format import Circuit, CircuitHead
from advgen.circuits.patching import cache_run
from advgen.core.types import Head
from advgen.model.loading import LoadedModel, load_model
from advgen.prompts.datasets import ioi_sets
from advgen.reference.iit import PLANTED

READ = {
    "previous_token": ("S1+1", "S1"),
    "duplicate_token": ("S2", "S1"),
    "induction": ("S2", "S1+1"),
    "s_inhibition": ("END", "S2"),
    "name_mover": ("END", "IO"),
}
"""role -> (query slot, key slot) whose attention the acceptance criteria read."""


def planted_circuit(n_layers: int = 4, n_heads: int = 4) -> Circuit:
    """The ground-truth circuit of the planted model, from the trainer's own head table."""
    heads = tuple(CircuitHead(p.head, p.role, (p.position,), note=f"planted by training: {_WHY[p.role.value]}") for p in PLANTED)
    prov = {
        "method": (
            "imposed by interchange-intervention training (advgen.reference.planted); "
            "ground truth by construction, not discovered"
        ),
        "trainer_head_table": "advgen.reference.iit.PLANTED",
    }
    return Circuit("planted-ioi", "planted", heads, n_layers, n_heads, prov)


_WHY = {
    "previous_token": "attends S1+1 -> S1 (and t -> t-1 everywhere)",
    "duplicate_token": "attends S2 -> S1 (to BOS when the name is new)",
    "induction": "attends S2 -> S1+1 (to BOS when the name is new)",
    "s_inhibition": "attends END -> S2 (the duplicated name), its output tells the name mover whom to avoid",
    "name_mover": "attends END -> IO and copies it to the logits",
}


def _answer_changes(model: LoadedModel, prompts, clean, abc, entries, seed: int) -> dict[str, float]:
    values = ablation.ablation_values("resample_abc", prompts, clean, abc, seed=seed)
    ref = clean.logits.log_softmax(-1)
    st = ablation.run_kept(model, prompts, [entries], values, ref)[0]
    same = ((st.ld > 0) == (clean.ld > 0)).double()
    return {
        "answer_changed": round(float(1 - same.mean()), 4),
        "mean_ld": round(float(st.ld.mean()), 4),
        "mean_kl": round(float(st.kl.mean()), 4),
    }


def acceptance(model: LoadedModel, n: int = 300, seed: int = 0) -> dict[str, Any]:
    """Every 'Done when' figure that needs only the model (discovery and claims have their own)."""
    prompts, abc_p, _ = ioi_sets(model.tokenizer, n, seed)
    clean = cache_run(model, prompts)
    abc = cache_run(model, abc_p)
    attn = {}
    for p in PLANTED:
        q, k = READ[p.role.value]
        attn[f"{p.head} {p.role.value} {q}->{k}"] = round(float(clean.attn[f"{q}->{k}"][:, p.head.layer, p.head.head].mean()), 4)
    planted = {p.head for p in PLANTED}
    everywhere = tuple((p.head.layer, p.head.head, "ALL") for p in PLANTED)
    at_slot = tuple((p.head.layer, p.head.head, p.position) for p in PLANTED)
    others = [Head(la, h) for la in range(model.n_layers) for h in range(model.n_heads) if Head(la, h) not in planted]
    return {
        "n": n,
        "seed": seed,
        "templates": "paper's 15 (held out of training)",
        "accuracy": round(float((clean.ld > 0).double().mean()), 4),
        "mean_ld": round(float(clean.ld.mean()), 4),
        "attention": attn,
        "non_planted_heads": [str(h) for h in others],
        "joint_resample_planted_kept_everywhere": _answer_changes(model, prompts, clean, abc, everywhere, seed),
        "joint_resample_planted_kept_at_slot": _answer_changes(model, prompts, clean, abc, at_slot, seed),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m advgen.reference.planted_check", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("model", help="model spec or HF directory (e.g. planted)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-circuit", type=Path, default=None, help="also write the planted-ioi circuit JSON here")
    a = ap.parse_args(argv)
    if a.write_circuit:
        planted_circuit().save(a.write_circuit)
    print(json.dumps(acceptance(load_model(a.model), a.n, a.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
