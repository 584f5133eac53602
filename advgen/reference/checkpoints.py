"""Training checkpoints of the bundled models' trainers: step-NNNNNN.pt, written atomically, the newest kept.

One copy of the rules all three trainers (reference, greater-than, induction) follow: a checkpoint
appears only when complete; only files named like ours are read or pruned; a checkpoint is loaded
with `weights_only=True` (tensors and plain data, never code), and a file that is not one is a
named error. Each trainer checks its own settings against what it loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from advgen.core.types import AdvgenError

NAME = re.compile(r"step-(\d+)\.pt")
KEEP = 2


def listed(ck_dir: Path) -> list[Path]:
    """Our checkpoints in `ck_dir`, oldest first (files not named step-NNNNNN.pt are not ours and are ignored)."""
    found = [(int(m.group(1)), p) for p in ck_dir.glob("step-*.pt") if (m := NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def save(ck_dir: Path, step: int, state: dict[str, Any], keep: int = KEEP) -> Path:
    """`state` as DIR/step-NNNNNN.pt (renamed into place when complete); all but the `keep` newest removed."""
    ck_dir.mkdir(parents=True, exist_ok=True)
    path = ck_dir / f"step-{step:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in listed(ck_dir)[:-keep]:
        old.unlink()
    return path


def newest(ck_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint and its contents; None when there is none."""
    cks = listed(ck_dir)
    if not cks:
        return None
    try:
        state = torch.load(cks[-1], weights_only=True)
    except Exception as e:  # pickles with code, corrupt or foreign files
        raise AdvgenError(
            f"checkpoint {cks[-1]} is not a plain advgen checkpoint ({type(e).__name__}: {e}); delete it or use --no-resume"
        ) from e
    if not isinstance(state, dict):
        raise AdvgenError(f"checkpoint {cks[-1]} is not an advgen checkpoint (a {type(state).__name__}, not a dict)")
    return cks[-1], state
