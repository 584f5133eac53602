"""Bundled model weights shipped in the package: one Hugging Face directory per bundled model."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR: Path = Path(__file__).resolve().parent
REFERENCE_DIR: Path = WEIGHTS_DIR / "reference"
MODEL_CARD: Path = REFERENCE_DIR / "MODEL_CARD.md"
PLANTED_DIR: Path = WEIGHTS_DIR / "planted"
"""The planted model: GPT-2's IOI circuit imposed by interchange training (see its MODEL_CARD.md)."""

__all__ = ["WEIGHTS_DIR", "REFERENCE_DIR", "MODEL_CARD", "PLANTED_DIR"]
