"""HTML for a claim check's two questions: complete per example, or only faithful on average? how good in absolute terms?

Reads claims.json through its typed record (`advgen.circuits.claims_doc.load_claims`; never runs a
model): a side-by-side table of every ablation's mean LD ratio next to causal scrubbing's, with
the per-example spread and sign flips, and the ladder plot (IOI loss against parameters of the
ladder models, with the model, the circuit-only model, the scrubbed circuit and the empty circuit
marked where they fall).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advgen.circuits.claims_doc import (
    Absolute,
    AddBack,
    AgreementBlock,
    AgreementGroup,
    ClaimsDoc,
    FailureSourceMeta,
    MetricRow,
    load_claims,
)
from advgen.core.docspec import is_number
from advgen.core.types import Interval
from advgen.outputs.htmlparts import esc, img, table
from advgen.outputs.plots import png_b64

MARKS = {"model": ("#222", "-"), "circuit": ("#c0392b", "--"), "scrubbed": ("#2471a3", ":"), "empty": ("#888", "-.")}


def _pct(x: Any) -> str:
    return f"{x:.1f}" if is_number(x) else ""


def _x100(x: Any) -> Any:
    """A fraction as a percentage; null (NaN as read) or absent stays blank."""
    return 100 * x if is_number(x) else None


def _mean(ci: Interval | None) -> float | None:
    return None if ci is None else ci.mean


def glance_table(doc: ClaimsDoc) -> str:
    """Mean LD kept (% of F(M)) beside per-example sd, median and sign flips, per ablation and for scrubbing."""
    cols: dict[str, MetricRow] = dict(doc.table or {})
    scrub = doc.causal_scrubbing
    if scrub is not None and scrub.metrics is not None and scrub.metrics.to_dict():
        cols["causal scrubbing"] = scrub.metrics
    rows = []
    for name, m in cols.items():
        q = m.per_example_quantiles_pct or {}
        rows.append(
            [
                name,
                _pct(_x100(_mean(m.ratio_to_model))),
                _pct(m.per_example_sd_pct),
                f"{_pct(q.get('q05'))} / {_pct(q.get('q50'))} / {_pct(q.get('q95'))}",
                _pct(_x100(m.sign_flip_rate)),
                _pct(m.loss_recovered_pct),
            ]
        )
    return table(
        [
            "knockout",
            "mean LD kept (% of F(M))",
            "per-example sd (%)",
            "per-example 5 / 50 / 95 % (%)",
            "sign flips (%)",
            "loss recovered (%)",
        ],
        rows,
    )


def ladder_figure(a: Absolute):
    """IOI loss vs parameters (log) of the ladder, with horizontal lines and points for the placed variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from advgen.model.ladder import monotone_losses

    lad = [
        r
        for r in a.ladder or ()
        if isinstance(r, Mapping) and all(isinstance(r.get(k), (int, float)) for k in ("parameters", "ioi_loss"))
    ]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs, ys = [r["parameters"] for r in lad], [r["ioi_loss"] for r in lad]
    ax.plot(xs, ys, "o", color="#555", label="ladder models")
    ax.plot(xs, monotone_losses(ys), "-", color="#aaa", lw=1, label="monotone fit")
    for r in lad:
        ax.annotate(
            str(r.get("name", "")), (r["parameters"], r["ioi_loss"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    for k, (color, ls) in MARKS.items():
        loss, pl = (a.ioi_loss or {}).get(k), (a.placements or {}).get(k) or {}
        if loss is None or not is_number(loss):
            continue
        ax.axhline(loss, color=color, ls=ls, lw=1, label=f"{k}: {loss:.2f} nats ({pl.get('position')})")
        if pl.get("equivalent_params"):
            ax.plot([pl["equivalent_params"]], [loss], "D", color=color, ms=6)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("IOI loss, -log p(IO) at END (nats)")
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    return fig


def section(run_dir: Path) -> str:
    """The scrubbing + absolute-performance section of the report ('' when claims.json has neither)."""
    doc = load_claims(Path(run_dir))  # not UTF-8, a directory, bad JSON, a field of the wrong type: named errors
    if doc is None:
        return ""
    scrub, a = doc.causal_scrubbing, doc.absolute
    if not ((scrub is not None and scrub.to_dict()) or (a is not None and a.to_dict())):
        return ""
    parts = [
        "<p class='note'>Faithful on average, complete per example? Each knockout's mean LD as % of the model's, "
        "beside the spread of the per-example LD (as % of the model's mean LD) and the share of examples whose sign flips. "
        "Causal scrubbing resamples every activation the circuit does not name from a name twin of the prompt.</p>",
        glance_table(doc),
    ]
    if a is not None and a.to_dict():
        eq, times = a.ladder_equivalent_params, a.times_smaller
        smaller = f" ({times:.1f} x smaller)" if is_number(times) else ""
        like = f" like a model with {eq:,.0f} parameters{smaller}" if is_number(eq) and eq else ""
        parts.append(
            f"<p>Circuit-only model (`{esc(doc.paper_setting or '')}`): loss recovered {_pct(a.loss_recovered_nats)} "
            f"nats ({_pct(a.loss_recovered_pct)} %); on the ladder: <b>{esc(a.ladder_position)}</b>{esc(like)}.</p>"
        )
    if a is not None and a.placements and a.ladder:
        from matplotlib import pyplot as plt

        fig = ladder_figure(a)
        parts.append(img(png_b64(fig), "ladder", f"Ladder: {a.ladder_basis or ''}"))
        plt.close(fig)
    return "".join(parts)


def _ci_pct(ci: Interval | None) -> str:
    if ci is None or not all(is_number(x) for x in (ci.mean, ci.low, ci.high)):
        return "n/a"
    return f"{100 * ci.mean:.1f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}]"


def _ld_ci(ci: Interval | None) -> str:
    return f"{ci.mean:.2f}" if ci is not None and is_number(ci.mean) else "n/a"


def agreement_block(b: AgreementBlock) -> str:
    """One failure set: error vs success agreement per ablation (empty circuit beside), then the heads added back."""
    src = b.source or FailureSourceMeta()
    rows = []
    for ab, r in (b.table or {}).items():
        e, o = r.errors or AgreementGroup(), r.successes or AgreementGroup()
        rows.append(
            [
                ab,
                _ci_pct(e.agreement),
                _pct(_x100(e.empty_agreement)),
                _ci_pct(o.agreement),
                _pct(_x100(o.empty_agreement)),
                _ld_ci(e.abs_ld_diff),
                _ld_ci(o.abs_ld_diff),
            ]
        )
    parts = [
        f"<h3>{esc(src.path or '')} ({esc(src.kind or '')})</h3>",
        f"<p class='note'>{esc(src.meaning or '')}. {esc(b.n_errors)} errors and {esc(b.n_successes)} "
        f"successes used; {esc(b.skipped)} rows skipped (no ABC twin).</p>",
        table(
            [
                "knockout",
                "error agreement (%)",
                "empty circuit (%)",
                "success agreement (%)",
                "empty circuit (%)",
                "mean abs LD diff: errors",
                "successes",
            ],
            rows,
        ),
    ]
    g = b.add_back or AddBack()
    steps = g.steps or ()
    if g.stopped:
        parts.append(f"<p>Heads added back: stopped after {len(steps)} step(s): {esc(g.stopped)}.</p>")
    if steps:
        parts.append(
            table(
                ["heads added back (greedy)", "error agreement (%)", "success agreement (%)", "mean abs LD diff on errors"],
                [
                    [
                        ", ".join(s.added or ()),
                        _ci_pct(s.error_agreement),
                        _ci_pct(s.success_agreement),
                        _pct(s.abs_ld_diff_errors),
                    ]
                    for s in steps
                ],
            )
        )
    return "".join(parts)


def agreement_section(run_dir: Path) -> str:
    """Does the circuit make the model's mistakes too? ('' when claims.json has no failure set)."""
    doc = load_claims(Path(run_dir))
    if doc is None or not doc.error_agreement:
        return ""
    return (
        "<p class='note'>Error agreement: on the prompts the model gets wrong (LD &lt; 0), the share where the circuit alone "
        "(every other head knocked out) is wrong too; success agreement is the same on prompts it gets right. The empty "
        "circuit is the floor. Heads added back: the greedy search for what the circuit is missing.</p>"
        + "".join(agreement_block(b) for b in doc.error_agreement)
    )
