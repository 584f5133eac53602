# Quick start: `make demo` (end-to-end run on the bundled reference model, offline) and `make test`.
# Both create/refresh the local virtual environment first. torch is pinned to the CPU build
# (2.13.0) *before* the project installs, so nothing can pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.advgen-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

DEMO = outputs/demo
demo: setup
	$(BIN)/advgen run --model reference --n 600 --seed 0 --out $(DEMO)/run
	$(BIN)/advgen attack --model reference --circuit reference-ioi --modes duplicated_io,distant_s2,swapped_pair \
		--budget 2000 --n-clean 200 --seed 0 --out $(DEMO)/attack
	$(BIN)/advgen report $(DEMO)/attack --out $(DEMO)/attack/report.html
	$(BIN)/advgen export $(DEMO)/attack --format parquet --out $(DEMO)/export-parquet
	@echo "demo done: open $(DEMO)/attack/report.html"

test: setup
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_validate.py

clean:
	rm -rf $(VENV) outputs/demo
