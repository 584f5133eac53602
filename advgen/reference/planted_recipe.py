"""The planted model's recipe: its settings and every loss term of one training step.

What a step optimises (LM loss, behaviour band, attention supervision, interchange interventions,
strictness against ABC, name-twin and role-swapped donors, the SINH path term), stated apart from
the trainer that runs it (`advgen.reference.planted`: data, optimiser, checkpoints, the written
model). `same_history` says when a checkpoint made under other settings is still this recipe's.
Batches and masks are pure functions of (seed, step), so a step's losses are too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from advgen.reference import iit
from advgen.reference import train as base
from advgen.reference.planted_data import ioi_batch, repeat_batch


@dataclass
class PlantedSettings:
    seed: int = 0
    steps: int = 2400
    batch: int = 32
    repeat_batch: int = 16
    repeat_half: int = 10
    n_docs: int = 40_000
    lm_tokens: int = 1024
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ld_low: float = 3.0
    ld_high: float = 5.0
    ramp_frac: float = 0.4
    """strictness ablation probability rises linearly from 0.05 to 1 over this share of steps."""
    w_lm: float = 1.0
    w_behaviour: float = 1.0
    w_attn: float = 1.0
    w_strict: float = 1.0
    w_iit: float = 1.0
    w_path: float = 0.0
    """path strictness: SINH's output reaches everything but the name mover's query from the
    role-swapped twin, and the answer must not change. 0 in the shipped recipe; 1 in the tried
    variants v2 and v4 (docs/planted.md, "Variants tried")."""
    w_strict_twin: float = 1.0
    """strictness with name-twin donors (causal scrubbing's resampling: same skeleton and order,
    new IO and S), on top of the ABC-donor strictness. 1 in the shipped recipe (variant E) and in v4;
    0 in the model shipped before it (step 1800 of the first phase)."""
    w_strict_swap: float = 0.0
    """strictness with the role-swapped twin as donor (same names, S and IO exchanged): a head
    outside the circuit that carries which name is S (a second S-inhibition head, as v4 grew) is
    seen by this donor only; ABC and name-twin donors hold other names. 0 in the shipped recipe."""
    w_close_extra: float = 0.75
    """added to `strict_close` in every strictness term from `extra_from` on: the first-phase
    model's resample faithfulness miss is LD shrinking by about a tenth under joint ablation while
    the answer holds, which the band and a weight of 0.25 barely penalise. 0.75 in the shipped
    recipe (variant E; 1.75 in variant F)."""
    w_io: float = 0.0
    """bounded cross-entropy of IO at END, zero below `io_nats`: the other IOI losses constrain
    only IO against S, so IO's probability ended at about 0.003 (GPT-2: 0.49). 0 in the shipped
    recipe; 1 in variant G, which lost faithfulness (docs/planted.md)."""
    io_nats: float = 0.7
    """IO's cross-entropy (nats) under which the IO term is zero; 0.7 nats = probability 0.5."""
    extra_from: int = 1800
    """step from which w_path, w_strict_twin, w_strict_swap, w_close_extra, w_io apply (a second phase that refines
    the first phase's model); the steps before it do not depend on those weights, bit for bit."""
    strict_close: float = 0.25
    """weight of (LD_circuit - LD_model)^2 in every strictness term (1.0 diverged: every loss
    term grew from step 100 on, behaviour band 7.2 at step 400)."""
    init: str = "reference"
    """warm start: "reference" (the bundled weights) or "scratch" (a tiny config, for tests)."""
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    checkpoint_every: int = 100
    threads: int = 1

    def base_settings(self) -> base.TrainSettings:
        return base.TrainSettings(
            seed=self.seed, steps=self.steps, lr=self.lr, warmup=self.warmup, min_lr_ratio=self.min_lr_ratio
        )


def p_ablate(step: int, s: PlantedSettings) -> float:
    ramp = max(1, int(s.ramp_frac * s.steps))
    return min(1.0, 0.05 + 0.95 * step / ramp)


def step_losses(model, tok, lm, step: int, s: PlantedSettings) -> dict[str, torch.Tensor]:
    """Every loss term of one step (unweighted), as a dict; `lm` = (doc_ids, batches) or None."""
    L, H = model.config.n_layer, model.config.n_head
    b = ioi_batch(tok, s.seed, step, s.batch)
    out: dict[str, torch.Tensor] = {}
    if lm is not None:
        doc_ids, batches = lm
        idx = batches[base.batch_for_step(s.seed, step, len(batches))]
        inp, att, lab = base.collate(doc_ids, idx, 128, tok.pad_token_id)
        out["lm"] = model(input_ids=inp, attention_mask=att, labels=lab).loss
    clean, abc = iit.forward(model, b.clean), iit.forward(model, b.abc)
    ld = iit.logit_diff(clean.logits_end, b.io_tok, b.s_tok)
    out["behaviour"] = iit.band(ld, s.ld_low, s.ld_high)
    if step >= s.extra_from and s.w_io > 0:
        ce = -clean.logits_end.log_softmax(-1).gather(1, b.io_tok[:, None])[:, 0]
        out["io"] = F.relu(ce - s.io_nats).mean()
    out.update(iit.pattern_loss(clean, b, abc))
    rep = iit.forward(model, repeat_batch(s.seed, step, s.repeat_batch, s.repeat_half, len(tok), tok.bos_token_id))
    out["attn_repeat"] = iit.repeat_pattern_loss(rep, s.repeat_half)
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
    mask = iit.kept_mask(b, L, H, p_ablate(step, s), gen)
    circ = iit.forward(model, b.clean, mask, iit.derange(tuple(z.detach() for z in abc.z)))
    extra = step >= s.extra_from
    close = s.strict_close + (s.w_close_extra if extra else 0.0)
    out["strict"] = _keeps_answer(circ, clean, ld, b, s, close)
    if extra and s.w_strict_twin > 0 and b.twin is not None:
        with torch.no_grad():
            twin_z = iit.forward(model, b.twin).z
        out["strict_twin"] = _keeps_answer(iit.forward(model, b.clean, mask, twin_z), clean, ld, b, s, close)
    with torch.no_grad():
        swap_z = iit.forward(model, b.swap).z
    out.update(_iit_terms(model, b, clean, abc, L, H, s, swap_z))
    if extra and s.w_strict_swap > 0:
        out["strict_swap"] = _keeps_answer(iit.forward(model, b.clean, mask, swap_z), clean, ld, b, s, close)
    if extra and s.w_path > 0:
        out["path_sinh"] = _keeps_answer(_sinh_path_run(model, b, clean, swap_z, L, H), clean, ld, b, s, close)
    return out


def _keeps_answer(run: iit.Run, clean: iit.Run, ld: torch.Tensor, b, s: PlantedSettings, close: float) -> torch.Tensor:
    """Strictness target "nothing changes": LD in the band, close to the model's LD, and the END
    distribution over the whole vocabulary close to the model's (KL).

    Donors: another prompt's ABC twin (`strict`, the resample_abc ablation) and the prompt's own
    name twin (`strict_twin`, causal scrubbing's resampling). ABC donors never carry a duplicated
    name, so a head outside the circuit that signals "S2 is duplicated" would pass them unseen;
    name twins carry another duplicated name."""
    ld_c = iit.logit_diff(run.logits_end, b.io_tok, b.s_tok)
    ref = clean.logits_end.detach().log_softmax(-1)
    return (
        iit.band(ld_c, s.ld_low, s.ld_high)
        + close * (ld_c - ld.detach()).pow(2).mean()
        + F.kl_div(run.logits_end.log_softmax(-1), ref, log_target=True, reduction="batchmean")
    )


def _sinh_path_run(model, b, clean: iit.Run, swap_z: tuple[torch.Tensor, ...], L: int, H: int) -> iit.Run:
    """SINH's output at END from the role-swapped twin on every path except the name mover's query
    (which gets the clean write back): the high-level model says SINH acts only through that query,
    so the answer must not change. Blocks SINH -> MLP -> logits (the contrastive shortcut), which
    the direct-path penalty does not see."""
    sinh, nm = (iit.planted_by_role(r).head for r in (iit.Role.S_INHIBITION, iit.Role.NAME_MOVER))
    t = b.clean.shape[1]
    delta = torch.zeros(b.clean.shape[0], t, model.config.n_embd)
    z_c, z_s = clean.z[sinh.layer][:, -1, sinh.head], swap_z[sinh.layer][:, -1, sinh.head]
    delta[:, -1] = iit.head_write(model, z_c - z_s, sinh)
    rep = iit.only(b, L, H, (sinh,), torch.full_like(b.s2_pos, t - 1))
    return iit.forward(model, b.clean, rep, swap_z, query_delta=(nm, delta))


def _iit_terms(
    model, b, clean, abc, L: int, H: int, s: PlantedSettings, swap_z: tuple[torch.Tensor, ...]
) -> dict[str, torch.Tensor]:
    """Interchange interventions on SINH, DUP+IND and NM, with the high-level model's targets."""
    t = b.clean.shape[1]
    end = torch.full_like(b.s2_pos, t - 1)
    sinh, dup, ind, nm = (
        iit.planted_by_role(r).head
        for r in (iit.Role.S_INHIBITION, iit.Role.DUPLICATE_TOKEN, iit.Role.INDUCTION, iit.Role.NAME_MOVER)
    )
    r1 = iit.forward(model, b.clean, iit.only(b, L, H, (sinh,), end), swap_z)
    r2 = iit.forward(model, b.clean, iit.only(b, L, H, (dup, ind), b.s2_pos), tuple(z.detach() for z in abc.z))
    other = iit.derange(tuple(z.detach() for z in clean.z))
    r3 = iit.forward(model, b.clean, iit.only(b, L, H, (nm,), end), other)
    r4 = iit.forward(model, b.clean, *_half_evidence(b, L, H, abc, other))
    ld4 = iit.logit_diff(r4.logits_end, b.io_tok, b.s_tok)
    ld1 = iit.logit_diff(r1.logits_end, b.io_tok, b.s_tok)
    ld2 = iit.logit_diff(r2.logits_end, b.io_tok, b.s_tok)
    src_io = b.io_tok.roll(1, 0)
    lg = r3.logits_end
    best_base = torch.maximum(lg.gather(1, b.io_tok[:, None]), lg.gather(1, b.s_tok[:, None]))[:, 0]
    margin = lg.gather(1, src_io[:, None])[:, 0] - best_base
    return {
        "iit_sinh": iit.band(-ld1, s.ld_low, s.ld_high),
        "iit_dup": iit.band(ld2, -1.0, 1.0),
        "iit_nm": iit.band(margin, s.ld_low, 1e9),
        "iit_half": iit.band(ld4, s.ld_low / 3, s.ld_high / 2),
        "sinh_direct": iit.direct_ld(model, clean, sinh, b.io_tok, b.s_tok).pow(2).mean(),
    }


def _half_evidence(b, L: int, H: int, abc, other) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Rows cycle through: DUP alone from the ABC twin at S2; IND alone from the ABC twin at S2;
    PT at S1+1 from another prompt (IND then finds no match). Returns (replace mask, donor z)."""
    dup, ind, pt = (iit.planted_by_role(r).head for r in (iit.Role.DUPLICATE_TOKEN, iit.Role.INDUCTION, iit.Role.PREVIOUS_TOKEN))
    n = b.clean.shape[0]
    kind = torch.arange(n) % 3
    rep = torch.zeros(n, b.clean.shape[1], L, H, dtype=torch.bool)
    rows = torch.arange(n)
    for k, (head, where) in enumerate(((dup, b.s2_pos), (ind, b.s2_pos), (pt, b.s1_pos + 1))):
        sel = rows[kind == k]
        rep[sel, where[sel], head.layer, head.head] = True
    is_pt = (kind == 2)[:, None, None, None]
    donor = tuple(torch.where(is_pt, o, a.detach()) for o, a in zip(other, abc.z, strict=True))
    return rep, donor


WEIGHT_OF = {
    "lm": "w_lm",
    "behaviour": "w_behaviour",
    "strict": "w_strict",
    "strict_twin": "w_strict_twin",
    "strict_swap": "w_strict_swap",
    "path_sinh": "w_path",
    "io": "w_io",
}


def total_loss(parts: dict[str, torch.Tensor], s: PlantedSettings) -> torch.Tensor:
    tot = torch.zeros(())
    for k, v in parts.items():
        w = getattr(s, WEIGHT_OF[k]) if k in WEIGHT_OF else (s.w_attn if k.startswith("attn") else s.w_iit)
        tot = tot + w * v
    return tot


_PHASE2_WEIGHTS = ("w_path", "w_strict_twin", "w_strict_swap", "w_close_extra", "w_io")
_PHASE2 = (*_PHASE2_WEIGHTS, "extra_from", "io_nats")


def _phase2_start(d: dict) -> float:
    return d["extra_from"] if any(d[k] > 0 for k in _PHASE2_WEIGHTS) else float("inf")


def same_history(saved: dict, s: PlantedSettings, step: int) -> bool:
    """True when a checkpoint at `step` made with `saved` settings is what `s` would have made:
    all settings equal, or equal but for second-phase terms that start after `step` in both. So
    one trained first phase serves every second-phase variant (older checkpoints lack the newer
    fields: they get the defaults, which are off)."""
    old, new = asdict(PlantedSettings(**saved)), asdict(s)
    if old == new:
        return True
    rest = lambda d: {k: v for k, v in d.items() if k not in _PHASE2}  # noqa: E731
    return rest(old) == rest(new) and step <= min(_phase2_start(old), _phase2_start(new))
