"""discover's PNG figures: one heatmap file per group of [L, H] score matrices, and attribution against activation patching.

Drawing only (matplotlib, Agg), from the matrices discovery measured; apart from the method so the
figures can change without touching a rule. The report captions the files with `FILE_TITLES`.
Written atomically, without the PNG software tag, so reruns give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advgen.circuits import patching

HEATMAPS = {
    "patching.png": ("act_ALL", "act_END", "act_S2", "act_S1+1", "act_S1"),
    "attribution.png": ("attr_ALL", "attr_END", "attr_S2", "attr_S1+1", "attr_S1"),
    "path_patching.png": ("pp_logits", "pp_logits_mlp", "pp_queries", "pp_keys", "pp_values", "dla_ld", "backup_gain"),
    "attention.png": ("attn_END_to_IO", "attn_END_to_S2", "attn_S2_to_S1", "attn_S2_to_S1+1", "attn_S1+1_to_S1"),
    "detectors.png": ("previous_token_score", "duplicate_token_score", "induction_score"),
}


PANEL_TITLES = {
    **{f"act_{k}": f"patched at {k}" for k in patching.KINDS},
    **{f"attr_{k}": f"estimated at {k}" for k in patching.KINDS},
    "pp_logits": "path: head -> logits",
    "pp_logits_mlp": "path: head -> MLPs -> logits",
    "pp_queries": "path: head -> name-mover queries",
    "pp_keys": "path: head -> name-mover keys",
    "pp_values": "path: head -> name-mover values",
    "dla_ld": "direct logit attribution",
    "backup_gain": "backup gain (name movers ablated)",
    "previous_token_score": "previous-token score",
    "duplicate_token_score": "duplicate-token score",
    "induction_score": "induction score",
}
FILE_TITLES = {
    "patching.png": "Activation patching: change in mean LD / F(M) when a head's output is taken from the corrupted twin",
    "attribution.png": "Attribution patching: linear estimate of the same change / F(M)",
    "path_patching.png": "Path patching and direct effects on LD, / F(M)",
    "attention.png": "Mean attention probability, query slot -> key slot",
    "detectors.png": "Head detector scores on repeated random-token sequences",
}


def heatmaps(path: Path, names: tuple[str, ...], m: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    names = tuple(k for k in names if k in m)
    L, H = next(iter(m.values())).shape
    fig, axes = plt.subplots(
        1, len(names), figsize=(1.0 + min(max(2.6, 0.45 * H + 1.4), 4.5) * len(names), 1.6 + min(0.4 * L, 4.8)), squeeze=False
    )
    for ax, k in zip(axes[0], names, strict=True):
        v = np.nan_to_num(m[k])
        lim = max(float(np.abs(v).max()), 1e-9)
        signed = float(v.min()) < 0
        im = ax.imshow(v, cmap="RdBu" if signed else "Blues", vmin=-lim if signed else 0, vmax=lim, aspect="auto")
        ax.set_title(PANEL_TITLES.get(k, k.replace("attn_", "").replace("_to_", " -> ")), fontsize=8)
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
        cb = fig.colorbar(im, ax=ax, fraction=0.046)
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_powerlimits((-2, 3))
        cb.ax.yaxis.set_major_formatter(fmt)
        cb.ax.yaxis.get_offset_text().set_fontsize(6)
        cb.ax.tick_params(labelsize=6)
    fig.suptitle(f"{FILE_TITLES.get(path.name, '')} ({title})" if path.name in FILE_TITLES else title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def scatter(path: Path, m: dict[str, np.ndarray], rank: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for k in patching.KINDS:
        if f"act_{k}" in m:
            ax.scatter(m[f"act_{k}"].ravel(), m[f"attr_{k}"].ravel(), s=8, label=f"{k} (rho {rank.get(k, float('nan')):.2f})")
    ax.axline((0, 0), slope=1, color="grey", lw=0.5)
    ax.set_xlabel("activation patching effect / F(M)")
    ax.set_ylabel("attribution patching estimate / F(M)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
