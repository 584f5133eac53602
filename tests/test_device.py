"""Device handling without a GPU: on-device metrics equal the old float64 path, tensors are built where the model is,
--device / --dtype resolve and reach the manifest, and validate's memory does not grow with n."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from advgen.core.types import AdvgenError, PromptMetrics

PKG = Path(__file__).resolve().parents[1] / "advgen"
DEVICE_MODULES = sorted(
    [
        *(PKG / "circuits").glob("*.py"),
        *(PKG / "attacks").glob("*.py"),
        *(PKG / "model").glob("*.py"),
        PKG / "outputs" / "scan.py",
        PKG / "outputs" / "attention.py",
    ]
)
FACTORIES = {"tensor", "as_tensor", "arange", "zeros", "ones", "full", "empty", "rand", "randn", "randint", "linspace", "eye"}


def reference_metrics(end_logits: torch.Tensor, io_tokens: torch.Tensor, s_tokens: torch.Tensor) -> list[PromptMetrics]:
    """The validator's metrics as computed before the on-device reduction (host, float64, per-prompt indexing)."""
    logits = end_logits.double()
    logp = torch.log_softmax(logits, dim=-1)
    rows = torch.arange(len(logits))
    io_l, s_l = logits[rows, io_tokens], logits[rows, s_tokens]
    io_rank = (logits > io_l[:, None]).sum(-1)
    top = logits.argmax(-1)
    return [
        PromptMetrics(
            float(io_l[i] - s_l[i]),
            float(io_l[i]),
            float(s_l[i]),
            float(logp[i, io_tokens[i]].exp()),
            float(logp[i, s_tokens[i]].exp()),
            int(io_rank[i]),
            int(top[i]),
        )
        for i in range(len(logits))
    ]


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0, 60.0])
def test_on_device_metrics_equal_the_old_float64_path(scale: float) -> None:
    from advgen.model.metrics import prompt_metrics

    g = torch.Generator().manual_seed(int(scale * 10))
    logits = torch.randn(257, 50257, generator=g) * scale
    io = torch.randint(0, 50257, (257,), generator=g)
    s = torch.randint(0, 50257, (257,), generator=g)
    logits[3, io[3]] = logits[3].max() + 1  # one prompt where IO is the top token
    got, want = prompt_metrics(logits, io, s), reference_metrics(logits, io, s)
    assert got == want  # on the CPU: bit for bit
    assert got[3].io_rank == 0 and got[3].top_token == int(io[3])


def test_metric_rows_in_float32_stay_within_the_documented_tolerance() -> None:
    """What a float32 reduction would give (the GPU bound in docs/gpu.md): LD exact, probabilities to 1e-5 relative."""
    from advgen.model.metrics import metric_rows

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 50257, generator=g) * 8
    io, s = torch.randint(0, 50257, (64,), generator=g), torch.randint(0, 50257, (64,), generator=g)
    rows = metric_rows(logits, io, s)
    lp32 = torch.log_softmax(logits, -1)
    p32 = lp32.gather(1, io[:, None])[:, 0].exp().double()
    assert torch.allclose(rows[:, 3], p32, rtol=1e-5, atol=1e-12)
    ld32 = (logits.gather(1, io[:, None]) - logits.gather(1, s[:, None]))[:, 0].double()
    assert torch.allclose(rows[:, 0], ld32, rtol=0, atol=1e-5)


def _factory_calls_without_device(path: Path) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in FACTORIES
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
            and not any(k.arg == "device" for k in node.keywords)
        ):
            bad.append(f"{path.relative_to(PKG)}:{node.lineno} torch.{node.func.attr}(...)")
    return bad


@pytest.mark.parametrize("path", DEVICE_MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_every_tensor_factory_names_its_device(path: Path) -> None:
    """A tensor built without `device=` lands on the CPU and crashes a CUDA forward ("index is on cpu").

    Every factory in the modules that feed or read the model says where its tensor goes: the model's
    device, the activation's (`t.device`), or "cpu" where the data deliberately stays on the host.
    """
    assert _factory_calls_without_device(path) == []


def test_the_device_check_catches_a_bare_factory(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("import torch\nids = torch.tensor([[1, 2]])\nok = torch.arange(3, device='cpu')\n")
    global PKG
    old, PKG = PKG, tmp_path
    try:
        assert _factory_calls_without_device(bad) == ["m.py:2 torch.tensor(...)"]
    finally:
        PKG = old


def test_resolve_device_and_dtype() -> None:
    from advgen.model.loading import resolve_device, resolve_dtype

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("bfloat16") is torch.bfloat16
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(AdvgenError, match="--device"):
            resolve_device(bad)
    with pytest.raises(AdvgenError, match="--dtype"):
        resolve_dtype("float8")
    if not torch.cuda.is_available():
        with pytest.raises(AdvgenError, match="no usable CUDA"):
            resolve_device("cuda")


MEMORY_SCRIPT = """
import resource, sys
import torch
torch.set_num_threads(1)
from advgen.model.loading import load_model
from advgen.model.validate import validate
from advgen.outputs import pipeline
m = load_model(sys.argv[1], device="cpu")
big = pipeline.generate(m.tokenizer, int(sys.argv[2]), seed=0)
validate(m, pipeline.generate(m.tokenizer, 64, seed=1), 32)  # warm-up: one batch's temporaries are allowed
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ev = validate(m, big, 32)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, len(ev.metrics))
"""


@pytest.mark.slow  # over 7 s: keeps the default suite within 3 minutes; CI runs it with the slow tests
def test_validate_memory_does_not_grow_with_vocabulary_times_n(tiny_model_dir: Path) -> None:
    """1,500 prompts x GPT-2's 50,257-token vocabulary: the old path kept every END row (peak RSS +1,992 MB); now +68 MB."""
    import os
    import subprocess
    import sys

    n, vocab = 1500, 50257
    env = {**os.environ, "PYTHONPATH": str(PKG.parent)}
    r = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tiny_model_dir), str(n)], capture_output=True, text=True, env=env, check=True
    )
    grown_mb, count = r.stdout.split()[-2:]
    assert int(count) == n
    assert float(grown_mb) < 0.5 * n * vocab * 4 / 2**20, f"peak RSS grew by {grown_mb} MB during validate"  # old path: ~2 GB


def test_runtime_reaches_the_manifest_and_the_report_says_reduced_precision(tiny_model) -> None:
    from advgen.core import records
    from advgen.outputs.runinfo import runtime_label

    man = records.manifest(tiny_model, "hash", 0, {})
    assert man["runtime"] == {"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "hub_kernels": "off"}
    assert "REDUCED" not in runtime_label(man["runtime"])
    assert "REDUCED PRECISION" in runtime_label({**man["runtime"], "dtype": "bfloat16"})
    assert "not recorded" in runtime_label(None)


def test_every_model_command_takes_device_and_dtype() -> None:
    from advgen.cli.main import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.dest == "command").choices  # type: ignore[union-attr]
    for name in ("run", "validate", "discover", "check-claim", "attack", "scan", "report"):
        args = {a.dest: a for a in sub[name]._actions}
        assert args["device"].default == "auto" and args["dtype"].default == "float32", name
        assert set(args["dtype"].choices) == {"float32", "bfloat16", "float16"}, name


def test_bfloat16_load_is_recorded_and_close_to_float32(tiny_model_dir: Path) -> None:
    from advgen.model.loading import load_model
    from advgen.model.validate import validate
    from advgen.outputs import pipeline

    m32, m16 = load_model(str(tiny_model_dir), device="cpu"), load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert m16.runtime["dtype"] == "bfloat16" and next(m16.hf_model.parameters()).dtype is torch.bfloat16
    prompts = pipeline.generate(m32.tokenizer, 24, seed=0)
    a, b = validate(m32, prompts, 8).metrics, validate(m16, prompts, 8).metrics
    assert max(abs(x.logit_diff - y.logit_diff) for x, y in zip(a, b, strict=True)) < 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_refuses_a_missing_gpu_with_exit_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    from advgen.cli.main import main

    out = tmp_path / "run"
    assert main(["run", "--n", "4", "--device", "cuda", "--out", str(out), "--no-progress"]) == 2
    assert "no usable CUDA device" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
