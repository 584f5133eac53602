"""Load a model by name, local path, or the bundled reference model: one path for all three.

Every model goes through TransformerLens' `TransformerBridge.boot_transformers` from a
Hugging Face-format source, so hooks, head names and numerics are the same whether the weights
are GPT-2 small from the hub, a local copy, or advgen's own reference model.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from advgen.core.types import AdvgenError

GPT2_ALIASES = {"gpt2": "openai-community/gpt2", "gpt2-small": "openai-community/gpt2"}
HUB_PROBE_TIMEOUT_S = 3.0
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
"""What --device accepts: auto (CUDA when available, else the CPU), cpu, cuda, cuda:0, cuda:1, ..."""
DTYPES = ("float32", "bfloat16", "float16")
"""What --dtype accepts; float32 is the default and the reference every tolerance is stated against."""
ATTN_IMPLEMENTATION = "eager"
"""Set at load and recorded: eager attention is what fires hook_pattern, and it does not vary with the machine."""


class ModelLoadError(AdvgenError):
    """The model could not be loaded; the message says what to do instead."""


@dataclass(frozen=True)
class LoadedModel:
    """A booted model plus what reports need to know about it."""

    bridge: Any
    """transformer_lens.model_bridge.TransformerBridge"""
    tokenizer: Any
    name: str
    """What the user asked for ("reference", "gpt2", or a path)."""
    source: str
    """Resolved hub id or absolute directory."""
    load_seconds: float
    device: str = "cpu"
    """Where the weights live, resolved ("cpu", "cuda:0")."""
    dtype: str = "float32"
    attn_implementation: str = ATTN_IMPLEMENTATION

    @property
    def runtime(self) -> dict[str, str]:
        """How the model ran, for the manifest: reduced precision or another device is never silent."""
        return {"device": self.device, "dtype": self.dtype, "attn_implementation": self.attn_implementation, "hub_kernels": "off"}

    @property
    def hf_model(self) -> Any:
        """The Hugging Face model under the bridge; its modules carry the bridge's hooks."""
        return self.bridge.original_model

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.bridge.cfg.n_heads)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)


def reference_dir() -> Path:
    from advgen.model.weights import REFERENCE_DIR

    return REFERENCE_DIR


BUNDLED = ("reference", "planted", "greater-than", "induction")
"""Model specs shipped in the package (advgen/model/weights/<name>/)."""


def bundled_dir(name: str) -> Path:
    """The weights directory of a bundled model ("reference": natural; "planted": circuit imposed)."""
    from advgen.model.weights import WEIGHTS_DIR

    return reference_dir() if name == "reference" else WEIGHTS_DIR / name


def _check_hf_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"model path {path} is not a directory")
    missing = [f for f in ("config.json",) if not (path / f).exists()]
    if not any((path / f).exists() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not any((path / f).exists() for f in ("tokenizer.json", "vocab.json")):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise ModelLoadError(f"{path} is not a Hugging Face model directory: missing {', '.join(missing)}")


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _resolve(spec: str) -> str:
    """Map a user spec to a directory or hub id, failing fast when the hub is out of reach."""
    if spec in BUNDLED:
        path = bundled_dir(spec)
        if not (path / "config.json").exists():
            kind = "" if spec == "reference" else f" --kind {spec}"
            raise ModelLoadError(
                f"the bundled {spec} model is missing from {path}; retrain it with `advgen train-reference{kind} --out DIR` and "
                f"copy the final files of DIR (not DIR/checkpoints) into {path}"
            )
        return str(path)
    p = Path(spec).expanduser()
    if p.exists() or spec.startswith((".", "/", "~")):
        _check_hf_dir(p)
        return str(p.resolve())
    hub_id = GPT2_ALIASES.get(spec, spec)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(hub_id, "config.json")
    except Exception as e:  # HFValidationError and friends: not a usable hub id
        raise ModelLoadError(
            f"--model {spec!r} is neither a local model directory nor a hub id ({type(e).__name__}: {e})"
        ) from None
    if isinstance(cached, str):
        return hub_id
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise ModelLoadError(
            f"cannot reach the Hugging Face hub to download {hub_id!r} and it is not in the local cache. "
            f"Point --model at a local copy (a directory with config.json, model.safetensors and tokenizer "
            f"files, e.g. made once online with `save_pretrained`), or use --model reference (bundled, offline)."
        )
    return hub_id


def _ignored(key: str, patterns: Any) -> bool:
    return any(re.search(p, key) for p in (patterns or ()))


def _tied_keys(model: Any) -> set[str]:
    if not getattr(model.config, "tie_word_embeddings", False):
        return set()
    tied = getattr(model, "_tied_weights_keys", None) or ()
    return set(tied.keys() if isinstance(tied, dict) else tied)


def check_weights(path: Path) -> None:
    """Refuse a local model whose model.safetensors does not match its config.

    Hugging Face fills missing weights with a random initialisation and only warns; a model whose
    config says 6 layers while its file holds 4 would then give wrong logits silently. Compares
    names and shapes from the safetensors header with a meta-device model built from the config.
    """
    st = path / "model.safetensors"
    if not st.is_file():
        return
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        with safe_open(str(st), framework="pt") as f:
            got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # safe_open has no __iter__
    except Exception as e:  # any unreadable config or header is one clear error
        raise ModelLoadError(f"{path}: cannot read config.json / model.safetensors: {type(e).__name__}: {e}") from None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "")
    got = {k if k in want or f"{prefix}.{k}" not in want else f"{prefix}.{k}": v for k, v in got.items()}
    skip_missing = _tied_keys(model)
    missing = [
        k for k in want if k not in got and k not in skip_missing and not _ignored(k, model._keys_to_ignore_on_load_missing)
    ]
    unexpected = [k for k in got if k not in want and not _ignored(k, model._keys_to_ignore_on_load_unexpected)]
    shapes = [f"{k} {list(got[k])} (config wants {list(want[k])})" for k in want if k in got and got[k] != want[k]]
    problems = [
        (f"{len(missing)} missing weight(s)", missing),
        (f"{len(unexpected)} unexpected weight(s)", unexpected),
        (f"{len(shapes)} shape mismatch(es)", shapes),
    ]
    found = [f"{what}: {', '.join(ks[:4])}{', ...' if len(ks) > 4 else ''}" for what, ks in problems if ks]
    if found:
        raise ModelLoadError(
            f"{st} does not match {path / 'config.json'} ({'; '.join(found)}); refusing to fill the gaps with random weights"
        )


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda:0" when CUDA is available, else "cpu"; "cuda" -> "cuda:0"; a missing GPU is a clear error."""
    import torch

    d = device.strip().lower()
    if d == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if d == "cpu":
        return d
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if m is None:
        raise ModelLoadError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"--device {device!r}: this machine has no usable CUDA device (torch {torch.__version__}); use --device cpu or auto"
        )
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ModelLoadError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return f"cuda:{index}"


def resolve_dtype(dtype: str = "float32") -> Any:
    """The torch dtype named by --dtype."""
    import torch

    if dtype not in DTYPES:
        raise ModelLoadError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _no_hub_kernels() -> None:
    """transformers 5.x swaps in compute kernels fetched from the Hub at load unless told not to: numerics must not depend on a
    download."""
    os.environ["USE_HUB_KERNELS"] = "NO"


def load_model(spec: str = "reference", device: str = "auto", dtype: str = "float32") -> LoadedModel:
    """Load `spec` ("reference", "gpt2"/"gpt2-small", a hub id, or a local HF directory) on `device` in `dtype`.

    Loading options are explicit so numerics do not depend on the environment: no Hub kernels,
    eager attention, and the device and dtype recorded in `LoadedModel.runtime`.
    """
    dev, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    source = _resolve(spec)
    _no_hub_kernels()
    if Path(source).is_dir():
        check_weights(Path(source))
    t0 = time.perf_counter()
    from transformer_lens.model_bridge import TransformerBridge
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise in a CLI; restored below
    try:
        bridge = TransformerBridge.boot_transformers(source, device=dev, dtype=torch_dtype)
    except Exception as e:  # any loader failure becomes one clear message
        raise ModelLoadError(f"could not load model {spec!r} from {source}: {type(e).__name__}: {e}") from e
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    bridge.eval()
    attn = _attn_implementation(bridge.original_model)
    tok = bridge.tokenizer
    if tok is None:
        raise ModelLoadError(f"model {spec!r} has no tokenizer")
    hf: Any = bridge.original_model
    check_vocab(tok, int(hf.get_input_embeddings().num_embeddings), f"model {spec!r} ({source})")
    return LoadedModel(bridge, tok, spec, source, time.perf_counter() - t0, dev, dtype, attn)


def _attn_implementation(hf: Any) -> str:
    """Set eager attention explicitly (where the model allows) and return what the model reports."""
    setter = getattr(hf, "set_attn_implementation", None)
    if callable(setter) and getattr(hf.config, "_attn_implementation", None) != ATTN_IMPLEMENTATION:
        setter(ATTN_IMPLEMENTATION)
    return str(getattr(hf.config, "_attn_implementation", None) or ATTN_IMPLEMENTATION)


def check_vocab(tokenizer: Any, n_embed: int, where: str) -> None:
    """Refuse a tokenizer that can produce ids the embedding has no row for (else an IndexError mid-run)."""
    top = max(len(tokenizer) - 1, max(tokenizer.get_vocab().values(), default=0))  # added tokens included
    if top >= n_embed:
        raise ModelLoadError(
            f"{where}: the tokenizer yields token id {top:,} but the embedding has only {n_embed:,} rows "
            f"(ids 0 ... {n_embed - 1:,}); use the tokenizer the model was trained with"
        )


def load_tokenizer(spec: str = "reference") -> Any:
    """The tokenizer of `spec` alone, for jobs that render prompts without running the model."""
    from transformers import AutoTokenizer

    source = _resolve(spec)
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as e:
        raise ModelLoadError(f"could not load the tokenizer of {spec!r} from {source}: {e}") from e
