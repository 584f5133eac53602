#!/usr/bin/env bash
# One prepared GPU session (issue 25): install the carried wheels, check every command on CUDA against the CPU,
# then the throughput table. Logs go to $OUT (the device machine sets it; default /tmp/gpu-out).
#
# Run from the repository root on a machine with Python 3.12 + torch (CUDA) + transformers, and the wheels of
# what is missing there in .whl/ (transformer-lens 4.3 and the dependencies it and advgen import; see docs/gpu.md):
#   device run: command "bash benchmarks/gpu_session.sh", carry [".whl"], timeout_s 540
# Budget: expected 4-5 minutes on one H200; the step timeouts cap it at about 7.5 (install+sanity ~40 s, gpu_check 230, bench 150, tolerance 30).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg USE_HUB_KERNELS=NO HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
t0=$(date +%s)
step() { echo "== $1 (t=$(( $(date +%s) - t0 )) s)" | tee -a "$OUT/session.log"; }

step "install .whl/*.whl into /tmp/site"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >>"$OUT/session.log" 2>&1 || { echo "FAIL install (see session.log)" | tee -a "$OUT/session.log"; exit 3; }
export PYTHONPATH=/tmp/site:$PWD

step "versions and sanity import"
$PY - >>"$OUT/session.log" 2>&1 <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for m in ("torch", "transformers", "transformer_lens", "huggingface_hub", "tokenizers", "datasets", "pyarrow", "numpy", "faker", "nltk", "circuitsvis"):
    try:
        mod = importlib.import_module(m)
        print(m, getattr(mod, "__version__", "?"), getattr(mod, "__file__", ""))
    except Exception as e:  # noqa: BLE001
        print(m, "IMPORT FAILED", type(e).__name__, e)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
import advgen
from advgen.model.loading import load_model
m = load_model("reference", device="auto")
print("advgen", advgen.__file__, m.runtime)
EOF
rc=$?
tail -20 "$OUT/session.log"
[ $rc -eq 0 ] || { echo "FAIL sanity import (see session.log)"; exit 4; }

step "gpu_check: every command on cuda vs cpu"
timeout 230 $PY benchmarks/gpu_check.py --out /tmp/gpu-check --device cuda --n 36 2>&1 | tee "$OUT/gpu_check.log"
check_rc=${PIPESTATUS[0]}
# the failing commands' own logs, for a diagnosis without a second session
for f in /tmp/gpu-check/cuda/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -15 "$f"; }; done >"$OUT/gpu_check_cmd_logs.txt" 2>&1

step "bench_gpu: throughput table, fp32 and bf16, GPT-2-shaped model"
timeout 150 $PY benchmarks/bench_gpu.py --device cuda --n 16384 --batch-sizes 1024 256 --dtypes float32 bfloat16 \
    --repeats 2 --scan-n 8192 --memory-n 10000 100000 --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
bench_rc=${PIPESTATUS[0]}
[ $bench_rc -eq 124 ] && echo "bench_gpu: timed out (see bench_gpu.log for the rows finished)" | tee -a "$OUT/session.log"

step "dtype tolerance: bf16 / fp16 against fp32 on the GPU, reference model"
timeout 30 $PY benchmarks/dtype_tolerance.py --model reference --device cuda --n 600 --seeds 0 1 2 2>&1 | tee "$OUT/dtype_tolerance.json"

step "done: gpu_check exit $check_rc, bench_gpu exit $bench_rc"
[ $check_rc -eq 0 ] && [ $bench_rc -eq 0 ]
