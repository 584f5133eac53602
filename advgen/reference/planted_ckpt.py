"""Checkpoints of the planted-model trainer: tensors in safetensors, everything else in JSON.

`step-NNNNNN.safetensors` holds the model (shared embedding stored once) and the AdamW state;
`step-NNNNNN.json` holds the step, settings, tokenizer hash and loss log, plus the format tag.
Nothing is unpickled, and files without the tag (or with a different one) are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from advgen.core.files import atomic_write_text
from advgen.core.types import AdvgenError

FORMAT = "advgen-planted-checkpoint/1"


class CheckpointError(AdvgenError):
    """A checkpoint that is not ours, is incomplete, or does not match the run."""


def _tensors(model, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v).clone().contiguous()
    return out


def save(ck_dir: Path, step: int, model, opt: torch.optim.Optimizer, meta: dict[str, Any]) -> Path:
    """Write step `step` (tensors first, then the JSON that makes it visible); keep the two newest."""
    ck_dir.mkdir(parents=True, exist_ok=True)
    stem = ck_dir / f"step-{step:06d}"
    tmp = stem.with_suffix(".safetensors.tmp")
    save_file(_tensors(model, opt), str(tmp), metadata={"format": FORMAT})
    tmp.replace(stem.with_suffix(".safetensors"))
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
    atomic_write_text(
        stem.with_suffix(".json"), json.dumps({"format": FORMAT, "step": step, "param_groups": groups, **meta}) + "\n"
    )
    for old in sorted(ck_dir.glob("step-*.json"), key=lambda p: int(p.stem.split("-")[1]))[:-2]:
        old.unlink()
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return stem.with_suffix(".json")


def latest(ck_dir: Path) -> Path | None:
    cks = sorted(ck_dir.glob("step-*.json"), key=lambda p: int(p.stem.split("-")[1])) if ck_dir.is_dir() else []
    return cks[-1] if cks else None


def load(path: Path, model, opt: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore model (and optimizer) from the checkpoint whose JSON is `path`; return its metadata."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an advgen planted checkpoint (format tag {FORMAT!r} missing)")
    st_path = path.with_suffix(".safetensors")
    from safetensors import safe_open

    try:
        with safe_open(str(st_path), "pt") as f:
            tag = (f.metadata() or {}).get("format")
        tensors = load_file(str(st_path))
    except Exception as e:  # any safetensors failure is a foreign/corrupt file
        raise CheckpointError(f"{st_path}: not a readable safetensors file ({e})") from e
    if tag != FORMAT:
        raise CheckpointError(f"{st_path}: format tag {tag!r}, expected {FORMAT!r}")
    sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    missing = model.load_state_dict(sd, strict=False)
    if missing.unexpected_keys or [k for k in missing.missing_keys if k != "lm_head.weight"]:
        raise CheckpointError(f"{st_path}: tensors do not match the model ({missing})")
    if opt is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        sd_opt = opt.state_dict()
        for g, saved in zip(sd_opt["param_groups"], meta["param_groups"], strict=True):
            g.update(saved)
        sd_opt["state"] = state
        opt.load_state_dict(sd_opt)
    return meta


def cpu_capability() -> str:
    """The CPU kernel family torch dispatches to (e.g. AVX512, AVX2). Measured: the same seed and
    settings give different weights under AVX512 and AVX2 kernels (step 100-200 mean loss 17.9712
    vs 17.9987 on one machine), so bitwise reproducibility holds per kernel family only."""
    return str(torch.backends.cpu.get_cpu_capability())


def warn_if_other_kernels(meta: dict, ck: Path) -> None:
    made = meta.get("cpu_capability")
    if made is not None and made != cpu_capability():
        print(
            f"warning: {ck} was made with {made} CPU kernels, resuming with {cpu_capability()}: the result "
            "will not be bitwise equal to an uninterrupted run on either (ATEN_CPU_CAPABILITY selects the kernels)",
            flush=True,
        )
