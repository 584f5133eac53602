"""`--device` and `--dtype`, shared by every command that runs a model (one definition, one loader)."""

from __future__ import annotations

import argparse
from typing import Any


def add_device_args(p: argparse.ArgumentParser) -> None:
    """--device auto|cpu|cuda|cuda:N and --dtype float32|bfloat16|float16; both land in the manifest."""
    from advgen.model.loading import DTYPES

    p.add_argument(
        "--device", default="auto", help="where the model runs: auto (CUDA when available, else the CPU), cpu, cuda, or cuda:N"
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="weights and activations; bfloat16 / float16 are faster on a GPU and recorded as reduced precision",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    """`device` and `dtype` as the jobs take them; reduced precision is announced here, never silent."""
    import sys

    if args.dtype != "float32":
        print(
            f"advgen: note: the model runs in {args.dtype} (reduced precision, recorded in the manifest; "
            "LD tolerance against float32 in docs/gpu.md)",
            file=sys.stderr,
        )
    return {"device": args.device, "dtype": args.dtype}
