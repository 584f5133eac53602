"""Shared fixtures: GPT-2's tokenizer (test data in the repo), random GPT-2-shaped models, the reference model."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPT2_TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"
"""OpenAI's published GPT-2 vocabulary and merges (MIT), shipped as test data so a fresh clone runs every test."""


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir() -> Path:
    if not (GPT2_TOKENIZER / "tokenizer.json").exists():
        raise FileNotFoundError(f"GPT-2 tokenizer test data missing at {GPT2_TOKENIZER}")
    return GPT2_TOKENIZER


@pytest.fixture(scope="session")
def gpt2_tokenizer(gpt2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gpt2_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(gpt2_tokenizer_dir, tmp_path_factory) -> Path:
    """2-layer, 4-head random GPT-2 with GPT-2's real tokenizer (fast)."""
    from advgen.model.toymodels import make_random_gpt2

    return make_random_gpt2(tmp_path_factory.mktemp("tiny") / "model", gpt2_tokenizer_dir, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from advgen.model.loading import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def gpt2_shaped_dir(gpt2_tokenizer_dir, tmp_path_factory) -> Path:
    """12 x 12 heads, d_model 768: GPT-2 small's shape with random weights."""
    from advgen.model.toymodels import GPT2_SMALL_SHAPE, make_random_gpt2

    return make_random_gpt2(tmp_path_factory.mktemp("gpt2shaped") / "model", gpt2_tokenizer_dir, seed=0, **GPT2_SMALL_SHAPE)


@pytest.fixture(scope="session")
def reference_model():
    from advgen.model.loading import load_model, reference_dir

    if not (reference_dir() / "config.json").exists():
        pytest.skip("bundled reference model not trained yet")
    return load_model("reference")
