"""Circuit performance in absolute terms: nats, LD, and where the circuit-only model sits on the ladder.

"Recovers 37 % of the loss" needs a scale: the ladder (`advgen.model.ladder`) gives the IOI loss
of models trained like the reference model at several sizes. The circuit-only model (the paper's
ablation) and the scrubbed circuit are placed on it by their IOI loss (-log p(IO) at END, the
same prompts), giving "performs like a model with N parameters, K x smaller than this one".
When the model shares the ladder's tokenizer, every ladder model is run on the very prompts of
the claim check; otherwise the ladder's stored figures (its own prompts) are used and said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from advgen.core.types import AdvgenError, PromptSet
from advgen.model.ladder import LADDER_JSON, Placement, Rung, live_ioi_losses, load_ladder, parameter_count, place
from advgen.model.loading import LoadedModel
from advgen.model.validate import DEFAULT_BATCH


def ladder_curve(
    prompts: PromptSet, batch_size: int = DEFAULT_BATCH, device: str = "cpu"
) -> tuple[tuple[Rung, ...], list[dict[str, float]], str]:
    """(rungs, per-rung IOI figures, basis): live on `prompts` (on `device`) when the tokenizer matches."""
    header, rungs = load_ladder()
    if not rungs:
        raise AdvgenError(f"{LADDER_JSON}: no models")
    if header.get("prompt_tokenizer_hash") == prompts.tokenizer_hash:
        return rungs, live_ioi_losses(rungs, prompts, batch_size, device), "live: every ladder model run on these prompts"
    ioi = header.get("ioi", {})
    figs = [{k: r.figure(k) for k in ("ioi_loss", "ioi_mean_ld", "ioi_accuracy")} for r in rungs]
    return (
        rungs,
        figs,
        (
            f"stored in ladder.json (ladder models on their own prompts: {ioi.get('templates')}, n={ioi.get('n')}, "
            f"seed {ioi.get('seed')}); this model's tokenizer differs from the ladder's, so the prompts differ"
        ),
    )


def _placed(p: Placement, model_params: int) -> dict[str, Any]:
    d = asdict(p)
    d["times_smaller"] = model_params / p.equivalent_params if p.equivalent_params else None
    return d


def absolute_performance(
    model: LoadedModel,
    prompts: PromptSet,
    paper_row: Mapping[str, Any],
    scrub: Mapping[str, Any],
    batch_size: int = DEFAULT_BATCH,
    ladder: bool = True,
) -> dict[str, Any]:
    """The `absolute` block: nats, LD and ladder placement of model, circuit, scrubbed circuit, empty circuit."""
    model_params = parameter_count(model)
    nan = float("nan")
    f_m = paper_row["mean_ld"]["mean"] + paper_row["faithfulness_gap"]["mean"]
    losses = {
        "model": paper_row["loss_model"],
        "circuit": paper_row["loss_circuit"],
        "scrubbed": scrub.get("mean_loss_scrubbed", nan),
        "empty": paper_row["loss_empty"],
    }
    out: dict[str, Any] = {
        "loss_recovered_nats": paper_row["loss_recovered_nats"],
        "loss_recovered_pct": paper_row["loss_recovered_pct"],
        "ioi_loss": losses,
        "ioi_mean_ld": {
            "model": f_m,
            "circuit": paper_row["mean_ld"]["mean"],
            "scrubbed": scrub.get("mean_ld_scrubbed", nan),
            "empty": paper_row["empty_mean_ld"],
        },
        "model_parameters": model_params,
        "ladder_equivalent_params": None,
        "ladder_position": "no ladder",
        "times_smaller": None,
    }
    if not ladder:
        return out
    try:
        rungs, figs, basis = ladder_curve(prompts, batch_size, model.device)
    except AdvgenError as e:
        out["ladder_position"] = f"no ladder: {e}"
        return out
    params, names = [r.parameters for r in rungs], [r.name for r in rungs]
    ys = [f["ioi_loss"] for f in figs]
    placements = {k: _placed(place(v, params, ys, names), model_params) for k, v in losses.items()}
    c = placements["circuit"]
    out.update(
        {
            "ladder_equivalent_params": c["equivalent_params"],
            "ladder_position": c["position"],
            "times_smaller": c["times_smaller"],
            "placements": placements,
            "ladder_basis": basis,
            "ladder": [
                {"name": r.name, "parameters": r.parameters, "heldout_loss": r.figure("heldout_loss"), **f}
                for r, f in zip(rungs, figs, strict=True)
            ],
        }
    )
    return out
