# Quick start: `make demo` (end-to-end run on the bundled reference model, offline) and `make test`.
# Both create/refresh the local virtual environment first. torch 2.13.0 installs *before* the
# project, from TORCH_INDEX_URL when it is set (e.g. PyTorch's CPU wheel index, to avoid the
# multi-GB CUDA build that PyPI's default Linux wheel pulls in), else from pip's configured index.
PYTHON ?= python3
TORCH_INDEX_URL ?=
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.advgen-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

DEMO = outputs/demo
demo: setup
	$(BIN)/advgen run --model reference --n 600 --seed 0 --out $(DEMO)/run --overwrite
	$(BIN)/advgen attack --model reference --circuit reference-ioi \
		--budget 2000 --n-clean 200 --seed 0 --out $(DEMO)/attack --overwrite
	$(BIN)/advgen report $(DEMO)/attack --out $(DEMO)/attack/report.html
	$(BIN)/advgen export $(DEMO)/attack --format parquet --out $(DEMO)/export-parquet --overwrite
	@echo "demo done: open $(DEMO)/attack/report.html"

test: setup
	$(BIN)/python -m pytest -m "not slow" -q -ra $(PYTEST_ARGS)  # -ra: every skip (and failure) is listed with its reason at the end

test-slow: setup
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_validate.py

clean:
	rm -rf $(VENV) outputs/demo
