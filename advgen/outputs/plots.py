"""Figures for the HTML report, drawn with matplotlib's Agg backend into base64 PNG strings.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state), and PNGs are saved
without a software/date stamp so the same results give the same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

COLORS = {"clean": "#4C72B0", "control": "#55A868", "attack": "#C44E52", "baseline": "#8172B2", "abc": "#CCB974"}
DPI = 90


def png_b64(fig: Figure) -> str:
    """The figure as a base64 PNG (Agg), with no metadata that changes between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _legend(ax, **kw) -> None:
    """A legend only when something is labelled: a panel with no finite values draws none, and an empty
    legend is a matplotlib UserWarning ("No artists with labels found") printed into the user's run."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)
    else:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#777777")


def ld_histograms(panels: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """One panel per mode (or 'all'), each overlaying the LD histograms of its families."""
    n = len(panels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    finite = [v for p in panels.values() for vals in p.values() for v in vals if np.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 31)
    for k, (title, fams) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        for fam, vals in fams.items():
            v = np.asarray([x for x in vals if np.isfinite(x)])
            if v.size:
                ax.hist(v, bins=list(bins), alpha=0.55, color=COLORS.get(fam, "#777777"), label=f"{fam} (n={v.size})")
        ax.axvline(0.0, color="black", lw=0.8, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("logit difference (IO - S) at END", fontsize=8)
        ax.set_ylabel("prompts", fontsize=8)
        ax.tick_params(labelsize=7)
        _legend(ax, fontsize=7)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class DosePoint:
    dose: float
    mean: float
    low: float
    high: float
    s_beats_io: float
    n: int


def dose_response(series: Mapping[str, Sequence[DosePoint]], title: str) -> Figure:
    """Mean LD with 95 % CI against dose, and the S > IO rate, per family (attack, control)."""
    fig = Figure(figsize=(9.0, 3.2))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for fam, pts in series.items():
        pts = sorted(pts, key=lambda p: p.dose)
        x = np.array([p.dose for p in pts])
        m = np.array([p.mean for p in pts])
        err = np.array([[p.mean - p.low for p in pts], [p.high - p.mean for p in pts]])
        c = COLORS.get(fam, "#777777")
        ax1.errorbar(x, m, yerr=err, marker="o", capsize=3, color=c, label=fam)
        ax2.plot(x, [p.s_beats_io for p in pts], marker="o", color=c, label=fam)
    doses = sorted({p.dose for pts in series.values() for p in pts})
    if all(float(d).is_integer() for d in doses):
        for ax in (ax1, ax2):
            ax.set_xticks(doses)
    ax1.axhline(0.0, color="black", lw=0.8, ls="--")
    ax1.set_xlabel("dose")
    ax1.set_ylabel("mean LD (95 % CI)")
    ax2.set_xlabel("dose")
    ax2.set_ylabel("S > IO rate")
    ax2.set_ylim(-0.02, 1.02)
    for ax in (ax1, ax2):
        _legend(ax, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def attention_pair(head: str, role: str, panels: Sequence[tuple[str, Sequence[str], np.ndarray]]) -> Figure:
    """Side-by-side attention patterns [query, key] of one head on each example prompt."""
    fig = Figure(figsize=(5.2 * len(panels), 4.6))
    for k, (title, tokens, pat) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        im = ax.imshow(pat, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ticks = np.arange(len(tokens))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xticklabels(tokens, rotation=90, fontsize=6)
        ax.set_yticklabels(tokens, fontsize=6)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        ax.set_title(f"{head} ({role}): {title}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig
