"""Training for advgen's bundled models: corpus, tokenizer and the seeded, resumable trainer.

The shipped weights live in `advgen.model.weights` (`REFERENCE_DIR`); `advgen.reference.train.
train_reference` rebuilds them; see the MODEL_CARD.md beside the weights.
"""

from __future__ import annotations

from advgen.model.weights import MODEL_CARD, REFERENCE_DIR

__all__ = ["REFERENCE_DIR", "MODEL_CARD"]
