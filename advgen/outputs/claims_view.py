"""HTML for a claim check's two questions: complete per example, or only faithful on average? how good in absolute terms?

Reads claims.json (never runs a model): a side-by-side table of every ablation's mean LD ratio
next to causal scrubbing's, with the per-example spread and sign flips, and the ladder plot (IOI
loss against parameters of the ladder models, with the model, the circuit-only model, the
scrubbed circuit and the empty circuit marked where they fall).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advgen.core.files import read_json
from advgen.outputs.htmlparts import esc, img, table
from advgen.outputs.plots import png_b64

MARKS = {"model": ("#222", "-"), "circuit": ("#c0392b", "--"), "scrubbed": ("#2471a3", ":"), "empty": ("#888", "-.")}


def _pct(x: Any) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) and math.isfinite(x) else ""


def _x100(x: Any) -> Any:
    """A fraction as a percentage; null (NaN as written) or absent stays blank."""
    return 100 * x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def glance_table(doc: Mapping[str, Any]) -> str:
    """Mean LD kept (% of F(M)) beside per-example sd, median and sign flips, per ablation and for scrubbing."""
    cols: dict[str, Mapping[str, Any]] = dict(doc.get("table") or {})
    scrub = doc.get("causal_scrubbing") or {}
    if scrub.get("metrics"):
        cols["causal scrubbing"] = scrub["metrics"]
    rows = []
    for name, m in cols.items():
        ratio = m.get("ratio_to_model")
        mean = ratio.get("mean") if isinstance(ratio, Mapping) else ratio
        q = m.get("per_example_quantiles_pct") or {}
        rows.append([name, _pct(_x100(mean)), _pct(m.get("per_example_sd_pct")),
                     f"{_pct(q.get('q05'))} / {_pct(q.get('q50'))} / {_pct(q.get('q95'))}", _pct(_x100(m.get("sign_flip_rate"))),
                     _pct(m.get("loss_recovered_pct"))])
    return table(["knockout", "mean LD kept (% of F(M))", "per-example sd (%)", "per-example 5 / 50 / 95 % (%)", "sign flips (%)",
                  "loss recovered (%)"], rows)


def ladder_figure(a: Mapping[str, Any]):
    """IOI loss vs parameters (log) of the ladder, with horizontal lines and points for the placed variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from advgen.model.ladder import monotone_losses

    lad = [r for r in a["ladder"] if all(isinstance(r.get(k), (int, float)) for k in ("parameters", "ioi_loss"))]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs, ys = [r["parameters"] for r in lad], [r["ioi_loss"] for r in lad]
    ax.plot(xs, ys, "o", color="#555", label="ladder models")
    ax.plot(xs, monotone_losses(ys), "-", color="#aaa", lw=1, label="monotone fit")
    for r in lad:
        ax.annotate(str(r.get("name", "")), (r["parameters"], r["ioi_loss"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for k, (color, ls) in MARKS.items():
        loss, pl = (a.get("ioi_loss") or {}).get(k), (a.get("placements") or {}).get(k) or {}
        if not (isinstance(loss, (int, float)) and math.isfinite(loss)):
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
    path = Path(run_dir) / "claims.json"
    if not path.exists():
        return ""
    doc = read_json(path)  # not UTF-8, a directory, bad JSON: named errors
    if not isinstance(doc, Mapping) or not (doc.get("causal_scrubbing") or doc.get("absolute")):
        return ""
    parts = ["<p class='note'>Faithful on average, complete per example? Each knockout's mean LD as % of the model's, "
             "beside the spread of the per-example LD (as % of the model's mean LD) and the share of examples whose sign flips. "
             "Causal scrubbing resamples every activation the circuit does not name from a name twin of the prompt.</p>",
             glance_table(doc)]
    a = doc.get("absolute") or {}
    if a:
        eq = a.get("ladder_equivalent_params")
        times = a.get("times_smaller")
        smaller = f" ({times:.1f} x smaller)" if isinstance(times, (int, float)) else ""
        like = f" like a model with {eq:,.0f} parameters{smaller}" if isinstance(eq, (int, float)) and eq else ""
        parts.append(f"<p>Circuit-only model (`{esc(doc.get('paper_setting', ''))}`): loss recovered {_pct(a.get('loss_recovered_nats'))} "
                     f"nats ({_pct(a.get('loss_recovered_pct'))} %); on the ladder: <b>{esc(a.get('ladder_position'))}</b>{esc(like)}.</p>")
    if a.get("placements") and a.get("ladder"):
        from matplotlib import pyplot as plt

        fig = ladder_figure(a)
        parts.append(img(png_b64(fig), "ladder", f"Ladder: {a.get('ladder_basis', '')}"))
        plt.close(fig)
    return "".join(parts)


def _ci_pct(ci: Any) -> str:
    if not isinstance(ci, Mapping) or not all(isinstance(ci.get(k), (int, float)) for k in ("mean", "low", "high")):
        return "n/a"
    return f"{100 * ci['mean']:.1f} [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"


def _ld_ci(ci: Any) -> str:
    return f"{ci['mean']:.2f}" if isinstance(ci, Mapping) and isinstance(ci.get("mean"), (int, float)) else "n/a"


def agreement_block(b: Mapping[str, Any]) -> str:
    """One failure set: error vs success agreement per ablation (empty circuit beside), then the heads added back."""
    src = b.get("source") or {}
    rows = []
    for ab, r in (b.get("table") or {}).items():
        e, o = r.get("errors") or {}, r.get("successes") or {}
        rows.append([ab, _ci_pct(e.get("agreement")), _pct(_x100(e.get("empty_agreement"))), _ci_pct(o.get("agreement")),
                     _pct(_x100(o.get("empty_agreement"))), _ld_ci(e.get("abs_ld_diff")), _ld_ci(o.get("abs_ld_diff"))])
    parts = [f"<h3>{esc(src.get('path', ''))} ({esc(src.get('kind', ''))})</h3>",
             f"<p class='note'>{esc(src.get('meaning', ''))}. {esc(b.get('n_errors'))} errors and {esc(b.get('n_successes'))} "
             f"successes used; {esc(b.get('skipped'))} rows skipped (no ABC twin).</p>",
             table(["knockout", "error agreement (%)", "empty circuit (%)", "success agreement (%)", "empty circuit (%)",
                    "mean abs LD diff: errors", "successes"], rows)]
    g = b.get("add_back") or {}
    steps = g.get("steps") or []
    if g.get("stopped"):
        parts.append(f"<p>Heads added back: stopped after {len(steps)} step(s): {esc(g['stopped'])}.</p>")
    if steps:
        parts.append(table(["heads added back (greedy)", "error agreement (%)", "success agreement (%)", "mean abs LD diff on errors"],
                           [[", ".join(s.get("added", [])), _ci_pct(s.get("error_agreement")), _ci_pct(s.get("success_agreement")),
                             _pct(s.get("abs_ld_diff_errors"))] for s in steps]))
    return "".join(parts)


def agreement_section(run_dir: Path) -> str:
    """Does the circuit make the model's mistakes too? ('' when claims.json has no failure set)."""
    path = Path(run_dir) / "claims.json"
    if not path.exists():
        return ""
    doc = read_json(path)
    blocks = doc.get("error_agreement") if isinstance(doc, Mapping) else None
    if not blocks:
        return ""
    return ("<p class='note'>Error agreement: on the prompts the model gets wrong (LD &lt; 0), the share where the circuit alone "
            "(every other head knocked out) is wrong too; success agreement is the same on prompts it gets right. The empty "
            "circuit is the floor. Heads added back: the greedy search for what the circuit is missing.</p>"
            + "".join(agreement_block(b) for b in blocks if isinstance(b, Mapping)))
