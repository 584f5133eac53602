"""Load an advgen auto-circuit export with auto-circuit's own loader; prints the first batch as JSON.

Run with the interpreter of a venv that has auto-circuit (it pins TransformerLens < 3, so it cannot
sit next to advgen): `make test` builds one in .venv-autocircuit and passes it to
tests/test_exporters.py through ADVGEN_AUTO_CIRCUIT_PYTHON.
"""

import json
import sys
import types
from pathlib import Path

import torch
from auto_circuit.data import load_datasets_from_json
from transformers import AutoTokenizer

export_json, tokenizer_dir = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(tokenizer_dir)
if tok.pad_token is None:  # as TransformerLens sets it on the model.tokenizer auto-circuit users pass
    tok.pad_token = tok.eos_token
train, _test = load_datasets_from_json(
    types.SimpleNamespace(tokenizer=tok),
    Path(export_json),
    torch.device("cpu"),
    batch_size=4,
    train_test_size=(4, 4),
    shuffle=False,
)
batch = next(iter(train))
print(
    json.dumps(
        {
            "clean": list(batch.clean.shape),
            "corrupt": list(batch.corrupt.shape),
            "answers": [a.flatten().tolist() for a in batch.answers],
            "wrong_answers": [a.flatten().tolist() for a in batch.wrong_answers],
        }
    )
)
