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
# auto-circuit pins TransformerLens < 3, so its real loader runs in a venv of its own (tests/auto_circuit_probe.py)
AC_VENV ?= .venv-autocircuit
AC_STAMP = $(AC_VENV)/.advgen-installed

.PHONY: setup demo test test-slow lint format bench install-check clean

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

$(AC_STAMP): Makefile
	test -x $(AC_VENV)/bin/python || $(PYTHON) -m venv $(AC_VENV)
	$(AC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AC_VENV)/bin/python -m pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) "torch==2.13.0"
	$(AC_VENV)/bin/python -m pip install --quiet "auto-circuit==1.0.1" "transformer-lens==2.18.0" "transformers==4.57.6" \
		"datasets==2.21.0" "pyarrow==16.1.0" "numpy==1.26.4" "torch==2.13.0"
	touch $(AC_STAMP)

test: setup $(AC_STAMP)
	ADVGEN_AUTO_CIRCUIT_PYTHON=$(abspath $(AC_VENV))/bin/python \
		$(BIN)/python -m pytest -m "not slow" -q -ra $(PYTEST_ARGS)  # -ra: every skip (and failure) is listed with its reason at the end

test-slow: setup
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

# ruff check (bugbear, complexity, the 130-column limit), ruff format --check (the code's formatting is
# ruff format's: a file it would change fails) and pyright (basic, over advgen/); .ci/run runs this target
LINT_PATHS = advgen tests benchmarks .ci
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/pyright

# apply the formatting `make lint` checks
format: setup
	$(BIN)/ruff format $(LINT_PATHS)

# build sdist + wheel, check their contents, install the wheel alone in a fresh venv and run the quick start there
install-check: setup
	BUILD_PY=$(BIN)/python PYTHON=$(PYTHON) .ci/install_check.sh

bench: setup
	$(BIN)/python benchmarks/bench_validate.py

clean:
	rm -rf $(VENV) $(AC_VENV) outputs/demo
