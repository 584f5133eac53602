"""advgen's bundled reference model: a small GPT-2 trained here to perform IOI (offline default).

`REFERENCE_DIR` is the Hugging Face directory of the shipped model (config.json,
model.safetensors, tokenizer files). `advgen.reference.train.train_reference` rebuilds it; see
MODEL_CARD.md for the corpus, training settings and measured figures.
"""

from __future__ import annotations

import pathlib

REFERENCE_DIR: pathlib.Path = pathlib.Path(__file__).resolve().parent / "model"
MODEL_CARD: pathlib.Path = pathlib.Path(__file__).resolve().parent / "MODEL_CARD.md"

__all__ = ["REFERENCE_DIR", "MODEL_CARD"]
