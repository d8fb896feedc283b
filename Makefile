# Two commands (see README): `make pipeline` and `make test`.
# TORCH picks the PyTorch build: these CPU machines have torch==2.13.0 as a local
# CPU wheel; on a CUDA machine use e.g. `make pipeline TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: pipeline test setup setup-dev browser lint params plots-template clean

pipeline: setup  ## set up, then run every stage on the default data
	dvc repro
	@echo "Report: $(abspath reports/index.html)"

test: setup-dev browser lint  ## set up, then lint, type-check and run every test (slow ones included)
	pytest -q -m "slow or not slow"

lint:
	ruff check pipeline tests benchmarks
	ruff format --check pipeline tests benchmarks
	mypy

setup: $(VENV)/.runtime plots-template
setup-dev: setup $(VENV)/.dev

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime pyproject.toml
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Debian's Chromium for the report's browser tests (Playwright drives the system binary).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

# The page `dvc plots show` writes loads Vega from a CDN unless .dvc/config's plots.html_template
# names a template with it inlined: written from the installed package (cheap; rewritten only if changed).
plots-template: $(VENV)/.runtime
	python -m pipeline.tools.vega

params:  ## recompose params.yaml from conf/ (what `dvc exp run` does)
	python -m pipeline.tools.params

clean:
	rm -rf artifacts reports/index.html
