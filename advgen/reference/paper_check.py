"""A development check of an HF model directory on the paper's 15 (held-out) templates,
independent of advgen's validator (`python -m advgen.reference.train --check DIR`)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from advgen.reference import heldout


def paper_template_check(model_dir: Path, n_per: int = 40, seed: int = 123) -> dict:
    """IOI and ABC figures of an HF model directory on the paper's 15 (held-out) templates.

    For each template and name order, `n_per` prompts with the paper's names, places and objects
    (BOS prepended, read at the last token). IOI: accuracy (IO logit > S logit), mean LD, mean IO
    probability. ABC: the same templates with a third name C at S2; the mean softmax share among
    the three names' logits for (first-mentioned, second-mentioned, C), and argmax frequencies.
    A development check, independent of advgen's validator.
    """
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from advgen.prompts import lexicon

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = GPT2LMHeadModel.from_pretrained(str(model_dir)).eval()
    rng = random.Random(seed)
    names, places, objs = lexicon.paper_names(), lexicon.paper_places(), lexicon.paper_objects()

    def tid(w: str) -> int:
        ids = tok.encode(" " + w, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"{w!r} is not a single token")
        return ids[0]

    rows = []
    for t in heldout.PAPER_TEMPLATES:
        body = t.rsplit(" [A]", 1)[0]
        for order in ("ABBA", "BABA"):
            for _ in range(n_per):
                a, b, c = rng.sample(names, 3)
                x, y = (b, a) if order == "BABA" else (a, b)  # intro order; [B] = S
                base = body.replace("[PLACE]", rng.choice(places)).replace("[OBJECT]", rng.choice(objs))
                base = base.replace("[B]", x, 1).replace("[A]", y, 1)
                rows.append(("ioi", order, base.replace("[B]", b), (a, b)))
                rows.append(("abc", order, base.replace("[B]", c), (x, y, c)))
    ld, io_p, shares, argm = [], [], [], []
    with torch.no_grad():
        for r in rows:
            ids = [tok.bos_token_id, *tok.encode(r[2], add_special_tokens=False)]
            logits = model(torch.tensor([ids])).logits[0, -1]
            if r[0] == "ioi":
                io, s_ = tid(r[3][0]), tid(r[3][1])
                ld.append(float(logits[io] - logits[s_]))
                io_p.append(float(logits.softmax(-1)[io]))
            else:
                three = logits[[tid(w) for w in r[3]]]
                shares.append(three.softmax(-1).tolist())
                argm.append(int(three.argmax()))
    n_abc = len(shares)
    return {
        "ioi_n": len(ld),
        "ioi_accuracy": sum(v > 0 for v in ld) / len(ld),
        "ioi_mean_logit_diff": sum(ld) / len(ld),
        "ioi_mean_io_prob": sum(io_p) / len(io_p),
        "abc_n": n_abc,
        "abc_share_first_second_subject": [sum(s[k] for s in shares) / n_abc for k in range(3)],
        "abc_argmax_first_second_subject": [sum(a == k for a in argm) / n_abc for k in range(3)],
    }
