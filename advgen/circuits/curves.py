"""Faithfulness curves over circuit size, and MIB's two summary figures, CPR and CMD.

MIB (Mueller et al. 2025, arXiv 2504.13151, circuit localisation track) scores a ranking of model
components by the faithfulness of its top-k circuits over a range of sizes k, then summarises the
curve by two areas:
- faithfulness f(C) = (m(C) - m(empty)) / (m(M) - m(empty)): 0 for the empty circuit, 1 for the model;
- CPR (circuit performance ratio) = area under f over size (higher is better);
- CMD (circuit-model distance) = area between f and 1, i.e. of |1 - f| (lower is better, 0 ideal).
MIB reads CPR off circuits made of the highest *signed* scores (components that push the task) and
CMD off the highest *absolute* scores (components with any effect); both rankings are computed here.

advgen ranks *nodes* (attention heads; MLPs are never knocked out by advgen's ablations, so they stay
in every circuit), not edges. "Size" is the fraction of the model's heads kept: a size k keeps the
round(k * n_heads) best-ranked heads at every position; every other head is replaced by the chosen
ablation (`advgen.circuits.ablation`). m is the mean logit difference at each prompt's END. The area
is the trapezoid rule over the sizes actually realised (n_kept / n_heads), starting at (0, 0), the
empty circuit, so a curve equal to 1 from size 0 to 1 has CPR 1 and CMD 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from advgen.circuits import ablation, patching
from advgen.circuits.format import Circuit
from advgen.core.types import AdvgenError, Head, PromptSet
from advgen.model.loading import LoadedModel

MIB_SIZES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""MIB's circuit sizes, as fractions of the components (edges there, heads here)."""
RANK_SCORE = "act_ALL"
"""Discovery matrix the ranking reads: change of mean LD / F(M) when a head is patched from its ABC
twin at every position (negative = the head carries the task)."""


def n_kept(size: float, n_nodes: int) -> int:
    """Heads a size keeps: round half up, so 5 % of 16 heads is 1 and 0.1 % is 0."""
    if not 0.0 <= size <= 1.0:
        raise AdvgenError(f"circuit size {size} is outside [0, 1]")
    return min(n_nodes, int(np.floor(size * n_nodes + 0.5)))


def area(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Trapezoid area under the points (x ascending; a repeated x adds a zero-width trapezoid)."""
    if len(xs) != len(ys) or not xs:
        raise AdvgenError(f"area: {len(xs)} sizes and {len(ys)} values")
    if any(b < a for a, b in zip(xs, xs[1:], strict=False)):
        raise AdvgenError(f"area: sizes must be ascending, got {list(xs)}")
    return float(sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False)))


def cpr(xs: Sequence[float], f: Sequence[float]) -> float:
    """Area under the faithfulness curve (MIB's CPR)."""
    return area(xs, f)


def cmd(xs: Sequence[float], f: Sequence[float]) -> float:
    """Area between the faithfulness curve and 1 (MIB's CMD): area of |1 - f|, with the crossings of
    1 between two points found by linear interpolation so the trapezoids do not cancel."""
    px, py = [xs[0]], [abs(1.0 - f[0])]
    for x0, x1, f0, f1 in zip(xs, xs[1:], f, f[1:], strict=False):
        if (f0 - 1.0) * (f1 - 1.0) < 0:  # the curve crosses 1 between the two sizes
            px.append(x0 + (x1 - x0) * (1.0 - f0) / (f1 - f0))
            py.append(0.0)
        px.append(x1)
        py.append(abs(1.0 - f1))
    return area(px, py)


def ranking(scores: np.ndarray, signed: bool) -> list[Head]:
    """Heads from most to least important: by -score (signed) or |score|; ties by (layer, head)."""
    imp = -np.nan_to_num(scores) if signed else np.abs(np.nan_to_num(scores))
    L, H = scores.shape
    return sorted((Head(layer, head) for layer in range(L) for head in range(H)), key=lambda h: (-imp[h.layer, h.head], h))


def circuit_first(order: Sequence[Head], circuit: Circuit | Iterable[Head]) -> list[Head]:
    """A ranking with a circuit's heads on top (in `order`'s order), then the rest: the curve of a
    claimed circuit (discovery's own, or a known answer such as `planted-ioi`) beside the plain ranking."""
    heads = circuit.head_set() if isinstance(circuit, Circuit) else frozenset(circuit)
    return [h for h in order if h in heads] + [h for h in order if h not in heads]


def curve(
    model: LoadedModel,
    prompts: PromptSet,
    clean: patching.RunCache,
    values: ablation.AblationValues,
    order: Sequence[Head],
    sizes: Sequence[float] = MIB_SIZES,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Faithfulness of the top-k heads of `order` at each size, all sizes in one stacked run."""
    total = model.n_layers * model.n_heads
    if len(set(order)) != total:
        raise AdvgenError(f"curve: the ranking must list each of the model's {total} heads once, got {len(set(order))}")
    counts = sorted({0, total, *(n_kept(s, total) for s in sizes)})
    kept = [tuple((h.layer, h.head, "ALL") for h in order[:c]) for c in counts]
    ref_logp = torch.log_softmax(clean.logits.double(), -1)
    stats = ablation.run_kept(model, prompts, kept, values, ref_logp, batch_size)
    m = {c: float(st.ld.double().mean()) for c, st in zip(counts, stats, strict=True)}
    m_empty, m_model = m[0], m[total]
    if abs(m_model - m_empty) < 1e-9:
        raise AdvgenError(
            f"curve: the model's mean LD equals the empty circuit's ({m_model:.4f}) under {values.name}; faithfulness is "
            "undefined"
        )
    f = {c: (m[c] - m_empty) / (m_model - m_empty) for c in counts}
    xs, ys = [c / total for c in counts], [f[c] for c in counts]
    return {
        "sizes": [{"size": s, "n_heads": n_kept(s, total), "faithfulness": f[n_kept(s, total)]} for s in sizes],
        "points": [
            {"fraction": x, "n_heads": c, "faithfulness": y, "mean_ld": m[c]} for x, c, y in zip(xs, counts, ys, strict=True)
        ],
        "top_heads": [str(h) for h in order[: max(n_kept(s, total) for s in sizes)]],
        "cpr": cpr(xs, ys),
        "cmd": cmd(xs, ys),
        "mean_ld_model": m_model,
        "mean_ld_empty": m_empty,
        "forwards": len(counts) * len(prompts),
    }


def discovery_curves(
    model: LoadedModel,
    prompts: PromptSet,
    clean: patching.RunCache,
    abc: patching.RunCache,
    matrices: Mapping[str, np.ndarray],
    ablation_name: str,
    seed: int,
    batch_size: int,
    circuit: Iterable[Head] = (),
) -> dict[str, Any]:
    """The `faithfulness_curves` block of discovery.json: signed ranking (read CPR) and absolute
    ranking (read CMD) of `RANK_SCORE`, under one ablation, at MIB's sizes; and the signed ranking
    with `circuit`'s heads moved to the top ("circuit_first": the found circuit as a point on the curve)."""
    values = ablation.ablation_values(ablation_name, prompts, clean, abc, seed)
    out: dict[str, Any] = {
        "ablation": ablation_name,
        "rank_score": RANK_SCORE,
        "nodes": "attention heads (MLPs always kept)",
        "n_nodes": model.n_layers * model.n_heads,
        "n_prompts": len(prompts),
        "mib_sizes": list(MIB_SIZES),
    }
    signed = ranking(matrices[RANK_SCORE], True)
    orders = {"signed": signed, "absolute": ranking(matrices[RANK_SCORE], False), "circuit_first": circuit_first(signed, circuit)}
    heads = sorted(set(circuit))
    total = model.n_layers * model.n_heads
    for name, order in orders.items():
        sizes = sorted({*MIB_SIZES, len(heads) / total}) if name == "circuit_first" else MIB_SIZES
        out[name] = curve(model, prompts, clean, values, order, sizes, batch_size)
    out["circuit_first"]["circuit_heads"] = [str(h) for h in heads]
    out["cpr"], out["cmd"] = out["signed"]["cpr"], out["absolute"]["cmd"]
    out["forwards"] = sum(out[k]["forwards"] for k in orders)
    return out
